"""SmaRouterFunction: the Amazon Chime SDK SIP media application's Lambda.

Each invocation event type has one function in `HANDLERS`; each parses what it needs, calls one step of
`rapport.calls.CallFlow` and maps the result to actions. Whatever goes wrong, the SMA gets a valid answer
within the time budget: a fallback route, a polite message, or no new actions.
"""

from __future__ import annotations

import gc
import math
import os
import time
from collections.abc import Callable, Sequence
from functools import cache, cached_property
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from call_state import Seal, check, from_attributes, seal, state_key, to_attributes
from rapport import SERVICE_NAME
from rapport.budget import BudgetSpent, Deadline, enforced
from rapport.call import CallState, InboundCall, Route, RouteKind, Stage
from rapport.calls import CallFlow
from rapport.log_privacy import RedactingFormatter
from rapport.models import DialledLine, EndpointKind, Note, NoteCode
from rapport.numbers import normalise
from rapport.pools import PoolViews
from rapport.privacy import Prompt, deployed_rules
from rapport.rights import PrivacyRights
from rapport.secrets import PepperSource
from rapport.settings import Settings
from rapport.store.dynamodb import DynamoStore
from rapport.store.privacy import PrivacyStore
from rapport.store.timing import recording_requests, requests_so_far
from rapport.telemetry import CallMetrics, Metric
from screen_pop import screen_pop
from sip_context import read_sip_context
from sma_actions import (
    Action,
    AudioSource,
    BridgeEndpoint,
    CallAndBridge,
    Hangup,
    JoinChimeMeeting,
    PlayAudio,
    Speak,
    SpeakAndGetDigits,
    Speech,
    response,
)
from sma_events import SmaEvent, parse_event

logger = Logger(service=SERVICE_NAME, logger_formatter=RedactingFormatter())

# Said when even the settings cannot be read: the caller still hears something before the line drops.
EMERGENCY_MESSAGE = "Sorry, we cannot take your call right now. Please try again later. Goodbye."
EMPTY: dict[str, Any] = {"SchemaVersion": "1.0", "Actions": []}


class Services:
    """Per-container settings, clients and memory of pools, built on first use, never at import."""

    def __init__(self) -> None:
        self.settings = Settings()
        self.store = DynamoStore.for_table(self.settings.table_name)
        self.views = PoolViews()
        self.pepper = PepperSource.for_settings(self.settings)
        rules = deployed_rules()
        rights = PrivacyRights(
            PrivacyStore(self.store.client, self.settings.table_name),
            rules,
            self.pepper.get,
            self.settings.interest_half_life_days,
        )
        self.flow = CallFlow(self.store, self.settings, rules, self.views, self.pepper, rights=rights)
        # Everything built so far (botocore's models above all) lives as long as the container: keep it
        # out of the garbage collector's full passes, which would otherwise walk it on some invocations.
        gc.freeze()

    @cached_property
    def meetings(self) -> Any:
        """The chime-sdk-meetings client, in this Region (where the meetings of browser calls are made),
        built the first time a meeting must be ended."""
        return boto3.session.Session().client("chime-sdk-meetings", config=MEETINGS_CONFIG)


# Ending a meeting is bookkeeping after a hang-up: one short try (a meeting with nobody in it ends by
# itself after five minutes anyway).
MEETINGS_CONFIG = Config(connect_timeout=0.5, read_timeout=1.0, retries={"total_max_attempts": 1})


@cache
def services() -> Services:
    return Services()


def _state_key(fetch: bool = True) -> bytes | None:
    """The key call state is sealed with, or None while the pepper cannot be had. `fetch=False` for the
    answers that must not wait on Secrets Manager (the budget is spent, or the handler failed)."""
    try:
        pepper = services().flow.pepper(fetch)
    except BudgetSpent:
        raise
    except Exception:  # noqa: BLE001 - no settings, no pepper: the state goes unsealed, without a caller
        return None
    return _derived_key(pepper) if pepper else None


@cache
def _derived_key(pepper: str) -> bytes:
    return state_key(pepper)


def _sma_id(event: SmaEvent) -> str:
    return event.call_details.sip_media_application_id or ""


def _attributes(event: SmaEvent, state: CallState, fetch: bool = True) -> dict[str, str]:
    """The state as TransactionAttributes, sealed for this call. Without the key, nothing that could write
    under a caller's key is kept (unsealed state may not carry it)."""
    key = _state_key(fetch)
    if key is None and (state.caller_key or state.link_days):
        record = state.record.model_copy(update={"caller_key": None, "link": None}) if state.record else None
        state = state.model_copy(update={"caller_key": None, "link_days": 0, "record": record})
    return seal(to_attributes(state), key, event.call_details.transaction_id, _sma_id(event))


def now() -> float:
    """Wall-clock time of this invocation, read once; every step below is handed this value."""
    return time.time()


# -- mapping routes to actions ------------------------------------------------------------------------


def _caller_id(settings: Settings, event: SmaEvent, caller: str | None = None) -> str | None:
    """The configured caller ID, else the caller's own number (`caller`, in E.164), else the number they
    dialled (ours); None when none of them is a phone number, since the SMA refuses a bridge without one."""
    if settings.caller_id_number:
        return settings.caller_id_number
    leg = event.caller_leg
    return (caller or normalise(leg.to)) if leg else None


def _bridge(
    settings: Settings, event: SmaEvent, endpoint: BridgeEndpoint, headers: dict[str, str] | None = None
) -> list[Action]:
    caller = event.caller_number
    caller_id = _caller_id(settings, event, caller.e164 if caller else None)
    if caller_id is None:
        logger.error("no caller ID to bridge with: set the CallerIdNumber parameter")
        return _closing(event, settings.fallback_message)
    return [
        CallAndBridge(
            CallTimeoutSeconds=settings.ring_timeout_seconds,
            CallerIdNumber=caller_id,
            Endpoints=[endpoint],
            SipHeaders=headers or None,
        )
    ]


def _closing(event: SmaEvent, message: str) -> list[Action]:
    leg = event.caller_leg
    if leg is None or not leg.call_id:
        return [Hangup(ParticipantTag="LEG-A")]
    return [Speak(CallId=leg.call_id, Text=message), Hangup(CallId=leg.call_id)]


def _speech(prompt: Prompt, text: str) -> Speech:
    return Speech(Text=text, LanguageCode=prompt.language_code, VoiceId=prompt.voice)


def _question(prompt: Prompt, event: SmaEvent) -> list[Action]:
    """Ask once whether the caller's data may be used: 1 yes, 2 no; anything else, or nothing, is no."""
    leg = event.caller_leg
    if leg is None or not leg.call_id:
        return []
    return [
        SpeakAndGetDigits(
            CallId=leg.call_id,
            SpeechParameters=_speech(prompt, prompt.question),
            FailureSpeechParameters=_speech(prompt, prompt.question),
            InputDigitsRegex="^[12]$",
        )
    ]


def _actions_for(route: Route, settings: Settings, event: SmaEvent) -> list[Action]:
    if route.kind is RouteKind.ASK and route.prompt is not None:
        question = _question(route.prompt, event)
        if question:
            return question
        return _closing(event, settings.fallback_message)
    actions = _routed(route, settings, event)
    leg = event.caller_leg
    if route.answer is not None and route.prompt is not None and leg is not None and leg.call_id:
        said = route.prompt.yes if route.answer else route.prompt.no
        return [Speak(CallId=leg.call_id, **_speech(route.prompt, said).model_dump()), *actions]
    return actions


def _hold(settings: Settings, event: SmaEvent) -> list[Action]:
    """Hold audio for the caller while a browser agent is offered the call, repeated for the ring
    timeout: when it has played through, the offer has timed out (ACTION_SUCCESSFUL of PlayAudio)."""
    leg = event.caller_leg
    if leg is None or not leg.call_id:
        return _closing(event, settings.fallback_message)
    repeat = min(100, max(1, math.ceil(settings.ring_timeout_seconds / settings.hold_audio_seconds)))
    source = AudioSource(BucketName=settings.hold_audio_bucket, Key=settings.hold_audio_key)
    return [PlayAudio(CallId=leg.call_id, AudioSource=source, Repeat=repeat)]


def _routed(route: Route, settings: Settings, event: SmaEvent) -> list[Action]:
    if route.kind is RouteKind.AGENT and route.endpoint is not None:
        if not settings.allows(route.endpoint):
            # Never reached (routing passes such agents over); the last check before a number is dialled.
            logger.error("endpoint refused at bridge time", extra={"agent_id": route.state.agent_id})
            return _closing(event, settings.fallback_message)
        if route.endpoint.kind is EndpointKind.BROWSER:
            return _hold(settings, event)
        if route.endpoint.kind is EndpointKind.PSTN:
            endpoint = BridgeEndpoint(BridgeEndpointType="PSTN", Uri=route.endpoint.address)
        else:
            endpoint = BridgeEndpoint(
                BridgeEndpointType="AWS", Uri=route.endpoint.address, Arn=settings.voice_connector_arn
            )
            headers = screen_pop(route.state.record, route.state.agent_id, route.state.mode)
            return _bridge(settings, event, endpoint, headers)
        return _bridge(settings, event, endpoint)
    if route.kind is RouteKind.FALLBACK_NUMBER and route.number:
        return _bridge(settings, event, BridgeEndpoint(BridgeEndpointType="PSTN", Uri=route.number))
    return _closing(event, route.message or settings.fallback_message)


def _answer(
    route: Route,
    settings: Settings,
    event: SmaEvent,
    metrics: CallMetrics,
    before: CallState | None,
    fetch: bool = True,
) -> dict[str, Any]:
    """The response for `route`; `before` is the call's state until now (None for a new call)."""
    metrics.route(route, before)
    if route.kind is RouteKind.AGENT:
        metrics.count(Metric.AGENT_RINGING)
    if before is not None and before.ringing is not None:
        metrics.count(Metric.AGENT_FREED)  # the agent rung before did not answer
    if route.set_away:
        metrics.count(Metric.AGENT_SET_AWAY)
    if route.rate_limited:
        metrics.count(Metric.RATE_LIMITED)
    if route.refused or (
        route.kind is RouteKind.AGENT and route.endpoint is not None and not settings.allows(route.endpoint)
    ):
        metrics.count(Metric.ENDPOINT_REFUSED, max(1, route.refused))
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
    return response(_actions_for(route, settings, event), _attributes(event, route.state, fetch))


def _state(event: SmaEvent, metrics: CallMetrics | None = None, fetch: bool = True) -> CallState | None:
    """The state our last response stored for this call, if it can be read and is ours: sealed with this
    deployment's key for this call, naming the caller whose number the event shows. Forged state is not
    used (logged and counted when `metrics` is given). Sealed state read while the pepper cannot be had
    is used without its caller key: the agent is still freed, nothing is written under the key."""
    details = event.call_details
    attributes = details.transaction_attributes
    verdict = check(attributes, _state_key(fetch), details.transaction_id, _sma_id(event))
    if verdict is Seal.FORGED:
        _rejected(metrics, "not sealed for this call")
        return None
    state = from_attributes(attributes, details.transaction_id)
    if state is None or not state.caller_key:
        return state
    if verdict is Seal.UNVERIFIABLE:
        if metrics is not None:
            metrics.count(Metric.UNVERIFIED_STATE)
            logger.warning("call state not verifiable now: its caller key is not used")
        record = state.record.model_copy(update={"caller_key": None, "link": None}) if state.record else None
        return state.model_copy(update={"caller_key": None, "link_days": 0, "record": record})
    caller = event.caller_number
    if caller is not None and fetch and services().flow.caller_key_for(caller.e164) != state.caller_key:
        _rejected(metrics, "caller key is not the caller's")
        return None
    return state


def _rejected(metrics: CallMetrics | None, why: str) -> None:
    if metrics is not None:
        metrics.count(Metric.FORGED_STATE)
        logger.warning("call state rejected: not used", extra={"why": why})
    return None


def _other_legs(event: SmaEvent) -> list[Action]:
    """Hang up every connected leg but the one that hung up (Chime does not)."""
    parameters = event.action_data.parameters if event.action_data else {}
    gone_tag = str(parameters.get("ParticipantTag", "")).upper() or None
    gone_id = parameters.get("CallId")
    return [
        Hangup(CallId=p.call_id)
        for p in event.call_details.participants
        if p.connected and p.call_id and p.call_id != gone_id and (gone_tag is None or p.tag != gone_tag)
    ]


# -- one function per event type ----------------------------------------------------------------------


def _inbound_call(
    event: SmaEvent, live_products: Sequence[str], line: DialledLine | None = None
) -> InboundCall:
    caller = event.caller_number
    return InboundCall(
        call_id=event.call_details.transaction_id,
        caller=caller.e164 if caller else None,
        region=caller.region if caller else None,
        line=line,
        live_products=tuple(live_products),
    )


def _dialled_line(settings: Settings, event: SmaEvent, diverted_from: str | None) -> DialledLine | None:
    """The product line the caller dialled: the number a `Diversion` names as first dialled, else the one
    the call arrived on, if either is one of the deployment's lines. Neither number goes further."""
    if not settings.dialled_lines:
        return None
    leg = event.caller_leg
    return settings.line_for(diverted_from, normalise(leg.to) if leg else None)


def on_new_inbound_call(event: SmaEvent, deadline: Deadline, metrics: CallMetrics) -> dict[str, Any]:
    svc = services()
    leg = event.caller_leg
    headers = read_sip_context(leg.sip_headers if leg else {})
    for problem in headers.problems:
        logger.warning("SIP header ignored", extra={"problem": problem})
    call = _inbound_call(event, headers.products, _dialled_line(svc.settings, event, headers.dialled))
    if _caller_id(svc.settings, event, call.caller) is None:
        # No bridge is possible, so no agent is reserved: the caller hears the message.
        route = svc.flow.fallback(CallState(stage=Stage.FALLBACK), Note(code=NoteCode.NO_CALLER_ID))
        return _answer(route, svc.settings, event, metrics, None)
    logger.thread_safe_append_keys(caller_key=svc.flow.caller_key_for(call.caller))
    route = svc.flow.start(call, now(), deadline)
    if route.kind is RouteKind.ASK:
        metrics.count(Metric.CONSENT_ASKED)
    return _answer(route, svc.settings, event, metrics, None)


def on_action_failed(event: SmaEvent, deadline: Deadline, metrics: CallMetrics) -> dict[str, Any]:
    svc = services()
    action = event.action_data
    stored = _state(event, metrics)
    state = stored or CallState(stage=Stage.DONE)
    error = (action.error_type if action else None) or "unknown error"
    log = logger.info if error == "CallNotAnswered" else logger.warning
    log("action failed", extra={"action": action.type if action else None, "error_type": error})
    if stored is not None and stored.stage is Stage.DONE:
        # The call already ended (e.g. the caller hung up while the agent's phone rang).
        return EMPTY
    if action is not None and action.type == "SpeakAndGetDigits" and state.stage is Stage.ASKING:
        return _after_question(event, state, None, deadline, metrics)
    if action is None or action.type not in ("CallAndBridge", "JoinChimeMeeting"):
        # A failed Speak or Hangup: nothing sensible is left to play; end the call cleanly.
        done = state.model_copy(update={"stage": Stage.DONE})
        return response([Hangup(ParticipantTag="LEG-A")], _attributes(event, done))
    route = svc.flow.no_answer(state, event.call_details.transaction_id, error, now(), deadline)
    if state.stage is Stage.AGENT:
        metrics.count(Metric.FAILOVERS)
    return _answer(route, svc.settings, event, metrics, state)


def _after_question(
    event: SmaEvent, state: CallState, digits: str | None, deadline: Deadline, metrics: CallMetrics
) -> dict[str, Any]:
    """The caller answered the in-call question (or did not): record it, then route the call."""
    svc = services()
    call = _inbound_call(event, state.live_products)
    logger.thread_safe_append_keys(caller_key=state.caller_key)
    route = svc.flow.answered(call, event.caller_number, state, digits, now(), deadline)
    if route.answer:
        metrics.count(Metric.CONSENT_GIVEN_IN_CALL)
    return _answer(route, svc.settings, event, metrics, None)


def on_action_successful(event: SmaEvent, deadline: Deadline, metrics: CallMetrics) -> dict[str, Any]:
    action = event.action_data
    if action is not None and action.type == "SpeakAndGetDigits":
        asked = _state(event, metrics)
        if asked is None or asked.stage is not Stage.ASKING:
            return EMPTY
        return _after_question(event, asked, action.received_digits, deadline, metrics)
    if action is not None and action.type == "PlayAudio":
        return _offer_timed_out(event, deadline, metrics)
    if action is None or action.type not in ("CallAndBridge", "JoinChimeMeeting"):
        return EMPTY
    before = _state(event, metrics) or CallState()
    state = services().flow.connected(before, event.call_details.transaction_id, now(), deadline)
    if before.stage in (Stage.AGENT, Stage.FALLBACK):
        metrics.count(Metric.CONNECTED)
    if before.ringing is not None:
        metrics.count(Metric.AGENT_ON_CALL)
    return response([], _attributes(event, state))


def _offer_timed_out(event: SmaEvent, deadline: Deadline, metrics: CallMetrics) -> dict[str, Any]:
    """The hold audio played through: the browser agent offered the call did not accept in time. On to
    the next candidate (a bridge is still possible: nothing is bridged yet), else the fallback."""
    state = _state(event, metrics)
    if state is None or state.stage is not Stage.AGENT or state.ringing is None:
        return EMPTY
    svc = services()
    route = svc.flow.no_answer(state, event.call_details.transaction_id, "OfferNotAccepted", now(), deadline)
    metrics.count(Metric.FAILOVERS)
    return _answer(route, svc.settings, event, metrics, state)


def on_call_update_requested(event: SmaEvent, deadline: Deadline, metrics: CallMetrics) -> dict[str, Any]:
    """A browser agent answered the offer, through the agents API's `UpdateSipMediaApplicationCall`:
    `rp_offer` `accept` with the caller attendee's `JoinToken` and the `MeetingId` (join the caller into
    the meeting, which interrupts the hold audio), or `decline` (on to the next candidate). An answer for
    an agent this call is not offered to any more (late, or repeated) changes nothing."""
    action = event.action_data
    arguments = action.parameters.get("Arguments") if action is not None else None
    state = _state(event, metrics)
    if not isinstance(arguments, dict) or state is None or state.stage is not Stage.AGENT:
        return EMPTY
    offered = state.ringing
    if offered is None or arguments.get("rp_agent") != offered.agent_id:
        logger.info("call update for an agent not offered this call: ignored")
        return EMPTY
    answer = arguments.get("rp_offer")
    if answer == "decline":
        svc = services()
        route = svc.flow.no_answer(state, event.call_details.transaction_id, "OfferDeclined", now(), deadline)
        metrics.count(Metric.FAILOVERS)
        return _answer(route, svc.settings, event, metrics, state)
    token, meeting, leg = arguments.get("JoinToken"), arguments.get("MeetingId"), event.caller_leg
    if answer != "accept" or not isinstance(token, str) or not isinstance(meeting, str) or leg is None:
        logger.warning("call update without what a join needs: ignored")
        return EMPTY
    join = JoinChimeMeeting(JoinToken=token, MeetingId=meeting, CallId=leg.call_id)
    return response([join], _attributes(event, state.model_copy(update={"meeting_id": meeting})))


def _end_meeting(meeting_id: str) -> None:
    """End a browser call's meeting when either side hangs up, so the other side's session ends too. A
    meeting ended already (the agent's page hung up first) is no error."""
    try:
        services().meetings.delete_meeting(MeetingId=meeting_id)
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") != "NotFoundException":
            logger.warning("meeting not ended", extra={"meeting_id": meeting_id, "error": str(error)})
    except BotoCoreError as error:
        logger.warning("meeting not ended", extra={"meeting_id": meeting_id, "error": str(error)})


def on_hangup(event: SmaEvent, deadline: Deadline, metrics: CallMetrics) -> dict[str, Any]:
    """Chime does not hang up the other leg: do it, free the agent and store the decision record."""
    state = _state(event, metrics) or CallState()
    if state.meeting_id:
        _end_meeting(state.meeting_id)
    if state.holding is not None:
        metrics.count(Metric.AGENT_WRAP_UP if state.stage is Stage.CONNECTED else Metric.AGENT_FREED)
    if state.stage is not Stage.DONE:
        state = services().flow.ended(state, event.call_details.transaction_id, now(), deadline)
    return response(_other_legs(event), _attributes(event, state))


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
    state = _state(event, metrics)
    if state is None:
        route = svc.flow.fallback(CallState(stage=Stage.AGENT), Note(code=NoteCode.REJECTED))
        return _answer(route, svc.settings, event, metrics, None)
    if state.stage in (Stage.MESSAGE, Stage.DONE):
        # Even the closing message was refused: do not loop, just end the call.
        done = state.model_copy(update={"stage": Stage.DONE})
        return response([Hangup(ParticipantTag="LEG-A")], _attributes(event, done))
    svc.flow.release(state, event.call_details.transaction_id, now(), deadline)
    route = svc.flow.fallback(
        state.model_copy(update={"stage": Stage.FALLBACK}), Note(code=NoteCode.REJECTED)
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
    "CALL_UPDATE_REQUESTED": on_call_update_requested,
}

# Event types after which the caller would be left in silence if we answered nothing.
NEEDS_A_ROUTE = {"NEW_INBOUND_CALL", "ACTION_FAILED", "INVALID_LAMBDA_RESPONSE"}


def waits_for_route(event: SmaEvent) -> bool:
    """Whether the caller waits for our answer to hear anything: after the events above, and after they
    answered the in-call question."""
    action = event.action_data
    answered = (
        event.event_type == "ACTION_SUCCESSFUL" and action is not None and action.type == "SpeakAndGetDigits"
    )
    return event.event_type in NEEDS_A_ROUTE or answered


def emergency_response(event: SmaEvent) -> dict[str, Any]:
    """Answer when the normal path failed: a short message and hang-up where the caller is waiting, the
    other leg hung up where one leg left."""
    if event.event_type == "HANGUP":
        return response(_other_legs(event), _attributes(event, CallState(stage=Stage.DONE), fetch=False))
    if not waits_for_route(event):
        return EMPTY
    done = _attributes(event, CallState(stage=Stage.DONE), fetch=False)
    return response(_closing(event, EMERGENCY_MESSAGE), done)


def budget_spent(event: SmaEvent, metrics: CallMetrics, seconds: float) -> dict[str, Any]:
    """Answer when the time budget ran out mid-step: the configured fallback where the caller waits for a
    route (an agent reserved in that step is freed when their hold lapses), the other leg hung up on a
    HANGUP, nothing otherwise. No I/O."""
    logger.error("time budget spent: answering without the store", extra={"budget_s": round(seconds, 3)})
    if not waits_for_route(event):
        return emergency_response(event)
    svc = services()
    before = _state(event, metrics, fetch=False)
    stage = Stage.AGENT if before is None or before.stage is Stage.ASKING else before.stage
    state = (before or CallState()).model_copy(update={"stage": stage})
    if state.stage in (Stage.MESSAGE, Stage.DONE):
        return emergency_response(event)
    route = svc.flow.fallback(state, Note(code=NoteCode.BUDGET_SPENT, detail=f"{seconds:.2f} s"))
    return _answer(route, svc.settings, event, metrics, before, fetch=False)


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
    answer: dict[str, Any] | None = None
    deadline: Deadline | None = None
    try:
        settings = services().settings
        budget_ms = settings.time_budget_ms if waits_for_route(event) else settings.bookkeeping_budget_ms
        deadline = Deadline.for_invocation(context, budget_ms)
        with enforced(deadline):
            answer = handler(event, deadline, metrics)
    except BudgetSpent:
        pass
    except Exception:
        logger.exception("handler failed: answering with the emergency route")
        metrics.count(Metric.HANDLER_ERRORS)
        fallback = emergency_response(event)
        if waits_for_route(event):
            metrics.fallback(_state(event, fetch=False))
        return fallback
    if answer is None:
        # The budget ran out (perhaps just as the handler finished: its answer is used when it has one).
        return budget_spent(event, metrics, deadline.seconds if deadline else 0.0)
    return answer


def _initialise() -> None:
    """In Lambda's init phase: build the services and fetch the pepper now, once per container, so the
    first call does not wait on Secrets Manager (its fetch is bounded; a failure is retried later, not
    on every event). A deployment without the secret fails here, with the reason, as it must."""
    services().pepper.get()


if os.environ.get("AWS_EXECUTION_ENV"):
    _initialise()
