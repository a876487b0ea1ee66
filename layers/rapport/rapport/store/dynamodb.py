"""The one door to DynamoDB: the call path's reads and conditional writes, and the loading of data.

Every call-path method is one request (see `rapport.store.Store`), checks the deadline before it starts,
and turns botocore's errors into `StoreUnavailable` or `ConditionFailed`.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from typing import TYPE_CHECKING, Any, TypeVar

import boto3
from aws_lambda_powertools import Logger
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from rapport import SERVICE_NAME
from rapport.budget import Deadline
from rapport.models import (
    Agent,
    AgentState,
    CallerContext,
    CallerProfile,
    DecisionRecord,
    EndpointKind,
    Interest,
    LastAgent,
    Offer,
    Presence,
    Product,
    RoutingMode,
    agent_of,
)
from rapport.pools import Directory, PoolView, Seat, line_seats, member_of, seated
from rapport.store import MAX_CALL_SECONDS, AgentTaken, ConditionFailed, LetGo, StoreError, StoreUnavailable
from rapport.store.layout import (
    AVAIL_SK,
    CATALOG_PK,
    DECISION_PREFIX,
    DIRECTORY_KEY,
    INTEREST_PREFIX,
    MAX_INTERESTS,
    MEMBERS,
    PROFILE_SK,
    RECENT_RECORDS,
    ROSTER_SK,
    SEATS,
    agent_key,
    caller_pk,
    connect_user_key,
    decided_at,
    decode_link,
    decode_members,
    decode_record,
    decode_seats,
    encode_lines,
    encode_member,
    encode_record,
    from_item,
    number,
    offer_key,
    pack,
    pool_fits,
    pool_items,
    pool_pk,
    rate_key,
    to_item,
)
from rapport.store.timing import one_round, record

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

logger = Logger(service=SERVICE_NAME, child=True)

T = TypeVar("T")

# Tight, explicit limits: botocore's defaults (60 s timeouts, up to 10 attempts) outlast the SMA's 5 s.
# The time budget (rapport.budget) bounds every request further.
CALL_PATH_CONFIG = Config(
    connect_timeout=0.25,
    read_timeout=0.5,
    retries={"total_max_attempts": 2, "mode": "standard"},
    tcp_keepalive=True,
    # The requests are built here from fixed shapes, and DynamoDB checks them anyway: botocore's own
    # check of every parameter costs a third of a millisecond of CPU per request.
    parameter_validation=False,
)
ONE_TRY = Config(retries={"total_max_attempts": 1, "mode": "standard"})
"""For requests that must not wait on a retry (the rate-limit count: a failed one lets the call through)."""
# Do not start a request with less than this left of the budget: it could not finish in time.
MIN_REQUEST_SECONDS = 0.05

# What a context read returns of each item: enough for the profile, the interests and the link.
_CONTEXT_ATTRIBUTES = (
    "sk",
    "expires_at",
    "jurisdiction",
    "consents",
    "objected",
    "objected_at",
    "created_at",
    "product",
    "score",
    "updated_at",
    "sources",
    "evidence",
    "link",
    "m",
)


def _error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", "Unknown"))


def _old_seats(error: ClientError) -> dict[str, Seat]:
    """The availability item as it was when a conditional write failed (DynamoDB returns it on request)."""
    item = error.response.get("Item")
    return decode_seats(item) if isinstance(item, Mapping) else {}


class DynamoStore:
    """rapport's table. Cheap to construct around a client; create the client once per container."""

    def __init__(
        self, client: DynamoDBClient, table_name: str, one_try: DynamoDBClient | None = None
    ) -> None:
        self._client = client
        self.table_name = table_name
        self._workers: ThreadPoolExecutor | None = None
        self._single_try = one_try

    @property
    def client(self) -> DynamoDBClient:
        """The underlying client, e.g. to count requests through its event hooks."""
        return self._client

    @classmethod
    def for_table(cls, table_name: str, config: Config = CALL_PATH_CONFIG) -> DynamoStore:
        """A store with its own client, from a session of its own so that credentials, region and
        endpoint are read now (`AWS_ENDPOINT_URL_DYNAMODB` points it at DynamoDB Local), not taken
        from whatever boto3's default session cached earlier in the process."""
        session = boto3.session.Session()
        # Both clients now, in the container's init: building one costs tens of milliseconds of CPU,
        # which no call's budget should pay. The second (one try) sends the rate-limit count.
        one_try = session.client("dynamodb", config=config.merge(ONE_TRY))
        return cls(session.client("dynamodb", config=config), table_name, one_try)

    # -- plumbing -------------------------------------------------------------------------------------

    def _call(
        self, method: str, deadline: Deadline | None, client: DynamoDBClient | None = None, **params: Any
    ) -> dict[str, Any]:
        # DynamoDB's name for the operation (UpdateItem for update_item), as in its docs.
        operation = self._client.meta.method_to_api_mapping.get(method, method)
        if deadline is not None and deadline.remaining() < MIN_REQUEST_SECONDS:
            raise StoreUnavailable(f"time budget spent before {operation}")
        started = time.perf_counter()
        try:
            response: dict[str, Any] = getattr(client or self._client, method)(**params)
        except ClientError as error:
            code = _error_code(error)
            if code == "ConditionalCheckFailedException":
                record(operation, started, "condition failed")
                raise ConditionFailed(operation) from error
            record(operation, started, code)
            raise StoreUnavailable(f"{operation} failed: {code}") from error
        except BotoCoreError as error:
            record(operation, started, type(error).__name__)
            raise StoreUnavailable(f"{operation} failed: {type(error).__name__}") from error
        record(operation, started, "ok")
        return response

    def together(self, requests: Sequence[Callable[[], T]], deadline: Deadline) -> list[T | StoreError]:
        """One round trip for independent requests: the first runs here, the others on worker threads
        (in this invocation's context, so their timings are recorded with it), none waited on for longer
        than the deadline."""
        if not requests:
            return []
        if self._workers is None:
            self._workers = ThreadPoolExecutor(max_workers=4, thread_name_prefix="rapport-store")
        with one_round():
            futures = [
                self._workers.submit(contextvars.copy_context().run, request) for request in requests[1:]
            ]
            results: list[T | StoreError] = [self._outcome(requests[0])]
        for future in futures:
            try:
                results.append(future.result(timeout=deadline.remaining()))
            except FutureTimeout:
                results.append(StoreUnavailable("time budget spent waiting for DynamoDB"))
            except StoreError as error:
                results.append(error)
        return results

    @staticmethod
    def _outcome(request: Callable[[], T]) -> T | StoreError:
        try:
            return request()
        except StoreError as error:
            return error

    def _raw_pages(self, **params: Any) -> Iterator[dict[str, Any]]:
        """Every item a Query returns, page after page, as DynamoDB's typed attribute maps."""
        while True:
            page = self._call("query", None, TableName=self.table_name, **params)
            yield from page.get("Items", [])
            if "LastEvaluatedKey" not in page:
                return
            params["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    # -- reads on the call path -----------------------------------------------------------------------

    def caller_context(
        self, caller_key: str, now: float, deadline: Deadline | None = None, records: int = RECENT_RECORDS
    ) -> CallerContext:
        """One Query, newest first from PROFILE: the profile, the interests, the latest `records` decision
        records. Expired items are dropped here because TTL deletion can lag by days."""
        names = {f"#a{index}": name for index, name in enumerate(_CONTEXT_ATTRIBUTES)}
        response = self._call(
            "query",
            deadline,
            TableName=self.table_name,
            KeyConditionExpression="pk = :pk AND sk <= :profile",
            ExpressionAttributeValues={":pk": {"S": caller_pk(caller_key)}, ":profile": {"S": PROFILE_SK}},
            ProjectionExpression=", ".join(names),
            ExpressionAttributeNames=names,
            ScanIndexForward=False,
            Limit=1 + MAX_INTERESTS + max(records, 1),
        )
        profile: CallerProfile | None = None
        interests: list[Interest] = []
        last_agent: LastAgent | None = None
        routed: list[float] = []
        for item in map(from_item, response.get("Items", [])):
            expires_at = item.get("expires_at")
            if expires_at is not None and expires_at <= now:
                continue
            sk = item["sk"]
            if sk == PROFILE_SK:
                profile = CallerProfile.model_validate(item)
            elif sk.startswith(INTEREST_PREFIX):
                interests.append(Interest.model_validate(item))
            elif sk.startswith(DECISION_PREFIX):
                if item.get("m") == RoutingMode.INTEREST.value:
                    routed.append(decided_at(sk))
                if last_agent is None and "link" in item:
                    link = decode_link(item["link"], {"pk": caller_pk(caller_key), "sk": sk})
                    if link.expires_at > now:
                        last_agent = link
        return CallerContext(
            profile=profile, interests=interests, last_agent=last_agent, interest_routed_at=routed
        )

    def pool(self, pool_id: str, now: float, deadline: Deadline) -> PoolView:
        response = self._call(
            "query",
            deadline,
            TableName=self.table_name,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": pool_pk(pool_id)}},
        )
        items = {item["sk"]["S"]: item for item in response.get("Items", [])}
        members = decode_members(items.get(ROSTER_SK, {}))
        seats = decode_seats(items.get(AVAIL_SK, {}))
        return PoolView(pool_id, members, seats, roster_at=now, seats_at=now)

    def directory(self, deadline: Deadline) -> Directory:
        response = self._call("get_item", deadline, TableName=self.table_name, Key=to_item(DIRECTORY_KEY))
        item = response.get("Item")
        return Directory.model_validate(from_item(item)) if item else Directory()

    # -- writes on the call path ----------------------------------------------------------------------

    def _update_seats(
        self,
        pool_id: str,
        deadline: Deadline,
        update: str,
        condition: str,
        names: Mapping[str, str],
        values: Mapping[str, Any],
        returns: str = "NONE",
    ) -> dict[str, Any]:
        """One conditional UpdateItem on a pool's availability item. Nothing comes back on success (the
        whole pool would cost more to parse than the write); on failure DynamoDB returns the pool as it is."""
        return self._call(
            "update_item",
            deadline,
            TableName=self.table_name,
            Key={"pk": {"S": pool_pk(pool_id)}, "sk": {"S": AVAIL_SK}},
            UpdateExpression=update,
            ConditionExpression=condition,
            ExpressionAttributeNames=dict(names),
            ExpressionAttributeValues=dict(values),
            ReturnValues=returns,
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )

    def _try_update(self, pool_id: str, deadline: Deadline, **expression: Any) -> dict[str, Any]:
        """`_update_seats`, with a failed condition answered by the pool as it is (`AgentTaken`)."""
        try:
            return self._update_seats(pool_id, deadline, **expression)
        except ConditionFailed as failed:
            cause = failed.__cause__
            seats = _old_seats(cause) if isinstance(cause, ClientError) else {}
            raise AgentTaken(str(failed), seats) from failed

    def reserve(
        self,
        pool_id: str,
        agent_id: str,
        tag: str,
        now: float,
        hold_until: float,
        deadline: Deadline,
        let_go: LetGo | None = None,
    ) -> int | None:
        """Hold line `agent_id` (an agent's first line is their id; see `rapport.models.line_key`) for the
        call tagged `tag`, if its agent is available and the line free (or this call's already)."""
        names = {"#b": agent_id, "#o": agent_of(agent_id)}
        values: dict[str, Any] = {
            ":online": {"S": Presence.ONLINE.value},
            ":ringing": {"S": AgentState.RINGING.value},
            ":now": number(now),
            ":hold": number(hold_until),
            ":tag": {"S": tag},
        }
        holds = "seats.#b.s = :ringing, seats.#b.u = :hold, seats.#b.c = :tag"
        update = f"SET {holds}"
        condition = "seats.#o.p = :online AND (seats.#b.u <= :now OR seats.#b.c = :tag)"
        if let_go is None or let_go.agent_id == agent_id:
            self._try_update(
                pool_id, deadline, update=update, condition=condition, names=names, values=values
            )
            return None
        frees, freed_values = _letting_go(let_go)
        try:
            answer = self._try_update(
                pool_id,
                deadline,
                update=f"SET {holds}, {frees} REMOVE seats.#a.c",
                condition=f"{condition} AND seats.#a.c = :tag",
                names={**names, **_let_go_names(let_go)},
                values={**values, **freed_values},
                returns="UPDATED_NEW" if let_go.missed else "NONE",
            )
            return _missed_in_a_row(answer, let_go)
        except AgentTaken as taken:
            next_seat = taken.seats.get(agent_id)
            first = taken.seats.get(agent_of(agent_id))
            if next_seat is None or first is None or first.presence is not Presence.ONLINE:
                raise
            if not next_seat.open_for(tag, now):
                raise
        # The agent to let go was no longer this call's (a repeated event): reserve without touching them.
        self._try_update(pool_id, deadline, update=update, condition=condition, names=names, values=values)
        return None

    def let_go(self, pool_id: str, agent: LetGo, tag: str, now: float, deadline: Deadline) -> int | None:
        frees, freed_values = _letting_go(agent)
        try:
            answer = self._update_seats(
                pool_id,
                deadline,
                update=f"SET {frees} REMOVE seats.#a.c",
                condition="seats.#a.c = :tag",
                names=_let_go_names(agent),
                values={**freed_values, ":now": number(now), ":tag": {"S": tag}},
                returns="UPDATED_NEW" if agent.missed else "NONE",
            )
        except ConditionFailed:
            return None
        return _missed_in_a_row(answer, agent)

    def set_away(self, pool_id: str, agent_id: str, reason: str, now: float, deadline: Deadline) -> None:
        """Take an agent who keeps not answering out of routing: away, with the reason on their item.
        Raises `ConditionFailed` if they are not available any more (or gone)."""
        self._call(
            "transact_write_items",
            deadline,
            TransactItems=[
                {
                    "Update": {
                        "TableName": self.table_name,
                        "Key": {"pk": {"S": pool_pk(pool_id)}, "sk": {"S": AVAIL_SK}},
                        "UpdateExpression": "SET seats.#a.p = :away",
                        "ConditionExpression": "seats.#a.p = :online",
                        "ExpressionAttributeNames": {"#a": agent_id},
                        "ExpressionAttributeValues": {
                            ":away": {"S": Presence.AWAY.value},
                            ":online": {"S": Presence.ONLINE.value},
                        },
                    }
                },
                {
                    "Update": {
                        "TableName": self.table_name,
                        "Key": to_item(agent_key(agent_id)),
                        "UpdateExpression": "SET presence = :away, status_reason = :reason, status_at = :at",
                        "ConditionExpression": "attribute_exists(pk)",
                        "ExpressionAttributeValues": {
                            ":away": {"S": Presence.AWAY.value},
                            ":reason": {"S": reason},
                            ":at": number(now),
                        },
                    }
                },
            ],
        )

    def connect(self, pool_id: str, agent_id: str, tag: str, now: float, deadline: Deadline) -> None:
        """The call took line `agent_id`: on call, and the agent's count of calls not answered starts
        afresh."""
        self._update_seats(
            pool_id,
            deadline,
            update="SET seats.#b.s = :on_call, seats.#b.u = :until, seats.#o.n = :zero",
            condition="seats.#b.c = :tag",
            names={"#b": agent_id, "#o": agent_of(agent_id)},
            values={
                ":on_call": {"S": AgentState.ON_CALL.value},
                ":until": number(now + MAX_CALL_SECONDS),
                ":zero": {"N": "0"},
                ":tag": {"S": tag},
            },
        )

    def release(
        self, pool_id: str, agent_id: str, tag: str, now: float, talked: bool, deadline: Deadline
    ) -> None:
        names = {"#b": agent_id}
        if talked:
            # Wrap-up is the agent's (their first line holds it), whichever line the call took.
            update = (
                "SET seats.#b.s = :wrap_up, seats.#b.u = :now + seats.#o.w,"
                " seats.#b.i = :now + seats.#o.w REMOVE seats.#b.c"
            )
            values = {":wrap_up": {"S": AgentState.WRAP_UP.value}}
            names["#o"] = agent_of(agent_id)
        else:
            update = "SET seats.#b.s = :idle, seats.#b.u = :now REMOVE seats.#b.c"
            values = {":idle": {"S": AgentState.IDLE.value}}
        self._update_seats(
            pool_id,
            deadline,
            update=update,
            condition="seats.#b.c = :tag",
            names=names,
            values={**values, ":now": number(now), ":tag": {"S": tag}},
        )

    @property
    def clients(self) -> tuple[DynamoDBClient, ...]:
        """Every client this store sends requests with (to meter them all)."""
        return (self._client, self._one_try)

    @property
    def _one_try(self) -> DynamoDBClient:
        """A client like this store's that never retries (same endpoint, Region and credentials): the one
        `for_table` built, or, for a store made around a client, one built now."""
        if self._single_try is None:
            meta = self._client.meta
            self._single_try = boto3.session.Session().client(
                "dynamodb",
                endpoint_url=meta.endpoint_url,
                region_name=meta.region_name,
                config=meta.config.merge(ONE_TRY),
            )
        return self._single_try

    def count_call(self, caller_key: str, window_seconds: int, now: float, deadline: Deadline) -> int:
        window = int(now // window_seconds)
        answer = self._call(
            "update_item",
            deadline,
            client=self._one_try,
            TableName=self.table_name,
            Key=to_item(rate_key(caller_key, window)),
            UpdateExpression="ADD n :one SET expires_at = :end",
            # Kept one window past its own: TTL deletes within days, and the count is only read live.
            ExpressionAttributeValues={":one": {"N": "1"}, ":end": number((window + 2) * window_seconds)},
            ReturnValues="UPDATED_NEW",
        )
        return int(answer["Attributes"]["n"]["N"])

    def put_record(self, record: DecisionRecord, deadline: Deadline) -> None:
        self._call("put_item", deadline, TableName=self.table_name, Item=encode_record(record))

    def put_offer(self, offer: Offer, deadline: Deadline) -> None:
        item = {
            **offer_key(offer.agent_id, offer.call_id),
            **offer.model_dump(mode="json", exclude_none=True),
        }
        self._call("put_item", deadline, TableName=self.table_name, Item=to_item(item))

    def withdraw_offer(self, agent_id: str, call_id: str, deadline: Deadline) -> None:
        self._call(
            "delete_item", deadline, TableName=self.table_name, Key=to_item(offer_key(agent_id, call_id))
        )

    # -- reads and writes off the call path -----------------------------------------------------------

    def decision(self, caller_key: str | None, call_id: str) -> DecisionRecord | None:
        """A call's decision record, looked up by the call's id."""
        if caller_key:
            records = self._raw_pages(
                KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
                ExpressionAttributeValues={
                    ":pk": {"S": caller_pk(caller_key)},
                    ":prefix": {"S": DECISION_PREFIX},
                },
                ProjectionExpression="sk",
                ConsistentRead=True,
            )
            key = next((item for item in records if item["sk"]["S"].endswith(f"#{call_id}")), None)
            if key is None:
                return None
            response = self._call(
                "get_item",
                None,
                TableName=self.table_name,
                Key={"pk": {"S": caller_pk(caller_key)}, "sk": key["sk"]},
                ConsistentRead=True,
            )
            found = response.get("Item")
        else:
            response = self._call(
                "get_item",
                None,
                TableName=self.table_name,
                Key={"pk": {"S": f"CALL#{call_id}"}, "sk": {"S": "DECISION"}},
                ConsistentRead=True,
            )
            found = response.get("Item")
        return decode_record(found) if found else None

    def _agent_item(self, agent_id: str) -> dict[str, Any] | None:
        response = self._call(
            "get_item", None, TableName=self.table_name, Key=to_item(agent_key(agent_id)), ConsistentRead=True
        )
        return from_item(response["Item"]) if "Item" in response else None

    def _pool_now(self, pool_id: str) -> PoolView:
        response = self._call(
            "query",
            None,
            TableName=self.table_name,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": pool_pk(pool_id)}},
            ConsistentRead=True,
        )
        items = {item["sk"]["S"]: item for item in response.get("Items", [])}
        now = time.time()
        return PoolView(
            pool_id, decode_members(items.get(ROSTER_SK, {})), decode_seats(items.get(AVAIL_SK, {})), now, now
        )

    def agent(self, agent_id: str) -> Agent | None:
        """The agent as stored, with their availability as it is now (two consistent reads)."""
        item = self._agent_item(agent_id)
        if item is None:
            return None
        stored = Agent.model_validate(item)
        return seated(stored, self._pool_now(stored.pool).seats.get(agent_id))

    def agents(self) -> list[Agent]:
        directory = self.directory(Deadline(60))
        pooled = [agent.agent_id for pool_id in directory.pools for agent in self._pool_now(pool_id).agents]
        return [agent for agent_id in pooled if (agent := self.agent(agent_id)) is not None]

    def put_agent(self, agent: Agent) -> None:
        """Add an agent to a pool with room (one of their best product's first), or update them in place.
        Not safe against concurrent changes to the same pool: it loads demo and test data."""
        existing = self._agent_item(agent.agent_id)
        pool_id = str(existing["pool"]) if existing else self._pool_with_room(agent)
        agent = agent.model_copy(update={"pool": pool_id})
        avail, roster = pool_items(pool_id, [])
        entries = [
            (AVAIL_SK, avail, SEATS, encode_lines(line_seats(agent))),
            (ROSTER_SK, roster, MEMBERS, {agent.agent_id: encode_member(member_of(agent))}),
        ]
        for key, item, field, values in entries:
            self._call(
                "update_item",
                None,
                TableName=self.table_name,
                Key={"pk": item["pk"], "sk": {"S": key}},
                UpdateExpression=f"SET {field} = if_not_exists({field}, :empty)",
                ExpressionAttributeValues={":empty": {"M": {}}},
            )
            names = {f"#a{index}": name for index, name in enumerate(values)}
            self._call(
                "update_item",
                None,
                TableName=self.table_name,
                Key={"pk": item["pk"], "sk": {"S": key}},
                UpdateExpression="SET " + ", ".join(f"{field}.{name} = :v{name[2:]}" for name in names),
                ExpressionAttributeNames=names,
                ExpressionAttributeValues={
                    f":v{index}": value for index, value in enumerate(values.values())
                },
            )
        self._call(
            "put_item",
            None,
            TableName=self.table_name,
            Item=to_item({**agent_key(agent.agent_id), **agent.model_dump(mode="json")}),
        )
        if agent.endpoint.kind is EndpointKind.CONNECT:
            self._call("put_item", None, TableName=self.table_name, Item=connect_user_item(agent))
        if not existing:
            directory = self.directory(Deadline(60))
            primary = agent.primary_product()
            by_product = dict(directory.by_product)
            if primary and pool_id not in by_product.get(primary, ()):
                by_product[primary] = (*by_product.get(primary, ()), pool_id)
            pools = directory.pools if pool_id in directory.pools else (*directory.pools, pool_id)
            self._put_directory(Directory(pools=pools, by_product=by_product))

    def _pool_with_room(self, agent: Agent) -> str:
        directory = self.directory(Deadline(60))
        preferred = directory.by_product.get(agent.primary_product() or "", ())
        for pool_id in [*preferred, *reversed(directory.pools)]:
            members = [self.agent(pooled.agent_id) for pooled in self._pool_now(pool_id).agents]
            if pool_fits([*(member for member in members if member is not None), agent]):
                return pool_id
        return str(len(directory.pools))

    def _put_directory(self, directory: Directory) -> None:
        self._call(
            "put_item",
            None,
            TableName=self.table_name,
            Item=to_item({**DIRECTORY_KEY, **directory.model_dump(mode="json")}),
        )

    def load_roster(self, agents: Sequence[Agent]) -> None:
        """Pack the roster into pools and write it with batch writes (25 items a request)."""
        items: list[dict[str, Any]] = []
        by_product: dict[str, list[str]] = {}
        pools: list[str] = []
        for index, members in enumerate(pack(agents)):
            pool_id = str(index)
            pools.append(pool_id)
            placed = [agent.model_copy(update={"pool": pool_id}) for agent in members]
            items += pool_items(pool_id, placed)
            items += [to_item({**agent_key(a.agent_id), **a.model_dump(mode="json")}) for a in placed]
            items += [connect_user_item(a) for a in placed if a.endpoint.kind is EndpointKind.CONNECT]
            for product in {agent.primary_product() for agent in placed} - {None}:
                by_product.setdefault(str(product), []).append(pool_id)
        directory = Directory(pools=tuple(pools), by_product={p: tuple(ids) for p, ids in by_product.items()})
        items.append(to_item({**DIRECTORY_KEY, **directory.model_dump(mode="json")}))
        self._batch_write(items)

    def _batch_write(self, items: Sequence[Mapping[str, Any]]) -> None:
        self._batch([{"PutRequest": {"Item": dict(item)}} for item in items])

    def _batch(self, requests: Sequence[Mapping[str, Any]]) -> None:
        """Puts and deletes, 25 a `BatchWriteItem`, each sent again until DynamoDB has processed it."""
        for start in range(0, len(requests), 25):
            pending: dict[str, Any] = {self.table_name: list(requests[start : start + 25])}
            while pending:
                pending = self._call("batch_write_item", None, RequestItems=pending).get(
                    "UnprocessedItems", {}
                )

    def put_product(self, product: Product) -> None:
        item = {"pk": CATALOG_PK, "sk": f"PRODUCT#{product.product_id}", **product.model_dump(mode="json")}
        self._call("put_item", None, TableName=self.table_name, Item=to_item(item))

    def put_caller(
        self,
        caller_key: str,
        profile: CallerProfile | None,
        interests: Sequence[Interest],
        records: Sequence[DecisionRecord] = (),
    ) -> None:
        pk = caller_pk(caller_key)
        items: list[dict[str, Any]] = []
        if profile is not None:
            items.append(to_item({"pk": pk, "sk": PROFILE_SK, **profile.model_dump(mode="json")}))
        items += [
            to_item({"pk": pk, "sk": f"{INTEREST_PREFIX}{i.product}", **i.model_dump(mode="json")})
            for i in interests
        ]
        items += [encode_record(record) for record in records]
        self._batch_write(items)


def connect_user_item(agent: Agent) -> dict[str, Any]:
    """The item that names the agent whose endpoint is an Amazon Connect user."""
    return to_item({**connect_user_key(agent.endpoint.address), "agent_id": agent.agent_id})


def _let_go_names(agent: LetGo) -> dict[str, str]:
    """Names for `_letting_go`: #a the line let go, #m the agent's first line (where misses are counted)."""
    return {"#a": agent.agent_id, **({"#m": agent_of(agent.agent_id)} if agent.missed else {})}


def _missed_in_a_row(answer: Mapping[str, Any], agent: LetGo) -> int | None:
    """The let-go agent's no-answers in a row after a write that returned its new values."""
    if not agent.missed:
        return None
    first = agent_of(agent.agent_id)
    seat = answer.get("Attributes", {}).get(SEATS, {}).get("M", {}).get(first, {}).get("M", {})
    count = seat.get("n", {}).get("N")
    return int(count) if count is not None else None


def _letting_go(agent: LetGo) -> tuple[str, dict[str, Any]]:
    """The SET actions that free agent `#a` (whose holding tag is then removed), and the values they need
    besides :now. One who did not answer goes to the back of the queue and is counted."""
    idle = {":idle": {"S": AgentState.IDLE.value}}
    if agent.missed:
        sets = "seats.#a.s = :idle, seats.#a.u = :now, seats.#a.i = :now, seats.#m.n = seats.#m.n + :one"
        return sets, {**idle, ":one": {"N": "1"}}
    return "seats.#a.s = :idle, seats.#a.u = :now", idle
