"""What the security tests share: a router call whose every answer the SMA would accept, the metrics it
prints, and what the table holds under a caller's key."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from builders import checked_call
from rapport.numbers import caller_key
from rapport.settings import DEVELOPMENT_PEPPER
from rapport.store.dynamodb import DynamoStore
from rapport_local.emf import MetricSink
from rapport_local.lambda_runner import LocalFunction
from rapport_local.sma_driver import SimulatedCall

VICTIM = "+493055501042"  # a German caller with history: known-agent routing on legitimate interest
ATTACKER = "+12025550107"


def key(number: str) -> str:
    return caller_key(number, DEVELOPMENT_PEPPER)


def call(router: LocalFunction, caller: str) -> SimulatedCall:
    return checked_call(router, caller)


@contextlib.contextmanager
def metrics() -> Iterator[MetricSink]:
    sink = MetricSink()
    with contextlib.redirect_stdout(sink):
        yield sink


def count(sink: MetricSink, name: str) -> int:
    return int(sink.totals.counts.get(name, 0))


def items_under(store: DynamoStore, number: str, counts: bool = False) -> list[dict[str, Any]]:
    """The items in the caller's partition: their profile, interests, records and links (and, with
    `counts`, their calls counted for the rate limit, which each of their own calls adds to)."""
    answer = store.client.query(
        TableName=store.table_name,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": f"CALLER#{key(number)}"}},
        ConsistentRead=True,
    )
    items: list[dict[str, Any]] = answer["Items"]
    return [item for item in items if counts or not item["sk"]["S"].startswith("RATE#")]
