"""Small builders for test data, and readers of what the handler logged, so each test states only what
matters to it."""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterator
from typing import Any
from unittest import mock

from call_state import from_attributes, to_attributes
from rapport.call import CallState, Stage
from rapport.models import (
    Agent,
    AgentEndpoint,
    Attempt,
    AttemptOutcome,
    CallerProfile,
    Candidate,
    Consent,
    DecisionRecord,
    EndpointKind,
    Interest,
    RoutingMode,
)
from rapport_local.lambda_runner import LocalFunction
from rapport_local.sma_contract import response_problems
from rapport_local.sma_driver import SimulatedCall

# make_router(parameters=, environment=, endpoint=, table=): SmaRouterFunction on the test's table.
RouterFactory = Callable[..., LocalFunction]
# make_signals(environment=, endpoint=): SignalsFunction on the test's table and dead-letter queue.
SignalsFactory = Callable[..., LocalFunction]

NOW = 1_790_000_000.0
DAY = 86_400.0


def agent(agent_id: str, idle_since: float = 0.0, **fields: Any) -> Agent:
    """A Voice Connector agent whose user part is its id."""
    return Agent.model_validate(
        {
            "agent_id": agent_id,
            "endpoint": AgentEndpoint(kind=EndpointKind.VOICE_CONNECTOR, address=agent_id),
            "idle_since": idle_since,
            **fields,
        }
    )


def profile(
    *, consents: dict[str, bool] | None = None, objected: bool = False, at: float = NOW
) -> CallerProfile:
    return CallerProfile(
        consents={
            purpose: Consent(granted=granted, at=at, source="test")
            for purpose, granted in (consents or {}).items()
        },
        objected=objected,
        created_at=at,
    )


def interest(product: str, score: float, at: float = NOW, source: str = "social") -> Interest:
    return Interest(product=product, score=score, updated_at=at, sources=[source], expires_at=at + 90 * DAY)


def routed_lines(log_lines: list[str], call_id: str | None = None) -> list[dict[str, Any]]:
    """The handler's "routed" log entries (of one call, when `call_id` is given), in order."""
    entries: list[dict[str, Any]] = [json.loads(line) for line in log_lines]
    return [
        entry
        for entry in entries
        if entry.get("message") == "routed" and (call_id is None or entry.get("call_id") == call_id)
    ]


def state_of(attributes: dict[str, str], call_id: str) -> CallState:
    """The state a call carries, as the router stored it in the SMA's TransactionAttributes."""
    state = from_attributes(attributes, call_id)
    assert state is not None, attributes
    return state


@contextlib.contextmanager
def later(router: LocalFunction, seconds: float) -> Iterator[None]:
    """Run the block as if `seconds` had passed: the router reads the time once per invocation, and its
    container's memory of pools ages with that time as it would."""
    moment = time.time() + seconds
    with mock.patch.object(router.module, "now", return_value=moment):
        yield


def ringing_attributes(
    call_id: str, agents: tuple[str, ...] = ("berlin-07", "berlin-03"), *, connected: bool = False
) -> dict[str, str]:
    """What a call carries while its first agent rings (or, `connected`, talks), the others waiting."""
    first = agents[0]
    outcome = AttemptOutcome.CONNECTED if connected else AttemptOutcome.RINGING
    record = DecisionRecord(
        call_id=call_id,
        decided_at=NOW,
        mode=RoutingMode.INTEREST,
        candidates=[Candidate(agent_id=agent_id, mode=RoutingMode.INTEREST, pool="0") for agent_id in agents],
        attempts=[Attempt(agent_id=first, mode=RoutingMode.INTEREST, pool="0", at=NOW, outcome=outcome)],
        agent_id=first if connected else None,
        expires_at=NOW + DAY,
    )
    stage = Stage.CONNECTED if connected else Stage.AGENT
    return to_attributes(CallState(stage=stage, record=record))


def checked_call(
    router: LocalFunction, caller: str, sip_headers: dict[str, str] | None = None
) -> SimulatedCall:
    """A call whose every response is checked against what the SMA accepts."""

    def invoke(event: dict[str, Any]) -> Any:
        response = router.invoke(event)
        assert response_problems(response) == [], event["InvocationEventType"]
        return response

    return SimulatedCall(invoke, caller, sip_headers=sip_headers)
