"""SignalsFunction: social, web and CRM signals in, fading interest scores out.

Fed three ways, one handler:
- an SQS queue (batches of up to 100; partial-batch failures reported through Powertools batch
  processing, so only the messages that could not be stored for now come back);
- an EventBridge rule on the stack's bus (detail-type `rapport.signal`; the detail is one signal or
  `{"signals": [...]}`);
- `POST /signals` on an IAM-authorised HTTP API (one signal or `{"signals": [...]}`, up to 100).

A signal that can never be stored as sent (bad field, unknown product) is answered with its problems
(HTTP) or put on the dead-letter queue with them, its number replaced by the caller key (SQS,
EventBridge); it never holds up the others. A signal DynamoDB could not take for now comes back: SQS
redelivers its message, EventBridge's invocation is retried, HTTP answers 503 for it.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from botocore.config import Config
from pydantic import Field
from pydantic_settings import SettingsConfigDict
from rapport import SERVICE_NAME
from rapport.http import json_response
from rapport.ingest import Catalog, Outcome, SignalIngest, Status
from rapport.log_privacy import RedactingFormatter
from rapport.numbers import caller_key, parse_number
from rapport.privacy import deployed_rules
from rapport.secrets import PepperSource
from rapport.settings import Settings
from rapport.signals import SignalRejected, parse_signal, redacted, signals_in
from rapport.store.signals import SignalStore
from rapport.telemetry import CallMetrics, Metric

logger = Logger(service=SERVICE_NAME, logger_formatter=RedactingFormatter())
app = APIGatewayHttpResolver()

DETAIL_TYPE = "rapport.signal"
_QUEUE_CONFIG = Config(
    connect_timeout=1, read_timeout=3, retries={"total_max_attempts": 3, "mode": "standard"}
)


class SignalSettings(Settings):
    model_config = SettingsConfigDict(env_prefix="RAPPORT_", extra="ignore", frozen=True)

    rejects_queue_url: str = Field(default="")
    """Where signals that can never be stored go, redacted, with their problems (the DLQ)."""


class Services:
    def __init__(self) -> None:
        self.settings = SignalSettings()
        self.store = SignalStore.for_table(self.settings.table_name)
        self.pepper = PepperSource.for_settings(self.settings)
        self.catalog = Catalog(self.store.catalog)
        self.rules = deployed_rules()
        self._sqs: Any = None

    def ingest(self) -> SignalIngest | None:
        pepper = self.pepper.get()
        if pepper is None:
            return None
        return SignalIngest(
            self.store, self.catalog, self.rules, pepper, self.settings.interest_half_life_days
        )

    @property
    def sqs(self) -> Any:
        if self._sqs is None:
            self._sqs = boto3.session.Session().client("sqs", config=_QUEUE_CONFIG)
        return self._sqs


@cache
def services() -> Services:
    return Services()


def now() -> float:
    return time.time()


@dataclass
class Handled:
    """One signal as it arrived, and what became of it."""

    raw: object
    outcome: Outcome
    problems: tuple[str, ...] = ()

    @property
    def signal_id(self) -> str | None:
        value = self.raw.get("signal_id") if isinstance(self.raw, dict) else None
        return value if isinstance(value, str) and len(value) <= 128 else None


# -- the core, whatever the signals came through -------------------------------------------------------


def handle_signals(raws: Sequence[object], metrics: CallMetrics) -> list[Handled]:
    """Parse, check and store a batch; one `Handled` per raw signal, in order. Never raises."""
    handled: list[Handled | None] = [None] * len(raws)
    parsed = []
    for index, raw in enumerate(raws):
        try:
            parsed.append((index, parse_signal(raw)))
        except SignalRejected as rejected:
            handled[index] = Handled(raw, Outcome(Status.REJECTED, str(rejected)), tuple(rejected.problems))
    if parsed:
        try:
            ingest = services().ingest()
            outcomes = (
                ingest.ingest([signal for _, signal in parsed], now())
                if ingest is not None
                else [Outcome(Status.FAILED, "the caller-key secret is unavailable")] * len(parsed)
            )
        except Exception as error:
            logger.exception("signals not stored")
            outcomes = [Outcome(Status.FAILED, f"{type(error).__name__}")] * len(parsed)
        for (index, _), outcome in zip(parsed, outcomes, strict=True):
            problems = (outcome.error,) if outcome.status is Status.REJECTED else ()
            handled[index] = Handled(raws[index], outcome, problems)
    done = [item for item in handled if item is not None]
    _count(done, metrics)
    return done


_METRIC_OF = {
    Status.STORED: Metric.SIGNALS_STORED,
    Status.DUPLICATE: Metric.SIGNALS_DUPLICATE,
    Status.NO_INTEREST: Metric.SIGNALS_WITHOUT_INTEREST,
    Status.NOT_PERMITTED: Metric.SIGNALS_WITHOUT_CONSENT,
    Status.OBJECTED: Metric.SIGNALS_OBJECTED,
    Status.EXPIRED: Metric.SIGNALS_EXPIRED,
    Status.REJECTED: Metric.SIGNALS_REJECTED,
    Status.FAILED: Metric.SIGNALS_FAILED,
}


def _count(handled: Iterable[Handled], metrics: CallMetrics) -> None:
    counts: dict[Status, int] = {}
    for item in handled:
        counts[item.outcome.status] = counts.get(item.outcome.status, 0) + 1
        if item.outcome.status is Status.REJECTED:
            logger.warning("signal rejected", extra={"signal_id": item.signal_id, "problems": item.problems})
        elif item.outcome.status is Status.FAILED:
            logger.error(
                "signal not stored for now", extra={"signal_id": item.signal_id, "error": item.outcome.error}
            )
    for status, count in counts.items():
        metrics.count(_METRIC_OF[status], count)
    logger.info("signals", extra={"counts": {status.value: count for status, count in counts.items()}})


def _caller_key_of(raw: object) -> str | None:
    """The caller key of a rejected signal's number, when it holds a usable one."""
    number = (
        parse_number(raw.get("caller"))
        if isinstance(raw, dict) and isinstance(raw.get("caller"), str)
        else None
    )
    if number is None:
        return None
    pepper = services().pepper.get()
    return caller_key(number.e164, pepper) if pepper else None


def dead_letters(rejected: Sequence[Handled], via: str) -> bool:
    """Put rejected signals on the dead-letter queue, numbers redacted. False when the queue did not take
    them all (the caller then has them delivered again)."""
    if not rejected:
        return True
    url = services().settings.rejects_queue_url
    if not url:
        return True  # nowhere configured (local runs): the log line is the record
    entries = [
        {
            "Id": str(index),
            "MessageBody": json.dumps(
                {
                    "rejected": "rapport.signal",
                    "via": via,
                    "problems": list(item.problems),
                    "signal": redacted(item.raw, _caller_key_of(item.raw)),
                },
                ensure_ascii=False,
            ),
        }
        for index, item in enumerate(rejected)
    ]
    try:
        for start in range(0, len(entries), 10):
            answer = services().sqs.send_message_batch(QueueUrl=url, Entries=entries[start : start + 10])
            if answer.get("Failed"):
                raise RuntimeError(f"{len(answer['Failed'])} dead letters refused")
    except Exception as error:  # noqa: BLE001 - any failure: the signals come back and are tried again
        logger.error("dead-letter queue unavailable", extra={"error": f"{type(error).__name__}: {error}"})
        return False
    return True


# -- SQS ------------------------------------------------------------------------------------------------


class SignalsNotStored(Exception):
    """Raised for a message, an event or a request whose signals must be delivered again."""


def from_queue(event: dict[str, Any], context: Any, metrics: CallMetrics) -> dict[str, Any]:
    records = event.get("Records") or []
    bodies: list[list[object]] = []
    raws: list[object] = []
    for record in records:
        try:
            carried = signals_in(json.loads(record.get("body") or ""))
        except (ValueError, SignalRejected):
            carried = [record.get("body")]  # rejected one by one below, with what is wrong
        bodies.append(carried)
        raws += carried
    handled = iter(handle_signals(raws, metrics))
    by_message = {
        record.get("messageId"): [next(handled) for _ in carried]
        for record, carried in zip(records, bodies, strict=True)
    }
    dead_ok = {
        message: dead_letters([h for h in items if h.outcome.status is Status.REJECTED], "sqs")
        for message, items in by_message.items()
    }

    def record_handler(record: SQSRecord) -> None:
        items = by_message.get(record.message_id, [])
        if any(item.outcome.retry for item in items) or not dead_ok.get(record.message_id, True):
            raise SignalsNotStored("deliver this message again")

    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
    return dict(
        process_partial_response(
            event=event, record_handler=record_handler, processor=processor, context=context
        )
    )


# -- EventBridge ----------------------------------------------------------------------------------------


def from_eventbridge(event: dict[str, Any], metrics: CallMetrics) -> dict[str, Any]:
    try:
        raws = signals_in(event.get("detail"))
    except SignalRejected as rejected:
        handled = [
            Handled(event.get("detail"), Outcome(Status.REJECTED, str(rejected)), tuple(rejected.problems))
        ]
        _count(handled, metrics)
    else:
        handled = handle_signals(raws, metrics)
    if not dead_letters([h for h in handled if h.outcome.status is Status.REJECTED], "eventbridge"):
        raise SignalsNotStored("the dead-letter queue did not take the rejected signals")
    if any(h.outcome.retry for h in handled):
        # Lambda retries the event; signals already stored are recognised then and not counted again.
        raise SignalsNotStored("some signals could not be stored for now")
    return _summary(handled)


# -- HTTP -----------------------------------------------------------------------------------------------


def _summary(handled: Sequence[Handled]) -> dict[str, Any]:
    results = []
    for item in handled:
        result: dict[str, Any] = {"signal_id": item.signal_id, "status": item.outcome.status.value}
        if item.problems:
            result["problems"] = list(item.problems)
        elif item.outcome.status is Status.FAILED:
            result["retry"] = True
        if item.outcome.products:
            result["products"] = list(item.outcome.products)
        results.append(result)
    return {"results": results}


@app.post("/signals")
def post_signals() -> Response[str]:
    metrics: CallMetrics = app.context["metrics"]
    try:
        raws = signals_in(json.loads(app.current_event.decoded_body or ""))
    except ValueError:
        return json_response(400, {"error": 'the body must be a JSON signal or {"signals": [...]}'})
    except SignalRejected as rejected:
        return json_response(400, {"error": str(rejected)})
    handled = handle_signals(raws, metrics)
    statuses = {item.outcome.status for item in handled}
    if statuses <= {Status.REJECTED}:
        code = 400
    elif statuses <= {Status.FAILED}:
        code = 503
    elif Status.REJECTED in statuses or Status.FAILED in statuses:
        code = 207
    else:
        code = 200
    return json_response(code, _summary(handled))


# -- entry point ----------------------------------------------------------------------------------------


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    metrics = CallMetrics()
    try:
        records = event.get("Records") if isinstance(event, dict) else None
        if isinstance(records, list) and records and records[0].get("eventSource") == "aws:sqs":
            return from_queue(event, context, metrics)
        if isinstance(event, dict) and "detail-type" in event:
            return from_eventbridge(event, metrics)
        if isinstance(event, dict) and "http" in (event.get("requestContext") or {}):
            app.context["metrics"] = metrics
            return app.resolve(event, context)
        logger.error("unknown event: neither SQS, EventBridge nor an HTTP API request")
        return {"error": "unknown event"}
    finally:
        metrics.flush()


if os.environ.get("AWS_EXECUTION_ENV"):
    # Lambda's init phase: settings checked and the pepper fetched once, before the first batch.
    services().pepper.get()
