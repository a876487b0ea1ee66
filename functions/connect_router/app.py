"""ConnectRouterFunction: rapport's routing inside an Amazon Connect contact flow.

The flow's "Invoke AWS Lambda function" block calls it with the contact; it answers with the agent to
offer the contact to, or routing criteria, in one of two modes the flow chooses with its `response`
parameter (README, "Amazon Connect"):

- `STRING_MAP` (the default): a flat map of strings, each of letters, digits, `-` and `_` as Connect
  requires: `rapport_mode`, `rapport_agent` (a Connect user id, for Set working queue → By agent, or empty),
  `rapport_queue` (the fallback queue id, or empty), `rapport_reason` (a short code),
  `rapport_explanation` (the reason, in words joined by `_`) and `rapport_decision` (the decision id);
- `JSON`: the same keys, the explanation in plain words, and `rapport_routing_criteria` for the Set
  routing criteria block: the caller's last agent as a preferred agent, then agents proficient in the
  caller's interests (a Connect predefined attribute), each step with its expiry; then the queue.

Connect's presence is authoritative for its agents, so nobody is reserved. Whatever goes wrong (a bad
event, a slow or unreachable table, spent budget), the answer is the fallback, never an error: the flow
never takes its Error branch because of rapport.
"""

from __future__ import annotations

import gc
import os
import re
import time
from collections.abc import Callable, Mapping
from functools import cache
from typing import Any, TypeVar

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.data_classes import ConnectContactFlowEvent
from aws_lambda_powertools.utilities.data_classes.connect_contact_flow_event import (
    ConnectContactFlowChannel,
    ConnectContactFlowEndpoint,
    ConnectContactFlowEndpointType,
)
from rapport import SERVICE_NAME
from rapport.budget import BudgetSpent, Deadline, enforced
from rapport.call import InboundCall
from rapport.calls import CallFlow
from rapport.explain import candidate_reasons, note, privacy_reasons
from rapport.log_privacy import RedactingFormatter
from rapport.models import NoteCode, RoutingMode
from rapport.new_call import Handover
from rapport.numbers import PhoneNumber, parse_number
from rapport.pools import PoolViews
from rapport.privacy import deployed_rules
from rapport.secrets import PepperSource
from rapport.settings import Settings
from rapport.store.dynamodb import DynamoStore
from rapport.store.timing import recording_requests
from rapport.telemetry import ROUTED_BY_MODE, CallMetrics, Metric

logger = Logger(service=SERVICE_NAME, logger_formatter=RedactingFormatter())

STRING_MAP = "STRING_MAP"
JSON = "JSON"
RESPONSE_PARAMETER = "response"
"""The flow's parameter (in the Invoke AWS Lambda function block) that chooses the answer's mode."""
# Connect accepts STRING_MAP values of letters, digits, `-` and `_` only; a value is kept short besides.
_NOT_ALLOWED = re.compile(r"[^A-Za-z0-9_-]+")
MAX_VALUE_CHARS = 256
# Modes in which rapport names an agent; for any-available contacts the queue picks the agent itself.
NAMED = frozenset({RoutingMode.KNOWN_AGENT, RoutingMode.INTEREST})


class Services:
    """Per-container settings, clients and memory of pools, built on first use, never at import."""

    def __init__(self) -> None:
        self.settings = Settings()
        self.store = DynamoStore.for_table(self.settings.table_name)
        self.views = PoolViews()
        self.pepper = PepperSource.for_settings(self.settings)
        self.flow = CallFlow(self.store, self.settings, deployed_rules(), self.views, self.pepper)
        gc.freeze()


@cache
def services() -> Services:
    return Services()


def now() -> float:
    return time.time()


def flat(value: str) -> str:
    """A value Connect accepts in a STRING_MAP: other characters become `_`, at most 256 of them."""
    return _NOT_ALLOWED.sub("_", value).strip("_")[:MAX_VALUE_CHARS]


# -- reading the contact -----------------------------------------------------------------------------------


T = TypeVar("T")


def _read(read: Callable[[], T]) -> T | None:
    """One field through Powertools' data class; None when the event lacks it or has it in another shape
    (its properties raise KeyError, TypeError or ValueError then)."""
    try:
        return read()
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def response_mode(raw: Any) -> str:
    """`JSON` when the flow's `response` parameter asks for it, else `STRING_MAP`."""
    parameters = _read(lambda: ConnectContactFlowEvent(raw).parameters) if isinstance(raw, dict) else None
    wanted = parameters.get(RESPONSE_PARAMETER) if isinstance(parameters, Mapping) else None
    return JSON if isinstance(wanted, str) and wanted.strip().upper() == JSON else STRING_MAP


def _number(endpoint: ConnectContactFlowEndpoint | None) -> PhoneNumber | None:
    """A phone number from an endpoint (None for chat, a missing endpoint, or no phone number)."""
    if endpoint is None:
        return None
    if _read(lambda: endpoint.endpoint_type) is not ConnectContactFlowEndpointType.TELEPHONE_NUMBER:
        return None
    address = _read(lambda: endpoint.address)
    return parse_number(address) if isinstance(address, str) else None


def inbound_contact(raw: Any, settings: Settings) -> InboundCall:
    """The contact as routing sees it, read through Powertools' data class; a field that is missing or
    odd counts as absent. Raises ValueError only when there is no contact id to decide for."""
    if not isinstance(raw, dict):
        raise ValueError("the event is not a JSON object")
    data = _read(lambda: ConnectContactFlowEvent(raw).contact_data)
    if data is None:
        raise ValueError("no Details.ContactData in the event")
    contact_id = _read(lambda: data.contact_id) or _read(lambda: data.initial_contact_id)
    if not isinstance(contact_id, str) or not contact_id:
        raise ValueError("no ContactId in the event")
    voice = _read(lambda: data.channel) is ConnectContactFlowChannel.VOICE
    caller = _number(_read(lambda: data.customer_endpoint)) if voice else None
    dialled = _number(_read(lambda: data.system_endpoint))
    logger.thread_safe_append_keys(contact_id=contact_id, channel="voice" if voice else "other")
    return InboundCall(
        call_id=contact_id[:64],
        caller=caller.e164 if caller else None,
        region=caller.region if caller else None,
        line=settings.line_for(dialled.e164 if dialled else None),
    )


# -- the answer ----------------------------------------------------------------------------------------------


def routing_criteria(handover: Handover, settings: Settings) -> dict[str, Any]:
    """Set routing criteria steps: the caller's last agent (preferred agent), then agents proficient in
    each of the caller's top interests; when they are exhausted Connect offers the contact to any agent
    in the queue."""
    steps: list[dict[str, Any]] = []
    known = next((c for c in handover.decision.candidates if c.mode is RoutingMode.KNOWN_AGENT), None)
    if known is not None and known.agent_id in handover.user_ids:
        steps.append(
            {
                "Expression": {
                    "AttributeCondition": {
                        "ComparisonOperator": "Match",
                        "MatchCriteria": {
                            "AgentsCriteria": {"AgentIds": [handover.user_ids[known.agent_id]]}
                        },
                    }
                },
                "Expiry": {"DurationInSeconds": settings.connect_known_agent_seconds},
            }
        )
    for product in handover.interests:
        steps.append(
            {
                "Expression": {
                    "AttributeCondition": {
                        "Name": settings.connect_product_attribute,
                        "Value": product,
                        "ProficiencyLevel": float(settings.connect_min_proficiency),
                        "ComparisonOperator": "NumberGreaterOrEqualTo",
                    }
                },
                "Expiry": {"DurationInSeconds": settings.connect_interest_seconds},
            }
        )
    return {"Steps": steps}


def _reason_code(handover: Handover) -> str:
    decision = handover.decision
    if decision.candidates:
        return decision.candidates[0].mode.value
    note = next((n for n in decision.notes if n.code is not NoteCode.DIALLED_LINE), None)
    return note.code.value if note is not None else NoteCode.NO_AGENT_AVAILABLE.value


def answer(handover: Handover, settings: Settings, mode: str, when: float) -> dict[str, Any]:
    decision = handover.decision
    first = decision.candidates[0] if decision.candidates else None
    named = first if first is not None and first.mode in NAMED else None
    reasons = candidate_reasons(first, decision.interests, when) if first is not None else []
    # The notes before the privacy facts: a string-map explanation is cut at 256 characters.
    reasons += [note(item) for item in decision.notes]
    reasons += privacy_reasons(decision.privacy)
    explanation = "; ".join(reasons)
    values: dict[str, Any] = {
        "rapport_mode": decision.mode.value,
        "rapport_agent": handover.user_ids.get(named.agent_id, "") if named is not None else "",
        "rapport_queue": settings.connect_fallback_queue_id,
        "rapport_reason": _reason_code(handover),
        "rapport_decision": handover.record.call_id,
    }
    if mode == JSON:
        return {
            **values,
            "rapport_explanation": explanation,
            "rapport_routing_criteria": routing_criteria(handover, settings),
        }
    return {key: flat(value) for key, value in {**values, "rapport_explanation": explanation}.items()}


def fallback_answer(settings: Settings | None, mode: str, reason: str, decision: str = "") -> dict[str, Any]:
    """The answer when routing could not decide: the fallback queue (or the flow's own), no agent."""
    values: dict[str, Any] = {
        "rapport_mode": RoutingMode.FALLBACK.value,
        "rapport_agent": "",
        "rapport_queue": settings.connect_fallback_queue_id if settings is not None else "",
        "rapport_reason": reason,
        "rapport_decision": flat(decision),
        "rapport_explanation": "",
    }
    if mode == JSON:
        values["rapport_routing_criteria"] = {"Steps": []}
        return values
    return {key: flat(value) for key, value in values.items()}


# -- the handler ---------------------------------------------------------------------------------------------


def lambda_handler(raw_event: Any, context: Any) -> dict[str, Any]:
    started = time.perf_counter()
    metrics = CallMetrics()
    logger.thread_safe_clear_keys()
    mode = response_mode(raw_event)
    with recording_requests() as requests:
        try:
            return _route(raw_event, context, metrics, mode)
        finally:
            metrics.store_requests(requests)
            elapsed_ms = (time.perf_counter() - started) * 1000
            metrics.milliseconds(Metric.HANDLER_LATENCY, elapsed_ms)
            metrics.milliseconds(Metric.NEW_CALL_LATENCY, elapsed_ms)
            metrics.flush()


def _route(raw_event: Any, context: Any, metrics: CallMetrics, mode: str) -> dict[str, Any]:
    metrics.count(Metric.NEW_CALLS)
    settings: Settings | None = None
    try:
        svc = services()
        settings = svc.settings
        call = inbound_contact(raw_event, settings)
    except Exception:
        logger.exception("contact not routable: answering with the fallback")
        metrics.count(Metric.MALFORMED_EVENTS)
        metrics.count(Metric.FALLBACKS)
        return fallback_answer(settings, mode, "error")
    deadline = Deadline.for_invocation(context, settings.time_budget_ms)
    routed: dict[str, Any] | None = None
    try:
        with enforced(deadline):
            handover = svc.flow.hand_over(call, now(), deadline)
            routed = answer(handover, settings, mode, now())
    except BudgetSpent:
        pass
    except Exception:
        logger.exception("routing failed: answering with the fallback")
        metrics.count(Metric.HANDLER_ERRORS)
        metrics.count(Metric.FALLBACKS)
        return fallback_answer(settings, mode, "error", call.call_id)
    if routed is None:
        logger.error("time budget spent: answering with the fallback", extra={"budget_s": deadline.seconds})
        metrics.count(Metric.FALLBACKS)
        return fallback_answer(settings, mode, NoteCode.BUDGET_SPENT.value, call.call_id)
    routed_metric = ROUTED_BY_MODE.get(handover.decision.mode)
    metrics.count(routed_metric if routed_metric is not None else Metric.FALLBACKS)
    logger.info(
        "routed",
        extra={
            "mode": handover.decision.mode.value,
            "agent_id": handover.record.agent_id,
            "reason": routed["rapport_reason"],
        },
    )
    return routed


def _initialise() -> None:
    """In Lambda's init phase: build the services and fetch the pepper, once per container."""
    services().pepper.get()


if os.environ.get("AWS_EXECUTION_ENV"):
    _initialise()
