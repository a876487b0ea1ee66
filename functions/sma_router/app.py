"""SmaRouterFunction: the Amazon Chime SDK SIP media application's Lambda.

Each invocation event type has one function in `HANDLERS`; each parses what it needs, calls one step of
`rapport.calls.CallFlow` and maps the result to actions. Whatever goes wrong, the SMA gets a valid answer
within the time budget: a fallback route, a polite message, or no new actions.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import cache
from typing import Any

from aws_lambda_powertools import Logger
from rapport import SERVICE_NAME
from rapport.calls import CallFlow, CallState, InboundCall, Route, RouteKind, Stage
from rapport.deadline import Deadline
from rapport.log_privacy import RedactingFormatter
from rapport.models import EndpointKind
from rapport.numbers import normalise
from rapport.privacy import load_rules
from rapport.secrets import caller_key_pepper
from rapport.settings import Settings
from rapport.store import Store, recording_requests, requests_so_far
from rapport.telemetry import CallMetrics, Metric
from sip_context import read_sip_context
from sma_actions import Action, BridgeEndpoint, CallAndBridge, Hangup, Speak, response
from sma_events import SmaEvent, parse_event

logger = Logger(service=SERVICE_NAME, logger_formatter=RedactingFormatter())

# Said when even the settings cannot be read: the caller still hears something before the line drops.
EMERGENCY_MESSAGE = "Sorry, we cannot take your call right now. Please try again later. Goodbye."
EMPTY: dict[str, Any] = {"SchemaVersion": "1.0", "Actions": []}


class Services:
    """Per-container clients and settings, built on first use, never at import."""

    def __init__(self) -> None:
        self.settings = Settings()
        self.store = Store.connect(self.settings.table_name)
        self.flow = CallFlow(self.store, self.settings, None, load_rules())
        self._pepper_known = False

    def ready_flow(self) -> CallFlow:
        """The call flow with the caller-key pepper, fetched once; a failed fetch is retried next call."""
        if not self._pepper_known:
            try:
                pepper = caller_key_pepper(self.settings)
            except Exception:
                logger.exception("caller-key pepper unavailable: routing without profile data")
                return self.flow
            self.flow = CallFlow(self.store, self.settings, pepper, load_rules())
            self._pepper_known = True
        return self.flow


@cache
def services() -> Services:
    return Services()


def now() -> float:
    """Wall-clock time of this invocation, read once; every step below is handed this value."""
    return time.time()


# -- mapping routes to actions ------------------------------------------------------------------------


def _caller_id(settings: Settings, event: SmaEvent) -> str | None:
    """The configured caller ID, else the caller's own number, else the number they dialled (ours);
    None when none of them is a phone number, since the SMA refuses a bridge without one."""
    if settings.caller_id_number:
        return settings.caller_id_number
    leg = event.caller_leg
    return (normalise(leg.from_) or normalise(leg.to)) if leg else None


def _bridge(settings: Settings, event: SmaEvent, endpoint: BridgeEndpoint) -> list[Action]:
    caller_id = _caller_id(settings, event)
    if caller_id is None:
        logger.error("no caller ID to bridge with: set the CallerIdNumber parameter")
        return _closing(event, settings.fallback_message)
    return [
        CallAndBridge(
            CallTimeoutSeconds=settings.ring_timeout_seconds, CallerIdNumber=caller_id, Endpoints=[endpoint]
        )
    ]


def _closing(event: SmaEvent, message: str) -> list[Action]:
    leg = event.caller_leg
    if leg is None or not leg.call_id:
        return [Hangup(ParticipantTag="LEG-A")]
    return [Speak(CallId=leg.call_id, Text=message), Hangup(CallId=leg.call_id)]


def _actions_for(route: Route, settings: Settings, event: SmaEvent) -> list[Action]:
    if route.kind is RouteKind.AGENT and route.endpoint is not None:
        if route.endpoint.kind is EndpointKind.PSTN:
            endpoint = BridgeEndpoint(BridgeEndpointType="PSTN", Uri=route.endpoint.address)
        else:
            endpoint = BridgeEndpoint(
                BridgeEndpointType="AWS", Uri=route.endpoint.address, Arn=settings.voice_connector_arn
            )
        return _bridge(settings, event, endpoint)
    if route.kind is RouteKind.FALLBACK_NUMBER and route.number:
        return _bridge(settings, event, BridgeEndpoint(BridgeEndpointType="PSTN", Uri=route.number))
    if route.kind is RouteKind.MESSAGE:
        return _closing(event, route.message or settings.fallback_message)
    return []


def _answer(
    route: Route, settings: Settings, event: SmaEvent, metrics: CallMetrics, before: CallState | None
) -> dict[str, Any]:
    """The response for `route`; `before` is the call's state until now (None for a new call)."""
    metrics.route(route, before)
    logger.info(
        "routed",
        extra={
            "route": route.kind.value,
            "agent_id": route.state.agent_id,
            "mode": route.state.mode.value,
            "attempt": route.state.attempt,
            "reason": route.reason,
            "store_requests": [str(request) for request in requests_so_far()],
        },
    )
    return response(_actions_for(route, settings, event), route.state.to_attributes())


def _state(event: SmaEvent) -> CallState:
    """The state our last response stored; a call without one has nothing left to release."""
    return CallState.from_attributes(event.call_details.transaction_attributes) or CallState(stage=Stage.DONE)


# -- one function per event type ----------------------------------------------------------------------


def on_new_inbound_call(event: SmaEvent, deadline: Deadline, metrics: CallMetrics) -> dict[str, Any]:
    svc = services()
    flow = svc.ready_flow()
    leg = event.caller_leg
    headers = read_sip_context(leg.sip_headers if leg else {})
    for problem in headers.problems:
        logger.warning("SIP header ignored", extra={"problem": problem})
    caller = normalise(leg.from_) if leg else None
    call = InboundCall(
        call_id=event.call_details.transaction_id,
        caller=caller,
        dialled=headers.dialled or (normalise(leg.to) if leg else None),
        live_products=headers.products,
    )
    logger.thread_safe_append_keys(caller_key=flow.caller_key_for(caller))
    if _caller_id(svc.settings, event) is None:
        # No bridge is possible, so no agent is reserved: the caller hears the message.
        no_bridge = CallState(stage=Stage.FALLBACK)
        route = flow.fallback(no_bridge, "no caller ID to bridge with")
        return _answer(route, svc.settings, event, metrics, None)
    return _answer(flow.start(call, now(), deadline), svc.settings, event, metrics, None)


def on_action_failed(event: SmaEvent, deadline: Deadline, metrics: CallMetrics) -> dict[str, Any]:
    svc = services()
    action = event.action_data
    stored = CallState.from_attributes(event.call_details.transaction_attributes)
    state = stored or CallState(stage=Stage.DONE)
    error = (action.error_type if action else None) or "unknown error"
    log = logger.info if error == "CallNotAnswered" else logger.warning
    log("action failed", extra={"action": action.type if action else None, "error_type": error})
    if stored is not None and stored.stage is Stage.DONE:
        # The call already ended (e.g. the caller hung up while the agent's phone rang).
        return EMPTY
    if action is None or action.type != "CallAndBridge":
        # A failed Speak or Hangup: nothing sensible is left to play; end the call cleanly.
        done = state.model_copy(update={"stage": Stage.DONE})
        return response([Hangup(ParticipantTag="LEG-A")], done.to_attributes())
    route = svc.ready_flow().no_answer(state, event.call_details.transaction_id, error, now(), deadline)
    if state.stage is Stage.AGENT:
        metrics.count(Metric.FAILOVERS)
    return _answer(route, svc.settings, event, metrics, state)


def on_action_successful(event: SmaEvent, deadline: Deadline, metrics: CallMetrics) -> dict[str, Any]:
    action = event.action_data
    if action is None or action.type != "CallAndBridge":
        return EMPTY
    before = _state(event)
    state = services().ready_flow().connected(before, event.call_details.transaction_id, now(), deadline)
    if before.stage in (Stage.AGENT, Stage.FALLBACK):
        metrics.count(Metric.CONNECTED)
    return response([], state.to_attributes())


def on_hangup(event: SmaEvent, deadline: Deadline, metrics: CallMetrics) -> dict[str, Any]:
    """Chime does not hang up the other leg: do it, and release the agent."""
    parameters = event.action_data.parameters if event.action_data else {}
    gone_tag = str(parameters.get("ParticipantTag", "")).upper() or None
    gone_id = parameters.get("CallId")
    others = [
        p
        for p in event.call_details.participants
        if p.connected and p.call_id and p.call_id != gone_id and (gone_tag is None or p.tag != gone_tag)
    ]
    state = _state(event)
    if state.stage is not Stage.DONE:
        state = services().ready_flow().ended(state, event.call_details.transaction_id, now(), deadline)
    return response([Hangup(CallId=p.call_id) for p in others], state.to_attributes())


def on_invalid_lambda_response(event: SmaEvent, deadline: Deadline, metrics: CallMetrics) -> dict[str, Any]:
    metrics.count(Metric.REJECTED_RESPONSES)
    action = event.action_data
    logger.error(
        "SMA rejected our last response",
        extra={
            "error_type": event.error_type or (action.error_type if action else None),
            "error_message": event.error_message or (action.error_message if action else None),
        },
    )
    svc = services()
    flow = svc.ready_flow()
    state = CallState.from_attributes(event.call_details.transaction_attributes)
    if state is None:
        route = flow.fallback(CallState(), "the SMA rejected a response")
        return _answer(route, svc.settings, event, metrics, None)
    if state.stage in (Stage.MESSAGE, Stage.DONE):
        # Even the closing message was refused: do not loop, just end the call.
        return response(
            [Hangup(ParticipantTag="LEG-A")], state.model_copy(update={"stage": Stage.DONE}).to_attributes()
        )
    released = flow.ended(state, event.call_details.transaction_id, now(), deadline)
    route = flow.fallback(
        released.model_copy(update={"stage": Stage.FALLBACK}), "the SMA rejected a response"
    )
    return _answer(route, svc.settings, event, metrics, state)


def ignore(event: SmaEvent, deadline: Deadline, metrics: CallMetrics) -> dict[str, Any]:
    """Events whose answer the SMA ignores, or that need nothing from us."""
    return EMPTY


Handler = Callable[[SmaEvent, Deadline, CallMetrics], dict[str, Any]]

HANDLERS: dict[str, Handler] = {
    "NEW_INBOUND_CALL": on_new_inbound_call,
    "ACTION_FAILED": on_action_failed,
    "ACTION_SUCCESSFUL": on_action_successful,
    "HANGUP": on_hangup,
    "INVALID_LAMBDA_RESPONSE": on_invalid_lambda_response,
    "NEW_OUTBOUND_CALL": ignore,
    "RINGING": ignore,
    "CALL_ANSWERED": ignore,
    "ACTION_INTERRUPTED": ignore,
    "DIGITS_RECEIVED": ignore,
    "CALL_UPDATE_REQUESTED": ignore,
}

# Event types after which the caller would be left in silence if we answered nothing.
NEEDS_A_ROUTE = {"NEW_INBOUND_CALL", "ACTION_FAILED", "INVALID_LAMBDA_RESPONSE"}


def emergency_response(event: SmaEvent) -> dict[str, Any]:
    """Answer when the normal path failed: a short message and hang-up where the caller is waiting."""
    if event.event_type not in NEEDS_A_ROUTE:
        return EMPTY
    return response(_closing(event, EMERGENCY_MESSAGE), CallState(stage=Stage.DONE).to_attributes())


def lambda_handler(raw_event: Any, context: Any) -> dict[str, Any]:
    started = time.perf_counter()
    metrics = CallMetrics()
    # Per-thread keys: one invocation at a time in Lambda, but many at once in local load runs.
    logger.thread_safe_clear_keys()
    event, problems = parse_event(raw_event)
    logger.thread_safe_append_keys(
        call_id=event.call_details.transaction_id or None, event_type=event.event_type
    )
    with recording_requests() as requests:
        try:
            return _dispatch(event, problems, context, metrics)
        finally:
            metrics.store_requests(requests)
            elapsed_ms = (time.perf_counter() - started) * 1000
            metrics.milliseconds(Metric.HANDLER_LATENCY, elapsed_ms)
            if event.event_type == "NEW_INBOUND_CALL":
                metrics.milliseconds(Metric.NEW_CALL_LATENCY, elapsed_ms)
            metrics.flush()


def _dispatch(event: SmaEvent, problems: list[str], context: Any, metrics: CallMetrics) -> dict[str, Any]:
    if event.event_type == "NEW_INBOUND_CALL":
        metrics.count(Metric.NEW_CALLS)
    if problems:
        metrics.count(Metric.MALFORMED_EVENTS)
        logger.warning("malformed event, using what could be read", extra={"problems": problems})
    handler = HANDLERS.get(event.event_type)
    if handler is None:
        metrics.count(Metric.UNKNOWN_EVENTS)
        logger.warning("unknown event type: answering with no actions")
        return EMPTY
    try:
        budget_ms = services().settings.time_budget_ms
        return handler(event, Deadline.for_invocation(context, budget_ms), metrics)
    except Exception:
        logger.exception("handler failed: answering with the emergency route")
        metrics.count(Metric.HANDLER_ERRORS)
        answer = emergency_response(event)
        if answer is not EMPTY:
            metrics.fallback(CallState.from_attributes(event.call_details.transaction_attributes))
        return answer
