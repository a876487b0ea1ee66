"""Interest scores as signals add up, and the size of the item that holds them (pure, no table)."""

from __future__ import annotations

import pytest
from rapport.ingest import EVIDENCE_CHARS, KEEP_CONTRIBUTIONS, SEEN_SIGNALS, SIGNAL_ID_CHARS
from rapport.models import Contribution, Interest
from rapport.scoring import DAY, faded_score, with_contribution
from rapport.store.layout import item_size, to_item

NOW = 1_790_000_000.0


def test_each_contribution_closes_its_share_of_the_gap_to_one() -> None:
    score, at = with_contribution(0.0, 0.0, 0.6, NOW, 14)
    assert score == pytest.approx(0.6)
    assert at == NOW
    score, at = with_contribution(score, at, 0.6, NOW, 14)
    assert score == pytest.approx(1 - 0.4 * 0.4)
    for _ in range(50):
        score, at = with_contribution(score, at, 0.6, NOW, 14)
    assert score <= 1.0


def test_a_later_signal_counts_on_the_faded_score_and_an_earlier_one_counts_faded() -> None:
    later, at = with_contribution(0.5, NOW, 0.5, NOW + 14 * DAY, 14)
    assert later == pytest.approx(1 - 0.75 * 0.5)
    assert at == NOW + 14 * DAY
    earlier, at = with_contribution(0.5, NOW, 0.5, NOW - 14 * DAY, 14)
    assert earlier == pytest.approx(1 - 0.5 * 0.75)
    assert at == NOW


def test_readers_halve_a_score_every_half_life() -> None:
    interest = Interest(product="x200", score=0.8, updated_at=NOW)
    assert faded_score(interest, NOW + 28 * DAY, 14) == pytest.approx(0.2)


def test_the_largest_interest_item_stays_within_one_write_unit() -> None:
    longest = "p" * 64  # the longest product id
    contributions = [
        Contribution(
            source="social",
            at=NOW + index + 0.123,
            strength=0.6,
            evidence="x" * EVIDENCE_CHARS,
            signal_id="s" * SIGNAL_ID_CHARS,
        )
        for index in range(KEEP_CONTRIBUTIONS)
    ]
    interest = Interest(
        product=longest,
        score=0.8765,
        updated_at=NOW + 0.12,
        sources=["social", "web", "crm", "call"],
        evidence="e" * EVIDENCE_CHARS,
        expires_at=NOW + 365 * DAY,
        recent=contributions,
        seen=["f" * 16] * SEEN_SIGNALS,
        forgotten_until=NOW + 15 * DAY,
        version=123_456,
    )
    item = {
        "pk": "CALLER#" + "a" * 64,
        "sk": f"INTEREST#{longest}",
        **interest.model_dump(mode="json", by_alias=True),
    }
    assert item_size(to_item(item)) <= 1024
