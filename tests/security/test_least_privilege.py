"""Least privilege inside the table: each function's DynamoDB policy (template.yaml) allows every request
its real flows make, and nothing that would change where calls go. Only AgentsFunction may change an
agent's endpoint; the router may hold and free agents, never rewrite a roster.

The requests are recorded from the functions themselves, run against DynamoDB Local; the policy is
applied to them as IAM documents it (tests/security/iam.py).
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from attacks import VICTIM, call
from builders import agent
from iam import Request, allowed, recording, statements_of
from rapport.catalog import CatalogFile
from rapport.models import AgentEndpoint, EndpointKind, Presence
from rapport.store.dynamodb import DynamoStore
from rapport.store.signals import SignalStore
from rapport_local.engine import local_environment
from rapport_local.http_api import http_request
from rapport_local.lambda_runner import LocalFunction
from rapport_local.sma_driver import SimulatedCall, actions_of

EVENTS = Path(__file__).resolve().parents[2] / "events"
CATALOG = EVENTS.parent / "examples" / "catalog.json"
TABLE_FUNCTIONS = [
    "SmaRouterFunction",
    "ConnectRouterFunction",
    "ConnectAgentEventsFunction",
    "SignalsFunction",
    "PrivacyFunction",
    "AgentsFunction",
    "AgentPageFunction",
    "AgentPagePushFunction",
    "AgentPageGraceFunction",
]

# What a compromised function would do to send calls elsewhere, or to take agents off the roster.
ENDPOINT_CHANGES = [
    Request("UpdateItem", "POOL#3", frozenset({"pk", "sk", "agents"})),  # a member's endpoint in a roster
    Request("PutItem", "POOL#3", frozenset({"pk", "sk", "agents", "v"})),  # a roster replaced
    Request("UpdateItem", "AGENT#berlin-07", frozenset({"pk", "sk", "endpoint"})),
    Request("PutItem", "AGENT#berlin-07", frozenset({"pk", "sk", "endpoint", "pool", "name"})),
    Request("PutItem", "CONNECTUSER#u-1", frozenset({"pk", "sk", "agent_id"})),
    Request("UpdateItem", "DIRECTORY", frozenset({"pk", "sk", "pools"})),
    Request("DeleteItem", "POOL#3", frozenset({"pk", "sk"})),
    Request("DeleteItem", "AGENT#berlin-07", frozenset({"pk", "sk"})),
]


def judged(function: str, requests: list[Request]) -> list[str]:
    """The requests the function's policy would refuse."""
    statements = statements_of(function)
    return sorted({str(request) for request in requests if not allowed(statements, request)})


@pytest.mark.parametrize("function", TABLE_FUNCTIONS)
def test_no_function_but_the_agents_function_may_change_where_calls_go(function: str) -> None:
    statements = statements_of(function)
    permitted = [str(change) for change in ENDPOINT_CHANGES if allowed(statements, change)]
    if function == "AgentsFunction":
        assert len(permitted) == len(ENDPOINT_CHANGES)  # the one function that keeps the roster
    else:
        assert permitted == []


@pytest.mark.parametrize("function", [f for f in TABLE_FUNCTIONS if f != "AgentsFunction"])
def test_no_function_but_the_agents_function_writes_without_naming_the_items_it_may_write(
    function: str,
) -> None:
    """Every write statement names its partitions (dynamodb:LeadingKeys): no write anywhere."""
    for statement in statements_of(function):
        actions = statement["Action"]
        writes = [a for a in ([actions] if isinstance(actions, str) else actions) if "Get" not in a]
        if writes and writes != ["dynamodb:Query"]:
            assert "dynamodb:LeadingKeys" in json.dumps(statement.get("Condition", {})), statement["Sid"]


@pytest.fixture
def roster(store: DynamoStore) -> None:
    now = time.time()
    for index, agent_id in enumerate(("berlin-07", "berlin-03", "hamburg-02", "munich-01", "cologne-04")):
        store.put_agent(agent(agent_id, now - 600 * (index + 1)))


def test_every_request_of_the_routers_call_flows_is_allowed(make_router: Any, roster: None) -> None:
    """New calls, a returning caller, failover, set-away after missed calls, a consent given in the call,
    hang-ups and the rate limit: all within the router's policy."""
    router = make_router(parameters={"AwayAfterNoAnswers": "1", "AskForConsent": "true"})
    with recording() as requests:
        for _ in range(2):  # the second time, a returning caller with a last-agent link
            placed = call(router, VICTIM)
            answer = placed.new_inbound()
            if actions_of(answer, "SpeakAndGetDigits"):
                answer = placed.digits(actions_of(answer, "SpeakAndGetDigits")[0], "1")
            bridge = actions_of(answer, "CallAndBridge")[0]
            failed = placed.bridge_failed(bridge)  # nobody answers: failover, the first one set away
            assert actions_of(failed, "CallAndBridge")
            placed.bridge_answered(actions_of(failed, "CallAndBridge")[0])
            placed.hangup()
        for _ in range(8):  # over the rate limit
            SimulatedCall(router.invoke, "+12025550142").new_inbound()
    assert {request.action for request in requests} >= {"Query", "UpdateItem", "PutItem"}
    assert any(request.partition.startswith("AGENT#") for request in requests)  # set away
    assert judged("SmaRouterFunction", requests) == []


def test_every_request_of_the_sample_events_is_allowed(
    dynamodb_endpoint: str, table: str, store: DynamoStore, make_signals: Any, roster: None
) -> None:
    """The documented samples of Connect, privacy and signals, replayed as `sam local invoke` would."""
    functions = {"ConnectRouterFunction": "connect", "PrivacyFunction": "privacy"}
    for function, folder in functions.items():
        local = LocalFunction(
            function,
            resources={"Table": table, "CallerKeySecret": ""},
            environment=local_environment(dynamodb_endpoint),
        )
        with recording() as requests:
            for sample in sorted((EVENTS / folder).glob("*.json")):
                local.invoke(json.loads(sample.read_text(encoding="utf-8")))
        assert requests, function
        assert judged(function, requests) == [], function
    SignalStore(store.client, store.table_name).put_products(CatalogFile.load(CATALOG).products)
    signals = make_signals()
    signal: dict[str, Any] = {
        "signal_id": "s-1",
        "caller": "+12025550142",
        "source": "web",
        "observed_at": "2026-12-01T10:00:00Z",
        "products": [{"product": "x200-headphones", "strength": 0.8}],
    }
    with recording() as requests:
        assert signals.invoke(http_request("/signals", {"signals": [signal]}))["statusCode"] == 200
    assert any(request.action == "PutItem" for request in requests)  # the interest was written
    assert judged("SignalsFunction", requests) == []


def test_the_agents_function_may_change_an_endpoint(dynamodb_endpoint: str, table: str) -> None:
    """The positive control: what the agents API does to a roster, its policy allows."""
    agents = LocalFunction(
        "AgentsFunction",
        parameters={"CallerIdNumber": "+18005550100"},
        resources={"Table": table, "CallerKeySecret": "", "SipMediaApplication.SipMediaApplicationId": "sma"},
        environment=local_environment(dynamodb_endpoint),
    )
    new = {"agent_id": "desk-9", "name": "Desk", "endpoint": {"kind": "voice_connector", "address": "desk-9"}}
    with recording() as requests:
        assert agents.invoke(http_request("/agents", new))["statusCode"] == 201
    assert any(request.partition.startswith("POOL#") for request in requests)
    assert judged("AgentsFunction", requests) == []


def test_every_request_of_the_agent_page_functions_is_allowed(
    dynamodb_endpoint: str, table: str, store: DynamoStore
) -> None:
    """The page signs in (the agent available), an offer is pushed, the page closes, and after the grace
    the agent is offline: each function's requests judged against its own policy."""
    browser = AgentEndpoint(kind=EndpointKind.BROWSER, address="potsdam-13")
    store.put_agent(agent("potsdam-13", time.time() - 60, endpoint=browser, presence=Presence.OFFLINE))
    steps = [
        ("AgentPageFunction", "connect.json"),
        ("AgentPageFunction", "offers.json"),
        ("AgentPagePushFunction", "stream_offer.json"),
        ("AgentPageFunction", "disconnect.json"),
        ("AgentPageGraceFunction", "grace.json"),
    ]
    written = set()
    for function, sample in steps:
        local = LocalFunction(
            function,
            resources={"Table": table, "CallerKeySecret": ""},
            environment=local_environment(dynamodb_endpoint),
        )
        with recording() as requests:
            local.invoke(json.loads((EVENTS / "agent_page" / sample).read_text(encoding="utf-8")))
        assert judged(function, requests) == [], (function, sample)
        written |= {request.partition.split("#")[0] for request in requests if request.action != "Query"}
    assert {"PAGE", "POOL", "AGENT"} <= written  # the page, and the agent's presence both ways
