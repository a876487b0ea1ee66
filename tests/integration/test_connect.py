"""ConnectRouterFunction, replayed as `sam local invoke -e events/connect/…` would run it, against the real
table: both answer modes, the repeat caller, the privacy gate, and a valid answer whatever goes wrong."""

from __future__ import annotations

import base64
import copy
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from builders import agent, interest, profile
from rapport.models import AgentEndpoint, EndpointKind, Outcome, Presence, RoutingMode
from rapport.numbers import caller_key
from rapport.settings import DEVELOPMENT_PEPPER
from rapport.store.dynamodb import DynamoStore
from rapport_local.engine import local_environment
from rapport_local.faults import DelayProxy, throttle
from rapport_local.lambda_runner import LocalFunction

EVENTS = Path(__file__).resolve().parents[2] / "events" / "connect"
SAMPLES = sorted(EVENTS.glob("*.json"))
KEYS = {
    "rapport_mode",
    "rapport_agent",
    "rapport_queue",
    "rapport_reason",
    "rapport_decision",
    "rapport_explanation",
}
FLAT = re.compile(r"^[A-Za-z0-9_-]*$")
MARK_US = "+12025550107"
LENA_DE = "+493055501042"
ANNA_USER = "0f3a8e51-2b7c-4d9e-8a16-5c4b3e2d1f70"
OTTO_USER = "7b1c9d20-3e4f-4a5b-9c6d-8e7f0a1b2c3d"
QUEUE = "2c9e6b1a-7d4f-4e3a-8b5c-1f0e9d8c7b6a"


def sample(
    name: str, contact_id: str | None = None, caller: str | None = None, mode: str | None = None
) -> Any:
    event = json.loads((EVENTS / f"{name}.json").read_text())
    data = event["Details"]["ContactData"]
    if contact_id is not None:
        data["ContactId"] = data["InitialContactId"] = contact_id
    if caller is not None:
        data["CustomerEndpoint"] = {"Address": caller, "Type": "TELEPHONE_NUMBER"}
    if mode is not None:
        event["Details"]["Parameters"]["response"] = mode
    return event


def key(number: str) -> str:
    return caller_key(number, DEVELOPMENT_PEPPER)


@pytest.fixture
def make_connect(dynamodb_endpoint: str, table: str) -> Any:
    def make(parameters: dict[str, str] | None = None, endpoint: str | None = None) -> LocalFunction:
        return LocalFunction(
            "ConnectRouterFunction",
            parameters={"ConnectFallbackQueueId": QUEUE, **(parameters or {})},
            resources={"Table": table, "CallerKeySecret": ""},
            environment=local_environment(endpoint or dynamodb_endpoint),
        )

    return make


@pytest.fixture
def connect(make_connect: Any) -> LocalFunction:
    function: LocalFunction = make_connect()
    return function


@pytest.fixture
def roster(store: DynamoStore) -> float:
    """Two Connect agents (Anna knows headphones), and a desk-phone agent Connect cannot ring."""
    now = time.time()
    store.put_agent(
        agent(
            "anna",
            now - 100,
            endpoint=AgentEndpoint(kind=EndpointKind.CONNECT, address=ANNA_USER),
            proficiency={"x200-headphones": 5},
        )
    )
    store.put_agent(
        agent("otto", now - 900, endpoint=AgentEndpoint(kind=EndpointKind.CONNECT, address=OTTO_USER))
    )
    store.put_agent(agent("desk-01", now - 5000, proficiency={"x200-headphones": 5}))
    return now


def assert_string_map(answer: Any) -> None:
    assert isinstance(answer, dict) and set(answer) == KEYS
    for name, value in answer.items():
        assert isinstance(value, str) and FLAT.match(value) and len(value) <= 256, (name, value)
    assert len(json.dumps(answer)) < 32_000


@pytest.mark.usefixtures("roster")
@pytest.mark.parametrize("path", SAMPLES, ids=lambda path: path.stem)
def test_every_sample_gets_a_valid_answer_in_its_budget(connect: LocalFunction, path: Path) -> None:
    event = json.loads(path.read_text())
    started = time.perf_counter()
    answer = connect.invoke(event)
    assert time.perf_counter() - started < 1.5
    if (event.get("Details", {}).get("Parameters") or {}).get("response") == "JSON":
        assert set(answer) == {*KEYS, "rapport_routing_criteria"}
        assert isinstance(answer["rapport_routing_criteria"]["Steps"], list)
    else:
        assert_string_map(answer)
    assert answer["rapport_mode"] in {mode.value for mode in RoutingMode}


@pytest.mark.usefixtures("roster")
def test_a_caller_interested_in_a_product_is_offered_its_connect_expert(
    connect: LocalFunction, store: DynamoStore
) -> None:
    store.put_caller(key(MARK_US), profile(), [interest("x200-headphones", 0.9, time.time())])
    answer = connect.invoke(sample("inbound_voice", caller=MARK_US))
    assert (answer["rapport_mode"], answer["rapport_agent"], answer["rapport_reason"]) == (
        "interest",
        ANNA_USER,
        "interest",
    )
    assert answer["rapport_explanation"].startswith("interest_in_x200-headphones")
    assert answer["rapport_queue"] == QUEUE
    record = store.decision(key(MARK_US), answer["rapport_decision"])
    assert record is not None and (record.agent_id, record.outcome) == ("anna", Outcome.HANDED_OVER)


@pytest.mark.usefixtures("roster")
@pytest.mark.parametrize("mode", ["STRING_MAP", "JSON"])
def test_a_repeat_caller_goes_to_their_last_agent_in_both_modes(
    make_connect: Any, store: DynamoStore, mode: str
) -> None:
    connect = make_connect(parameters={"ConnectKnownAgentSeconds": "25", "ConnectInterestSeconds": "40"})
    store.put_caller(key(MARK_US), profile(), [interest("x200-headphones", 0.9, time.time())])
    first = connect.invoke(sample("inbound_voice", caller=MARK_US, mode=mode))
    assert first["rapport_agent"] == ANNA_USER
    # Anna is still the best match; the last-agent link is what decides for the repeat caller.
    again = connect.invoke(sample("repeat_caller", caller=MARK_US, mode=mode))
    assert (again["rapport_mode"], again["rapport_agent"]) == ("known_agent", ANNA_USER)
    if mode == "JSON":
        steps = again["rapport_routing_criteria"]["Steps"]
        assert steps[0] == {
            "Expression": {
                "AttributeCondition": {
                    "ComparisonOperator": "Match",
                    "MatchCriteria": {"AgentsCriteria": {"AgentIds": [ANNA_USER]}},
                }
            },
            "Expiry": {"DurationInSeconds": 25},
        }
        assert steps[1] == {
            "Expression": {
                "AttributeCondition": {
                    "Name": "rapport-product",
                    "Value": "x200-headphones",
                    "ProficiencyLevel": 3.0,
                    "ComparisonOperator": "NumberGreaterOrEqualTo",
                }
            },
            "Expiry": {"DurationInSeconds": 40},
        }
        assert "the caller spoke with `anna`" in again["rapport_explanation"]


@pytest.mark.usefixtures("roster")
def test_the_privacy_gate_holds_on_connect_too(connect: LocalFunction, store: DynamoStore) -> None:
    # Lena (Germany) never consented: her interest is not used, so no interest step and no named agent.
    store.put_caller(key(LENA_DE), profile(), [interest("x200-headphones", 0.9, time.time())])
    answer = connect.invoke(sample("inbound_voice_json", caller=LENA_DE))
    assert (answer["rapport_mode"], answer["rapport_agent"]) == ("any_available", "")
    assert answer["rapport_routing_criteria"] == {"Steps": []}
    assert "interest data not used (needs consent, none on record)" in answer["rapport_explanation"]


@pytest.mark.usefixtures("roster")
def test_a_chat_contact_routes_without_profile_data(connect: LocalFunction) -> None:
    answer = connect.invoke(sample("chat"))
    assert answer["rapport_mode"] == "any_available" and answer["rapport_agent"] == ""
    assert "no_usable_caller_number" in answer["rapport_explanation"]


@pytest.mark.parametrize("path", SAMPLES, ids=lambda path: path.stem)
def test_every_sample_gets_the_fallback_in_the_budget_with_the_table_unreachable(
    make_connect: Any, path: Path
) -> None:
    connect = make_connect(endpoint="http://127.0.0.1:9")  # nothing listens there
    event = json.loads(path.read_text())
    started = time.perf_counter()
    answer = connect.invoke(event)
    assert time.perf_counter() - started < 2.0
    assert (answer["rapport_mode"], answer["rapport_agent"], answer["rapport_queue"]) == (
        "fallback",
        "",
        QUEUE,
    )
    if (event.get("Details", {}).get("Parameters") or {}).get("response") == "JSON":
        assert answer["rapport_routing_criteria"] == {"Steps": []}
    else:
        assert_string_map(answer)


@pytest.mark.parametrize(
    "event",
    [None, [], "text", {}, {"Details": None}, {"Details": {"ContactData": {"ContactId": 12}}}],
    ids=["none", "list", "text", "empty", "no-details", "odd-id"],
)
def test_a_bad_event_gets_the_fallback_not_an_error(connect: LocalFunction, event: Any) -> None:
    answer = connect.invoke(copy.deepcopy(event))
    assert_string_map(answer)
    assert (answer["rapport_mode"], answer["rapport_reason"]) == ("fallback", "error")


@pytest.mark.usefixtures("roster")
def test_no_raw_number_in_the_table_or_the_logs(
    connect: LocalFunction, store: DynamoStore, log_lines: list[str]
) -> None:
    store.put_caller(key(MARK_US), profile(), [interest("x200-headphones", 0.9, time.time())])
    for path in SAMPLES:
        connect.invoke(json.loads(path.read_text()))
    connect.invoke(sample("inbound_voice", caller="+49 30 5550 1042"))
    items = json.dumps(store.client.scan(TableName=store.table_name)["Items"])
    logged = "\n".join(log_lines)
    assert "routed" in logged
    for digits in ("2025550107", "30555010", "8005550100"):
        assert digits not in items and digits not in logged, digits


# -- Connect's agent event stream -----------------------------------------------------------------------

AGENT_EVENTS = Path(__file__).resolve().parents[2] / "events" / "connect_agent_events" / "kinesis.json"


@pytest.fixture
def agent_events(dynamodb_endpoint: str, table: str) -> LocalFunction:
    return LocalFunction(
        "ConnectAgentEventsFunction",
        parameters={"ConnectAgentEventStreamArn": "arn:aws:kinesis:us-east-1:123456789012:stream/agents"},
        resources={"Table": table, "CallerKeySecret": ""},
        environment=local_environment(dynamodb_endpoint),
    )


def kinesis(*events: dict[str, Any]) -> dict[str, Any]:
    """A Kinesis event carrying these agent events, shaped like the sample's records."""
    sample_record = json.loads(AGENT_EVENTS.read_text())["Records"][0]
    records = []
    for index, body in enumerate(events):
        data = base64.b64encode(json.dumps(body).encode()).decode()
        kinesis_part = {**sample_record["kinesis"], "data": data, "sequenceNumber": f"{index:032d}"}
        records.append({**sample_record, "kinesis": kinesis_part, "eventID": f"shardId-0:{index}"})
    return {"Records": records}


def agent_event(user: str, kind: str, at: str, status: str | None = None, name: str = "") -> dict[str, Any]:
    instance = "arn:aws:connect:us-east-1:123456789012:instance/9308c2a1-9bc6-4cea-8290-6c0b4a6d38fa"
    snapshot = {"AgentStatus": {"Name": name, "Type": status}} if status else None
    return {
        "AgentARN": f"{instance}/agent/{user}",
        "EventType": kind,
        "EventTimestamp": at,
        "CurrentAgentSnapshot": snapshot,
        "InstanceARN": instance,
        "Version": "2019-05-25",
    }


@pytest.mark.usefixtures("roster")
def test_the_sample_stream_sets_presence_and_ignores_duplicates_old_unknown_and_unreadable_events(
    agent_events: LocalFunction, store: DynamoStore
) -> None:
    answer = agent_events.invoke(json.loads(AGENT_EVENTS.read_text()))
    assert answer == {"batchItemFailures": []}  # nothing to deliver again: even the unreadable one
    anna, otto = store.agent("anna"), store.agent("otto")
    assert anna is not None and (anna.presence, anna.status_reason) == (
        Presence.AWAY,
        "Amazon Connect: Break",
    )
    assert otto is not None and otto.presence is Presence.OFFLINE


@pytest.mark.usefixtures("roster")
def test_an_agent_on_a_break_in_connect_is_not_named_and_is_again_once_available(
    agent_events: LocalFunction, make_connect: Any, store: DynamoStore
) -> None:
    store.put_caller(key(MARK_US), profile(), [interest("x200-headphones", 0.9, time.time())])
    agent_events.invoke(
        kinesis(agent_event(ANNA_USER, "STATE_CHANGE", "2026-12-01T10:00:00Z", "CUSTOM", "Lunch"))
    )
    answer = make_connect().invoke(sample("inbound_voice", caller=MARK_US))  # a fresh container
    assert answer["rapport_agent"] != ANNA_USER
    # Out of order: an older "available" arrives after the break, and changes nothing.
    agent_events.invoke(kinesis(agent_event(ANNA_USER, "STATE_CHANGE", "2026-12-01T09:59:00Z", "ROUTABLE")))
    anna = store.agent("anna")
    assert anna is not None and anna.presence is Presence.AWAY
    agent_events.invoke(kinesis(agent_event(ANNA_USER, "STATE_CHANGE", "2026-12-01T10:30:00Z", "ROUTABLE")))
    answer = make_connect().invoke(sample("repeat_caller", caller=MARK_US))
    assert (answer["rapport_mode"], answer["rapport_agent"]) == ("interest", ANNA_USER)


@pytest.mark.usefixtures("roster")
def test_a_failing_table_fails_only_its_records_which_are_delivered_again(
    dynamodb_endpoint: str, table: str
) -> None:
    down = LocalFunction(
        "ConnectAgentEventsFunction",
        parameters={"ConnectAgentEventStreamArn": "arn:aws:kinesis:us-east-1:123456789012:stream/agents"},
        resources={"Table": table, "CallerKeySecret": ""},
        environment=local_environment("http://127.0.0.1:9"),
    )
    event = kinesis(
        agent_event(ANNA_USER, "STATE_CHANGE", "2026-12-01T11:00:00Z", "CUSTOM", "Break"),
        {"not": "an agent event"},
    )
    answer = down.invoke(event)
    # The event that needs the table is reported for redelivery; the unreadable one is not.
    assert answer == {"batchItemFailures": [{"itemIdentifier": f"{0:032d}"}]}


# -- faults: a slow, trickling or throttling table ---------------------------------------------------------


@pytest.mark.usefixtures("roster")
def test_a_table_slower_than_the_budget_gives_the_fallback_in_time(
    make_connect: Any, dynamodb_endpoint: str
) -> None:
    with DelayProxy(dynamodb_endpoint) as slow:
        connect = make_connect(endpoint=slow.endpoint)
        slow.delay = 0.05  # slow, but inside the budget: routed as usual
        assert connect.invoke(sample("inbound_voice"))["rapport_mode"] != "fallback"
        slow.delay = 2.0  # past the read timeout and the 1.5 s budget
        started = time.perf_counter()
        answer = connect.invoke(sample("repeat_caller", mode="JSON"))
        assert time.perf_counter() - started < 2.5
    assert (answer["rapport_mode"], answer["rapport_queue"]) == ("fallback", QUEUE)
    assert answer["rapport_routing_criteria"] == {"Steps": []}


@pytest.mark.usefixtures("roster")
def test_an_answer_that_trickles_in_is_cut_off_at_the_budget(
    make_connect: Any, dynamodb_endpoint: str
) -> None:
    with DelayProxy(dynamodb_endpoint, trickle=0.2) as trickling:
        connect = make_connect(endpoint=trickling.endpoint)
        connect.environment["RAPPORT_TIME_BUDGET_MS"] = "600"
        started = time.perf_counter()
        answer = connect.invoke(sample("inbound_voice"))
        seconds = time.perf_counter() - started
    assert (answer["rapport_mode"], answer["rapport_reason"]) == ("fallback", "budget_spent")
    assert seconds < 0.6 + 0.5


@pytest.mark.usefixtures("roster")
def test_a_throttled_table_gives_the_fallback(connect: LocalFunction) -> None:
    connect.invoke(sample("chat"))  # the container's services built
    with throttle(connect.module.services().store.client, every=1, code="ThrottlingException") as injected:
        answer = connect.invoke(sample("inbound_voice"))
    assert injected.throttled >= 1
    assert answer["rapport_mode"] in ("fallback", "any_available")  # no agent named on unread data
    assert answer["rapport_agent"] == ""
