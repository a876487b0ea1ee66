"""Designs rapport did not take, measured beside the one it took, on the same DynamoDB Local.

Each design makes the requests of one call with one failover directly, with no handler around them:
NEW_INBOUND_CALL's (the caller's context, the candidates, the reservation, one after the other), the
failover's, the bridge's and the hang-up's. Reported: capacity units as DynamoDB bills them, requests,
and the time of NEW_INBOUND_CALL's requests. docs/data-model.md explains each design and why it lost.

- one roster partition: every agent an item under one key (rapport's first design); a new call reads
  them all;
- agent items + free-agent index: every agent an item of its own, and a sparse global secondary index
  that holds an agent while they are free, keyed by product and idle time; a call reads the free
  agents of the caller's product from the index (eventually consistent) and reserves one by taking
  them out of it;
- pools, link item: rapport's pools, with the last-agent link in an item of its own (written at the
  end of the call) instead of inside the decision record;
- pools (rapport): what rapport does, its container's view of the pool stale (so the pool is read).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from metering import Meter
from rapport.budget import Deadline
from rapport.models import (
    Agent,
    Attempt,
    Candidate,
    DecisionRecord,
    LastAgent,
    Outcome,
    PrivacyFacts,
    RoutingMode,
)
from rapport.pools import call_tag
from rapport.store import LetGo
from rapport.store.dynamodb import DynamoStore
from rapport.store.layout import encode_record, number, pack, to_item
from rapport_local.engine import create_table, local_client

DAY = 86_400.0
HOLD_SECONDS = 35
TALK_SECONDS = 4 * 3600


def record(call_id: str, key: str, now: float, agents: Sequence[str]) -> DecisionRecord:
    """The record every design writes at hang-up: five candidates, two attempts, a link."""
    return DecisionRecord(
        call_id=call_id,
        caller_key=key,
        decided_at=now,
        mode=RoutingMode.ANY_AVAILABLE,
        outcome=Outcome.ENDED,
        agent_id=agents[1],
        candidates=[
            Candidate(agent_id=agent, mode=RoutingMode.ANY_AVAILABLE, pool="0", idle_since=now - 600)
            for agent in agents[:5]
        ],
        privacy=PrivacyFacts(jurisdiction="US", rule_set="US", label="United States", policy_version="1"),
        attempts=[
            Attempt(agent_id=agents[0], mode=RoutingMode.ANY_AVAILABLE, pool="0", at=now),
            Attempt(agent_id=agents[1], mode=RoutingMode.ANY_AVAILABLE, pool="0", at=now + 20),
        ],
        connected_at=now + 25,
        ended_at=now + 300,
        link=LastAgent(agent_id=agents[1], pool="0", call_id=call_id, at=now, expires_at=now + 180 * DAY),
        expires_at=now + 180 * DAY,
    )


class Design:
    name = ""

    def __init__(self, client: Any, table: str) -> None:
        self.client = client
        self.table = table

    def seed(self, agents: Sequence[Agent]) -> None:
        raise NotImplementedError

    def inbound(self, key: str, product: str, tag: str, now: float) -> list[str]:
        """The caller's context, the candidates, the reservation of the first; returns the candidates."""
        raise NotImplementedError

    def failover(self, missed: str, next_agent: str, tag: str, now: float) -> None:
        raise NotImplementedError

    def bridge(self, agent: str, tag: str, now: float) -> None:
        raise NotImplementedError

    def hangup(self, agent: str, tag: str, now: float, finished: DecisionRecord) -> None:
        raise NotImplementedError

    def context(self, key: str) -> None:
        self.client.query(
            TableName=self.table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": f"CALLER#{key}"}},
            ScanIndexForward=False,
            Limit=14,
        )

    def batch(self, items: Sequence[dict[str, Any]]) -> None:
        for start in range(0, len(items), 25):
            pending: dict[str, Any] = {
                self.table: [{"PutRequest": {"Item": item}} for item in items[start : start + 25]]
            }
            while pending:
                pending = self.client.batch_write_item(RequestItems=pending).get("UnprocessedItems", {})


class RosterPartition(Design):
    name = "one roster partition"

    def seed(self, agents: Sequence[Agent]) -> None:
        self.batch(
            [
                to_item({"pk": "AGENTS", "sk": f"AGENT#{a.agent_id}", **a.model_dump(mode="json")})
                for a in agents
            ]
        )

    def inbound(self, key: str, product: str, tag: str, now: float) -> list[str]:
        self.context(key)
        free: list[tuple[float, str]] = []
        params: dict[str, Any] = {
            "TableName": self.table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": "AGENTS"}},
        }
        while True:
            page = self.client.query(**params)
            free += [
                (float(item["idle_since"]["N"]), item["agent_id"]["S"])
                for item in page["Items"]
                if float(item["busy_until"]["N"]) <= now
            ]
            if "LastEvaluatedKey" not in page:
                break
            params["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        chosen = [agent for _, agent in sorted(free)[:5]]
        self._set(chosen[0], "SET busy_until = :until, held_by = :tag", now + HOLD_SECONDS, tag, now, True)
        return chosen

    def _set(self, agent: str, update: str, until: float, tag: str, now: float, free_needed: bool) -> None:
        condition = "busy_until <= :now" if free_needed else "held_by = :tag"
        self.client.update_item(
            TableName=self.table,
            Key={"pk": {"S": "AGENTS"}, "sk": {"S": f"AGENT#{agent}"}},
            UpdateExpression=update,
            ConditionExpression=condition,
            ExpressionAttributeValues={
                name: value
                for name, value in ((":until", number(until)), (":tag", {"S": tag}), (":now", number(now)))
                if name in update or name in condition
            },
        )

    def failover(self, missed: str, next_agent: str, tag: str, now: float) -> None:
        self._set(missed, "SET busy_until = :now, idle_since = :now REMOVE held_by", now, tag, now, False)
        self._set(next_agent, "SET busy_until = :until, held_by = :tag", now + HOLD_SECONDS, tag, now, True)

    def bridge(self, agent: str, tag: str, now: float) -> None:
        self._set(agent, "SET busy_until = :until", now + TALK_SECONDS, tag, now, False)

    def hangup(self, agent: str, tag: str, now: float, finished: DecisionRecord) -> None:
        self._set(agent, "SET busy_until = :now, idle_since = :now REMOVE held_by", now, tag, now, False)
        self.client.put_item(TableName=self.table, Item=encode_record(finished))


class FreeAgentIndex(Design):
    name = "agent items + free-agent index"

    @staticmethod
    def create(client: Any, table: str) -> None:
        client.create_table(
            TableName=table,
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[
                {"AttributeName": name, "AttributeType": kind}
                for name, kind in (("pk", "S"), ("sk", "S"), ("free_for", "S"), ("free_since", "N"))
            ],
            KeySchema=[
                {"AttributeName": "pk", "KeyType": "HASH"},
                {"AttributeName": "sk", "KeyType": "RANGE"},
            ],
            GlobalSecondaryIndexes=[
                {
                    "IndexName": "free",
                    "KeySchema": [
                        {"AttributeName": "free_for", "KeyType": "HASH"},
                        {"AttributeName": "free_since", "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "ALL"},
                }
            ],
        )

    def seed(self, agents: Sequence[Agent]) -> None:
        self.product_of = {a.agent_id: next(iter(a.proficiency)) for a in agents}
        self.batch(
            [
                to_item(
                    {
                        "pk": f"AGENT#{a.agent_id}",
                        "sk": "PROFILE",
                        **a.model_dump(mode="json"),
                        "free_for": f"FREE#{self.product_of[a.agent_id]}",
                        "free_since": a.idle_since,
                    }
                )
                for a in agents
            ]
        )

    def _update(self, agent: str, update: str, condition: str, values: dict[str, Any]) -> None:
        self.client.update_item(
            TableName=self.table,
            Key={"pk": {"S": f"AGENT#{agent}"}, "sk": {"S": "PROFILE"}},
            UpdateExpression=update,
            ConditionExpression=condition,
            ExpressionAttributeValues=values,
        )

    def _take(self, agent: str, tag: str, now: float) -> None:
        self._update(
            agent,
            "SET held_by = :tag, busy_until = :until REMOVE free_for, free_since",
            "attribute_exists(free_for)",
            {":tag": {"S": tag}, ":until": number(now + HOLD_SECONDS)},
        )

    def _free(self, agent: str, tag: str, now: float) -> None:
        self._update(
            agent,
            "SET free_for = :free, free_since = :now, busy_until = :now REMOVE held_by",
            "held_by = :tag",
            {":free": {"S": f"FREE#{self.product_of[agent]}"}, ":now": number(now), ":tag": {"S": tag}},
        )

    def inbound(self, key: str, product: str, tag: str, now: float) -> list[str]:
        self.context(key)
        page = self.client.query(
            TableName=self.table,
            IndexName="free",
            KeyConditionExpression="free_for = :free",
            ExpressionAttributeValues={":free": {"S": f"FREE#{product}"}},
            Limit=10,
        )
        chosen = [item["agent_id"]["S"] for item in page["Items"]][:5]
        self._take(chosen[0], tag, now)
        return chosen

    def failover(self, missed: str, next_agent: str, tag: str, now: float) -> None:
        self._free(missed, tag, now)
        self._take(next_agent, tag, now)

    def bridge(self, agent: str, tag: str, now: float) -> None:
        self._update(
            agent,
            "SET busy_until = :until",
            "held_by = :tag",
            {":until": number(now + TALK_SECONDS), ":tag": {"S": tag}},
        )

    def hangup(self, agent: str, tag: str, now: float, finished: DecisionRecord) -> None:
        self._free(agent, tag, now)
        self.client.put_item(TableName=self.table, Item=encode_record(finished))


class Pools(Design):
    name = "pools (rapport)"

    def seed(self, agents: Sequence[Agent]) -> None:
        self.store = DynamoStore(self.client, self.table)
        self.store.load_roster(agents)
        # Pools are numbered in packing order (rapport.store.dynamodb.DynamoStore.load_roster).
        self.pool_of = {a.agent_id: str(index) for index, members in enumerate(pack(agents)) for a in members}
        self.pools_of = dict(self.store.directory(Deadline(60)).by_product)

    def inbound(self, key: str, product: str, tag: str, now: float) -> list[str]:
        deadline = Deadline(30)
        self.store.caller_context(key, now, deadline)
        view = self.store.pool(self.pools_of[product][0], now, deadline)
        free = sorted((a.idle_since, a.agent_id) for a in view.agents if a.is_available(now))
        chosen = [agent for _, agent in free[:5]]
        self.store.reserve(view.pool_id, chosen[0], tag, now, now + HOLD_SECONDS, deadline)
        return chosen

    def failover(self, missed: str, next_agent: str, tag: str, now: float) -> None:
        pool = self.pool_of[missed]
        self.store.reserve(
            pool, next_agent, tag, now, now + HOLD_SECONDS, Deadline(30), LetGo(missed, missed=True)
        )

    def bridge(self, agent: str, tag: str, now: float) -> None:
        self.store.connect(self.pool_of[agent], agent, tag, now, Deadline(30))

    def hangup(self, agent: str, tag: str, now: float, finished: DecisionRecord) -> None:
        self.store.release(self.pool_of[agent], agent, tag, now, True, Deadline(30))
        self.store.put_record(finished, Deadline(30))


class PoolsWithLinkItem(Pools):
    name = "pools, link in an item of its own"

    def hangup(self, agent: str, tag: str, now: float, finished: DecisionRecord) -> None:
        super().hangup(agent, tag, now, finished.model_copy(update={"link": None}))
        assert finished.link is not None
        self.client.put_item(
            TableName=self.table,
            Item=to_item(
                {
                    "pk": f"CALLER#{finished.caller_key}",
                    "sk": "LAST_AGENT",
                    **finished.link.model_dump(mode="json"),
                    "expires_at": finished.link.expires_at,
                }
            ),
        )


DESIGNS: list[type[Design]] = [RosterPartition, FreeAgentIndex, PoolsWithLinkItem, Pools]


@dataclass
class Measured:
    inbound_ms: list[float] = field(default_factory=list)
    units: list[float] = field(default_factory=list)
    requests: list[int] = field(default_factory=list)


def measure(
    endpoint: str, rosters: Mapping[int, Sequence[Agent]], calls: int
) -> dict[str, dict[int, Measured]]:
    """Every design with every roster, on tables of their own: `calls` calls each (after a few to warm up),
    the designs taking turns call by call."""
    results: dict[str, dict[int, Measured]] = {design.name: {} for design in DESIGNS}
    for size, agents in rosters.items():
        products = sorted({product for agent in agents for product in agent.proficiency})
        designs: list[Design] = []
        for kind in DESIGNS:
            table = f"rapport-alt-{size}-{len(designs)}"
            client = local_client(endpoint)
            if kind is FreeAgentIndex:
                FreeAgentIndex.create(client, table)
            else:
                create_table(endpoint, table, stream=False)
            design = kind(client, table)
            design.seed(agents)
            designs.append(design)
        meters = {design.name: Meter() for design in designs}
        for design in designs:
            meters[design.name].attach(design.client)
        for index in range(calls + 5):
            for design in designs:
                measured = results[design.name].setdefault(size, Measured())
                meter = meters[design.name]
                before = meter.snapshot()
                inbound_ms = one_call(design, index, products[index % len(products)], time.time())
                after = meter.snapshot()
                if index >= 5:
                    measured.inbound_ms.append(inbound_ms)
                    measured.requests.append(after[0] - before[0])
                    measured.units.append(after[2] - before[2])
    return results


def one_call(design: Design, index: int, product: str, now: float) -> float:
    key = f"{index:064x}"
    tag = call_tag(f"{design.name}-{index}")
    started = time.perf_counter()
    chosen = design.inbound(key, product, tag, now)
    inbound_ms = (time.perf_counter() - started) * 1000
    # The later events happen "now" too, so that the agents are free again for the next call.
    design.failover(chosen[0], chosen[1], tag, now)
    design.bridge(chosen[1], tag, now)
    design.hangup(chosen[1], tag, now, record(f"alt-{index}", key, now, chosen))
    return inbound_ms


def section(results: dict[str, dict[int, Measured]]) -> list[str]:
    ours = results[Pools.name]
    lines = [
        "## Designs not taken, measured in the same run",
        "",
        "Each design's own requests for a call with one failover (no handler): NEW_INBOUND_CALL's",
        "requests one after the other (context, candidates, reservation), then the failover, the bridge",
        "and the hang-up. rapport's row reads the pool on every call; a warm container mostly does not.",
        "See docs/data-model.md.",
        "",
        "| agents | design | NEW_INBOUND_CALL requests ms (median) | vs rapport | requests per call"
        " | units per call (billed) |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for size in sorted(ours):
        for name, by_size in results.items():
            measured = by_size[size]
            median = statistics.median(measured.inbound_ms)
            relative = median / statistics.median(ours[size].inbound_ms)
            lines.append(
                f"| {size:,} | {name} | {median:.2f} | {relative:.2f}×"
                f" | {statistics.mean(measured.requests):.1f} | {statistics.mean(measured.units):.2f} |"
            )
    return lines
