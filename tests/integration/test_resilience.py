"""A call is never dropped: DynamoDB unreachable or hanging, bad settings, malformed events — the caller
still gets a valid route inside the SMA's 5 s, and the failure is logged with its context."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from builders import RouterFactory, agent, ringing_attributes
from rapport.store.dynamodb import DynamoStore
from rapport_local.engine import create_table, free_port
from rapport_local.sma_contract import response_problems
from rapport_local.sma_driver import SimulatedCall, actions_of, bridge_target

# The SMA retries an invocation after 5 s without an answer: every answer must come before that.
SMA_RETRY_SECONDS = 5.0
CALLER = "+493055501042"


@pytest.fixture
def silent_endpoint() -> Iterator[str]:
    """A loopback server that accepts connections and never answers: a DynamoDB that hangs."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                accepted.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    for connection in accepted:
        connection.close()
    server.close()


def timed(router: Any, event: dict[str, Any]) -> tuple[dict[str, Any], float]:
    started = time.monotonic()
    response = router.invoke(event)
    return response, time.monotonic() - started


@pytest.mark.parametrize("outage", ["unreachable", "hanging"])
def test_new_call_gets_the_fallback_when_dynamodb_is_down(
    make_router: RouterFactory, silent_endpoint: str, log_lines: list[str], outage: str
) -> None:
    endpoint = f"http://127.0.0.1:{free_port()}" if outage == "unreachable" else silent_endpoint
    router = make_router(parameters={"FallbackRoute": "+18005550199"}, endpoint=endpoint)
    caller = SimulatedCall(router.invoke, CALLER)
    response, seconds = timed(router, caller.event("NEW_INBOUND_CALL", [caller.leg_a]))
    assert response_problems(response) == []
    assert bridge_target(response) == "+18005550199"
    assert seconds < SMA_RETRY_SECONDS
    assert any("agents unavailable" in line for line in log_lines)


def test_unanswered_bridge_still_fails_over_to_the_message_when_dynamodb_is_down(
    make_router: RouterFactory,
) -> None:
    router = make_router(endpoint=f"http://127.0.0.1:{free_port()}")
    caller = SimulatedCall(router.invoke, CALLER)
    caller.attributes = ringing_attributes(caller.transaction_id, ("berlin-07", "berlin-03"))
    bridge = {
        "CallTimeoutSeconds": 20,
        "CallerIdNumber": "+18005550100",
        "Endpoints": [{"BridgeEndpointType": "AWS", "Uri": "berlin-07", "Arn": "arn"}],
    }
    response, seconds = timed(
        router,
        caller.event(
            "ACTION_FAILED",
            [caller.leg_a],
            {"Type": "CallAndBridge", "Parameters": bridge, "ErrorType": "CallNotAnswered"},
        ),
    )
    assert [a["Type"] for a in response["Actions"]] == ["Speak", "Hangup"]
    assert seconds < SMA_RETRY_SECONDS


def test_hangup_still_hangs_up_the_other_leg_when_dynamodb_is_down(make_router: RouterFactory) -> None:
    router = make_router(endpoint=f"http://127.0.0.1:{free_port()}")
    caller = SimulatedCall(router.invoke, CALLER)
    caller.leg_b = {**caller.leg_a, "CallId": "leg-b", "ParticipantTag": "LEG-B", "Direction": "Outbound"}
    caller.attributes = ringing_attributes(caller.transaction_id, ("berlin-07",), connected=True)
    response = caller.hangup("LEG-A")
    assert [h["CallId"] for h in actions_of(response, "Hangup")] == ["leg-b"]


def test_broken_settings_still_give_the_caller_a_message(
    make_router: RouterFactory, log_lines: list[str]
) -> None:
    router = make_router(parameters={"CallerIdNumber": "not-a-number"})
    caller = SimulatedCall(router.invoke, CALLER)
    response = caller.new_inbound()
    assert response_problems(response) == []
    assert [a["Type"] for a in response["Actions"]] == ["Speak", "Hangup"]
    assert any("emergency route" in line for line in log_lines)


MALFORMED: dict[str, Any] = {
    "null": None,
    "a list": [1, 2, 3],
    "no call details": {"InvocationEventType": "NEW_INBOUND_CALL"},
    "participants not a list": {
        "InvocationEventType": "NEW_INBOUND_CALL",
        "CallDetails": {"Participants": "LEG-A"},
    },
    "participant with wrong types": {
        "InvocationEventType": "NEW_INBOUND_CALL",
        "Sequence": "one",
        "CallDetails": {
            "TransactionId": "t-1",
            "Participants": [
                {"CallId": "a", "ParticipantTag": "LEG-A", "From": 4930555010, "To": ["x"]},
            ],
        },
    },
    "huge header": {
        "InvocationEventType": "NEW_INBOUND_CALL",
        "CallDetails": {
            "TransactionId": "t-2",
            "Participants": [
                {
                    "CallId": "a",
                    "ParticipantTag": "LEG-A",
                    "From": CALLER,
                    "To": "+18005550100",
                    "SipHeaders": {"Diversion": "<" * 100_000, "x-rapport-product": "x" * 100_000},
                },
            ],
        },
    },
    "failed action without data": {
        "InvocationEventType": "ACTION_FAILED",
        "CallDetails": {"TransactionId": "t-3"},
    },
    "attributes of another app": {
        "InvocationEventType": "ACTION_FAILED",
        "ActionData": {"Type": "CallAndBridge", "ErrorType": "CallNotAnswered"},
        "CallDetails": {
            "TransactionId": "t-4",
            "TransactionAttributes": {"rp_stage": "warp", "rp_attempt": "x"},
            "Participants": [{"CallId": "a", "ParticipantTag": "LEG-A", "From": CALLER}],
        },
    },
}


@pytest.mark.parametrize("event", MALFORMED.values(), ids=MALFORMED.keys())
def test_malformed_events_get_a_valid_answer(router: Any, store: DynamoStore, event: Any) -> None:
    store.put_agent(agent("berlin-07"))
    response = router.invoke(event)
    assert response_problems(response) == []
    if isinstance(event, dict) and event.get("InvocationEventType") == "NEW_INBOUND_CALL":
        # The caller is waiting: something must happen on the line.
        assert response["Actions"]


def test_no_raw_phone_number_in_the_table_or_the_logs(
    make_router: RouterFactory, store: DynamoStore, dynamodb_endpoint: str, table: str, log_lines: list[str]
) -> None:
    numbers = [CALLER, "+12025550107", "+442079460123", "+5511955501234"]
    store.put_agent(agent("berlin-07"))
    store.put_agent(agent("berlin-03"))
    router = make_router(
        parameters={"FallbackRoute": "+18005550199"}, environment={"POWERTOOLS_LOG_LEVEL": "DEBUG"}
    )
    for number in numbers:
        call = SimulatedCall(router.invoke, number, sip_headers={"Diversion": f"<sip:{number}@example.com>"})
        first = call.new_inbound()
        second = call.bridge_failed(actions_of(first, "CallAndBridge")[0])
        if actions_of(second, "CallAndBridge"):
            call.bridge_answered(actions_of(second, "CallAndBridge")[0])
            call.hangup("LEG-B")
    items = store.client.scan(TableName=table)["Items"]
    stored = json.dumps(items)
    logged = "\n".join(log_lines)
    assert items and log_lines
    for number in numbers:
        digits = number.lstrip("+")
        assert digits not in stored
        assert digits not in logged
    assert "caller_key" in logged


def requests_of_three_new_calls(
    make_router: RouterFactory, store: DynamoStore, roster_size: int
) -> list[str]:
    """The DynamoDB requests of a fresh container's first three new calls, over a roster of this size."""
    now = time.time()
    store.load_roster(
        [
            agent(f"agent-{i:05d}", now - i, proficiency={"x200-headphones": 1 + i % 5})
            for i in range(roster_size)
        ]
    )
    router = make_router()
    router.invoke({"InvocationEventType": "RINGING"})  # build the container's clients
    requests: list[str] = []
    for client in router.module.services().store.clients:  # the rate-limit count has one of its own
        client.meta.events.register("before-call.dynamodb", lambda model, **_: requests.append(model.name))
    for index in range(3):
        requests.append("|")
        response = SimulatedCall(router.invoke, f"+1202555{index:04d}").new_inbound()
        assert bridge_target(response) is not None
    return sorted_rounds(requests)


def sorted_rounds(requests: list[str]) -> list[str]:
    """Requests per call, sorted within each call (those sent together finish in any order)."""
    calls = " ".join(requests).split("|")[1:]
    return [" ".join(sorted(call.split())) for call in calls]


def test_a_new_call_costs_the_same_requests_whatever_the_roster_size(
    make_router: RouterFactory, dynamodb_endpoint: str, store: DynamoStore
) -> None:
    small = requests_of_three_new_calls(make_router, store, 12)
    other = f"{store.table_name}-big"
    create_table(dynamodb_endpoint, other)
    big = requests_of_three_new_calls(
        lambda **kw: make_router(**kw, table=other), DynamoStore(store.client, other), 2_000
    )
    # A fresh container reads the directory and a pool first; then a new caller costs the caller's
    # context read with their rate-limit count, and one conditional write.
    assert small[0] == "GetItem Query Query UpdateItem UpdateItem"
    assert small[1:] == ["Query UpdateItem UpdateItem", "Query UpdateItem UpdateItem"]
    assert big == small
