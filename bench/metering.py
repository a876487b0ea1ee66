"""Requests and capacity units of one DynamoDB client, as DynamoDB Local reports them and as DynamoDB
bills them, and when each request ran (to count round trips)."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from rapport.store.timing import current_round

READS = {"GetItem", "Query", "BatchGetItem"}


@dataclass
class Meter:
    """Counts one client's DynamoDB requests and capacity units. `billed` applies DynamoDB's published rules
    where DynamoDB Local reports less: a read costs at least half a unit, and a conditional write that
    fails still costs its write unit."""

    requests: Counter[str] = field(default_factory=Counter)
    reported: float = 0.0
    billed: float = 0.0
    spans: list[tuple[float, float, int | None]] = field(default_factory=list)
    """When each request started and ended, and the round it was sent in with others (None: alone)."""

    def attach(self, client: Any) -> None:
        events = client.meta.events
        events.register("provide-client-params.dynamodb.*", self._ask_for_capacity)
        events.register("before-call.dynamodb.*", self._count)
        events.register("after-call.dynamodb.*", self._add_capacity)

    def _ask_for_capacity(self, params: dict[str, Any], **_: Any) -> None:
        params.setdefault("ReturnConsumedCapacity", "TOTAL")

    def _count(self, model: Any, context: dict[str, Any], **_: Any) -> None:
        self.requests[model.name] += 1
        context["bench_started"] = time.perf_counter()
        context["bench_round"] = current_round()

    def _add_capacity(self, parsed: dict[str, Any], model: Any, context: dict[str, Any], **_: Any) -> None:
        self.spans.append(
            (context.get("bench_started", 0.0), time.perf_counter(), context.get("bench_round"))
        )
        consumed = parsed.get("ConsumedCapacity")
        units = sum(
            float(entry.get("CapacityUnits", 0))
            for entry in (consumed if isinstance(consumed, list) else [consumed] if consumed else [])
        )
        self.reported += units
        if parsed.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
            units = max(units, 1.0)
        elif model.name in READS:
            units = max(units, 0.5)
        self.billed += units

    def snapshot(self) -> tuple[int, float, float]:
        return sum(self.requests.values()), self.reported, self.billed

    def round_trips(self, since: int) -> int:
        """Round trips among the requests recorded after the first `since`: requests sent together count
        as one (they share a round, however late a worker thread started its own), and a request that
        starts after every earlier one has ended starts a new one."""
        groups: dict[object, tuple[float, float]] = {}
        for index, (started, finished, round_) in enumerate(self.spans[since:]):
            key = round_ if round_ is not None else ("alone", index)
            first, last = groups.get(key, (started, finished))
            groups[key] = (min(first, started), max(last, finished))
        rounds, ended = 0, float("-inf")
        for started, finished in sorted(groups.values()):
            if started >= ended:
                rounds += 1
                ended = finished
            else:
                ended = max(ended, finished)
        return rounds
