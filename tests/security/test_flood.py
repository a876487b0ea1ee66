"""A flood of calls from one number: at most the policy's count of them ring an agent in a window, the rest
hear the closing message, and neither the table nor the logs grow with the flood beyond a count."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from attacks import ATTACKER, count, items_under, key, metrics
from builders import agent
from rapport.models import DecisionRecord, NoteCode
from rapport.privacy import deployed_rules
from rapport.store.dynamodb import DynamoStore
from rapport_local.lambda_runner import LocalFunction
from rapport_local.sma_contract import response_problems
from rapport_local.sma_driver import SimulatedCall, actions_of, bridge_target

FLOOD = 1000
AGENTS = 20
FALLBACK = "+18005550199"
# Why a call within the limit may go to the fallback number: its agents could not be read or held in time.
TABLE_TOO_SLOW = {NoteCode.AGENTS_UNREADABLE, NoteCode.RESERVATION_FAILED, NoteCode.BUDGET_SPENT}


@pytest.fixture
def router(make_router: Any) -> LocalFunction:
    routed: LocalFunction = make_router(parameters={"FallbackRoute": FALLBACK})
    return routed


@pytest.fixture
def agents(store: DynamoStore) -> None:
    now = time.time()
    store.load_roster([agent(f"agent-{index:02d}", now - 60 * (index + 1)) for index in range(AGENTS)])


def test_a_thousand_calls_from_one_number_ring_no_more_agents_than_the_limit(
    router: LocalFunction, store: DynamoStore, agents: None, log_lines: list[str]
) -> None:
    limit = deployed_rules().rate_limit
    assert limit is not None and limit.calls < AGENTS
    flood = [SimulatedCall(router.handle, ATTACKER) for _ in range(FLOOD)]
    started = time.time()
    with metrics() as sink, router.environment_applied(), ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda placed: placed.new_inbound(), flood))
    # The limit holds per fixed window: a flood that runs across a window's end meets a fresh count.
    windows = int(time.time() // limit.window_seconds) - int(started // limit.window_seconds) + 1
    assert [problems for answer in answers if (problems := response_problems(answer))] == []
    bridged = [answer for answer in answers if actions_of(answer, "CallAndBridge")]
    # Never more, whichever containers the calls reach. A call whose count was not seen (DynamoDB Local
    # refusing a connection or answering too late on a busy machine) goes through, as designed, and says
    # so in the log.
    unseen = sum(
        "call not counted for the rate limit" in line or "time budget spent: answering" in line
        for line in log_lines
    )
    assert limit.calls <= len(bridged) <= limit.calls * windows + unseen
    # A call within the limit whose agent could not be read or held in its time budget (a busy machine)
    # goes to the fallback number rather than being dropped, and its record says why.
    dialled = [answer for answer in bridged if bridge_target(answer) == FALLBACK]
    why = [
        {
            note.code
            for note in DecisionRecord.model_validate_json(answer["TransactionAttributes"]["rp_record"]).notes
        }
        for answer in dialled
    ]
    assert all(codes & TABLE_TOO_SLOW for codes in why), why
    told = [answer for answer in answers if actions_of(answer, "Speak") and actions_of(answer, "Hangup")]
    assert len(told) == FLOOD - len(bridged)
    assert count(sink, "RateLimited") == FLOOD - len(bridged)
    # The table holds one count per window for the flood, not a record per call.
    partition = items_under(store, ATTACKER, counts=True)
    assert [item["sk"]["S"].split("#")[0] for item in partition] == ["RATE"] * windows
    counted = sum(int(item["n"]["N"]) for item in partition)
    assert FLOOD - unseen <= counted <= FLOOD  # a count that answered too late may have landed
    # The logs grow by a bounded line or two per call, and no line carries the number.
    assert len(log_lines) <= 3 * FLOOD
    assert max(len(line) for line in log_lines) < 4000
    assert not any(ATTACKER in line or ATTACKER[1:] in line for line in log_lines)


def test_other_callers_still_reach_an_agent_during_a_flood(router: LocalFunction, agents: None) -> None:
    flood = [SimulatedCall(router.invoke, ATTACKER) for _ in range(50)]
    for placed in flood:
        placed.new_inbound()
    other = SimulatedCall(router.invoke, "+12025550142")
    assert str(bridge_target(other.new_inbound())).startswith("agent-")


def test_the_limit_comes_from_the_policy_file(make_router: Any, agents: None) -> None:
    overrides = json.dumps({"version": "test-limit", "rate_limit": {"calls": 2, "minutes": 1}})
    router = make_router(parameters={"PrivacyPolicyOverrides": overrides})
    answers = [SimulatedCall(router.invoke, ATTACKER).new_inbound() for _ in range(4)]
    assert [bool(actions_of(answer, "CallAndBridge")) for answer in answers] == [True, True, False, False]
    assert key(ATTACKER)  # the count is kept under the caller key, never the number
