"""The routing policy: who should take this call, in which order, and why. Pure; no I/O, no clock."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, Field

from rapport.models import Agent, CallerContext, Candidate, Decision, Interest, RoutingMode
from rapport.privacy import Permissions
from rapport.scoring import conversion_rate, faded_score


class RoutingPolicy(BaseModel):
    """Tunable knobs of the policy; the defaults are what a deployment gets."""

    model_config = ConfigDict(frozen=True)

    half_life_days: float = Field(default=14.0, gt=0)
    min_interest: float = Field(default=0.05, ge=0, le=1)
    conversion_prior: float = Field(default=0.2, gt=0, le=1)
    conversion_prior_weight: float = Field(default=5.0, gt=0)
    max_candidates: int = Field(default=5, ge=1, le=50)


def _day(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%d %b").lstrip("0")


def _idle(agent: Agent, now: float) -> str:
    if agent.idle_since <= 0:
        return "no call taken yet"
    minutes = int(max(0.0, now - agent.idle_since) // 60)
    return f"idle for {minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"idle for {minutes} min"


def current_interests(
    stored: Iterable[Interest], live: Iterable[Interest], now: float, policy: RoutingPolicy
) -> dict[str, tuple[float, Interest]]:
    """Best faded score per product, stored and live together, dropping what has faded away."""
    best: dict[str, tuple[float, Interest]] = {}
    for interest in [*stored, *live]:
        score = faded_score(interest, now, policy.half_life_days)
        if score >= policy.min_interest and score > best.get(interest.product, (0.0, interest))[0]:
            best[interest.product] = (score, interest)
    return best


def _interest_candidate(
    agent: Agent, interests: dict[str, tuple[float, Interest]], policy: RoutingPolicy
) -> Candidate | None:
    total = 0.0
    reasons: list[str] = []
    for product, (score, interest) in sorted(interests.items(), key=lambda item: -item[1][0]):
        proficiency = agent.proficiency.get(product)
        if proficiency is None:
            continue
        rate = conversion_rate(agent, product, policy.conversion_prior, policy.conversion_prior_weight)
        total += score * (proficiency / 5) * rate
        sources = ", ".join(interest.sources) or "unknown source"
        reasons.append(
            f"interest in `{product}` {score:.2f} from {sources} of {_day(interest.updated_at)}"
            f" → agent `{agent.agent_id}`, proficiency {proficiency}, conversion {rate:.0%}"
        )
    if total <= 0:
        return None
    return Candidate(
        agent_id=agent.agent_id, mode=RoutingMode.INTEREST, score=round(total, 4), reasons=reasons
    )


def choose_agent(
    *,
    agents: Sequence[Agent],
    context: CallerContext,
    permissions: Permissions,
    live_interests: Sequence[Interest],
    call_id: str,
    now: float,
    policy: RoutingPolicy | None = None,
) -> Decision:
    """Rank the agents for one call: known agent, then interest match, then longest idle, else fallback.

    The first candidate is the one to ring; the rest are the failover order. Only data that
    `permissions` allows is looked at, and the decision says so in its reasons.
    """
    policy = policy or RoutingPolicy()
    reasons = list(permissions.reasons)
    available = sorted(
        (agent for agent in agents if agent.is_available(now, call_id)),
        key=lambda agent: (agent.idle_since, agent.agent_id),
    )
    by_id = {agent.agent_id: agent for agent in available}
    candidates: list[Candidate] = []

    last = context.last_agent
    if permissions.use_known_agent and last is not None and last.expires_at > now:
        if last.agent_id in by_id:
            candidates.append(
                Candidate(
                    agent_id=last.agent_id,
                    mode=RoutingMode.KNOWN_AGENT,
                    reasons=[f"the caller spoke with `{last.agent_id}` on {_day(last.at)}; available now"],
                )
            )
        else:
            reasons.append(f"the caller's last agent `{last.agent_id}` is not available")

    if permissions.use_interests:
        interests = current_interests(context.interests, live_interests, now, policy)
        if interests:
            known = {candidate.agent_id for candidate in candidates}
            matched = [
                candidate
                for agent in available
                if agent.agent_id not in known
                and (candidate := _interest_candidate(agent, interests, policy)) is not None
            ]
            # sorted() is stable, so equal scores keep the longest-idle order of `available`.
            candidates += sorted(matched, key=lambda candidate: -candidate.score)
            if not matched:
                reasons.append("no available agent knows the products the caller is interested in")
        else:
            reasons.append("no current interest on record")

    chosen = {candidate.agent_id for candidate in candidates}
    for agent in available:
        if agent.agent_id not in chosen:
            candidates.append(
                Candidate(
                    agent_id=agent.agent_id,
                    mode=RoutingMode.ANY_AVAILABLE,
                    reasons=[f"agent `{agent.agent_id}` available, {_idle(agent, now)}"],
                )
            )

    candidates = candidates[: policy.max_candidates]
    if not candidates:
        reasons.append("no agent is available")
        return Decision(mode=RoutingMode.FALLBACK, candidates=[], reasons=reasons)
    return Decision(mode=candidates[0].mode, candidates=candidates, reasons=reasons)
