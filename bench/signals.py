"""Signals per second through SignalsFunction's SQS handler, beside a naive baseline in the same run.

rapport: batches of 100 SQS messages (half product signals, half free text in German and English, callers
repeating as real traffic does) through the real handler, warm, against DynamoDB Local. Baseline: the
least a signal consumer can do with the same messages: parse each and PutItem it, one request per
signal, no matching, no scores, no privacy gate, no idempotency. The two alternate batch by batch.
Also reports the accuracy of the text matching on the kept posts (tests/data/).
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import random
import statistics
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rapport.catalog import CatalogFile
from rapport.numbers import caller_key, parse_number
from rapport.settings import DEVELOPMENT_PEPPER
from rapport.store.signals import SignalStore
from rapport.textmatch import Cue, Matcher
from rapport_local import PROJECT_DIR
from rapport_local.engine import create_table, local_client, local_environment
from rapport_local.lambda_runner import LocalFunction
from rapport_local.sqs import sqs_record

BATCH = 100
WARM_UP_BATCHES = 10
TEXTS = [
    "Ich will mir die X200 kaufen",
    "Unser WLAN ist eine Katastrophe, ich überlege einen Mesh-Router zu kaufen",
    "Looking for a new ebike, maybe the C7",
    "Na toll, die Soundbar ist schon wieder kaputt.",
    "thinking about getting a smart TV for the living room",
    "Suche Noise-Cancelling-Kopfhörer für den Zug",
]
GOAL_SIGNALS_PER_SECOND = 1_000
GOAL_REQUESTS_PER_SIGNAL = 1.1


@dataclass
class SignalRun:
    batches: int
    rapport_rates: list[float]
    baseline_rates: list[float]
    floor_rates: list[float]
    """The same batches' requests sent bare: what DynamoDB Local itself takes for them."""
    unconditional_rates: list[float]
    """The same, the writes sent as plain batch writes (no conditions, no transactions)."""
    rapport_requests: int
    baseline_requests: int
    failures: int
    accuracy: dict[str, tuple[float, float, float, int]]

    @property
    def signals(self) -> int:
        return self.batches * BATCH


def _messages(batch: int, rng: random.Random) -> list[dict[str, Any]]:
    records = []
    now = time.time()
    for index in range(BATCH):
        number = _us_number(rng)  # kept on legitimate interest
        observed = datetime.fromtimestamp(now - rng.uniform(0, 7) * 86_400, tz=UTC).isoformat()
        signal: dict[str, Any] = {
            "signal_id": f"bench-{batch}-{index}",
            "caller": number,
            "source": rng.choice(["social", "web", "crm"]),
            "observed_at": observed,
        }
        if index % 2:
            signal["text"] = rng.choice(TEXTS)
        else:
            product = rng.choice(["x200-headphones", "soundbar-s5", "smart-tv-q9", "mesh-router-m3"])
            signal["products"] = [{"product": product, "strength": round(rng.uniform(0.1, 0.9), 2)}]
        records.append(sqs_record(json.dumps(signal, ensure_ascii=False)))
    return records


def _us_number(rng: random.Random) -> str:
    while True:
        number = f"+1202{rng.randrange(2_000_000, 9_999_999)}"
        parsed = parse_number(number)
        if parsed is not None and parsed.region == "US":
            return number


class NaiveConsumer:
    """One PutItem per signal: the cost floor of storing a signal at all."""

    def __init__(self, endpoint: str, table: str) -> None:
        self.client = local_client(endpoint)
        self.table = table
        self.requests = 0

    def handle(self, event: dict[str, Any]) -> None:
        for record in event["Records"]:
            signal = json.loads(record["body"])
            key = caller_key(signal["caller"], DEVELOPMENT_PEPPER)
            self.client.put_item(
                TableName=self.table,
                Item={
                    "pk": {"S": f"CALLER#{key}"},
                    "sk": {"S": f"SIGNAL#{signal['signal_id']}"},
                    "body": {"S": json.dumps({k: v for k, v in signal.items() if k != "caller"})},
                },
            )
            self.requests += 1


class Floor:
    """rapport's own requests for a batch, sent again bare (same shapes and sizes, into an empty table,
    reads together then writes together as the handler sends them): the time DynamoDB Local needs for
    them, without any of the handler's work."""

    def __init__(self, endpoint: str) -> None:
        self.table = "rapport-bench-signals-floor"
        create_table(endpoint, self.table, stream=False)
        self.client = local_client(endpoint)
        self.sent: list[tuple[str, dict[str, Any]]] = []
        self._pool = ThreadPoolExecutor(4)

    def listen(self, store: SignalStore) -> None:
        original = store._call

        def recording(method: str, **params: Any) -> dict[str, Any]:
            self.sent.append((method, copy.deepcopy(params)))
            return original(method, **params)

        store._call = recording  # type: ignore[method-assign]

    def replay(self) -> tuple[float, float]:
        """Seconds the batch's requests take bare; and with its writes sent as BatchWriteItem instead,
        without conditions (what no design that keeps counts exact can do)."""
        reads = [self._read(params) for method, params in self.sent if method == "batch_get_item"]
        writes = [self._write(params) for method, params in self.sent if method == "transact_write_items"]
        started = time.perf_counter()
        list(self._pool.map(lambda params: self.client.batch_get_item(**params), reads))
        list(self._pool.map(lambda params: self.client.transact_write_items(**params), writes))
        bare = time.perf_counter() - started
        puts = [{"PutRequest": {"Item": action["Put"]["Item"]}} for w in self._salted(writes) for action in w]
        chunks = [puts[start : start + 25] for start in range(0, len(puts), 25)]
        started = time.perf_counter()
        list(self._pool.map(lambda params: self.client.batch_get_item(**params), reads))
        list(
            self._pool.map(
                lambda chunk: self.client.batch_write_item(RequestItems={self.table: chunk}), chunks
            )
        )
        return bare, time.perf_counter() - started

    @staticmethod
    def _salted(writes: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
        salt = uuid.uuid4().hex[:8]
        salted = copy.deepcopy([w["TransactItems"] for w in writes])
        for actions in salted:
            for action in actions:
                action["Put"]["Item"]["pk"]["S"] += salt
        return salted

    def _read(self, params: dict[str, Any]) -> dict[str, Any]:
        return {"RequestItems": {self.table: next(iter(params["RequestItems"].values()))}}

    def _write(self, params: dict[str, Any]) -> dict[str, Any]:
        actions = []
        salt = uuid.uuid4().hex[:8]  # every replay writes items of its own: the conditions hold
        for action in params["TransactItems"]:
            put = dict(action["Put"])
            put["TableName"] = self.table
            put["Item"] = {**put["Item"], "pk": {"S": put["Item"]["pk"]["S"] + salt}}
            put["ConditionExpression"] = "attribute_not_exists(pk)"
            put.pop("ExpressionAttributeValues", None)
            actions.append({"Put": put})
        return {"TransactItems": actions}


def accuracy(matcher: Matcher) -> dict[str, tuple[float, float, float, int]]:
    """Per kept set: precision and recall of the products whose interest rises, share of right kinds."""
    figures = {}
    for name in ("posts.json", "posts-held-out.json"):
        posts = json.loads((PROJECT_DIR / "tests" / "data" / name).read_text(encoding="utf-8"))["posts"]
        hits = wrong = missed = right_kind = 0
        for post in posts:
            got = {
                f.product: "intent" if f.cue is Cue.INTENT else "mention"
                for f in matcher.match(post["text"]).interests
            }
            expected = post["expect"]
            both = got.keys() & expected.keys()
            hits += len(both)
            wrong += len(got.keys() - expected.keys())
            missed += len(expected.keys() - got.keys())
            right_kind += sum(got[p] == expected[p] for p in both)
        figures[name] = (hits / (hits + wrong), hits / (hits + missed), right_kind / hits, len(posts))
    return figures


def measure(endpoint: str, batches: int, seed: int = 7) -> SignalRun:
    rng = random.Random(seed)
    table, baseline_table = "rapport-bench-signals", "rapport-bench-signals-baseline"
    create_table(endpoint, table, stream=False)
    create_table(endpoint, baseline_table, stream=False)
    products = CatalogFile.load(PROJECT_DIR / "examples" / "catalog.json").products
    SignalStore(local_client(endpoint), table).put_products(products)
    function = LocalFunction(
        "SignalsFunction",
        resources={"Table": table, "CallerKeySecret": "", "SignalsDeadLetterQueue": ""},
        environment={**local_environment(endpoint), "POWERTOOLS_LOG_LEVEL": "ERROR"},
    )
    naive = NaiveConsumer(endpoint, baseline_table)
    floor = Floor(endpoint)
    rapport_rates, baseline_rates, floor_rates, unconditional_rates = [], [], [], []
    failures = 0
    # The handler prints its metrics (EMF lines) to stdout, as in Lambda: not wanted in the report.
    with function.environment_applied(), contextlib.redirect_stdout(io.StringIO()):
        function.run({"Records": _messages(-1, rng)})  # warm: imports, clients, catalog
        store: SignalStore = function.module.services().store
        floor.listen(store)
        before = sum(store.requests.values())
        for batch in range(-WARM_UP_BATCHES, batches):
            event = {"Records": _messages(batch, rng)}
            floor.sent.clear()
            started = time.perf_counter()
            answer = function.run(event, function.context())
            rapport_rates.append(BATCH / (time.perf_counter() - started))
            failures += len(answer.get("batchItemFailures", []))
            bare, unconditional = floor.replay()
            floor_rates.append(BATCH / bare)
            unconditional_rates.append(BATCH / unconditional)
            started = time.perf_counter()
            naive.handle(event)
            baseline_rates.append(BATCH / (time.perf_counter() - started))
            if batch < 0:  # warming DynamoDB Local's JIT up for all three: not counted
                for rates in (rapport_rates, floor_rates, unconditional_rates, baseline_rates):
                    rates.pop()
                before = sum(store.requests.values())
                naive.requests = 0
        requests = sum(store.requests.values()) - before
    return SignalRun(
        batches,
        rapport_rates,
        baseline_rates,
        floor_rates,
        unconditional_rates,
        requests,
        naive.requests,
        failures,
        accuracy(Matcher(products)),
    )


def section(run: SignalRun) -> list[str]:
    rapport, baseline = statistics.median(run.rapport_rates), statistics.median(run.baseline_rates)
    floor = statistics.median(run.floor_rates)
    unconditional = statistics.median(run.unconditional_rates)
    per_signal = run.rapport_requests / run.signals
    return [
        f"## Signals ({run.batches} batches of {BATCH} through the SQS handler, warm)",
        "",
        "Half product signals, half free text; every signal matched, gated, added to its score and",
        "counted once. Baseline: one PutItem per signal and nothing else, alternating batch by batch.",
        "Floor: each batch's own DynamoDB requests sent again bare, reads together then writes together;",
        "then the same with its writes as plain batch writes, which could not keep a count exact.",
        "",
        "| consumer | signals/s (median batch) | vs baseline | DynamoDB requests per signal | not stored |",
        "|---|---:|---:|---:|---:|",
        f"| rapport | {rapport:,.0f} | {rapport / baseline:.2f}× | {per_signal:.3f} | {run.failures} |",
        f"| baseline | {baseline:,.0f} | 1.00× | {run.baseline_requests / run.signals:.3f} | – |",
        f"| floor: rapport's requests, bare | {floor:,.0f} | {floor / baseline:.2f}× | {per_signal:.3f}"
        " | – |",
        f"| floor, its writes without conditions (BatchWriteItem) | {unconditional:,.0f} |"
        f" {unconditional / baseline:.2f}× | – | – |",
        "",
        f"Goals: ≥ {GOAL_SIGNALS_PER_SECOND:,} signals/s — "
        f"{'met' if rapport >= GOAL_SIGNALS_PER_SECOND else '**not met**'};"
        f" ≤ {GOAL_REQUESTS_PER_SIGNAL} requests per signal — "
        f"{'met' if per_signal <= GOAL_REQUESTS_PER_SIGNAL else '**not met**'}.",
        "",
        "Text matching on the kept posts (products whose interest rises; kind: intent or mention):",
        "",
        "| posts | count | precision | recall | right kind |",
        "|---|---:|---:|---:|---:|",
        *(
            f"| {name} | {count} | {precision:.2f} | {recall:.2f} | {kind:.2f} |"
            for name, (precision, recall, kind, count) in run.accuracy.items()
        ),
    ]


__all__ = ["SignalRun", "measure", "section"]
