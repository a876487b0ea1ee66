"""The learning simulation: ranking that learns from outcomes finds the agents who sell, and sells more
than proficiency alone or longest idle, on the same calls (fixed seed)."""

from __future__ import annotations

from rapport_local.learning import simulate_learning


def test_learned_ranking_finds_the_best_sellers_and_sells_more() -> None:
    tallies = simulate_learning(calls=3000, agents=20, seed=7, window=500)
    learned, proficiency, idle = (tallies[name] for name in ("learned", "proficiency only", "longest idle"))
    assert learned.calls == proficiency.calls == idle.calls > 2900
    # It learns: later calls reach the truly best available agent more often than the first ones.
    first, last = learned.windows[0][1], learned.windows[-1][1]
    assert last > first + 0.05
    # And it beats both baselines on the same calls, in reaching the best agent and in sales.
    assert learned.windows[-1][1] > proficiency.windows[-1][1] > idle.windows[-1][1]
    assert learned.sales_per_1000 > proficiency.sales_per_1000 > idle.sales_per_1000


def test_the_same_seed_gives_the_same_curve() -> None:
    once = simulate_learning(calls=600, agents=10, seed=3, window=200)
    again = simulate_learning(calls=600, agents=10, seed=3, window=200)
    assert {name: tally.windows for name, tally in once.items()} == {
        name: tally.windows for name, tally in again.items()
    }
