"""Whatever the SIP media application sends, SmaRouterFunction answers validly and never raises.

Property-based (hypothesis): events shaped like the documented ones for every InvocationEventType, with
random participants, numbers, SIP headers, TransactionAttributes and ActionData; the same events with
fields deleted, added or given the wrong type; and arbitrary JSON. Each runs through the real handler
against a table with a few agents. ConnectRouterFunction has its own: test_fuzz_connect.py.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from builders import RouterFactory, agent, ringing_attributes
from call_state import to_attributes
from hypothesis import HealthCheck, example, given, settings
from hypothesis import event as note
from hypothesis import strategies as st
from rapport.call import CallState, Stage
from rapport.models import (
    AgentEndpoint,
    Attempt,
    AttemptOutcome,
    Candidate,
    DecisionRecord,
    EndpointKind,
    Outcome,
    RoutingMode,
)
from rapport.store.dynamodb import DynamoStore
from rapport_local.lambda_runner import LocalFunction
from rapport_local.sma_contract import response_problems

VOICE_CONNECTOR_ARN = "arn:aws:chime:us-east-1:123456789012:vc/abcdefghijklmnopqrstu1"
COMPANY_NUMBER = "+18005550100"
AGENTS = ["berlin-07", "hamburg-02", "leipzig-06"]
PSTN_AGENT = "desk-pstn"
EVENT_TYPES = [
    "NEW_INBOUND_CALL",
    "NEW_OUTBOUND_CALL",
    "RINGING",
    "CALL_ANSWERED",
    "ACTION_SUCCESSFUL",
    "ACTION_FAILED",
    "ACTION_INTERRUPTED",
    "HANGUP",
    "DIGITS_RECEIVED",
    "CALL_UPDATE_REQUESTED",
    "INVALID_LAMBDA_RESPONSE",
]
# After these the caller hears nothing unless the answer holds an action.
CALLER_WAITING = {"NEW_INBOUND_CALL", "INVALID_LAMBDA_RESPONSE"}
EXAMPLES = 200
MAX_LOG_LINES = 12
FUZZ_SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    # The router and its table are built once per test, not per example, on purpose.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# -- strategies -------------------------------------------------------------------------------------------

short_text = st.text(max_size=24)
huge_text = st.one_of(
    st.sampled_from([2_100, 5_000, 70_000]).map(lambda size: "9" * size),
    st.text(min_size=1, max_size=8).map(lambda seed: seed * 600),
)
json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False), short_text
)
KNOWN_KEYS = [
    "SchemaVersion",
    "Sequence",
    "InvocationEventType",
    "CallDetails",
    "TransactionId",
    "TransactionAttributes",
    "Participants",
    "CallId",
    "ParticipantTag",
    "From",
    "To",
    "Status",
    "SipHeaders",
    "ActionData",
    "Type",
    "Parameters",
    "ErrorType",
    "ErrorMessage",
    "rp_stage",
]
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.one_of(st.sampled_from(KNOWN_KEYS), short_text), children, max_size=4),
    ),
    max_leaves=16,
)

e164 = st.from_regex(r"\+[1-9][0-9]{6,14}", fullmatch=True)
numbers = st.one_of(
    e164,
    st.sampled_from(
        [
            "030 5550 1042",
            "(202) 555-0107",
            "0049 30 55501042",
            "5550107",
            "anonymous",
            "Anonymous",
            "Restricted",
            "",
            "+",
            "+0",
            "++4930555010",
            "tel:+493055501042",
            "+49 (30) 555-01042",
        ]
    ),
    st.builds(
        "sip:{}@{}".format,
        st.one_of(e164, st.sampled_from(["alice", "", "anonymous"])),
        st.sampled_from(["example.com", "10.0.0.1:5060", "[::1]"]),
    ),
    short_text,
    huge_text,
)
# Crafted headers: many thousands of entries, each cheap to write and, once, expensive to read.
many_products = st.integers(1_000, 100_000).map(lambda count: ",".join(f"p-{i}" for i in range(count)))
many_diversions = st.integers(100, 50_000).map(
    lambda count: ", ".join(f"<sip:+1800555{i % 10_000:04d}@example.com>" for i in range(count))
)
diversions = st.one_of(
    st.builds("<sip:{}@example.com>;reason=unconditional".format, numbers),
    st.builds("sip:{}@example.com".format, numbers),
    st.builds("<sip:{}@a.example>;reason=user-busy, <tel:{}>;reason=unconditional".format, e164, e164),
    st.sampled_from(
        [
            "<",
            "<<<>>>",
            "<sip:@>",
            "<sip:+18005550100@example.com>;self=1",
            "<sip:+18005550100@example.com>;=",
            '"Anna" <sip:+493055501042@example.com>',
            ",,,",
            "<sip:+18005550100@example.com>;reason=ü",
        ]
    ),
    short_text,
    huge_text,
    many_diversions,
)
product_headers = st.one_of(
    st.lists(st.from_regex(r"[a-z0-9][a-z0-9._-]{0,63}", fullmatch=True), max_size=5).map(",".join),
    st.sampled_from(
        ["x200-headphones", "X200-Headphones, soundbar-s5", " , ,", "x" * 65, "../etc/passwd", "a;q=1"]
    ),
    short_text,
    huge_text,
    many_products,
)
header_names = st.one_of(
    st.sampled_from(["Diversion", "diversion", "X-RAPPORT-PRODUCT", "User-to-User", "x-", ""]),
    st.from_regex(r"x-[A-Za-z0-9-]{1,20}", fullmatch=True),
    short_text,
)
sip_headers = st.one_of(
    st.fixed_dictionaries(
        {},
        optional={
            "Diversion": diversions,
            "x-rapport-product": product_headers,
            "User-to-User": short_text,
            "x-unknown-header": st.one_of(short_text, huge_text),
        },
    ),
    st.dictionaries(header_names, st.one_of(short_text, diversions, product_headers), max_size=4),
)
call_ids = st.one_of(st.uuids().map(str), st.sampled_from(["", " "]), short_text)
tags = st.sampled_from(["LEG-A", "LEG-B", "leg-a", "Leg-B", "LEG-C", "", "A"])
any_participant = st.fixed_dictionaries(
    {},
    optional={
        "CallId": call_ids,
        "ParticipantTag": tags,
        "To": numbers,
        "From": numbers,
        "Direction": st.sampled_from(["Inbound", "Outbound", "sideways"]),
        "StartTimeInMilliseconds": st.integers(0, 2**53).map(str),
        "Status": st.sampled_from(["Connected", "Disconnected", "connected", "Ringing", ""]),
        "SipHeaders": sip_headers,
    },
)
statuses = st.sampled_from(["Connected", "Disconnected"])


@st.composite
def call_legs(draw: st.DrawFn) -> list[dict[str, Any]]:
    """LEG-A (the caller) and, sometimes, LEG-B (the bridged party), as a call really has them."""
    legs = [
        {
            "CallId": draw(st.uuids().map(str)),
            "ParticipantTag": "LEG-A",
            "To": draw(st.one_of(st.just(COMPANY_NUMBER), numbers)),
            "From": draw(numbers),
            "Direction": "Inbound",
            "Status": draw(statuses),
            **draw(st.fixed_dictionaries({}, optional={"SipHeaders": sip_headers})),
        }
    ]
    if draw(st.booleans()):
        legs.append(
            {
                "CallId": draw(st.uuids().map(str)),
                "ParticipantTag": "LEG-B",
                "To": draw(st.sampled_from(AGENTS)),
                "From": COMPANY_NUMBER,
                "Direction": "Outbound",
                "Status": draw(statuses),
            }
        )
    return legs


# Random participants (0-3, any tags, any fields) or a real call's legs with random contents.
participants = st.one_of(st.lists(any_participant, max_size=3), call_legs())

candidate_ids = st.sampled_from([*AGENTS, PSTN_AGENT, "gone-agent"])
modes = st.sampled_from(list(RoutingMode))
# The roster's agents are all in pool "0"; "7" is a pool that does not exist.
pools = st.sampled_from(["0", "0", "7", ""])
caller_keys = st.one_of(st.none(), st.from_regex(r"[0-9a-f]{64}", fullmatch=True))


def our_record(call_id: str, caller: str | None) -> st.SearchStrategy[DecisionRecord]:
    """A decision record as a call carries it: candidates, attempts with any outcome, maybe a link."""
    candidate = st.builds(
        lambda agent_id, mode, pool: Candidate(agent_id=agent_id, mode=mode, pool=pool),
        candidate_ids,
        modes,
        pools,
    )
    attempt = st.builds(
        lambda agent_id, mode, pool, outcome: Attempt(
            agent_id=agent_id, mode=mode, pool=pool, at=1.7e9, outcome=outcome
        ),
        candidate_ids,
        modes,
        pools,
        st.sampled_from(list(AttemptOutcome)),
    )
    return st.builds(
        lambda candidates, attempts, outcome: DecisionRecord(
            call_id=call_id,
            caller_key=caller,
            decided_at=1.7e9,
            mode=RoutingMode.INTEREST,
            candidates=candidates,
            attempts=attempts,
            outcome=outcome,
            expires_at=2e9,
        ),
        st.lists(candidate, max_size=5),
        st.lists(attempt, max_size=4),
        st.sampled_from(list(Outcome)),
    )


@st.composite
def our_attributes(draw: st.DrawFn, call_id: str) -> dict[str, Any]:
    """The attributes our last response would have set for this call, in any stage."""
    caller = draw(caller_keys)
    return to_attributes(
        CallState(
            # The ringing stage, where most happens, twice as often as the others.
            stage=draw(st.sampled_from([Stage.AGENT, *Stage])),
            caller_key=caller,
            link_days=draw(st.sampled_from([0, 1, 180])),
            record=draw(st.none() | our_record(call_id, caller)),
        )
    )


junk_strings = st.one_of(
    st.sampled_from(["", "-1", "1e9", "NaN", "warp", "{", '{"call": 1}', "9" * 400, "٣"]),
    short_text,
)


@st.composite
def corrupted_attributes(draw: st.DrawFn, call_id: str) -> dict[str, Any]:
    """Our attributes with some values replaced by junk (strings or not) and some keys dropped."""
    attributes: dict[str, Any] = draw(our_attributes(call_id))
    for key in draw(st.lists(st.sampled_from(sorted(attributes)), min_size=1, max_size=3, unique=True)):
        action = draw(st.sampled_from(["junk", "not a string", "drop"]))
        if action == "drop" and key != "rp_stage":
            del attributes[key]
        else:
            attributes[key] = draw(junk_strings if action == "junk" else json_values)
    return attributes


def transaction_attributes(call_id: str) -> st.SearchStrategy[dict[str, Any]]:
    ours = our_attributes(call_id)
    return st.one_of(
        ours,
        ours,  # twice: the state a call really carries is the most common case
        our_attributes("another call"),
        corrupted_attributes(call_id),
        st.dictionaries(short_text, short_text, max_size=5),
        st.builds(lambda mine, foreign: {**foreign, **mine}, ours, st.dictionaries(short_text, short_text)),
        st.dictionaries(
            st.one_of(st.sampled_from(["rp_stage", "rp_record"]), short_text), json_values, max_size=4
        ),
    )


error_types = st.one_of(
    st.sampled_from(["CallNotAnswered", "InvalidActionParameter", "SystemException", "ActionNotAllowed", ""]),
    short_text,
)
bridge_parameters = st.fixed_dictionaries(
    {},
    optional={
        "CallTimeoutSeconds": st.integers(1, 120),
        "CallerIdNumber": numbers,
        "Endpoints": st.lists(
            st.fixed_dictionaries(
                {"BridgeEndpointType": st.sampled_from(["AWS", "PSTN"])},
                optional={
                    "Uri": st.one_of(candidate_ids, numbers),
                    "Arn": st.just(VOICE_CONNECTOR_ARN),
                },
            ),
            max_size=2,
        ),
    },
)
hangup_parameters = st.fixed_dictionaries(
    {},
    optional={
        "SipResponseCode": st.sampled_from(["0", 0, "486", 486, "480"]),
        "CallId": call_ids,
        "ParticipantTag": tags,
    },
)
action_data = st.one_of(
    st.fixed_dictionaries(
        {"Type": st.just("CallAndBridge")},
        optional={"Parameters": bridge_parameters, "ErrorType": error_types, "ErrorMessage": short_text},
    ),
    st.fixed_dictionaries({"Type": st.just("Hangup")}, optional={"Parameters": hangup_parameters}),
    st.fixed_dictionaries(
        {},
        optional={
            "Type": st.one_of(
                st.sampled_from(["Speak", "PlayAudio", "ReceiveDigits", "Pause", "JoinChimeMeeting"]),
                short_text,
            ),
            "Parameters": st.dictionaries(short_text, json_scalars, max_size=3),
            "ErrorType": error_types,
            "ErrorMessage": short_text,
            "ReceivedDigits": st.text("0123456789#*", max_size=5),
        },
    ),
)
transaction_ids = st.one_of(st.uuids().map(str), st.sampled_from(["", "x"]), short_text, huge_text)
# Event types that always carry ActionData; the others sometimes do in these tests.
WITH_ACTION_DATA = {
    "ACTION_SUCCESSFUL",
    "ACTION_FAILED",
    "ACTION_INTERRUPTED",
    "HANGUP",
    "DIGITS_RECEIVED",
    "INVALID_LAMBDA_RESPONSE",
}


@st.composite
def sma_events(draw: st.DrawFn) -> dict[str, Any]:
    """An event shaped like the documented ones, with random contents."""
    kind = draw(st.sampled_from(EVENT_TYPES))
    call_id = draw(transaction_ids)
    details = draw(
        st.fixed_dictionaries(
            {
                "TransactionId": st.just(call_id),
                "AwsAccountId": st.just("123456789012"),
                "AwsRegion": st.just("us-east-1"),
                "SipMediaApplicationId": st.uuids().map(str),
                "Participants": participants,
            },
            optional={
                "TransactionAttributes": transaction_attributes(call_id),
                "SipRuleId": st.uuids().map(str),
            },
        )
    )
    event: dict[str, Any] = {
        "SchemaVersion": "1.0",
        "Sequence": draw(st.integers(1, 50)),
        "InvocationEventType": kind,
        "CallDetails": details,
    }
    if kind in WITH_ACTION_DATA or draw(st.booleans()):
        event["ActionData"] = draw(action_data)
    if kind == "INVALID_LAMBDA_RESPONSE" and draw(st.booleans()):
        event["ErrorType"] = draw(error_types)
        event["ErrorMessage"] = draw(short_text)
    return event


def _slots(value: Any) -> list[tuple[Any, Any]]:
    """Every (container, key or index) inside a JSON value, outermost first."""
    slots: list[tuple[Any, Any]] = []
    if isinstance(value, dict):
        for key, item in value.items():
            slots.append((value, key))
            slots += _slots(item)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            slots.append((value, index))
            slots += _slots(item)
    return slots


@st.composite
def mutated_events(draw: st.DrawFn) -> dict[str, Any]:
    """A documented-shaped event with fields deleted, added or given values of the wrong type."""
    event = draw(sma_events())
    for _ in range(draw(st.integers(1, 4))):
        slots = _slots(event)
        container, key = slots[draw(st.integers(0, len(slots) - 1))]
        change = draw(st.sampled_from(["delete", "replace", "add"]))
        if change == "delete":
            del container[key]
        elif change == "replace":
            container[key] = draw(json_values)
        elif isinstance(container, dict):
            container[draw(st.one_of(st.sampled_from(KNOWN_KEYS), short_text))] = draw(json_values)
        else:
            container.append(draw(json_values))
    return event


arbitrary_events = st.one_of(
    json_values,
    st.fixed_dictionaries(
        {"InvocationEventType": st.sampled_from(EVENT_TYPES)},
        optional={key: json_values for key in ["CallDetails", "ActionData", "Sequence", "SchemaVersion"]},
    ),
)


# -- the router under test --------------------------------------------------------------------------------

CONFIGURED = "configured caller id"
OWN_NUMBER = "caller's own number"


@pytest.fixture
def routers(make_router: RouterFactory, store: DynamoStore) -> dict[str, LocalFunction]:
    """The router as configured by the tests (a caller ID, no fallback number), and one that shows the
    caller's own number and has a fallback number, as the template's defaults leave it."""
    return {
        CONFIGURED: make_router(),
        OWN_NUMBER: make_router(parameters={"CallerIdNumber": "", "FallbackRoute": "+18005550199"}),
    }


def reset_roster(store: DynamoStore) -> None:
    """Every agent free again, so new calls keep reaching the agent path rather than the fallback.
    New calls ring a Voice Connector agent first; the PSTN agent is rung when it is a failover candidate."""
    now = time.time()
    for index, agent_id in enumerate(AGENTS):
        store.put_agent(agent(agent_id, idle_since=now - 600 + index))
    store.put_agent(
        agent(
            PSTN_AGENT,
            idle_since=now - 60,
            endpoint=AgentEndpoint(kind=EndpointKind.PSTN, address="+493055509999"),
        )
    )


# -- regressions the fuzzer found ------------------------------------------------------------------------
# 1. With CallerIdNumber empty (the template's default), a LEG-A without an E.164 `From` or `To` was
#    bridged with a CallerIdNumber the SMA refuses.
# 2. An agent id in the call's state that is not one crashed `CallFlow.connected` / `no_answer`.
# 3. A link of some 300 digits of days overflowed `expires_at` in `CallFlow.connected`.
# 4. A product header with 100,000 ids took 32 s (a quadratic dedupe) and wrote a line per bad value; a
#    Diversion with 50,000 entries took 2 s to parse.


def answer_shape(response: Any) -> str:
    actions = response.get("Actions") if isinstance(response, dict) else None
    if not isinstance(actions, list) or not actions:
        return "no actions"
    kinds = [str(action.get("Type")) if isinstance(action, dict) else "?" for action in actions]
    bridges = [
        action for action in actions if isinstance(action, dict) and action.get("Type") == "CallAndBridge"
    ]
    if bridges:
        endpoint = bridges[0].get("Parameters", {}).get("Endpoints", [{}])[0]
        kinds[0] = f"CallAndBridge({endpoint.get('BridgeEndpointType')})"
    return "+".join(kinds)


def assert_answers_validly(
    routers: dict[str, LocalFunction],
    which: str,
    store: DynamoStore,
    log_lines: list[str],
    event: Any,
) -> None:
    reset_roster(store)
    log_lines.clear()
    response = routers[which].invoke(event)
    problems = response_problems(response)
    crashes = [line for line in log_lines if "handler failed" in line]
    assert problems == [], response
    assert crashes == [], crashes
    # Whatever the event holds, one invocation writes a handful of lines, not one per bad value.
    assert len(log_lines) <= MAX_LOG_LINES, log_lines[:5]
    kind = event.get("InvocationEventType") if isinstance(event, dict) else None
    # Shown by `pytest --hypothesis-show-statistics`: which paths the generated events reached.
    note(f"{kind if isinstance(kind, str) else type(kind).__name__} -> {answer_shape(response)}")
    if isinstance(kind, str) and kind in CALLER_WAITING:
        assert response["Actions"], "the caller is left in silence"


# -- properties -------------------------------------------------------------------------------------------

router_names = st.sampled_from([CONFIGURED, OWN_NUMBER])


def _call(kind: str, participants: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    attributes = extra.pop("attributes", None)
    details: dict[str, Any] = {"TransactionId": "fuzz-regression", "Participants": participants}
    if attributes is not None:
        details["TransactionAttributes"] = attributes
    return {"SchemaVersion": "1.0", "InvocationEventType": kind, "CallDetails": details, **extra}


LEG_A = {"CallId": "leg-a", "ParticipantTag": "LEG-A", "From": "+493055501042", "To": COMPANY_NUMBER}
BRIDGE = {"Type": "CallAndBridge", "ErrorType": "CallNotAnswered"}
RINGING = ringing_attributes("fuzz-regression", ("berlin-07", "hamburg-02"))
BAD_AGENT = {**RINGING, "rp_record": RINGING["rp_record"].replace('"a":"berlin-07"', '"a":"a:b"')}
CRAFTED_HEADERS = {
    "x-rapport-product": ",".join(f"p-{index}" for index in range(100_000)),
    "Diversion": ", ".join(f"<sip:+1800555{index % 10_000:04d}@example.com>" for index in range(50_000)),
}


@FUZZ_SETTINGS
@given(event=sma_events(), which=router_names)
@example(  # regression 1, minimal: no participants
    event=_call("NEW_INBOUND_CALL", []), which=OWN_NUMBER
)
@example(  # regression 1, plausible: an anonymous caller through a SIP rule whose To is a SIP URI
    event=_call(
        "NEW_INBOUND_CALL",
        [
            {
                "CallId": "leg-a",
                "ParticipantTag": "LEG-A",
                "From": "anonymous",
                "To": "sip:+18005550100@vc.example",
            }
        ],
    ),
    which=OWN_NUMBER,
)
@example(  # regression 2: the caller hears the emergency message instead of getting the fallback
    event=_call("ACTION_FAILED", [LEG_A], ActionData=BRIDGE, attributes=BAD_AGENT), which=CONFIGURED
)
@example(  # regression 2, on the bridge's success
    event=_call("ACTION_SUCCESSFUL", [LEG_A], ActionData={"Type": "CallAndBridge"}, attributes=BAD_AGENT),
    which=CONFIGURED,
)
@example(  # regression 3
    event=_call(
        "ACTION_SUCCESSFUL",
        [LEG_A],
        ActionData={"Type": "CallAndBridge"},
        attributes={**RINGING, "rp_caller": "ab", "rp_link": "9" * 309},
    ),
    which=CONFIGURED,
)
@example(  # regression 4
    event=_call("NEW_INBOUND_CALL", [{**LEG_A, "SipHeaders": CRAFTED_HEADERS}]), which=CONFIGURED
)
def test_documented_event_shapes_get_a_valid_answer(
    routers: dict[str, LocalFunction],
    store: DynamoStore,
    log_lines: list[str],
    event: dict[str, Any],
    which: str,
) -> None:
    assert_answers_validly(routers, which, store, log_lines, event)


@FUZZ_SETTINGS
@given(event=mutated_events(), which=router_names)
def test_events_with_missing_extra_or_mistyped_fields_get_a_valid_answer(
    routers: dict[str, LocalFunction],
    store: DynamoStore,
    log_lines: list[str],
    event: dict[str, Any],
    which: str,
) -> None:
    assert_answers_validly(routers, which, store, log_lines, event)


@FUZZ_SETTINGS
@given(event=arbitrary_events, which=router_names)
def test_arbitrary_json_gets_a_valid_answer(
    routers: dict[str, LocalFunction], store: DynamoStore, log_lines: list[str], event: Any, which: str
) -> None:
    assert_answers_validly(routers, which, store, log_lines, event)
