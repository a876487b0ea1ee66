"""The agents' side of the table, as people run it: add, change, remove agents and set their presence,
each in one transaction, so nothing is ever half-written.

An agent lives in three items (docs/data-model.md): `AGENT#<id>` (everything about them), their pool's
`ROSTER` (what routing needs) and its `AVAIL` (their seat). Changes to a pool's roster are written on the
condition that the roster is still the version that was read (`v`); the availability item is never
version-checked, since every call rewrites it, only on whether the agent is (or is not yet) in it. The
directory of pools is versioned the same way. A container routes on the roster it read within
`rapport.pools.ROSTER_MAX_AGE` (60 s): a change reaches every call within that time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Self

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from rapport.models import LINE_MARK, Agent, EndpointKind, Presence, line_key
from rapport.pools import Directory, PoolView, line_seats, lines_of, member_of
from rapport.store import ConditionFailed, StoreUnavailable
from rapport.store.dynamodb import DynamoStore
from rapport.store.layout import (
    AVAIL_SK,
    DIRECTORY_KEY,
    MEMBERS,
    ROSTER_SK,
    SEATS,
    agent_key,
    connect_user_key,
    decode_members,
    decode_seats,
    encode_lines,
    encode_member,
    from_item,
    pool_pk,
    to_item,
)

AGENTS_CONFIG = Config(
    connect_timeout=1.0, read_timeout=3.0, retries={"total_max_attempts": 3, "mode": "standard"}
)


@dataclass(frozen=True)
class Pool:
    """A pool as it is now (consistent reads), and the version of its roster."""

    view: PoolView
    version: int | None
    """None: the roster item does not exist; 0: it was never changed through this store."""


def _version_condition(version: int | None, name: str = "v") -> tuple[str, dict[str, Any]]:
    if version is None:
        return "attribute_not_exists(pk)", {}
    if version == 0:
        return f"attribute_exists(pk) AND attribute_not_exists({name})", {}
    return f"{name} = :version", {":version": {"N": str(version)}}


class AgentStore(DynamoStore):
    """rapport's table, as the agents API and `rapport agents` use it."""

    @classmethod
    def for_table(cls, table_name: str, config: Config = AGENTS_CONFIG) -> Self:
        return cls(boto3.session.Session().client("dynamodb", config=config), table_name)

    # -- reading ------------------------------------------------------------------------------------------

    def directory_now(self) -> tuple[Directory, int | None]:
        response = self._call(
            "get_item", None, TableName=self.table_name, Key=to_item(DIRECTORY_KEY), ConsistentRead=True
        )
        item = response.get("Item")
        if not item:
            return Directory(), None
        values = from_item(item)
        return Directory.model_validate(values), int(values.get("v", 0))

    def pool_now(self, pool_id: str, now: float) -> Pool:
        response = self._call(
            "query",
            None,
            TableName=self.table_name,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": pool_pk(pool_id)}},
            ConsistentRead=True,
        )
        items = {item["sk"]["S"]: item for item in response.get("Items", [])}
        roster = items.get(ROSTER_SK)
        version = None if roster is None else int(roster.get("v", {"N": "0"})["N"])
        view = PoolView(
            pool_id, decode_members(roster or {}), decode_seats(items.get(AVAIL_SK, {})), now, now
        )
        return Pool(view, version)

    def stored(self, agent_id: str) -> Agent | None:
        """The agent item alone (no availability)."""
        item = self._agent_item(agent_id)
        return Agent.model_validate(item) if item is not None else None

    def many(self, agent_ids: Sequence[str]) -> dict[str, Agent]:
        """Agent items by id, 100 a `BatchGetItem` (ids with no item are left out)."""
        found: dict[str, Agent] = {}
        for start in range(0, len(agent_ids), 100):
            pending: dict[str, Any] = {
                self.table_name: {
                    "Keys": [to_item(agent_key(agent_id)) for agent_id in agent_ids[start : start + 100]],
                    "ConsistentRead": True,
                }
            }
            while pending:
                response = self._call("batch_get_item", None, RequestItems=pending)
                for item in response.get("Responses", {}).get(self.table_name, []):
                    agent = Agent.model_validate(from_item(item))
                    found[agent.agent_id] = agent
                pending = response.get("UnprocessedKeys", {})
        return found

    # -- writing, one transaction each ----------------------------------------------------------------------

    def _transact(self, actions: Sequence[Mapping[str, Any]]) -> None:
        try:
            self._call("transact_write_items", None, TransactItems=list(actions))
        except StoreUnavailable as error:
            cause = error.__cause__
            reasons = cause.response.get("CancellationReasons", []) if isinstance(cause, ClientError) else []
            if any(reason.get("Code") == "ConditionalCheckFailed" for reason in reasons):
                raise ConditionFailed("changed meanwhile") from error
            raise

    def _agent_put(self, agent: Agent, condition: str) -> dict[str, Any]:
        return {
            "Put": {
                "TableName": self.table_name,
                "Item": to_item({**agent_key(agent.agent_id), **agent.model_dump(mode="json")}),
                "ConditionExpression": condition,
            }
        }

    def _directory_put(self, directory: Directory, version: int | None) -> dict[str, Any]:
        condition, values = _version_condition(version)
        put: dict[str, Any] = {
            "TableName": self.table_name,
            "Item": to_item({**DIRECTORY_KEY, **directory.model_dump(mode="json"), "v": (version or 0) + 1}),
            "ConditionExpression": condition,
        }
        if values:
            put["ExpressionAttributeValues"] = values
        return {"Put": put}

    def _roster_update(
        self, pool: Pool, agent_id: str, set_member: dict[str, Any] | None, must_exist: bool
    ) -> dict[str, Any]:
        """SET (or REMOVE) one member of an existing roster, and step its version."""
        version_condition, values = _version_condition(pool.version)
        presence = "attribute_exists(agents.#a)" if must_exist else "attribute_not_exists(agents.#a)"
        values = {**values, ":next": {"N": str((pool.version or 0) + 1)}}
        if set_member is not None:
            expression = "SET agents.#a = :member, v = :next"
            values[":member"] = set_member
        else:
            expression = "REMOVE agents.#a SET v = :next"
        return {
            "Update": {
                "TableName": self.table_name,
                "Key": {"pk": {"S": pool_pk(pool.view.pool_id)}, "sk": {"S": ROSTER_SK}},
                "UpdateExpression": expression,
                "ConditionExpression": f"({version_condition}) AND {presence}",
                "ExpressionAttributeNames": {"#a": agent_id},
                "ExpressionAttributeValues": values,
            }
        }

    def _seat_update(
        self,
        pool_id: str,
        agent_id: str,
        expression: str,
        condition: str,
        values: Mapping[str, Any],
        names: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        update: dict[str, Any] = {
            "TableName": self.table_name,
            "Key": {"pk": {"S": pool_pk(pool_id)}, "sk": {"S": AVAIL_SK}},
            "UpdateExpression": expression,
            "ConditionExpression": condition,
            "ExpressionAttributeNames": {"#a": agent_id, **(names or {})},
        }
        if values:
            update["ExpressionAttributeValues"] = dict(values)
        return {"Update": update}

    def connect_user(self, user_id: str) -> str | None:
        """The agent whose endpoint is this Amazon Connect user, if any."""
        response = self._call(
            "get_item",
            None,
            TableName=self.table_name,
            Key=to_item(connect_user_key(user_id)),
            ConsistentRead=True,
        )
        item = response.get("Item")
        return str(item["agent_id"]["S"]) if item else None

    def _connect_user_put(self, agent: Agent) -> dict[str, Any]:
        """The Connect user's entry naming this agent (only if no agent has that user yet)."""
        return {
            "Put": {
                "TableName": self.table_name,
                "Item": to_item({**connect_user_key(agent.endpoint.address), "agent_id": agent.agent_id}),
                "ConditionExpression": "attribute_not_exists(pk) OR agent_id = :agent",
                "ExpressionAttributeValues": {":agent": {"S": agent.agent_id}},
            }
        }

    def _connect_user_delete(self, agent: Agent) -> dict[str, Any]:
        return {
            "Delete": {
                "TableName": self.table_name,
                "Key": to_item(connect_user_key(agent.endpoint.address)),
                "ConditionExpression": "attribute_not_exists(pk) OR agent_id = :agent",
                "ExpressionAttributeValues": {":agent": {"S": agent.agent_id}},
            }
        }

    def create(self, agent: Agent, pool: Pool, directory: tuple[Directory, int | None] | None) -> None:
        """Add a new agent to `pool` (a new one when its roster does not exist), and write `directory`
        when it must change to list them. Raises `ConditionFailed` when the agent exists or anything read
        changed meanwhile."""
        pool_id = pool.view.pool_id
        lines, member = encode_lines(line_seats(agent)), encode_member(member_of(agent))
        actions = [self._agent_put(agent, "attribute_not_exists(pk)")]
        if agent.endpoint.kind is EndpointKind.CONNECT:
            actions.append(self._connect_user_put(agent))
        if pool.version is None:
            for sk, field, values, extra in (
                (AVAIL_SK, SEATS, lines, {}),
                (ROSTER_SK, MEMBERS, {agent.agent_id: member}, {"v": {"N": "1"}}),
            ):
                item = {"pk": {"S": pool_pk(pool_id)}, "sk": {"S": sk}, field: {"M": values}}
                actions.append(
                    {
                        "Put": {
                            "TableName": self.table_name,
                            "Item": {**item, **extra},
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    }
                )
        else:
            actions.append(self._roster_update(pool, agent.agent_id, member, must_exist=False))
            sets, names, values = _line_sets(lines)
            actions.append(
                self._seat_update(
                    pool_id,
                    agent.agent_id,
                    f"SET {sets}",
                    "attribute_not_exists(seats.#a)",
                    values,
                    names,
                )
            )
        if directory is not None:
            actions.append(self._directory_put(*directory))
        self._transact(actions)

    def change(
        self,
        agent: Agent,
        pool: Pool,
        directory: tuple[Directory, int | None] | None,
        before: Agent | None = None,
    ) -> None:
        """Write an agent's new routing data, wrap-up time and lines in place, in their pool; `directory`
        when their pools by product change too. Lines added start free; a line taken away while a call
        holds it stays with that call to its end (its hang-up finds the line gone and frees nothing)."""
        lines = lines_of(pool.view.seats, agent.agent_id)
        have = len(lines)
        sets = ["seats.#a.w = :wrap"]
        values: dict[str, Any] = {":wrap": {"N": str(agent.wrap_up_seconds)}}
        names: dict[str, str] = {}
        added = {
            key: seat
            for key, seat in line_seats(agent).items()
            if key != agent.agent_id and int(key.rsplit(LINE_MARK, 1)[1]) > have
        }
        if added:
            more_sets, names, more_values = _line_sets(encode_lines(added))
            sets.append(more_sets)
            values.update(more_values)
        removed = [line_key(agent.agent_id, line) for line in range(agent.max_concurrent_calls + 1, have + 1)]
        names.update({f"#r{index}": key for index, key in enumerate(removed)})
        expression = "SET " + ", ".join(sets)
        if removed:
            expression += " REMOVE " + ", ".join(f"seats.#r{index}" for index in range(len(removed)))
        actions = [
            self._agent_put(agent, "attribute_exists(pk)"),
            self._roster_update(pool, agent.agent_id, encode_member(member_of(agent)), must_exist=True),
            self._seat_update(
                pool.view.pool_id, agent.agent_id, expression, "attribute_exists(seats.#a)", values, names
            ),
        ]
        if before is not None and before.endpoint != agent.endpoint:
            if before.endpoint.kind is EndpointKind.CONNECT:
                actions.append(self._connect_user_delete(before))
            if agent.endpoint.kind is EndpointKind.CONNECT:
                actions.append(self._connect_user_put(agent))
        if directory is not None:
            actions.append(self._directory_put(*directory))
        self._transact(actions)

    def delete(self, agent_id: str, pool: Pool, before: Agent | None = None) -> None:
        """Take an agent out of the table: their item, roster entry and lines, together."""
        more = [(line, seat) for line, seat in lines_of(pool.view.seats, agent_id) if line > 1]
        actions = [
            {
                "Delete": {
                    "TableName": self.table_name,
                    "Key": to_item(agent_key(agent_id)),
                    "ConditionExpression": "attribute_exists(pk)",
                }
            },
            self._roster_update(pool, agent_id, None, must_exist=True),
            self._seat_update(
                pool.view.pool_id,
                agent_id,
                "REMOVE " + ", ".join(["seats.#a", *(f"seats.#r{line}" for line, _ in more)]),
                "attribute_exists(seats.#a)",
                {},
                {f"#r{line}": line_key(agent_id, line) for line, _ in more},
            ),
        ]
        if before is not None and before.endpoint.kind is EndpointKind.CONNECT:
            actions.append(self._connect_user_delete(before))
        self._transact(actions)

    def set_presence(self, agent: Agent, presence: Presence, reason: str, at: float) -> None:
        """Set an agent available, away or offline (their seat and, for the record, their item). A call
        they are on goes on; the presence decides the calls they are offered next."""
        actions = [
            {
                "Update": {
                    "TableName": self.table_name,
                    "Key": to_item(agent_key(agent.agent_id)),
                    "UpdateExpression": "SET presence = :presence, status_reason = :reason, status_at = :at",
                    "ConditionExpression": "attribute_exists(pk)",
                    "ExpressionAttributeValues": to_item(
                        {":presence": presence.value, ":reason": reason, ":at": at}
                    ),
                }
            },
            self._seat_update(
                agent.pool,
                agent.agent_id,
                # Available again: the count of calls not answered in a row starts afresh.
                "SET seats.#a.p = :presence, seats.#a.n = :zero"
                if presence is Presence.ONLINE
                else "SET seats.#a.p = :presence",
                "attribute_exists(seats.#a)",
                {
                    ":presence": {"S": presence.value},
                    **({":zero": {"N": "0"}} if presence is Presence.ONLINE else {}),
                },
            ),
        ]
        self._transact(actions)


def _line_sets(lines: Mapping[str, Any]) -> tuple[str, dict[str, str], dict[str, Any]]:
    """SET actions (and their names and values) that write encoded lines into the availability map."""
    names = {f"#l{index}": key for index, key in enumerate(lines)}
    values = {f":l{index}": value for index, value in enumerate(lines.values())}
    return ", ".join(f"seats.#l{index} = :l{index}" for index in range(len(lines))), names, values


class ConnectPresenceStore(AgentStore):
    """Agents' presence as Amazon Connect's agent event stream reports it."""

    def presence_from_connect(self, agent: Agent, presence: Presence, reason: str, at: float) -> None:
        """Set an agent's presence from a Connect agent event of time `at`, in one transaction, unless an
        event of the same time or later was applied already (a duplicate, or one that arrived out of
        order): then `ConditionFailed`, and nothing changes. Also when the agent is gone."""
        online = presence is Presence.ONLINE
        self._transact(
            [
                {
                    "Update": {
                        "TableName": self.table_name,
                        "Key": to_item(agent_key(agent.agent_id)),
                        "UpdateExpression": (
                            "SET presence = :presence, status_reason = :reason, status_at = :at,"
                            " connect_at = :at"
                        ),
                        "ConditionExpression": (
                            "attribute_exists(pk) AND (attribute_not_exists(connect_at) OR connect_at < :at)"
                        ),
                        "ExpressionAttributeValues": to_item(
                            {":presence": presence.value, ":reason": reason, ":at": at}
                        ),
                    }
                },
                self._seat_update(
                    agent.pool,
                    agent.agent_id,
                    "SET seats.#a.p = :presence, seats.#a.n = :zero"
                    if online
                    else "SET seats.#a.p = :presence",
                    "attribute_exists(seats.#a)",
                    {":presence": {"S": presence.value}, **({":zero": {"N": "0"}} if online else {})},
                ),
            ]
        )


OUTCOME_PREFIX = "OUTCOME#"
OUTCOME_DAYS = 400
"""How long an outcome is remembered, so that the same one sent again is recognised (and for reports)."""


def outcome_key(call_id: str, product: str) -> dict[str, Any]:
    return {"pk": {"S": f"{OUTCOME_PREFIX}{call_id}"}, "sk": {"S": product}}


class OutcomeStore(AgentStore):
    """Outcomes of calls, counted once each in the agent's record (their item and their pool's roster)."""

    def outcome_known(self, call_id: str, product: str) -> bool:
        response = self._call(
            "get_item",
            None,
            TableName=self.table_name,
            Key=outcome_key(call_id, product),
            ConsistentRead=True,
        )
        return "Item" in response

    def count_outcome(
        self,
        agent: Agent,
        pool: Pool,
        call_id: str,
        product: str,
        sale: bool,
        value: float | None,
        at: float,
    ) -> None:
        """One transaction: the outcome (only if it is new), the agent's record on their item and in their
        pool's roster (only if the roster is still the version read). Raises `ConditionFailed` when
        either condition fails: the caller tells a repeat from a race with `outcome_known`."""
        stats = agent.stats.get(product)
        calls, sales = (stats.calls, stats.sales) if stats else (0, 0)
        calls, sales = calls + 1, sales + int(sale)
        version_condition, values = _version_condition(pool.version)
        outcome = {
            "agent_id": agent.agent_id,
            "sale": sale,
            "value": value,
            "at": at,
            "expires_at": at + OUTCOME_DAYS * 86_400,
        }
        self._transact(
            [
                {
                    "Put": {
                        "TableName": self.table_name,
                        "Item": {**outcome_key(call_id, product), **to_item(outcome)},
                        "ConditionExpression": "attribute_not_exists(pk)",
                    }
                },
                {
                    "Update": {
                        "TableName": self.table_name,
                        "Key": {"pk": {"S": pool_pk(pool.view.pool_id)}, "sk": {"S": ROSTER_SK}},
                        "UpdateExpression": "SET agents.#a.x.#p = :pair, v = :next",
                        "ConditionExpression": f"({version_condition}) AND attribute_exists(agents.#a)",
                        "ExpressionAttributeNames": {"#a": agent.agent_id, "#p": product},
                        "ExpressionAttributeValues": {
                            **values,
                            ":pair": {"L": [{"N": str(calls)}, {"N": str(sales)}]},
                            ":next": {"N": str((pool.version or 0) + 1)},
                        },
                    }
                },
                {
                    "Update": {
                        "TableName": self.table_name,
                        "Key": to_item(agent_key(agent.agent_id)),
                        "UpdateExpression": "SET stats.#p = :stats",
                        "ConditionExpression": "attribute_exists(pk)",
                        "ExpressionAttributeNames": {"#p": product},
                        "ExpressionAttributeValues": to_item({":stats": {"calls": calls, "sales": sales}}),
                    }
                },
            ]
        )
