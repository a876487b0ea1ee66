"""Where calls may go: a PSTN agent is rung only in the countries the deployment allows (by default the
countries of its own numbers), so a changed roster cannot send calls to premium-rate or far-away numbers.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from attacks import ATTACKER, call, count, metrics
from builders import agent, ringing_attributes
from rapport.models import AgentEndpoint, EndpointKind
from rapport.store.dynamodb import DynamoStore
from rapport_local.engine import local_environment
from rapport_local.http_api import http_request
from rapport_local.lambda_runner import LocalFunction
from rapport_local.sma_driver import SimulatedCall, actions_of, bridge_target

PREMIUM = "+8819912345678"  # an international premium-rate-like range (+881, satellite)
ABROAD = "+493055501099"  # a German number, in a stack whose own numbers are all +1


def pstn(agent_id: str, number: str, idle_since: float) -> Any:
    return agent(agent_id, idle_since, endpoint=AgentEndpoint(kind=EndpointKind.PSTN, address=number))


@pytest.fixture
def roster(store: DynamoStore) -> float:
    """The longest idle agents ring abroad; one desk phone is left."""
    now = time.time()
    store.put_agent(pstn("premium", PREMIUM, now - 9000))
    store.put_agent(pstn("abroad", ABROAD, now - 8000))
    store.put_agent(agent("desk-01", now - 60))
    return now


def dialled(response: dict[str, Any]) -> list[str]:
    return [
        endpoint["Uri"]
        for bridge in actions_of(response, "CallAndBridge")
        for endpoint in bridge.get("Endpoints", [])
    ]


def test_a_new_call_never_rings_a_number_outside_the_stacks_countries(
    router: LocalFunction, roster: float
) -> None:
    """The stack's own number (CallerIdNumber) is +1: both numbers abroad are passed over."""
    placed = call(router, ATTACKER)
    answer = placed.new_inbound()
    assert bridge_target(answer) == "desk-01"
    assert PREMIUM not in json.dumps(answer) and ABROAD not in json.dumps(answer)


def test_the_allow_list_names_the_countries_calls_may_go_to(make_router: Any, roster: float) -> None:
    placed = call(make_router(parameters={"PstnCountryCodes": "49"}), ATTACKER)
    assert dialled(placed.new_inbound()) == [ABROAD]  # Germany allowed, the premium range still not


def test_failover_to_a_number_not_allowed_lets_the_agent_go_and_counts_it(
    router: LocalFunction, store: DynamoStore, roster: float
) -> None:
    """State naming the premium agent next in line (as a call routed before the roster changed would):
    they are held while their pool is read, refused, let go, and the next candidate rings."""
    placed = SimulatedCall(router.invoke, ATTACKER)
    placed.attributes = ringing_attributes(placed.transaction_id, ("desk-01", "premium", "abroad"))
    with metrics() as sink:
        failed = placed.bridge_failed({"Endpoints": [{"BridgeEndpointType": "AWS", "Uri": "desk-01"}]})
    assert dialled(failed) == [] and bridge_target(failed) is None  # nobody left: the message
    assert count(sink, "EndpointRefused") == 2
    seats = {a.agent_id: a for a in store.agents()}
    assert seats["premium"].reserved_by is None and seats["abroad"].reserved_by is None


@pytest.fixture
def agents_api(dynamodb_endpoint: str, table: str) -> LocalFunction:
    return LocalFunction(
        "AgentsFunction",
        parameters={"CallerIdNumber": "+18005550100"},
        resources={"Table": table, "CallerKeySecret": "", "SipMediaApplication.SipMediaApplicationId": "sma"},
        environment=local_environment(dynamodb_endpoint),
    )


def add(api: LocalFunction, agent_id: str, number: str) -> dict[str, Any]:
    body = {"agent_id": agent_id, "name": agent_id, "endpoint": {"kind": "pstn", "address": number}}
    answer: dict[str, Any] = api.invoke(http_request("/agents", body))
    return answer


def test_the_agents_api_refuses_a_pstn_agent_outside_the_allowed_countries(agents_api: LocalFunction) -> None:
    refused = add(agents_api, "premium", PREMIUM)
    assert refused["statusCode"] == 400
    assert "+1" in json.loads(refused["body"])["problems"][0]  # it says which countries are allowed
    assert add(agents_api, "local", "+12025550142")["statusCode"] == 201
