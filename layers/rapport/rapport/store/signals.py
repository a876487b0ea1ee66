"""The signal side's door to DynamoDB: the catalog, callers' interest items, and the signals counted.

Signals are written in bulk: BatchGetItem reads what a batch touches (100 keys a request), a few
TransactWriteItems write it, so a batch of 100 signals costs a few requests, not a hundred. Each interest
item is written on the condition that it is still the version that was read, so two invocations that
change the same interest never lose a contribution, and it remembers the signals counted in it lately;
those it has to forget while they could still be delivered again get a `SIGNAL#<key>` item in the same
transaction. See docs/data-model.md.
"""

from __future__ import annotations

import math
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from rapport.models import CallerProfile, Interest, Product
from rapport.store import StoreUnavailable
from rapport.store.layout import (
    CATALOG_PK,
    INTEREST_PREFIX,
    PROFILE_SK,
    SIGNAL_PREFIX,
    caller_pk,
    from_item,
    to_item,
)
from rapport.store.timing import record

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

PARALLEL_REQUESTS = 4
"""Independent requests of one batch (reads of 100 keys, transactions of 100 actions) sent at once."""
SIGNALS_CONFIG = Config(
    connect_timeout=1.0,
    read_timeout=3.0,
    retries={"total_max_attempts": 3, "mode": "standard"},
    tcp_keepalive=True,
    # A transaction of 100 items is built here from fixed shapes; botocore's check of every parameter
    # would cost more CPU than building it.
    parameter_validation=False,
    max_pool_connections=PARALLEL_REQUESTS,
)
MAX_KEYS_PER_READ = 100
MAX_ACTIONS_PER_WRITE = 100
MIN_ACTIONS_PER_WRITE = 25
T = TypeVar("T")
R = TypeVar("R")
_BATCH_READ_ROUNDS = 5


@dataclass
class CallerWrite:
    """What a batch changes for one caller: interest items (new versions), and the signals that drop out
    of their memory but must still be recognised for a while (`SIGNAL#` items)."""

    caller_key: str
    interests: list[Interest]
    read_versions: dict[str, int | None]
    """By product: the version each interest had when it was read (None: it did not exist)."""
    forgotten: dict[str, float] = field(default_factory=dict)
    """Signal key → until when its `SIGNAL#` item is kept."""

    @property
    def actions(self) -> int:
        return len(self.forgotten) + len(self.interests)


@dataclass
class WriteResult:
    written: bool
    stale: set[str] = field(default_factory=set)
    """Products whose interest item changed since it was read."""
    error: str = ""


class SignalStore:
    def __init__(self, client: DynamoDBClient, table_name: str) -> None:
        self._client = client
        self.table_name = table_name
        self.requests: Counter[str] = Counter()
        """Requests sent, by operation, for the benchmark and the tests."""
        self._workers: ThreadPoolExecutor | None = None
        self._counting = threading.Lock()

    @classmethod
    def for_table(cls, table_name: str, config: Config = SIGNALS_CONFIG) -> SignalStore:
        return cls(boto3.session.Session().client("dynamodb", config=config), table_name)

    def _call(self, method: str, **params: Any) -> dict[str, Any]:
        operation = self._client.meta.method_to_api_mapping.get(method, method)
        with self._counting:
            self.requests[operation] += 1
        started = time.perf_counter()
        try:
            response: dict[str, Any] = getattr(self._client, method)(**params)
        except ClientError as error:
            record(operation, started, error.response.get("Error", {}).get("Code", "error"))
            raise
        except BotoCoreError as error:
            record(operation, started, type(error).__name__)
            raise StoreUnavailable(f"{operation} failed: {type(error).__name__}") from error
        record(operation, started, "ok")
        return response

    # -- the catalog ------------------------------------------------------------------------------------

    def catalog(self) -> list[Product]:
        products = []
        params: dict[str, Any] = {
            "TableName": self.table_name,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": CATALOG_PK}},
        }
        while True:
            page = self._checked("query", **params)
            products += [Product.model_validate(from_item(item)) for item in page.get("Items", [])]
            if "LastEvaluatedKey" not in page:
                return products
            params["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def put_products(self, products: Sequence[Product]) -> None:
        items = [
            to_item({"pk": CATALOG_PK, "sk": f"PRODUCT#{p.product_id}", **p.model_dump(mode="json")})
            for p in products
        ]
        for start in range(0, len(items), 25):
            pending: dict[str, Any] = {
                self.table_name: [{"PutRequest": {"Item": item}} for item in items[start : start + 25]]
            }
            while pending:
                pending = self._checked("batch_write_item", RequestItems=pending).get("UnprocessedItems", {})

    def _checked(self, method: str, **params: Any) -> dict[str, Any]:
        try:
            return self._call(method, **params)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "error")
            raise StoreUnavailable(f"{method} failed: {code}") from error

    # -- callers ----------------------------------------------------------------------------------------

    def read(
        self, profiles: Iterable[str], interests: Iterable[tuple[str, str]]
    ) -> tuple[dict[str, CallerProfile | None], dict[tuple[str, str], Interest | None]]:
        """Callers' profiles and interest items, strongly consistent (their versions decide the writes),
        100 keys a request. Every key asked for is in the answer, None where no item exists."""
        keys = [{"pk": caller_pk(ck), "sk": PROFILE_SK} for ck in dict.fromkeys(profiles)]
        keys += [
            {"pk": caller_pk(ck), "sk": f"{INTEREST_PREFIX}{product}"}
            for ck, product in dict.fromkeys(interests)
        ]
        found: dict[tuple[str, str], dict[str, Any]] = {}
        chunks = [keys[start : start + MAX_KEYS_PER_READ] for start in range(0, len(keys), MAX_KEYS_PER_READ)]
        for items in self._parallel(self._read_chunk, chunks):
            for item in items:
                found[(item["pk"], item["sk"])] = item
        read_profiles: dict[str, CallerProfile | None] = {}
        for key in keys:
            if key["sk"] == PROFILE_SK:
                profile = found.get((key["pk"], key["sk"]))
                read_profiles[key["pk"].removeprefix("CALLER#")] = (
                    CallerProfile.model_validate(profile) if profile else None
                )
        read_interests: dict[tuple[str, str], Interest | None] = {}
        for ck, product in interests:
            interest = found.get((caller_pk(ck), f"{INTEREST_PREFIX}{product}"))
            read_interests[(ck, product)] = Interest.model_validate(interest) if interest else None
        return read_profiles, read_interests

    def counted(self, signals: Iterable[tuple[str, str]]) -> set[tuple[str, str]]:
        """Which of these (caller key, signal key) pairs have a `SIGNAL#` item: signals counted before."""
        keys = [{"pk": caller_pk(ck), "sk": f"{SIGNAL_PREFIX}{key}"} for ck, key in dict.fromkeys(signals)]
        chunks = [keys[start : start + MAX_KEYS_PER_READ] for start in range(0, len(keys), MAX_KEYS_PER_READ)]
        found = set()
        for items in self._parallel(self._read_chunk, chunks):
            found |= {
                (item["pk"].removeprefix("CALLER#"), item["sk"].removeprefix(SIGNAL_PREFIX)) for item in items
            }
        return found

    def _read_chunk(self, keys: Sequence[Mapping[str, str]]) -> list[dict[str, Any]]:
        pending: Mapping[str, Any] = {
            self.table_name: {"Keys": [to_item(key) for key in keys], "ConsistentRead": True}
        }
        found: list[dict[str, Any]] = []
        for _ in range(_BATCH_READ_ROUNDS):
            response = self._checked("batch_get_item", RequestItems=pending)
            found += map(from_item, response.get("Responses", {}).get(self.table_name, []))
            pending = response.get("UnprocessedKeys") or {}
            if not pending:
                return found
        raise StoreUnavailable("BatchGetItem left keys unread (throttled)")

    def _parallel(self, request: Callable[[T], R], inputs: Sequence[T]) -> list[R]:
        """`request` for every input, at most `PARALLEL_REQUESTS` at once; the first error is raised."""
        if len(inputs) <= 1:
            return [request(item) for item in inputs]
        if self._workers is None:
            self._workers = ThreadPoolExecutor(PARALLEL_REQUESTS, thread_name_prefix="rapport-signals")
        return list(self._workers.map(request, inputs))

    def write(self, writes: Sequence[CallerWrite]) -> list[WriteResult]:
        """Each caller's write whole or not at all, as few transactions as 100 actions allow."""
        results: list[WriteResult] = [WriteResult(written=False) for _ in writes]
        # Several smaller transactions sent at once finish sooner than one of 100 actions (DynamoDB works
        # on them side by side), at a few more requests per batch.
        total = sum(write.actions for write in writes)
        limit = min(MAX_ACTIONS_PER_WRITE, max(MIN_ACTIONS_PER_WRITE, math.ceil(total / PARALLEL_REQUESTS)))
        transactions: list[list[int]] = [[]]
        size = 0
        for index, write in enumerate(writes):
            if write.actions > MAX_ACTIONS_PER_WRITE:
                raise ValueError("one caller's write must fit in one transaction")
            if size and size + write.actions > limit:
                transactions.append([])
                size = 0
            transactions[-1].append(index)
            size += write.actions
        # Each transaction touches callers of its own (one caller's write is never split).
        self._parallel(lambda batch: self._transact(writes, batch, results), [t for t in transactions if t])
        return results

    def _transact(
        self, writes: Sequence[CallerWrite], batch: Sequence[int], results: list[WriteResult]
    ) -> None:
        actions: list[dict[str, Any]] = []
        meaning: list[tuple[int, str | None]] = []  # per action: (write index, product of an interest)
        for index in batch:
            write = writes[index]
            pk = caller_pk(write.caller_key)
            for interest in write.interests:
                before = write.read_versions.get(interest.product)
                condition: dict[str, Any] = (
                    {"ConditionExpression": "attribute_not_exists(pk)"}
                    if before is None
                    else {
                        "ConditionExpression": "version = :v",
                        "ExpressionAttributeValues": {":v": {"N": str(before)}},
                    }
                )
                item = {
                    "pk": pk,
                    "sk": f"{INTEREST_PREFIX}{interest.product}",
                    **interest.model_dump(mode="json", by_alias=True),
                }
                actions.append({"Put": {"TableName": self.table_name, "Item": to_item(item), **condition}})
                meaning.append((index, interest.product))
            # Unconditional: they only ever record what the interests' conditional writes decide.
            for key, expires_at in write.forgotten.items():
                item = {"pk": pk, "sk": f"{SIGNAL_PREFIX}{key}", "expires_at": expires_at}
                actions.append({"Put": {"TableName": self.table_name, "Item": to_item(item)}})
                meaning.append((index, None))
        try:
            self._call("transact_write_items", TransactItems=actions)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "error")
            reasons = error.response.get("CancellationReasons") or []
            for index in batch:
                results[index] = WriteResult(written=False, error=code)
            for (index, product), reason in zip(meaning, reasons, strict=False):
                if product is not None and reason.get("Code") == "ConditionalCheckFailed":
                    results[index].stale.add(product)
            return
        for index in batch:
            results[index] = WriteResult(written=True)
