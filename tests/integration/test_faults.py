"""Faults injected between the SMA router and the real DynamoDB engine: stopped, slowed, throttled.

Every call still gets an answer the SMA accepts before it would retry (5 s), and the route logged says
why. The Amazon Connect function does not exist yet; these cover SmaRouterFunction only.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError
from builders import RouterFactory, agent, routed_lines, state_of
from rapport.store.dynamodb import DynamoStore
from rapport_local.engine import DynamoDBLocal, create_table, local_client
from rapport_local.faults import DelayProxy, ThrottleCode, throttle
from rapport_local.lambda_runner import LocalFunction
from rapport_local.sma_contract import response_problems
from rapport_local.sma_driver import SimulatedCall, actions_of, bridge_target

# The SMA retries an invocation after 5 s without an answer: every answer must come before that.
SMA_RETRY_SECONDS = 5.0
FALLBACK_NUMBER = "+18005550199"
CALLERS = ["+493055501042", "+12025550107", "+442079460123", "+5511955501234"]
AGENTS = ["berlin-07", "berlin-03", "hamburg-02", "leipzig-06", "cologne-04", "munich-01"]


def seed_agents(store: DynamoStore) -> None:
    now = time.time()
    for index, agent_id in enumerate(AGENTS):
        store.put_agent(agent(agent_id, idle_since=now - 600 + index))


def timed(send: Callable[..., dict[str, Any]], *arguments: Any) -> tuple[dict[str, Any], float]:
    """Send one event (`send` is a SimulatedCall method) and time the handler's answer."""
    started = time.monotonic()
    response: dict[str, Any] = send(*arguments)
    return response, time.monotonic() - started


def routed_reasons(log_lines: list[str], call: SimulatedCall) -> list[str]:
    """The `reason` of every "routed" line this call logged, in order."""
    return [str(entry["reason"]) for entry in routed_lines(log_lines, call.transaction_id)]


def logged_for(log_lines: list[str], call: SimulatedCall) -> str:
    return "\n".join(line for line in log_lines if call.transaction_id in line)


def assert_answered_in_time(response: dict[str, Any], seconds: float) -> None:
    assert response_problems(response) == []
    assert seconds < SMA_RETRY_SECONDS


# -- the tools themselves ---------------------------------------------------------------------------------


def test_delay_proxy_leaves_no_thread_or_socket_behind(dynamodb_endpoint: str) -> None:
    threads_before = set(threading.enumerate())
    with DelayProxy(dynamodb_endpoint, delay=0.01) as proxy:
        endpoint = proxy.endpoint
        assert "TableNames" in local_client(endpoint).list_tables()
    assert set(threading.enumerate()) <= threads_before
    port = int(endpoint.rsplit(":", 1)[1])
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), timeout=1):
        pass


def test_delay_proxy_refuses_a_target_off_this_machine() -> None:
    with pytest.raises(ValueError, match="loopback"):
        DelayProxy("http://192.0.2.10:8000")


def test_throttling_is_deterministic_and_removable(dynamodb_endpoint: str) -> None:
    client = local_client(dynamodb_endpoint, retries={"total_max_attempts": 1})
    ok, throttled = None, "ThrottlingException"

    def outcomes(count: int) -> list[str | None]:
        """For each of `count` requests, its error code (None when it succeeded)."""
        codes: list[str | None] = []
        for _ in range(count):
            try:
                client.list_tables()
                codes.append(ok)
            except ClientError as error:
                codes.append(error.response["Error"]["Code"])
        return codes

    with throttle(client, every=3) as injected:
        assert outcomes(6) == [ok, ok, throttled, ok, ok, throttled]
    assert (injected.requests, injected.throttled) == (6, 2)
    assert outcomes(3) == [ok, ok, ok]  # removed

    def seeded(seed: int) -> list[str | None]:
        with throttle(client, share=0.4, seed=seed):
            return outcomes(12)

    assert seeded(7) == seeded(7)
    assert set(seeded(7)) == {ok, throttled}


# -- DynamoDB stopped mid-run -----------------------------------------------------------------------------


@pytest.fixture
def own_engine(table: str) -> Iterator[DynamoDBLocal]:
    """A DynamoDB Local of this test's own (the session's engine is shared), with the test's table."""
    engine = DynamoDBLocal().start()
    try:
        create_table(engine.endpoint, table)
        yield engine
    finally:
        engine.stop()


def test_calls_keep_getting_answers_after_dynamodb_stops(
    make_router: RouterFactory, own_engine: DynamoDBLocal, table: str, log_lines: list[str]
) -> None:
    store = DynamoStore(local_client(own_engine.endpoint), table)
    seed_agents(store)
    router = make_router(parameters={"FallbackRoute": FALLBACK_NUMBER}, endpoint=own_engine.endpoint)

    # Before the stop: a call that is talking to its agent, and one whose first agent's phone rings.
    talking = SimulatedCall(router.invoke, CALLERS[0])
    first = talking.new_inbound()
    assert bridge_target(first) in AGENTS
    talking.bridge_answered(actions_of(first, "CallAndBridge")[0])
    ringing = SimulatedCall(router.invoke, CALLERS[1])
    ring = ringing.new_inbound()
    assert bridge_target(ring) in AGENTS
    assert state_of(ringing.attributes, ringing.transaction_id).pending()  # a next candidate is waiting

    own_engine.stop()

    newcomer = SimulatedCall(router.invoke, CALLERS[2])
    response, seconds = timed(newcomer.new_inbound)
    assert_answered_in_time(response, seconds)
    assert bridge_target(response) == FALLBACK_NUMBER
    # The container still remembers the pool it read a moment ago; the write to reserve fails.
    assert re.search(
        r"(agents unavailable|could not reserve an agent) \(.*Connection\w*Error",
        routed_reasons(log_lines, newcomer)[0],
    )

    response, seconds = timed(ringing.bridge_failed, actions_of(ring, "CallAndBridge")[0])
    assert_answered_in_time(response, seconds)
    assert bridge_target(response) == FALLBACK_NUMBER
    assert re.search(
        r"could not reserve an agent \(.*Connection\w*Error", routed_reasons(log_lines, ringing)[-1]
    )

    assert talking.leg_b is not None
    response, seconds = timed(talking.hangup, "LEG-A")
    assert_answered_in_time(response, seconds)
    assert [h["CallId"] for h in actions_of(response, "Hangup")] == [talking.leg_b["CallId"]]
    assert re.search(r"agent not released.*Connection\w*Error", logged_for(log_lines, talking))


# -- DynamoDB slowed --------------------------------------------------------------------------------------


@pytest.fixture
def slow_link(dynamodb_endpoint: str) -> Iterator[DelayProxy]:
    with DelayProxy(dynamodb_endpoint) as proxy:
        yield proxy


@pytest.fixture
def router_behind_proxy(
    make_router: RouterFactory, store: DynamoStore, slow_link: DelayProxy
) -> LocalFunction:
    seed_agents(store)
    return make_router(endpoint=slow_link.endpoint)


def test_a_slightly_slow_dynamodb_still_routes_to_an_agent(
    router_behind_proxy: LocalFunction, slow_link: DelayProxy
) -> None:
    slow_link.delay = 0.05
    for number in CALLERS[:2]:
        call = SimulatedCall(router_behind_proxy.invoke, number)
        response, seconds = timed(call.new_inbound)
        assert_answered_in_time(response, seconds)
        assert bridge_target(response) in AGENTS


def test_a_dynamodb_slower_than_the_budget_gets_the_fallback_in_time(
    router_behind_proxy: LocalFunction, slow_link: DelayProxy, log_lines: list[str]
) -> None:
    slow_link.delay = 2.0  # beyond the 0.5 s read timeout and the 1.5 s budget
    call = SimulatedCall(router_behind_proxy.invoke, CALLERS[0])
    response, seconds = timed(call.new_inbound)
    assert_answered_in_time(response, seconds)
    assert [a["Type"] for a in response["Actions"]] == ["Speak", "Hangup"]
    assert re.search(r"budget|timeout", routed_reasons(log_lines, call)[0], re.IGNORECASE)

    slow_link.delay = 0.0  # the link recovers: the same container routes again
    call = SimulatedCall(router_behind_proxy.invoke, CALLERS[1])
    assert bridge_target(call.new_inbound()) in AGENTS


def test_an_answer_that_trickles_in_is_cut_off_at_the_budget(
    make_router: RouterFactory, dynamodb_endpoint: str, store: DynamoStore, log_lines: list[str]
) -> None:
    """A byte every 0.2 s never trips botocore's 0.5 s read timeout: only the budget stops it."""
    seed_agents(store)
    budget = 0.6
    with DelayProxy(dynamodb_endpoint, trickle=0.2) as trickling:
        router = make_router(
            parameters={"FallbackRoute": FALLBACK_NUMBER},
            endpoint=trickling.endpoint,
            environment={"RAPPORT_TIME_BUDGET_MS": str(int(budget * 1000))},
        )
        call = SimulatedCall(router.invoke, CALLERS[0])
        response, seconds = timed(call.new_inbound)
    assert_answered_in_time(response, seconds)
    assert bridge_target(response) == FALLBACK_NUMBER
    assert seconds < budget + 0.5
    assert "time budget ran out" in routed_reasons(log_lines, call)[0]


# -- DynamoDB throttling ----------------------------------------------------------------------------------


def warm(router: LocalFunction) -> Any:
    """The container's DynamoDB client (building the container's services first)."""
    router.invoke({"InvocationEventType": "RINGING"})
    return router.module.services().store.client


@pytest.mark.parametrize("code", ["ThrottlingException", "ProvisionedThroughputExceededException"])
def test_a_fully_throttled_table_gets_the_fallback_and_says_so(
    make_router: RouterFactory, store: DynamoStore, log_lines: list[str], code: ThrottleCode
) -> None:
    seed_agents(store)
    router = make_router(parameters={"FallbackRoute": FALLBACK_NUMBER})
    # No usable number: no caller context to read, so the agents' pools are all the call needs.
    call = SimulatedCall(router.invoke, "anonymous")
    with throttle(warm(router), every=1, code=code) as injected:
        response, seconds = timed(call.new_inbound)
    assert_answered_in_time(response, seconds)
    assert bridge_target(response) == FALLBACK_NUMBER
    assert injected.throttled >= 1
    assert code in routed_reasons(log_lines, call)[0]


def test_a_throttled_known_caller_gets_the_fallback_and_the_log_says_why(
    make_router: RouterFactory, store: DynamoStore, log_lines: list[str]
) -> None:
    seed_agents(store)
    router = make_router(parameters={"FallbackRoute": FALLBACK_NUMBER})
    call = SimulatedCall(router.invoke, CALLERS[0])
    with throttle(warm(router), every=1):
        response, seconds = timed(call.new_inbound)
    assert_answered_in_time(response, seconds)
    assert bridge_target(response) == FALLBACK_NUMBER
    # The caller-context and directory reads are throttled together; their retries may spend the budget,
    # and the route's reason then says only that; the warning lines name the throttling.
    assert re.search(r"ThrottlingException|budget", routed_reasons(log_lines, call)[0])
    assert "ThrottlingException" in logged_for(log_lines, call)


def test_a_table_throttling_one_request_in_three_still_routes_every_call(
    router: LocalFunction, store: DynamoStore
) -> None:
    seed_agents(store)
    client = warm(router)
    with throttle(client, every=3) as injected:
        for number in CALLERS:
            call = SimulatedCall(router.invoke, number)
            response, seconds = timed(call.new_inbound)
            assert_answered_in_time(response, seconds)
            assert bridge_target(response) in AGENTS
    assert injected.throttled >= len(CALLERS) - 1  # the retries, not luck, routed these calls
