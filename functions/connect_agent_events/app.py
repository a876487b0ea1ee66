"""ConnectAgentEventsFunction: keeps the presence of agents whose endpoint is an Amazon Connect user as
Connect's agent event stream (Kinesis) reports it, so that rapport names only agents who can take a
contact (README, "Amazon Connect").

Each record is applied on its own, with Powertools batch processing: an event of an agent rapport does
not know, or one that says nothing about presence, changes nothing; one that cannot be read is logged
and dropped (sending it again would not make it readable); a duplicate, or one older than the last
applied, changes nothing (a conditional write on the event's time). Only a failing table fails a
record, which Lambda then delivers again, without holding up the others.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.kinesis_stream_event import KinesisStreamRecord
from pydantic import ValidationError
from rapport import SERVICE_NAME
from rapport.connect_events import AgentEvent
from rapport.log_privacy import RedactingFormatter
from rapport.settings import Settings
from rapport.store import ConditionFailed
from rapport.store.agents import ConnectPresenceStore
from rapport.telemetry import CallMetrics, Metric

logger = Logger(service=SERVICE_NAME, logger_formatter=RedactingFormatter())
processor = BatchProcessor(event_type=EventType.KinesisDataStreams)


class Services:
    def __init__(self) -> None:
        self.settings = Settings()
        self.store = ConnectPresenceStore.for_table(self.settings.table_name)


@cache
def services() -> Services:
    return Services()


def apply(record: KinesisStreamRecord, metrics: CallMetrics) -> str:
    """Apply one agent event; what became of it (`applied`, `unknown agent`, `stale`, `no presence`,
    `unreadable`). Raises only when the table fails, so that the record is delivered again."""
    try:
        event = AgentEvent.model_validate(record.kinesis.data_as_json())
    except (ValueError, ValidationError, TypeError) as error:
        logger.warning(
            "agent event unreadable: dropped",
            extra={"sequence": record.kinesis.sequence_number, "error": str(error)[:300]},
        )
        metrics.count(Metric.CONNECT_AGENT_EVENTS_SKIPPED)
        return "unreadable"
    presence = event.presence
    if presence is None:
        metrics.count(Metric.CONNECT_AGENT_EVENTS_SKIPPED)
        return "no presence"
    store = services().store
    agent_id = store.connect_user(event.user_id)
    agent = store.stored(agent_id) if agent_id is not None else None
    if agent is None:
        metrics.count(Metric.CONNECT_AGENT_EVENTS_SKIPPED)
        return "unknown agent"
    try:
        store.presence_from_connect(agent, presence, event.reason, event.at.timestamp())
    except ConditionFailed:
        metrics.count(Metric.CONNECT_AGENT_EVENTS_SKIPPED)
        return "stale"
    logger.info(
        "agent presence from Connect",
        extra={"agent_id": agent.agent_id, "presence": presence.value, "event_type": event.event_type},
    )
    metrics.count(Metric.CONNECT_AGENT_EVENTS)
    return "applied"


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    metrics = CallMetrics()
    try:
        answer = process_partial_response(
            event=event,
            record_handler=lambda record: apply(record, metrics),
            processor=processor,
            context=context,
        )
        return dict(answer)
    finally:
        metrics.flush()
