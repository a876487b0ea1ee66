"""The time budget is a hard limit on the thread Lambda runs the handler on: whatever blocks there (a
request whose answer trickles in, a secret that never comes) is interrupted when the budget is spent,
and the caller gets the configured fallback. Margins here are generous: these check that the limit
holds, `make bench` measures how close to it answers come."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from builders import agent
from rapport.budget import BudgetSpent, Deadline, enforced
from rapport.calls import CallFlow
from rapport.models import AgentState, Outcome, Presence
from rapport.numbers import caller_key
from rapport.pools import PoolViews
from rapport.privacy import load_rules
from rapport.secrets import PepperSource
from rapport.store.memory import MemoryStore
from rapport_local.lambda_runner import LocalFunction
from rapport_local.sma_contract import response_problems
from rapport_local.sma_driver import SimulatedCall, actions_of, bridge_target

FALLBACK = "+18005550199"
SLACK = 0.5  # seconds of scheduling noise tolerated beyond the budget


def test_a_blocked_main_thread_is_interrupted_when_the_budget_is_spent() -> None:
    started = time.monotonic()
    with pytest.raises(BudgetSpent), enforced(Deadline(0.2)):
        time.sleep(5)
    assert time.monotonic() - started < 0.2 + SLACK


def test_a_block_that_finishes_in_time_is_not_interrupted_later() -> None:
    with enforced(Deadline(0.05)):
        pass
    time.sleep(0.15)  # the timer was disarmed: nothing fires now


def test_other_threads_are_never_interrupted() -> None:
    finished = []

    def work() -> None:
        with enforced(Deadline(0.05)):
            time.sleep(0.2)
        finished.append(True)

    thread = threading.Thread(target=work)
    thread.start()
    thread.join()
    assert finished == [True]


@pytest.fixture
def router_with(monkeypatch: pytest.MonkeyPatch) -> Any:
    """SmaRouterFunction as Lambda runs it, its store in memory, with a pepper fetch of the test's."""

    def make(fetch: Any, budget_ms: str = "300") -> LocalFunction:
        router = LocalFunction(
            "SmaRouterFunction",
            parameters={
                "FallbackRoute": FALLBACK,
                "CallerIdNumber": "+18005550100",
                "AgentVoiceConnectorArn": "arn:aws:chime:us-east-1:123456789012:vc/abcdefghijklmnopqrstu1",
            },
            resources={
                "Table": "budget-test",
                "CallerKeySecret": "arn:aws:secretsmanager:us-east-1:1:secret:x",
            },
            environment={
                "AWS_REGION": "us-east-1",
                "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_ACCESS_KEY_ID": "x",
                "AWS_SECRET_ACCESS_KEY": "x",
                "RAPPORT_TIME_BUDGET_MS": budget_ms,
            },
        )
        with router.environment_applied():
            services = router.module.services()
        store = MemoryStore()
        store.load_roster([agent("berlin-07", time.time() - 600), agent("hamburg-02", time.time() - 300)])
        services.store = store
        services.flow = CallFlow(store, services.settings, load_rules(), PoolViews(), PepperSource(fetch))
        return router

    return make


def timed(router: LocalFunction, event: dict[str, Any]) -> tuple[dict[str, Any], float]:
    started = time.monotonic()
    response = router.invoke(event)
    return response, time.monotonic() - started


def test_a_secret_that_never_comes_costs_one_call_its_budget_and_no_other_call_anything(
    router_with: Any,
) -> None:
    fetches = []

    def hangs() -> str:
        fetches.append(1)
        time.sleep(30)
        return "never"

    router = router_with(hangs)
    first = SimulatedCall(router.invoke, "+12025550107")
    response, seconds = timed(router, first.event("NEW_INBOUND_CALL", [first.leg_a]))
    assert response_problems(response) == []
    assert bridge_target(response) == FALLBACK
    assert seconds < 0.3 + SLACK

    second = SimulatedCall(router.invoke, "+12025550108")
    response, seconds = timed(router, second.event("NEW_INBOUND_CALL", [second.leg_a]))
    assert bridge_target(response) in {"berlin-07", "hamburg-02"}  # routed, without profile data
    assert fetches == [1]

    # A hang-up never waits on the secret.
    response, seconds = timed(router, second.event("HANGUP", [second.leg_a], {"Type": "Hangup"}))
    assert response_problems(response) == [] and fetches == [1]


def test_a_store_that_blocks_mid_request_is_cut_off_at_the_budget(router_with: Any) -> None:
    router = router_with(lambda: "pepper")
    services = router.module.services()

    def blocks(operation: str) -> None:
        if operation == "UpdateItem":
            time.sleep(30)  # a request that never completes, as far as the caller can tell

    services.store.before_request = blocks
    caller = SimulatedCall(router.invoke, "+12025550107")
    response, seconds = timed(router, caller.event("NEW_INBOUND_CALL", [caller.leg_a]))
    assert response_problems(response) == []
    assert bridge_target(response) == FALLBACK
    assert seconds < 0.3 + SLACK


def test_an_offline_roster_still_answers_in_time(router_with: Any) -> None:
    router = router_with(lambda: "pepper")
    store = router.module.services().store
    for agent_id in ("berlin-07", "hamburg-02"):
        store.put_agent(agent(agent_id, presence=Presence.OFFLINE))
    caller = SimulatedCall(router.invoke, "+12025550107")
    response, _ = timed(router, caller.event("NEW_INBOUND_CALL", [caller.leg_a]))
    assert actions_of(response, "CallAndBridge")[0]["Endpoints"][0]["Uri"] == FALLBACK


def test_a_hang_up_gets_the_longer_bookkeeping_budget_to_free_the_agent_and_keep_the_record(
    router_with: Any,
) -> None:
    router = router_with(lambda: "pepper")
    store = router.module.services().store
    caller = SimulatedCall(router.invoke, "+12025550107")
    answer = caller.new_inbound()
    agent_id = bridge_target(answer)
    caller.bridge_answered(actions_of(answer, "CallAndBridge")[0])

    def slow(operation: str) -> None:
        time.sleep(0.25)  # the release and the record together outlast a waiting caller's 0.3 s

    store.before_request = slow
    response, seconds = timed(router, caller.event("HANGUP", [caller.leg_a], {"Type": "Hangup"}))
    assert response_problems(response) == []
    assert seconds < 3.0 + SLACK  # RAPPORT_BOOKKEEPING_BUDGET_MS
    freed = store.agent(str(agent_id))
    assert freed is not None and freed.reserved_by is None and freed.state is AgentState.WRAP_UP
    record = store.decision(caller_key("+12025550107", "pepper"), caller.transaction_id)
    assert record is not None and record.outcome is Outcome.ENDED
