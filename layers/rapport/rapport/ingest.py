"""Signals in, fading interest scores out: the core of SignalsFunction, whatever the signals came through.

For a batch: each signal is read as interest (its products, or its text matched against the catalog);
the callers' profiles and interest items are read at once; the privacy gate drops what may not be kept
(interest routing needs consent there and none is on record, or the caller objected); the contributions
are added to the scores; and everything is written at once, each signal counted exactly once.
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

from rapport.models import CallerProfile, Contribution, Interest, Product
from rapport.numbers import caller_key
from rapport.privacy import Rules, permissions
from rapport.scoring import DAY, with_contribution
from rapport.signals import Rejection, Signal, SignalRejected
from rapport.store import StoreError
from rapport.store.signals import MAX_ACTIONS_PER_WRITE, CallerWrite, SignalStore
from rapport.textmatch import Matcher

KEEP_CONTRIBUTIONS = 3
"""Contributions kept with each interest to explain it: the newest."""
KEEP_SOURCES = 4
SEEN_SIGNALS = 12
"""Signals an interest item remembers; older ones it must still recognise get a `SIGNAL#` item."""
SIGNAL_MEMORY_DAYS = 15
"""How long a counted signal's id is remembered: longer than any redelivery (SQS keeps a message at most
14 days)."""
EVIDENCE_CHARS = 60
SIGNAL_ID_CHARS = 40
"""Of a signal's id, kept with its contribution to explain it (its hash, whole, recognises it again). With
the newest 3 contributions, 60 characters of evidence and 12 remembered signals, an interest item stays
within one kilobyte: one write unit (two in a transaction)."""
CATALOG_SECONDS = 60.0
"""How long a container uses the catalog it read before reading it again."""
_WRITE_ROUNDS = 6
_BACKOFF_SECONDS = 0.01


class Status(StrEnum):
    STORED = "stored"
    DUPLICATE = "duplicate"
    """Counted before: delivered again."""
    NO_INTEREST = "no_interest"
    """Read, but raises no interest (a text that names no product, or only to complain)."""
    NOT_PERMITTED = "not_permitted"
    """Not kept: interest routing needs consent in the caller's jurisdiction and none is on record."""
    OBJECTED = "objected"
    """Dropped: the caller objected to profile-based routing."""
    EXPIRED = "expired"
    """Observed longer ago than the jurisdiction keeps interests."""
    REJECTED = "rejected"
    FAILED = "failed"
    """Not stored for now (DynamoDB failing or busy): deliver it again."""


@dataclass(frozen=True)
class Outcome:
    status: Status
    error: str = ""
    products: tuple[str, ...] = ()

    @property
    def retry(self) -> bool:
        return self.status is Status.FAILED


@dataclass(frozen=True)
class Part:
    """One product's share of one signal."""

    product: str
    strength: float
    evidence: str


@dataclass
class _Pending:
    index: int
    signal: Signal
    key: str
    region: str | None
    parts: list[Part]

    @property
    def signal_key(self) -> str:
        return signal_key(self.signal.signal_id)


def signal_key(signal_id: str) -> str:
    """What an interest remembers of a signal id: 16 hex characters of its hash (ids may be long)."""
    return hashlib.blake2b(signal_id.encode(), digest_size=8).hexdigest()


@dataclass
class _CallerBatch:
    key: str
    region: str | None
    signals: list[_Pending] = field(default_factory=list)


class Catalog:
    """The catalog as this container last read it, and its matcher; read again after `CATALOG_SECONDS`."""

    def __init__(
        self, load: Callable[[], list[Product]], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._load = load
        self._clock = clock
        self._read_at: float | None = None
        self._matcher = Matcher(())

    def matcher(self) -> Matcher:
        if self._read_at is None or self._clock() - self._read_at > CATALOG_SECONDS:
            self._matcher = Matcher(self._load())
            self._read_at = self._clock()
        return self._matcher


def parts_of(signal: Signal, matcher: Matcher) -> list[Part]:
    """What one signal says about which products. `SignalRejected` for a product not in the catalog."""
    if signal.products is not None:
        unknown = [p.product for p in signal.products if p.product not in matcher.products]
        if unknown:
            raise SignalRejected(
                Rejection.UNKNOWN_PRODUCT,
                [f"products: not in the catalog: {', '.join(sorted(set(unknown)))}"],
            )
        strongest: dict[str, float] = {}
        for item in signal.products:
            strongest[item.product] = max(strongest.get(item.product, 0.0), item.strength)
        return [Part(product, strength, "") for product, strength in strongest.items() if strength > 0]
    assert signal.text is not None
    found = matcher.match(signal.text, signal.language).interests
    return [Part(item.product, item.strength, item.evidence[:EVIDENCE_CHARS]) for item in found]


class SignalIngest:
    def __init__(
        self, store: SignalStore, catalog: Catalog, rules: Rules, pepper: str, half_life_days: float
    ) -> None:
        self._store = store
        self._catalog = catalog
        self._rules = rules
        self._pepper = pepper
        self._half_life = half_life_days

    def ingest(self, signals: Sequence[Signal], now: float) -> list[Outcome]:
        """Outcomes in the order of `signals`. Raises nothing for a bad signal; DynamoDB failing makes
        the signals it touched `FAILED` (to be delivered again), never half-counted."""
        outcomes: list[Outcome | None] = [None] * len(signals)
        callers: dict[str, _CallerBatch] = {}
        seen: set[tuple[str, str]] = set()
        matcher = self._catalog.matcher()
        for index, signal in enumerate(signals):
            number = signal.number
            key = caller_key(number.e164, self._pepper)
            if (key, signal.signal_id) in seen:
                outcomes[index] = Outcome(Status.DUPLICATE)
                continue
            seen.add((key, signal.signal_id))
            try:
                parts = parts_of(signal, matcher)
            except SignalRejected as rejected:
                outcomes[index] = Outcome(Status.REJECTED, str(rejected))
                continue
            if not parts:
                outcomes[index] = Outcome(Status.NO_INTEREST)
                continue
            batch = callers.setdefault(key, _CallerBatch(key, number.region))
            batch.signals.append(_Pending(index, signal, key, number.region, parts))
        if callers:
            for index, outcome in self._store_all(list(callers.values()), now).items():
                outcomes[index] = outcome
        return [outcome or Outcome(Status.FAILED, "not processed") for outcome in outcomes]

    def _store_all(self, callers: list[_CallerBatch], now: float) -> dict[int, Outcome]:
        outcomes: dict[int, Outcome] = {}
        # Profiles (for the gate) and interests (to add to) in one read: most signals are kept.
        pairs = [(c.key, part.product) for c in callers for p in c.signals for part in p.parts]
        try:
            profiles, current = self._store.read([c.key for c in callers], pairs)
        except StoreError as error:
            return {p.index: Outcome(Status.FAILED, str(error)) for c in callers for p in c.signals}
        kept: list[_CallerBatch] = []
        for batch in callers:
            profile = profiles.get(batch.key)
            allowed, retention_days = self._gate(batch, profile)
            if not allowed:
                status = Status.OBJECTED if profile is not None and profile.objected else Status.NOT_PERMITTED
                outcomes.update({p.index: Outcome(status) for p in batch.signals})
                continue
            oldest = now - retention_days * DAY
            fresh = []
            for pending in batch.signals:
                if pending.signal.observed < oldest:
                    outcomes[pending.index] = Outcome(Status.EXPIRED)
                else:
                    fresh.append(pending)
            # One caller's signals go in chunks that fit one transaction with their interest items.
            for start in range(0, len(fresh), MAX_ACTIONS_PER_WRITE // 2):
                kept.append(
                    _CallerBatch(batch.key, batch.region, fresh[start : start + MAX_ACTIONS_PER_WRITE // 2])
                )
        retention = {batch.key: self._gate(batch, profiles.get(batch.key))[1] for batch in kept}
        for round_ in range(_WRITE_ROUNDS):
            if not kept:
                break
            if round_:
                # Others are writing the same interests: let them finish, at random, before reading again.
                time.sleep(random.uniform(0, _BACKOFF_SECONDS * 2**round_))  # noqa: S311 - jitter, not a secret
            kept = self._write_round(kept, retention, now, outcomes, current if round_ == 0 else None)
        for batch in kept:
            outcomes.update(
                {p.index: Outcome(Status.FAILED, "DynamoDB kept refusing the write") for p in batch.signals}
            )
        return outcomes

    def _gate(self, batch: _CallerBatch, profile: CallerProfile | None) -> tuple[bool, int]:
        granted = permissions(self._rules, batch.region, profile)
        return granted.use_interests, granted.retention_days.interest

    def _write_round(
        self,
        batches: list[_CallerBatch],
        retention: dict[str, int],
        now: float,
        outcomes: dict[int, Outcome],
        current: dict[tuple[str, str], Interest | None] | None,
    ) -> list[_CallerBatch]:
        """One write of every batch (after reading their interests, unless `current` has them); the
        batches to try again (duplicates dropped)."""
        if current is None:
            pairs = [(b.key, part.product) for b in batches for p in b.signals for part in p.parts]
            try:
                _, current = self._store.read([], pairs)
            except StoreError as error:
                for batch in batches:
                    outcomes.update({p.index: Outcome(Status.FAILED, str(error)) for p in batch.signals})
                return []
        try:
            batches = self._without_repeats(batches, current, now, outcomes)
        except StoreError as error:
            for batch in batches:
                outcomes.update({p.index: Outcome(Status.FAILED, str(error)) for p in batch.signals})
            return []
        writes = [self._caller_write(b, current, retention[b.key], now) for b in batches]
        try:
            results = self._store.write(writes)
        except StoreError as error:
            for batch in batches:
                outcomes.update({p.index: Outcome(Status.FAILED, str(error)) for p in batch.signals})
            return []
        again: list[_CallerBatch] = []
        for batch, result in zip(batches, results, strict=True):
            if result.written:
                for pending in batch.signals:
                    products = tuple(part.product for part in pending.parts)
                    outcomes[pending.index] = Outcome(Status.STORED, products=products)
            else:
                again.append(batch)  # changed meanwhile, or caught in another caller's failed write
        return again

    def _without_repeats(
        self,
        batches: list[_CallerBatch],
        current: dict[tuple[str, str], Interest | None],
        now: float,
        outcomes: dict[int, Outcome],
    ) -> list[_CallerBatch]:
        """The batches without the signals counted before: those their interests remember, and those
        with a `SIGNAL#` item where an interest had to forget some lately."""
        repeated: set[int] = set()
        doubtful: dict[tuple[str, str], list[int]] = {}
        for batch in batches:
            for pending in batch.signals:
                items = [current.get((batch.key, part.product)) for part in pending.parts]
                known = [item for item in items if item is not None]
                if any(pending.signal_key in item.seen for item in known):
                    repeated.add(pending.index)
                elif any(item.forgotten_until > now for item in known):
                    doubtful.setdefault((batch.key, pending.signal_key), []).append(pending.index)
        if doubtful:
            for pair in self._store.counted(doubtful):
                repeated.update(doubtful[pair])
        kept = []
        for batch in batches:
            fresh = [pending for pending in batch.signals if pending.index not in repeated]
            outcomes.update(
                {p.index: Outcome(Status.DUPLICATE) for p in batch.signals if p.index in repeated}
            )
            if fresh:
                kept.append(_CallerBatch(batch.key, batch.region, fresh))
        return kept

    def _caller_write(
        self,
        batch: _CallerBatch,
        current: dict[tuple[str, str], Interest | None],
        retention_days: int,
        now: float,
    ) -> CallerWrite:
        by_product: dict[str, list[Contribution]] = {}
        for pending in batch.signals:
            at = min(pending.signal.observed, now)  # a clock ahead of ours does not push a score forward
            for part in pending.parts:
                by_product.setdefault(part.product, []).append(
                    Contribution(
                        source=pending.signal.source.value,
                        at=at,
                        strength=part.strength,
                        evidence=part.evidence,
                        signal_id=pending.signal.signal_id[:SIGNAL_ID_CHARS],
                    )
                )
        interests = []
        versions: dict[str, int | None] = {}
        forgotten: dict[str, float] = {}
        for product, contributions in by_product.items():
            before = current.get((batch.key, product))
            versions[product] = before.version if before else None
            interest, dropped = self._added(product, before, contributions, retention_days, now)
            interests.append(interest)
            for key in dropped:
                forgotten[key] = now + SIGNAL_MEMORY_DAYS * DAY
        return CallerWrite(
            caller_key=batch.key, interests=interests, read_versions=versions, forgotten=forgotten
        )

    def _added(
        self,
        product: str,
        before: Interest | None,
        contributions: list[Contribution],
        retention_days: int,
        now: float,
    ) -> tuple[Interest, list[str]]:
        """The interest with the new contributions added, in the order they were observed, and the
        signals it forgets that could still be delivered again."""
        version = before.version if before else 0
        remembered = before.seen if before else []
        forgotten_until = before.forgotten_until if before else 0.0
        if before is not None and before.expires_at is not None and before.expires_at <= now:
            before = None  # expired, not yet deleted by TTL: it counts for nothing, and starts afresh
        score, updated_at = (before.score, before.updated_at) if before else (0.0, 0.0)
        for contribution in sorted(contributions, key=lambda c: c.at):
            score, updated_at = with_contribution(
                score, updated_at, contribution.strength, contribution.at, self._half_life
            )
        recent = sorted([*(before.recent if before else []), *contributions], key=lambda c: -c.at)
        recent = recent[:KEEP_CONTRIBUTIONS]
        sources = list(dict.fromkeys(c.source for c in recent))[:KEEP_SOURCES]
        # The words that decide: those of the contribution that weighs most now.
        weighed = [c for c in recent if c.evidence]
        evidence = max(
            weighed,
            key=lambda c: c.strength * 0.5 ** ((updated_at - c.at) / DAY / self._half_life),
            default=None,
        )
        # Dropped from memory, a signal is kept by a SIGNAL# item for as long as it could come again
        # (counted from now: when it was counted is not kept, which keeps the item under 1 KB).
        seen = list(dict.fromkeys([*remembered, *(signal_key(c.signal_id) for c in contributions)]))
        kept, dropped = seen[-SEEN_SIGNALS:], seen[:-SEEN_SIGNALS]
        if dropped:
            forgotten_until = now + SIGNAL_MEMORY_DAYS * DAY
        interest = Interest(
            product=product,
            score=round(min(score, 1.0), 4),
            updated_at=updated_at,
            sources=sources,
            evidence=evidence.evidence if evidence else "",
            expires_at=updated_at + retention_days * DAY,
            recent=recent,
            seen=kept,
            forgotten_until=forgotten_until,
            version=version + 1,
        )
        return interest, dropped
