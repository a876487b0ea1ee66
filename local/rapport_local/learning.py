"""`rapport simulate-learning`: does ranking learn who sells?

A shop of agents, each with a hidden true conversion per product they know (proficiency is only a hint of
it), takes a stream of calls from callers interested in one product. Three routers take the same calls,
with the same agents free at each call (fixed seed):

- learned: rapport's ranking (interest x proficiency x the upper confidence bound of each agent's
  conversion, learned from the outcomes fed back after every call);
- proficiency only: the same ranking with every record ignored;
- longest idle: no interest data at all, the agent free the longest.

Each call goes to the router's first candidate, ends in a sale with that agent's true rate for the
product, and the outcome is fed back (learned only). Reported per window of calls: the share of calls that
reached the truly best available agent for the caller's product, and sales per 1,000 calls.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from rapport.models import (
    Agent,
    AgentEndpoint,
    CallerContext,
    EndpointKind,
    Interest,
    ProductStats,
)
from rapport.privacy import Permissions, load_rules, permissions
from rapport.routing import RoutingPolicy, choose_agent

PRODUCTS = ("x200-headphones", "smart-tv-q9", "soundbar-s5", "mesh-router-m3", "warranty-plus")
STRATEGIES = ("learned", "proficiency only", "longest idle")
NO_SKILL_RATE = 0.02
"""The true conversion of an agent for a product they do not know."""


@dataclass
class Shop:
    agents: list[Agent]
    truth: dict[tuple[str, str], float]
    """(agent, product) -> the hidden true conversion."""

    def rate(self, agent_id: str, product: str) -> float:
        return self.truth.get((agent_id, product), NO_SKILL_RATE)


def make_shop(rng: random.Random, size: int) -> Shop:
    """Agents who know 1-3 products; a true conversion that proficiency only hints at."""
    agents, truth = [], {}
    for index in range(size):
        agent_id = f"agent-{index:02d}"
        known = rng.sample(PRODUCTS, rng.randint(1, 3))
        proficiency = {product: rng.randint(1, 5) for product in known}
        for product, level in proficiency.items():
            # Between 5 % and 45 %: a little better with proficiency, mostly the person.
            truth[(agent_id, product)] = min(0.45, max(0.05, 0.06 + 0.025 * level + rng.uniform(0.0, 0.25)))
        agents.append(
            Agent(
                agent_id=agent_id,
                endpoint=AgentEndpoint(kind=EndpointKind.VOICE_CONNECTOR, address=agent_id),
                proficiency=proficiency,
            )
        )
    return Shop(agents, truth)


@dataclass
class Tally:
    """One router's calls, calls to the truly best available agent, and sales: in all, and per window."""

    calls: int = 0
    best: int = 0
    sales: int = 0
    windows: list[tuple[int, float, float]] = field(default_factory=list)
    """(calls so far, share to the best available agent, sales per 1,000 calls) of each window."""
    _open: list[int] = field(default_factory=lambda: [0, 0, 0])

    def add(self, best: bool, sale: bool) -> None:
        self.calls += 1
        self.best += best
        self.sales += sale
        self._open = [self._open[0] + 1, self._open[1] + best, self._open[2] + sale]

    def close_window(self, step: int) -> None:
        calls, best, sales = self._open
        if calls:
            self.windows.append((step, best / calls, 1000 * sales / calls))
        self._open = [0, 0, 0]

    @property
    def share_best(self) -> float:
        return self.best / self.calls if self.calls else 0.0

    @property
    def sales_per_1000(self) -> float:
        return 1000 * self.sales / self.calls if self.calls else 0.0


def _permissions(use_interests: bool) -> Permissions:
    rules = load_rules()
    # US callers: interest data on legitimate interest; the strictest set without consent: none.
    return permissions(rules, "US" if use_interests else None, None)


def simulate_learning(
    calls: int = 3000, agents: int = 20, seed: int = 7, window: int = 500
) -> dict[str, Tally]:
    """Play the same calls through the three routers; a tally per router."""
    rng = random.Random(seed)  # noqa: S311 - a reproducible simulation, not a secret
    shop = make_shop(rng, agents)
    stream = [
        (rng.choice(PRODUCTS), [rng.random() < 0.6 for _ in shop.agents], rng.random()) for _ in range(calls)
    ]
    learned_stats: dict[str, dict[str, ProductStats]] = {agent.agent_id: {} for agent in shop.agents}
    idle_since = {name: {agent.agent_id: 0.0 for agent in shop.agents} for name in STRATEGIES}
    tallies = {name: Tally() for name in STRATEGIES}
    with_interests, without = _permissions(True), _permissions(False)
    policy = RoutingPolicy(max_candidates=3)
    for step, (product, free, luck) in enumerate(stream, start=1):
        now = float(step)
        context = CallerContext(interests=[Interest(product=product, score=0.9, updated_at=now)])
        available = [agent for agent, is_free in zip(shop.agents, free, strict=True) if is_free]
        if not available:
            continue
        best_rate = max(shop.rate(agent.agent_id, product) for agent in available)
        for name in STRATEGIES:
            pool = [
                agent.model_copy(
                    update={
                        "idle_since": idle_since[name][agent.agent_id],
                        "stats": learned_stats[agent.agent_id] if name == "learned" else {},
                    }
                )
                for agent in available
            ]
            decision = choose_agent(
                agents=pool,
                context=context,
                permissions=without if name == "longest idle" else with_interests,
                live_interests=[],
                call_tag=None,
                now=now,
                policy=policy,
            )
            chosen = decision.candidates[0].agent_id
            rate = shop.rate(chosen, product)
            sale = luck < rate  # the same luck for every router: only the agent differs
            tallies[name].add(rate >= best_rate, sale)
            idle_since[name][chosen] = now
            if name == "learned":
                record = learned_stats[chosen].get(product, ProductStats())
                learned_stats[chosen][product] = ProductStats(
                    calls=record.calls + 1, sales=record.sales + sale
                )
        if step % window == 0 or step == len(stream):
            for tally in tallies.values():
                tally.close_window(step)
    return tallies


def report(tallies: dict[str, Tally], calls: int, agents: int, seed: int) -> str:
    """The learning curve as a Markdown table, and the totals."""
    lines = [
        f"Learning: {calls} calls, {agents} agents, {len(PRODUCTS)} products, seed {seed}"
        " (each agent free at a call with probability 0.6).",
        "",
        "Share of calls to the truly best available agent, and sales per 1,000 calls, per window:",
        "",
        "| calls | "
        + " | ".join(f"{name}: best" for name in STRATEGIES)
        + " | "
        + " | ".join(f"{name}: sales/1,000" for name in STRATEGIES)
        + " |",
        "|---:|" + "---:|" * (2 * len(STRATEGIES)),
    ]
    rows = zip(*(tallies[name].windows for name in STRATEGIES), strict=True)
    for windows in rows:
        step = windows[0][0]
        shares = " | ".join(f"{share:.0%}" for _, share, _ in windows)
        sales = " | ".join(f"{per:.0f}" for _, _, per in windows)
        lines.append(f"| {step:,} | {shares} | {sales} |")
    totals = " | ".join(f"{tallies[name].share_best:.0%}" for name in STRATEGIES)
    sales_total = " | ".join(f"{tallies[name].sales_per_1000:.0f}" for name in STRATEGIES)
    lines.append(f"| all | {totals} | {sales_total} |")
    return "\n".join(lines)
