"""The routing policy: who should take this call, in which order, and why. Pure; no I/O, no clock."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from itertools import islice
from typing import Protocol

from pydantic import BaseModel, ConfigDict, Field

from rapport.models import (
    CallerContext,
    Candidate,
    Decision,
    Interest,
    InterestFact,
    Note,
    NoteCode,
    ProductStats,
    RoutingMode,
    Skill,
)
from rapport.privacy import Permissions
from rapport.scoring import conversion_bound, conversion_estimate, faded_score


class Routable(Protocol):
    """What routing looks at of an agent (a stored `Agent`, or a `PooledAgent` from a pool view)."""

    @property
    def agent_id(self) -> str: ...
    @property
    def pool(self) -> str: ...
    @property
    def proficiency(self) -> Mapping[str, int]: ...
    @property
    def stats(self) -> Mapping[str, ProductStats]: ...
    @property
    def idle_since(self) -> float: ...
    def is_available(self, now: float, call_tag: str | None = None) -> bool: ...


EVIDENCE_IN_RECORD = 60
"""Characters of a signal's deciding words kept in a decision record (which must stay one write unit)."""
WORDED_INTERESTS = 2
"""Interests whose deciding words the record keeps: the strongest."""


class RoutingPolicy(BaseModel):
    """Tunable knobs of the policy; the defaults are what a deployment gets."""

    model_config = ConfigDict(frozen=True)

    half_life_days: float = Field(default=14.0, gt=0)
    min_interest: float = Field(default=0.05, ge=0, le=1)
    conversion_prior: float = Field(default=0.2, gt=0, le=1)
    conversion_prior_weight: float = Field(default=5.0, gt=0)
    exploration: float = Field(default=1.0, ge=0, le=5)
    """How far ranking looks past an agent's estimated conversion into its uncertainty (0: not at all)."""
    max_candidates: int = Field(default=5, ge=1, le=50)


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


def _interest_match(
    agent: Routable, interests: list[tuple[str, float]], policy: RoutingPolicy
) -> tuple[float, list[tuple[str, int, float, int]]]:
    """The agent's interest score (the sum over the caller's products of score * proficiency/5 *
    the upper bound of their conversion) and, per product they know, (product, proficiency, estimated
    conversion, calls counted)."""
    total = 0.0
    skills = []
    for product, score in interests:
        proficiency = agent.proficiency.get(product)
        if proficiency is None:
            continue
        weight = policy.conversion_prior_weight
        rate, calls = conversion_estimate(agent.stats, product, policy.conversion_prior, weight)
        total += score * (proficiency / 5) * conversion_bound(rate, calls, weight, policy.exploration)
        skills.append((product, proficiency, rate, calls))
    return total, skills


def _knows_any(agent: Routable, products: Sequence[str]) -> bool:
    return any(product in agent.proficiency for product in products)


def choose_agent(
    *,
    agents: Sequence[Routable],
    context: CallerContext,
    permissions: Permissions,
    live_interests: Sequence[Interest],
    call_tag: str | None,
    now: float,
    policy: RoutingPolicy | None = None,
    line_products: Sequence[str] = (),
) -> Decision:
    """Rank the agents for one call: known agent, then interest match, then longest idle, else fallback.

    The first candidate is the one to ring; the rest are the failover order. Only data that
    `permissions` allows is looked at, and the decision records why. `line_products`: the products of the
    line the caller dialled (not caller data, so not gated): among the longest idle, agents who know one
    come first.
    """
    policy = policy or RoutingPolicy()
    notes: list[Note] = []
    available = sorted(
        (agent for agent in agents if agent.is_available(now, call_tag)),
        key=lambda agent: (agent.idle_since, agent.agent_id),
    )
    by_id = {agent.agent_id: agent for agent in available}
    candidates: list[Candidate] = []
    used: dict[str, InterestFact] = {}

    last = context.last_agent
    if permissions.use_known_agent and last is not None and last.expires_at > now:
        known = by_id.get(last.agent_id)
        if known is not None:
            candidates.append(
                Candidate(
                    agent_id=known.agent_id,
                    mode=RoutingMode.KNOWN_AGENT,
                    pool=known.pool,
                    known_since=last.at,
                )
            )
        else:
            notes.append(Note(code=NoteCode.LAST_AGENT_BUSY, detail=last.agent_id))

    if permissions.use_interests:
        interests = current_interests(context.interests, live_interests, now, policy)
        if interests:
            listed = {candidate.agent_id for candidate in candidates}
            by_score = sorted(((p, s) for p, (s, _) in interests.items()), key=lambda item: -item[1])
            matches = [
                (score, agent, skills)
                for agent in available
                if agent.agent_id not in listed
                for score, skills in [_interest_match(agent, by_score, policy)]
                if score > 0
            ]
            # sorted() is stable, so equal scores keep the longest-idle order of `available`; models are
            # built for those that can make the list only.
            room = policy.max_candidates - len(candidates)
            matched = [
                Candidate(
                    agent_id=agent.agent_id,
                    mode=RoutingMode.INTEREST,
                    pool=agent.pool,
                    score=round(score, 4),
                    skills={
                        p: Skill(proficiency=f, conversion=round(c, 4), calls=n) for p, f, c, n in skills
                    },
                )
                for score, agent, skills in sorted(matches, key=lambda match: -match[0])[: max(room, 0)]
            ]
            candidates += matched
            # The words behind the strongest interests only: the record must stay one write unit.
            worded = set(sorted(interests, key=lambda product: -interests[product][0])[:WORDED_INTERESTS])
            used = {
                product: InterestFact(
                    score=round(score, 2),
                    sources=interest.sources,
                    at=interest.updated_at,
                    evidence=interest.evidence[:EVIDENCE_IN_RECORD] if product in worded else "",
                )
                for product, (score, interest) in interests.items()
            }
            if not matches:
                notes.append(Note(code=NoteCode.NO_AGENT_KNOWS_PRODUCTS))
        else:
            notes.append(Note(code=NoteCode.NO_CURRENT_INTEREST))

    listed = {candidate.agent_id for candidate in candidates}
    rest: Iterable[Routable] = (agent for agent in available if agent.agent_id not in listed)
    if line_products:
        # sorted() is stable: those who know the line's products first, each group longest idle first.
        rest = sorted(rest, key=lambda agent: not _knows_any(agent, line_products))
    candidates += [
        Candidate(
            agent_id=agent.agent_id,
            mode=RoutingMode.ANY_AVAILABLE,
            pool=agent.pool,
            idle_since=agent.idle_since,
            for_line=bool(line_products) and _knows_any(agent, line_products),
        )
        for agent in islice(rest, max(policy.max_candidates - len(candidates), 0))
    ]

    candidates = candidates[: policy.max_candidates]
    if not candidates:
        notes.append(Note(code=NoteCode.NO_AGENT_AVAILABLE))
        return Decision(mode=RoutingMode.FALLBACK, candidates=[], privacy=permissions.facts, notes=notes)
    # The record keeps only the interests that put a listed candidate there.
    kept = {product for candidate in candidates for product in candidate.skills}
    return Decision(
        mode=candidates[0].mode,
        candidates=candidates,
        interests={product: fact for product, fact in used.items() if product in kept},
        privacy=permissions.facts,
        notes=notes,
    )
