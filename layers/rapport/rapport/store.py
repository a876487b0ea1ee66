"""The one door to DynamoDB. Everything rapport keeps lives in one table; this module knows its layout.

Layout (pk / sk):
    CALLER#<caller-key> / PROFILE             consents, objection, jurisdiction
    CALLER#<caller-key> / INTEREST#<product>  score, updated_at, sources, expires_at (TTL)
    CALLER#<caller-key> / LAST_AGENT          agent_id, call_id, at, expires_at (TTL)
    CALLER#<caller-key> / DECISION#<call-id>  the decision record of one call, expires_at (TTL)
    CALL#<call-id>      / DECISION            decision record of a caller without a usable number
    AGENTS              / AGENT#<agent-id>    endpoint, proficiency, presence, state, busy_until, stats
    CATALOG             / PRODUCT#<product>   names and keywords

Caller keys are HMACs of the number (see `rapport.numbers.caller_key`); no raw number is written here.
Every call-path method takes a `Deadline` and raises `StoreUnavailable` rather than outlive it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import boto3
from aws_lambda_powertools import Logger
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from rapport import SERVICE_NAME
from rapport.deadline import Deadline
from rapport.models import (
    Agent,
    AgentState,
    Attempt,
    AttemptOutcome,
    CallerContext,
    CallerProfile,
    DecisionRecord,
    Interest,
    LastAgent,
    Presence,
    Product,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

logger = Logger(service=SERVICE_NAME, child=True)

AGENTS_PK = "AGENTS"
CATALOG_PK = "CATALOG"
PROFILE_SK = "PROFILE"
LAST_AGENT_SK = "LAST_AGENT"
INTEREST_PREFIX = "INTEREST#"
# The caller's routing context is the key range INTEREST# … PROFILE: it includes LAST_AGENT and leaves
# out the DECISION# records, which sort before it, so one Query returns exactly the context.
CONTEXT_RANGE = (INTEREST_PREFIX, PROFILE_SK)

# What routing needs of an agent; the rest of the item (name, languages, counters) stays in the table.
ROUTING_ATTRIBUTES = (
    "agent_id",
    "endpoint",
    "proficiency",
    "presence",
    "busy_until",
    "idle_since",
    "reserved_by",
    "stats",
)

# Longest time a call keeps an agent once connected, in case its HANGUP never arrives.
MAX_CALL_SECONDS = 4 * 3600
# A transaction cancelled only because another one touched the same item is retried this often.
TRANSACTION_CONFLICT_RETRIES = 2
# Do not start a request with less than this left of the budget: it could not finish in time.
MIN_REQUEST_SECONDS = 0.05

# Tight, explicit limits: botocore's defaults (60 s timeouts, up to 10 attempts) outlast the SMA's 5 s.
CALL_PATH_CONFIG = Config(
    connect_timeout=0.25,
    read_timeout=0.5,
    retries={"total_max_attempts": 2, "mode": "standard"},
    tcp_keepalive=True,
)

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


@dataclass(frozen=True)
class RequestTiming:
    """One DynamoDB request as the caller waited for it (botocore's own retries included)."""

    operation: str
    ms: float
    outcome: str = "ok"
    """"ok", "condition failed" (a lost race, expected), or the error that made the store unavailable."""

    @property
    def failed(self) -> bool:
        return self.outcome not in ("ok", "condition failed")

    def __str__(self) -> str:
        return f"{self.operation} {self.ms:.1f} ms" + ("" if self.outcome == "ok" else f" ({self.outcome})")


# The requests of the invocation running in this context: concurrent invocations (threads) keep their own.
_requests: ContextVar[list[RequestTiming] | None] = ContextVar("rapport_store_requests", default=None)


@contextmanager
def recording_requests() -> Iterator[list[RequestTiming]]:
    """Collect the timing of every request made inside the block, in order."""
    requests: list[RequestTiming] = []
    token = _requests.set(requests)
    try:
        yield requests
    finally:
        _requests.reset(token)


def requests_so_far() -> list[RequestTiming]:
    """The requests recorded so far in this context ([] outside `recording_requests`)."""
    return list(_requests.get() or [])


def _record(operation: str, started: float, outcome: str) -> None:
    requests = _requests.get()
    if requests is not None:
        requests.append(RequestTiming(operation, (time.perf_counter() - started) * 1000, outcome))


class StoreError(Exception):
    """Base of the few errors the store raises; callers turn them into a safe route."""


class StoreUnavailable(StoreError):
    """DynamoDB did not answer in time, throttled, or failed; the reason is in the message."""


class ConditionFailed(StoreError):
    """A conditional write found the item in another state than expected; nothing was written."""


class AgentTaken(ConditionFailed):
    """The agent was reserved by another call (or went offline) between reading and reserving."""


def caller_pk(caller_key: str) -> str:
    return f"CALLER#{caller_key}"


def decision_key(caller_key: str | None, call_id: str) -> dict[str, str]:
    if caller_key:
        return {"pk": caller_pk(caller_key), "sk": f"DECISION#{call_id}"}
    return {"pk": f"CALL#{call_id}", "sk": "DECISION"}


def _numbers_to_decimal(value: Any) -> Any:
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, Mapping):
        return {key: _numbers_to_decimal(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_numbers_to_decimal(item) for item in value]
    return value


def _decimals_to_numbers(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {key: _decimals_to_numbers(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_decimals_to_numbers(item) for item in value]
    return value


def to_attributes(values: Mapping[str, Any]) -> dict[str, Any]:
    """Plain Python values to DynamoDB's typed attribute map (None values are left out)."""
    return {
        key: _serializer.serialize(_numbers_to_decimal(value))
        for key, value in values.items()
        if value is not None
    }


def from_attributes(item: Mapping[str, Any]) -> dict[str, Any]:
    return {key: _decimals_to_numbers(_deserializer.deserialize(value)) for key, value in item.items()}


def _error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", "Unknown"))


class Store:
    """rapport's table. Cheap to construct around a client; create the client once per container."""

    def __init__(self, client: DynamoDBClient, table_name: str) -> None:
        self._client = client
        self.table_name = table_name

    @property
    def client(self) -> DynamoDBClient:
        """The underlying client, e.g. to count requests through its event hooks."""
        return self._client

    @classmethod
    def connect(cls, table_name: str, config: Config = CALL_PATH_CONFIG) -> Store:
        """A store with its own client, from a session of its own so that credentials, region and
        endpoint are read now (`AWS_ENDPOINT_URL_DYNAMODB` points it at DynamoDB Local), not taken
        from whatever boto3's default session cached earlier in the process."""
        return cls(boto3.session.Session().client("dynamodb", config=config), table_name)

    # -- plumbing -------------------------------------------------------------------------------------

    def _call(self, method: str, deadline: Deadline | None, **params: Any) -> dict[str, Any]:
        # DynamoDB's name for the operation (TransactWriteItems for transact_write_items), as in its docs.
        operation = self._client.meta.method_to_api_mapping.get(method, method)
        for attempt in range(TRANSACTION_CONFLICT_RETRIES + 1):
            if deadline is not None and deadline.remaining() < MIN_REQUEST_SECONDS:
                raise StoreUnavailable(f"time budget spent before {operation}")
            started = time.perf_counter()
            try:
                response: dict[str, Any] = getattr(self._client, method)(**params)
            except ClientError as error:
                code = _error_code(error)
                if code == "ConditionalCheckFailedException":
                    _record(operation, started, "condition failed")
                    raise ConditionFailed(operation) from error
                if code == "TransactionCanceledException":
                    reasons = [r.get("Code", "") for r in error.response.get("CancellationReasons", [])]
                    conflict_only = (
                        "ConditionalCheckFailed" not in reasons and "TransactionConflict" in reasons
                    )
                    lost_race = any(r in ("ConditionalCheckFailed", "TransactionConflict") for r in reasons)
                    if lost_race:
                        _record(operation, started, "condition failed")
                    if conflict_only and attempt < TRANSACTION_CONFLICT_RETRIES:
                        # Another transaction touched one of the items at the same moment: try again.
                        time.sleep(0.005 * (attempt + 1))
                        continue
                    if lost_race:
                        raise ConditionFailed(f"{operation}: {', '.join(reasons)}") from error
                _record(operation, started, code)
                raise StoreUnavailable(f"{operation} failed: {code}") from error
            except BotoCoreError as error:
                _record(operation, started, type(error).__name__)
                raise StoreUnavailable(f"{operation} failed: {type(error).__name__}") from error
            _record(operation, started, "ok")
            return response
        raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises

    def _query_pages(self, deadline: Deadline | None, **params: Any) -> Iterator[dict[str, Any]]:
        while True:
            page = self._call("query", deadline, TableName=self.table_name, **params)
            yield from (from_attributes(item) for item in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                return
            params["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    # -- reads on the call path -------------------------------------------------------------------------

    def caller_context(self, caller_key: str, now: float, deadline: Deadline | None = None) -> CallerContext:
        """Profile, interests and last agent of one caller in one Query; expired items are dropped
        here because TTL deletion can lag by days."""
        profile: CallerProfile | None = None
        interests: list[Interest] = []
        last_agent: LastAgent | None = None
        for item in self._query_pages(
            deadline,
            KeyConditionExpression="pk = :pk AND sk BETWEEN :first AND :last",
            ExpressionAttributeValues=to_attributes(
                {":pk": caller_pk(caller_key), ":first": CONTEXT_RANGE[0], ":last": CONTEXT_RANGE[1]}
            ),
        ):
            expires_at = item.get("expires_at")
            if expires_at is not None and expires_at <= now:
                continue
            sk = item["sk"]
            if sk == PROFILE_SK:
                profile = CallerProfile.model_validate(item)
            elif sk == LAST_AGENT_SK:
                last_agent = LastAgent.model_validate(item)
            elif sk.startswith(INTEREST_PREFIX):
                interests.append(Interest.model_validate(item))
        return CallerContext(profile=profile, interests=interests, last_agent=last_agent)

    def agents(self, deadline: Deadline | None = None) -> list[Agent]:
        """The whole roster in one Query (one round trip per 1 MB page: some thousands of agents),
        with only the attributes routing reads: parsing the response is most of the call's CPU."""
        return [
            Agent.model_validate(item)
            for item in self._query_pages(
                deadline,
                KeyConditionExpression="pk = :pk",
                ProjectionExpression=", ".join(f"#{index}" for index in range(len(ROUTING_ATTRIBUTES))),
                ExpressionAttributeNames={f"#{index}": name for index, name in enumerate(ROUTING_ATTRIBUTES)},
                ExpressionAttributeValues=to_attributes({":pk": AGENTS_PK}),
            )
        ]

    # -- writes on the call path ------------------------------------------------------------------------

    def _agent_update(
        self, agent_id: str, update: str, condition: str, values: Mapping[str, Any]
    ) -> dict[str, Any]:
        return {
            "Update": {
                "TableName": self.table_name,
                "Key": to_attributes({"pk": AGENTS_PK, "sk": f"AGENT#{agent_id}"}),
                "UpdateExpression": update,
                "ConditionExpression": condition,
                "ExpressionAttributeNames": {"#state": "state"},
                "ExpressionAttributeValues": to_attributes(values),
            }
        }

    def _record_update(
        self,
        caller_key: str | None,
        call_id: str,
        update: str,
        values: Mapping[str, Any],
        names: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        operation: dict[str, Any] = {
            "TableName": self.table_name,
            "Key": to_attributes(decision_key(caller_key, call_id)),
            "UpdateExpression": update,
            # Only touch a record that exists: a late event must not create a partial one.
            "ConditionExpression": "attribute_exists(pk)",
            "ExpressionAttributeValues": to_attributes(values),
        }
        if names:
            operation["ExpressionAttributeNames"] = dict(names)
        return {"Update": operation}

    def _reservation(self, agent_id: str, call_id: str, now: float, hold_until: float) -> dict[str, Any]:
        return self._agent_update(
            agent_id,
            "SET #state = :ringing, busy_until = :hold, reserved_by = :call",
            "attribute_exists(pk) AND presence = :online AND (busy_until <= :now OR reserved_by = :call)",
            {
                ":ringing": AgentState.RINGING.value,
                ":hold": hold_until,
                ":call": call_id,
                ":online": Presence.ONLINE.value,
                ":now": now,
            },
        )

    def reserve_first(
        self, record: DecisionRecord, agent_id: str, now: float, hold_until: float, deadline: Deadline
    ) -> None:
        """Reserve the agent and store the call's decision record, atomically: one TransactWriteItems.

        Raises `AgentTaken` when another call holds the agent. Repeating it for the same call is harmless.
        """
        item = {**decision_key(record.caller_key, record.call_id), **record.model_dump(mode="json")}
        self._reserve(
            deadline,
            self._reservation(agent_id, record.call_id, now, hold_until),
            {"Put": {"TableName": self.table_name, "Item": to_attributes(item)}},
        )

    def reserve_agent(
        self, agent_id: str, call_id: str, now: float, hold_until: float, deadline: Deadline
    ) -> Agent:
        """Reserve a failover agent: one conditional UpdateItem, returning the agent as now stored.

        Raises `AgentTaken` when another call holds the agent. Repeating it for the same call is harmless.
        """
        reservation = self._reservation(agent_id, call_id, now, hold_until)["Update"]
        try:
            response = self._call("update_item", deadline, ReturnValues="ALL_NEW", **reservation)
        except ConditionFailed as error:
            raise AgentTaken(str(error)) from error
        return Agent.model_validate(from_attributes(response["Attributes"]))

    def _reserve(self, deadline: Deadline, *operations: dict[str, Any]) -> None:
        try:
            self._call("transact_write_items", deadline, TransactItems=list(operations))
        except ConditionFailed as error:
            raise AgentTaken(str(error)) from error

    def put_record(self, record: DecisionRecord, deadline: Deadline | None = None) -> None:
        """Store a decision record on its own (a call that went straight to the fallback)."""
        item = {**decision_key(record.caller_key, record.call_id), **record.model_dump(mode="json")}
        self._call("put_item", deadline, TableName=self.table_name, Item=to_attributes(item))

    def put_last_agent(
        self, caller_key: str, last_agent: LastAgent, deadline: Deadline | None = None
    ) -> None:
        item = {"pk": caller_pk(caller_key), "sk": LAST_AGENT_SK, **last_agent.model_dump(mode="json")}
        self._call("put_item", deadline, TableName=self.table_name, Item=to_attributes(item))

    def release_no_answer(
        self,
        caller_key: str | None,
        call_id: str,
        attempt_no: int,
        attempt: Attempt,
        deadline: Deadline,
    ) -> bool:
        """Free an agent who did not answer, count it against them and note it in the record.

        False when this call no longer held the agent (a repeated event): nothing is changed then.
        """
        try:
            self._call(
                "transact_write_items",
                deadline,
                TransactItems=[
                    self._agent_update(
                        attempt.agent_id,
                        "SET #state = :idle, busy_until = :now, idle_since = :now REMOVE reserved_by"
                        " ADD no_answers :one",
                        "reserved_by = :call AND #state = :ringing",
                        {
                            ":idle": AgentState.IDLE.value,
                            ":now": attempt.at,
                            ":one": 1,
                            ":call": call_id,
                            ":ringing": AgentState.RINGING.value,
                        },
                    ),
                    self._record_update(
                        caller_key,
                        call_id,
                        "SET attempts.#n = :attempt",
                        {":attempt": attempt.model_dump(mode="json")},
                        {"#n": str(attempt_no)},
                    ),
                ],
            )
        except ConditionFailed:
            return False
        return True

    def mark_connected(
        self,
        caller_key: str | None,
        call_id: str,
        attempt_no: int,
        attempt: Attempt,
        last_agent: LastAgent | None,
        deadline: Deadline,
    ) -> None:
        """The agent picked up: hold them for the call, complete the record and, where policy allows,
        remember them as the caller's last agent. One TransactWriteItems; idempotent."""
        operations = [
            self._agent_update(
                attempt.agent_id,
                "SET #state = :on_call, busy_until = :until",
                "reserved_by = :call",
                {
                    ":on_call": AgentState.ON_CALL.value,
                    ":until": attempt.at + MAX_CALL_SECONDS,
                    ":call": call_id,
                },
            ),
            self._record_update(
                caller_key,
                call_id,
                "SET attempts.#n = :attempt, outcome = :connected, agent_id = :agent, #mode = :mode,"
                " connected_at = :now",
                {
                    ":attempt": attempt.model_dump(mode="json"),
                    ":connected": AttemptOutcome.CONNECTED.value,
                    ":agent": attempt.agent_id,
                    ":mode": attempt.mode.value,
                    ":now": attempt.at,
                },
                {"#n": str(attempt_no), "#mode": "mode"},
            ),
        ]
        if last_agent is not None and caller_key:
            item = {"pk": caller_pk(caller_key), "sk": LAST_AGENT_SK, **last_agent.model_dump(mode="json")}
            operations.append({"Put": {"TableName": self.table_name, "Item": to_attributes(item)}})
        self._call("transact_write_items", deadline, TransactItems=operations)

    def release_after_call(
        self,
        caller_key: str | None,
        call_id: str,
        agent_id: str,
        connected: bool,
        now: float,
        deadline: Deadline,
    ) -> bool:
        """A leg hung up: a connected agent goes into wrap-up, a still-ringing one straight back to idle.

        False when this call no longer held the agent (a repeated HANGUP): nothing is changed then.
        """
        if connected:
            agent = self._agent_update(
                agent_id,
                "SET #state = :wrap_up, busy_until = :now + wrap_up_seconds,"
                " idle_since = :now + wrap_up_seconds REMOVE reserved_by",
                "reserved_by = :call",
                {":wrap_up": AgentState.WRAP_UP.value, ":now": now, ":call": call_id},
            )
        else:
            agent = self._agent_update(
                agent_id,
                "SET #state = :idle, busy_until = :now REMOVE reserved_by",
                "reserved_by = :call",
                {":idle": AgentState.IDLE.value, ":now": now, ":call": call_id},
            )
        record = self._record_update(
            caller_key,
            call_id,
            "SET outcome = :ended, ended_at = :now",
            {":ended": AttemptOutcome.ENDED.value if connected else "abandoned", ":now": now},
        )
        try:
            self._call("transact_write_items", deadline, TransactItems=[agent, record])
        except ConditionFailed:
            return False
        return True

    def record_fallback(self, caller_key: str | None, call_id: str, reason: str, deadline: Deadline) -> None:
        """Note in the record that the call went to the fallback, and why."""
        update = self._record_update(
            caller_key,
            call_id,
            "SET outcome = :fallback, #mode = :fallback, reasons = list_append(reasons, :reason)"
            " REMOVE agent_id",
            {":fallback": "fallback", ":reason": [reason]},
            {"#mode": "mode"},
        )["Update"]
        self._call("update_item", deadline, **update)

    # -- reads and writes off the call path -------------------------------------------------------------

    def decision(self, caller_key: str | None, call_id: str) -> DecisionRecord | None:
        response = self._call(
            "get_item",
            None,
            TableName=self.table_name,
            Key=to_attributes(decision_key(caller_key, call_id)),
            ConsistentRead=True,
        )
        item = response.get("Item")
        return DecisionRecord.model_validate(from_attributes(item)) if item else None

    def agent(self, agent_id: str) -> Agent | None:
        response = self._call(
            "get_item",
            None,
            TableName=self.table_name,
            Key=to_attributes({"pk": AGENTS_PK, "sk": f"AGENT#{agent_id}"}),
            ConsistentRead=True,
        )
        item = response.get("Item")
        return Agent.model_validate(from_attributes(item)) if item else None

    def put_agent(self, agent: Agent) -> None:
        item = {"pk": AGENTS_PK, "sk": f"AGENT#{agent.agent_id}", **agent.model_dump(mode="json")}
        self._call("put_item", None, TableName=self.table_name, Item=to_attributes(item))

    def put_product(self, product: Product) -> None:
        item = {"pk": CATALOG_PK, "sk": f"PRODUCT#{product.product_id}", **product.model_dump(mode="json")}
        self._call("put_item", None, TableName=self.table_name, Item=to_attributes(item))

    def put_caller(
        self,
        caller_key: str,
        profile: CallerProfile | None,
        interests: list[Interest],
        last_agent: LastAgent | None = None,
    ) -> None:
        """Write a caller's profile, interests and last agent (loading demo or scenario data)."""
        pk = caller_pk(caller_key)
        items: list[dict[str, Any]] = []
        if profile is not None:
            items.append({"pk": pk, "sk": PROFILE_SK, **profile.model_dump(mode="json")})
        items += [
            {"pk": pk, "sk": f"{INTEREST_PREFIX}{interest.product}", **interest.model_dump(mode="json")}
            for interest in interests
        ]
        if last_agent is not None:
            items.append({"pk": pk, "sk": LAST_AGENT_SK, **last_agent.model_dump(mode="json")})
        for start in range(0, len(items), 25):
            pending: dict[str, Any] = {
                self.table_name: [
                    {"PutRequest": {"Item": to_attributes(item)}} for item in items[start : start + 25]
                ]
            }
            while pending:
                pending = self._call("batch_write_item", None, RequestItems=pending).get(
                    "UnprocessedItems", {}
                )
