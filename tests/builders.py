"""Small builders for test data, and readers of what the handler logged, so each test states only what
matters to it."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from rapport.models import Agent, AgentEndpoint, CallerProfile, Consent, EndpointKind, Interest
from rapport_local.lambda_runner import LocalFunction

# make_router(parameters=..., environment=..., endpoint=...): SmaRouterFunction on the test's table.
RouterFactory = Callable[..., LocalFunction]

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
