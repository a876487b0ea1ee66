"""Forged and replayed call state: TransactionAttributes are whatever the invoker sends, so the router
uses only state it sealed itself for this call (call_state.py), and bounds what even sealed state asks.

Each test asserts what must not happen: nothing written under another caller's key, no link kept longer
than policy allows, no bridge to an endpoint the roster does not hold.
"""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from attacks import ATTACKER, VICTIM, call, count, items_under, key, metrics
from builders import DAY, agent, ringing_attributes
from call_state import SIGNATURE, seal, state_key
from rapport.settings import DEVELOPMENT_PEPPER
from rapport.store.dynamodb import DynamoStore
from rapport_local.lambda_runner import LocalFunction
from rapport_local.sma_driver import LOCAL_SMA_ID, SimulatedCall, actions_of, bridge_target

ENDPOINTS = {"berlin-07", "berlin-03", "hamburg-02"}
FALLBACK = "+18005550199"


@pytest.fixture
def agents(store: DynamoStore) -> None:
    now = time.time()
    for index, agent_id in enumerate(sorted(ENDPOINTS)):
        store.put_agent(agent(agent_id, now - 600 * (index + 1)))


@pytest.fixture
def router(make_router: Any) -> LocalFunction:
    routed: LocalFunction = make_router(parameters={"FallbackRoute": FALLBACK})
    return routed


def bridge_of(response: dict[str, Any]) -> dict[str, Any]:
    return actions_of(response, "CallAndBridge")[0]


def as_victim(attributes: dict[str, str], link: str = "3650") -> dict[str, str]:
    """The attacker's own call state, rewritten to name the victim's key and a ten-year link."""
    forged = {k: v.replace(key(ATTACKER), key(VICTIM)) for k, v in attributes.items()}
    return {**forged, "rp_caller": key(VICTIM), "rp_link": link}


def test_another_callers_key_with_a_ten_year_link_writes_nothing_under_their_key(
    router: LocalFunction, store: DynamoStore, agents: None
) -> None:
    placed = call(router, ATTACKER)
    bridge = bridge_of(placed.new_inbound())
    placed.attributes = as_victim(placed.attributes)
    with metrics() as sink:
        placed.bridge_answered(bridge)
        placed.hangup()
    assert items_under(store, VICTIM) == []
    assert count(sink, "ForgedState") >= 1


def test_state_naming_a_caller_without_a_seal_is_not_used(
    router: LocalFunction, store: DynamoStore, agents: None
) -> None:
    placed = call(router, ATTACKER)
    bridge = bridge_of(placed.new_inbound())
    unsealed = as_victim(placed.attributes)
    unsealed.pop(SIGNATURE)
    placed.attributes = unsealed
    with metrics() as sink:
        placed.bridge_answered(bridge)
        placed.hangup()
    assert items_under(store, VICTIM) == []
    assert count(sink, "ForgedState") >= 1


def test_state_resealed_under_the_right_key_still_names_only_the_calls_own_caller(
    router: LocalFunction, store: DynamoStore, agents: None
) -> None:
    """Even with the key (a leaked pepper), the state must name the caller whose number the call shows."""
    placed = call(router, ATTACKER)
    bridge = bridge_of(placed.new_inbound())
    forged = {k: v for k, v in as_victim(placed.attributes).items() if k != SIGNATURE}
    placed.attributes = seal(forged, state_key(DEVELOPMENT_PEPPER), placed.transaction_id, LOCAL_SMA_ID)
    with metrics() as sink:
        placed.bridge_answered(bridge)
        placed.hangup()
    assert items_under(store, VICTIM) == []
    assert count(sink, "ForgedState") >= 1


def test_a_link_longer_than_policy_is_kept_no_longer_than_policy_allows(
    router: LocalFunction, store: DynamoStore, agents: None
) -> None:
    """The victim's own call, its state resealed asking for ten years: Germany's rules keep 180 days."""
    placed = call(router, VICTIM)
    bridge = bridge_of(placed.new_inbound())
    assert placed.attributes["rp_link"] == "180"
    asked = {k: v for k, v in placed.attributes.items() if k != SIGNATURE} | {"rp_link": "3650"}
    placed.attributes = seal(asked, state_key(DEVELOPMENT_PEPPER), placed.transaction_id, LOCAL_SMA_ID)
    placed.bridge_answered(bridge)
    placed.hangup()
    (record,) = [item for item in items_under(store, VICTIM) if item["sk"]["S"].startswith("DECISION#")]
    expires_at = float(record["link"]["M"]["x"]["N"])  # the link's own expiry (LastAgent.expires_at)
    assert time.time() + 179 * DAY < expires_at <= time.time() + 180 * DAY + 60


def test_state_replayed_from_another_call_is_not_used(
    router: LocalFunction, store: DynamoStore, agents: None
) -> None:
    """The victim's sealed state, replayed into a call from the victim's (spoofed) number."""
    first = call(router, VICTIM)
    first.bridge_answered(bridge_of(first.new_inbound()))
    first.hangup()
    before = items_under(store, VICTIM)
    second = call(router, VICTIM)
    bridge = bridge_of(second.new_inbound())
    second.attributes = {**first.attributes, "rp_stage": "agent"} | {SIGNATURE: first.attributes[SIGNATURE]}
    with metrics() as sink:
        second.bridge_answered(bridge)
    assert count(sink, "ForgedState") == 1
    assert items_under(store, VICTIM) == before  # the replay wrote nothing


def test_events_from_a_foreign_sip_media_application_cannot_use_a_calls_state(
    router: LocalFunction, store: DynamoStore, agents: None
) -> None:
    placed = call(router, VICTIM)
    bridge = bridge_of(placed.new_inbound())
    event = placed.event(
        "HANGUP", [placed.leg_a], {"Type": "Hangup", "Parameters": {"ParticipantTag": "LEG-A"}}
    )
    event["CallDetails"]["SipMediaApplicationId"] = "a-foreign-sma"
    with metrics() as sink:
        placed.send(event)
    assert count(sink, "ForgedState") == 1
    assert items_under(store, VICTIM) == []  # no record under the caller's key from the foreign event
    assert bridge["Endpoints"][0]["Uri"] in ENDPOINTS


@pytest.mark.parametrize(
    "planted",
    ["ghost-99", "+491511234567", "sip:premium@evil.example", "berlin-07\r\nX-Injected: 1"],
)
def test_failover_never_bridges_to_an_agent_the_state_made_up(
    router: LocalFunction, agents: None, planted: str
) -> None:
    """Unsealed state (it names no caller) with a made-up agent first in line: the next bridge goes to an
    agent of the roster, at the roster's endpoint, or to the fallback."""
    placed = SimulatedCall(router.invoke, ATTACKER)
    attributes = ringing_attributes(placed.transaction_id, ("berlin-07", "berlin-03"))
    record = json.loads(attributes["rp_record"])
    record["cand"].insert(1, {"a": planted, "m": "interest", "p": "0"})
    attributes["rp_record"] = json.dumps(record)
    placed.attributes = attributes
    failed = placed.bridge_failed({"Endpoints": [{"BridgeEndpointType": "AWS", "Uri": "berlin-07"}]})
    target = bridge_target(failed)
    assert target is None or target in ENDPOINTS | {FALLBACK}
    assert planted not in json.dumps(failed["Actions"])
