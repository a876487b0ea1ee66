"""Interest scores that fade with time, and conversion rates that do not starve new agents."""

from __future__ import annotations

import math
from collections.abc import Mapping

from rapport.models import Interest, ProductStats

DAY = 86_400.0


def faded_score(interest: Interest, now: float, half_life_days: float) -> float:
    """The interest's score halved for every `half_life_days` since it was last seen; 0 once expired."""
    if interest.expires_at is not None and interest.expires_at <= now:
        return 0.0
    age_days = max(0.0, now - interest.updated_at) / DAY
    return float(interest.score * 0.5 ** (age_days / half_life_days))


def with_contribution(
    score: float, updated_at: float, strength: float, at: float, half_life_days: float
) -> tuple[float, float]:
    """The score, and the time it is as of, after one more contribution of `strength` seen at `at`.

    Both are brought to the later of the two times (a signal may arrive after a newer one), then
    combined with diminishing returns: each contribution closes its share of the gap to 1, so repeated
    signals raise a score less and less and never past 1.
    """
    if at >= updated_at:
        faded = score * 0.5 ** ((at - updated_at) / DAY / half_life_days)
        return 1.0 - (1.0 - faded) * (1.0 - strength), at
    faded_strength = strength * 0.5 ** ((updated_at - at) / DAY / half_life_days)
    return 1.0 - (1.0 - score) * (1.0 - faded_strength), updated_at


def conversion_rate(
    stats: Mapping[str, ProductStats], product: str, prior: float, prior_weight: float
) -> float:
    """Sales per call for this product, pulled towards `prior` while there are few calls: the mean of a
    Beta(prior * w, (1 - prior) * w) belief updated with the agent's record.

    An agent with no history scores the prior instead of zero, so a new agent is tried (explored)
    rather than starved by colleagues with a long record.
    """
    return conversion_estimate(stats, product, prior, prior_weight)[0]


def conversion_estimate(
    stats: Mapping[str, ProductStats], product: str, prior: float, prior_weight: float
) -> tuple[float, int]:
    """The estimated conversion for this product (see `conversion_rate`) and the calls it rests on."""
    record = stats.get(product)
    calls, sales = (record.calls, record.sales) if record else (0, 0)
    return (sales + prior * prior_weight) / (calls + prior_weight), calls


def conversion_bound(mean: float, calls: int, prior_weight: float, exploration: float) -> float:
    """What ranking uses: the estimate plus `exploration` times its uncertainty (the standard deviation
    of the Beta belief), an upper confidence bound. Few calls, wide bound: an agent with little record
    gets calls until the record says how well they sell; a long record narrows it to the estimate."""
    spread = math.sqrt(mean * (1.0 - mean) / (calls + prior_weight + 1.0))
    return min(1.0, mean + exploration * spread)
