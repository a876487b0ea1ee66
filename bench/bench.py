"""`make bench`: rapport's figures beside a minimal baseline, measured in the same run, by roster size.

Against DynamoDB Local on loopback (one engine, one table per roster size, same machine for all):
1. latency of NEW_INBOUND_CALL and of a whole call, one call at a time, warm container, with the
   baseline and the bare requests a routing call cannot do without (the floor) interleaved;
2. DynamoDB requests and capacity units per call, by kind of caller and roster size;
3. the handler's own compute, its store answered from memory;
4. load: CALLS calls at concurrency WORKERS, each invocation served by one of WORKERS containers, with
   errors, double-bookings, lost last-agent links and why calls reached the fallback;
5. the designs not taken (bench/alternatives.py), their requests measured beside rapport's;
6. signals per second through SignalsFunction's SQS handler beside a one-PutItem-per-signal baseline,
   and the text matching's accuracy on the kept posts (bench/signals.py);
7. cold start of each function in a fresh process, and package sizes from `sam build`.
Writes bench/out/results.md and bench/out/latency.png, and prints the Markdown.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import alternatives
import signals
from containers import VOICE_CONNECTOR_ARN, Containers, connect_router, load_baseline, router
from metering import Meter
from rapport.budget import Deadline
from rapport.calls import CallFlow
from rapport.models import (
    Agent,
    AgentEndpoint,
    DecisionRecord,
    EndpointKind,
    Interest,
    LastAgent,
    NoteCode,
    Outcome,
    RoutingMode,
)
from rapport.numbers import caller_key
from rapport.pools import PoolViews, call_tag
from rapport.privacy import load_rules
from rapport.secrets import PepperSource
from rapport.settings import DEVELOPMENT_PEPPER
from rapport.store import LetGo, StoreError
from rapport.store.dynamodb import DynamoStore
from rapport.store.memory import MemoryStore
from rapport_local import PROJECT_DIR
from rapport_local.emf import MetricTotals
from rapport_local.engine import DynamoDBLocal, create_table, local_client
from rapport_local.lambda_runner import FakeLambdaContext, LocalFunction
from rapport_local.sma_contract import response_problems
from rapport_local.sma_driver import SimulatedCall, actions_of, bridge_target

BENCH_DIR = Path(__file__).resolve().parent
OUT_DIR = BENCH_DIR / "out"
COMPANY_NUMBER = "+18005550100"
PRODUCTS = ["x200-headphones", "soundbar-s5", "smart-tv-q9", "mesh-router-m3", "warranty-plus"]
DAY = 86_400.0
RETURNING_CALLERS = 60
LOAD_ROSTER = 1_000

# The figures the issue set, each as a ratio or bound checked in the report.
MEDIAN_RATIO, P99_RATIO, SIZE_RATIO, WHOLE_CALL_UNITS, COMPUTE_P99_MS, THROUGHPUT_SHARE = (
    2.5,
    3.0,
    1.5,
    6.0,
    1.0,
    0.5,
)

Handler = Callable[[dict[str, Any]], Any]
Invoke = Callable[[dict[str, Any], FakeLambdaContext], Any]


@dataclass(frozen=True)
class Function:
    """A handler and the Lambda context each invocation gets: both made before the clock starts."""

    invoke: Invoke
    context: Callable[[], FakeLambdaContext]


def percentiles(samples: list[float]) -> tuple[float, float, float]:
    ordered = sorted(samples)

    def at(share: float) -> float:
        return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]

    return statistics.median(ordered), at(0.95), at(0.99)


def ratio(ours: float, theirs: float) -> str:
    return f"{ours / theirs:.2f}×" if theirs else "–"


def verdict(ok: bool) -> str:
    return "met" if ok else "**not met**"


# -- the table of one roster size ----------------------------------------------------------------------


def roster(size: int, now: float, connect: bool = False) -> list[Agent]:
    """Agents that know one product each, idle one minute apart, with no wrap-up (so that whole calls
    run back to back); on a Voice Connector, or (`connect`) Amazon Connect users."""
    return [
        Agent(
            agent_id=f"agent-{index:05d}",
            endpoint=AgentEndpoint(kind=EndpointKind.CONNECT, address=f"00000000-0000-4000-8000-{index:012d}")
            if connect
            else AgentEndpoint(kind=EndpointKind.VOICE_CONNECTOR, address=f"agent-{index:05d}"),
            proficiency={PRODUCTS[index % len(PRODUCTS)]: 1 + index % 5},
            idle_since=now - 60 * (index + 1),
            wrap_up_seconds=0,
        )
        for index in range(size)
    ]


def returning_number(index: int) -> str:
    return f"+1303555{index:04d}"


@dataclass
class Setup:
    size: int
    table: str
    endpoint: str
    store: DynamoStore
    seed_seconds: float
    rapport: LocalFunction
    baseline: ModuleType


def prepare(endpoint: str, size: int, connect: bool = False) -> Setup:
    """A table holding a roster of `size` agents (written in batches), the baseline's forwarding item and
    returning callers (an interest and the record of an earlier call, whose link names their agent).
    `connect`: Amazon Connect users, in a table of their own, with ConnectRouterFunction over it."""
    table = f"rapport-bench-connect-{size}" if connect else f"rapport-bench-{size}"
    create_table(endpoint, table, stream=False)
    store = DynamoStore(local_client(endpoint), table)
    now = time.time()
    agents = roster(size, now, connect)
    started = time.perf_counter()
    store.load_roster(agents)
    seed_seconds = time.perf_counter() - started
    store.client.put_item(
        TableName=table,
        Item={
            "pk": {"S": f"FORWARD#{COMPANY_NUMBER}"},
            "sk": {"S": "TARGET"},
            "target": {"S": "agent-00000"},
            "arn": {"S": VOICE_CONNECTOR_ARN},
        },
    )
    for index in range(RETURNING_CALLERS):
        known = agents[index % len(agents)]
        stored = store.agent(known.agent_id)
        assert stored is not None
        pool = stored.pool
        key = caller_key(returning_number(index), DEVELOPMENT_PEPPER)
        earlier = f"earlier-{index}"
        link = LastAgent(
            agent_id=known.agent_id, pool=pool, call_id=earlier, at=now - DAY, expires_at=now + DAY
        )
        record = DecisionRecord(
            call_id=earlier,
            caller_key=key,
            decided_at=now - DAY,
            mode=RoutingMode.ANY_AVAILABLE,
            outcome=Outcome.ENDED,
            agent_id=known.agent_id,
            link=link,
            expires_at=now + 365 * DAY,
        )
        product = next(iter(known.proficiency))
        interest = Interest(
            product=product, score=0.8, updated_at=now - DAY, sources=["web"], expires_at=now + 90 * DAY
        )
        store.put_caller(key, None, [interest], [record])
    function = connect_router(endpoint, table) if connect else router(endpoint, table)
    return Setup(size, table, endpoint, store, seed_seconds, function, load_baseline(endpoint, table))


# -- one call at a time ----------------------------------------------------------------------------------


@contextlib.contextmanager
def lambda_stdout() -> Iterator[None]:
    """Where the handler's log and metric lines go while it is timed: a plain file write, as Lambda's
    stdout is (reading the metrics back, as the load runs do, would be timed with the handler)."""
    with open(os.devnull, "w") as devnull, redirect_stdout(devnull):
        yield


def timed_call(
    function: Function, number: str, fail_first: bool, meter: Meter | None = None
) -> tuple[list[float], int]:
    """Inbound, optionally one no-answer failover, bridge, hang-up; the handler's own time per event, and
    the round trips of NEW_INBOUND_CALL (when a meter watches the function's client). Each event is
    decoded (as Lambda does) and its context made before the clock starts."""
    times: list[float] = []
    before = len(meter.spans) if meter is not None else 0

    def timed(event: dict[str, Any]) -> Any:
        decoded, context = json.loads(json.dumps(event)), function.context()
        started = time.perf_counter()
        response = function.invoke(decoded, context)
        times.append((time.perf_counter() - started) * 1000)
        return response

    call = SimulatedCall(timed, number)
    response = call.new_inbound()
    rounds = meter.round_trips(before) if meter is not None else 0
    if fail_first and actions_of(response, "CallAndBridge"):
        response = call.bridge_failed(actions_of(response, "CallAndBridge")[0])
    if actions_of(response, "CallAndBridge"):
        call.bridge_answered(actions_of(response, "CallAndBridge")[0])
    call.hangup("LEG-A")
    return times, rounds


@dataclass
class Sequential:
    inbound: dict[str, list[float]] = field(default_factory=dict)
    whole: dict[str, list[float]] = field(default_factory=dict)
    costs: dict[str, list[tuple[int, float, float]]] = field(default_factory=dict)
    floor: dict[str, list[float]] = field(default_factory=dict)
    rounds: dict[str, list[int]] = field(default_factory=dict)
    counted: dict[str, list[float]] = field(default_factory=dict)
    """Units billed for the rate limit's count, per whole call (metered on the count's own client)."""


def floor_requests(store: DynamoStore, pool: str, agent_id: str, index: int, together: bool) -> float:
    """The two requests a new call cannot do without, with nothing around them: read a (new) caller's
    context and hold an agent; sent one after the other, or together. Milliseconds; the hold is then let go
    (not timed)."""
    key = f"{random.getrandbits(256):064x}"
    tag = call_tag(f"floor-{index}-{together}")
    now = time.time()
    deadline = Deadline(5)
    requests: list[Callable[[], object]] = [
        lambda: store.caller_context(key, now, deadline),
        lambda: store.reserve(pool, agent_id, tag, now, now + 35, deadline),
    ]
    started = time.perf_counter()
    if together:
        store.together(requests, deadline)
    else:
        for request in requests:
            with contextlib.suppress(StoreError):
                request()
    elapsed = (time.perf_counter() - started) * 1000
    with contextlib.suppress(StoreError):
        store.let_go(pool, LetGo(agent_id, missed=False), tag, now, deadline)
    return elapsed


CONNECT_EVENT = json.loads((PROJECT_DIR / "events" / "connect" / "inbound_voice.json").read_text())


def timed_contact(setup: Setup, number: str, meter: Meter) -> tuple[float, int]:
    """One Amazon Connect contact through ConnectRouterFunction: the handler's time (event decoded and
    context made first) and its round trips."""
    event = json.loads(json.dumps(CONNECT_EVENT))
    data = event["Details"]["ContactData"]
    data["ContactId"] = data["InitialContactId"] = str(uuid.uuid4())
    data["CustomerEndpoint"]["Address"] = number
    context = setup.rapport.context()
    before = len(meter.spans)
    with setup.rapport.environment_applied():
        started = time.perf_counter()
        setup.rapport.run(event, context)
        elapsed = (time.perf_counter() - started) * 1000
    return elapsed, meter.round_trips(before)


def sequential(setup: Setup, calls: int, contacts: Setup | None = None) -> Sequential:
    """Every kind of call in turn, `calls` times, so that all see the same engine state and machine load.
    `contacts`: a table of Amazon Connect users, whose contacts go through ConnectRouterFunction in the
    same rotation."""
    result = Sequential()
    rapport_meter, baseline_meter, connect_meter = Meter(), Meter(), Meter()
    with setup.rapport.environment_applied(), lambda_stdout():
        setup.rapport.run({"InvocationEventType": "RINGING"})  # a warm container, as in steady traffic
        for client in setup.rapport.module.services().store.clients:  # the rate-limit count's too
            rapport_meter.attach(client)
        count_meter = Meter()  # the rate-limit count alone: its client sends nothing else
        count_meter.attach(setup.rapport.module.services().store.clients[1])
        baseline_meter.attach(setup.baseline.dynamodb)
        rapport = Function(setup.rapport.run, setup.rapport.context)
        baseline = Function(setup.baseline.lambda_handler, lambda: FakeLambdaContext("baseline", 4, 512))
        floor_agent = setup.store.agent(roster(setup.size, 0)[-1].agent_id)
        assert floor_agent is not None
        for warm in range(20):
            timed_call(rapport, f"+1505555{warm:04d}", fail_first=False)
            timed_call(baseline, f"+1505556{warm:04d}", fail_first=False)

        def metered(name: str, handle: Function, meter: Meter, number: str, fail: bool) -> None:
            before, counted = meter.snapshot(), count_meter.billed
            times, rounds = timed_call(handle, number, fail, meter)
            after = meter.snapshot()
            if meter is rapport_meter:
                result.counted.setdefault(name, []).append(count_meter.billed - counted)
            result.inbound.setdefault(name, []).append(times[0])
            result.rounds.setdefault(name, []).append(rounds)
            result.whole.setdefault(name, []).append(sum(times))
            result.costs.setdefault(name, []).append(
                (after[0] - before[0], after[1] - before[1], after[2] - before[2])
            )

        def floor(name: str, index: int, together: bool) -> None:
            assert floor_agent is not None
            elapsed = floor_requests(setup.store, floor_agent.pool, floor_agent.agent_id, index, together)
            result.floor.setdefault(name, []).append(elapsed)

        def contact(name: str, number: str) -> None:
            assert contacts is not None
            before = connect_meter.snapshot()
            elapsed, rounds = timed_contact(contacts, number, connect_meter)
            after = connect_meter.snapshot()
            result.inbound.setdefault(name, []).append(elapsed)
            result.rounds.setdefault(name, []).append(rounds)
            result.whole.setdefault(name, []).append(elapsed)
            result.costs.setdefault(name, []).append(
                (after[0] - before[0], after[1] - before[1], after[2] - before[2])
            )

        kinds: list[Callable[[int], None]] = [
            lambda i: metered("new caller, one failover", rapport, rapport_meter, f"+1202555{i:04d}", True),
            lambda i: metered("new caller", rapport, rapport_meter, f"+1202666{i:04d}", False),
            lambda i: metered(
                "returning caller", rapport, rapport_meter, returning_number(i % RETURNING_CALLERS), False
            ),
            lambda i: metered("baseline", baseline, baseline_meter, f"+1404555{i:04d}", False),
            lambda i: floor("one after the other", i, together=False),
            lambda i: floor("together", i, together=True),
        ]
        if contacts is not None:
            timed_contact(contacts, "+15055570000", Meter())  # a warm container
            connect_meter.attach(contacts.rapport.module.services().store.client)
            kinds += [
                lambda i: contact("Connect contact, new caller", f"+1202777{i:04d}"),
                lambda i: contact(
                    "Connect contact, returning caller", returning_number(i % RETURNING_CALLERS)
                ),
            ]
        order = random.Random(setup.size)
        for index in range(calls):
            order.shuffle(kinds)
            for run in kinds:
                run(index)
    return result


# -- the handler's own compute ----------------------------------------------------------------------------


def compute(size: int, calls: int) -> list[float]:
    """NEW_INBOUND_CALL of new callers through the real handler, its store answered from memory: the
    handler's own work (parsing, routing, the answer, logging, metrics) without I/O."""
    function = router("http://127.0.0.1:9", "rapport-bench-compute")
    memory = MemoryStore()
    memory.load_roster(roster(size, time.time()))
    # The store stands in for DynamoDB, outside the function: its objects are no part of the heap the
    # collector walks in Lambda (the handler freezes its own start-up objects the same way).
    gc.freeze()
    with function.environment_applied(), lambda_stdout():
        services = function.module.services()
        services.store = memory
        services.flow = CallFlow(
            memory, services.settings, load_rules(), PoolViews(), PepperSource.for_settings(services.settings)
        )
        samples: list[float] = []
        for index in range(calls + 300):
            call = SimulatedCall(function.handle, f"+1202777{index % 10_000:04d}")
            event = json.loads(json.dumps(call.event("NEW_INBOUND_CALL", [call.leg_a])))
            context = function.context()
            started = time.perf_counter()
            response = function.run(event, context)
            elapsed = (time.perf_counter() - started) * 1000
            if index >= 300:  # the first calls warm the container up
                samples.append(elapsed)
            call.attributes = response.get("TransactionAttributes", {})
            call.hangup("LEG-A")  # frees the agent again
            # The store's log of requests is the bench's, not the handler's: it would grow in the heap
            # the collector walks, where a Lambda's never has it.
            memory.requests.clear()
            memory.rounds.clear()
    return samples


# -- load -------------------------------------------------------------------------------------------------


@dataclass
class LoadResult:
    calls: int
    seconds: float
    inbound_ms: list[float]
    errors: int
    double_bookings: int
    lost_links: int
    routed: Counter[str]
    fallbacks: Counter[str]


def fallback_reason(store: DynamoStore, number: str, call_id: str) -> str:
    record = store.decision(caller_key(number, DEVELOPMENT_PEPPER), call_id)
    if record is None:
        return "no record"
    codes = {note.code for note in record.notes}
    details = " ".join(note.detail for note in record.notes)
    if NoteCode.BUDGET_SPENT in codes or "budget" in details:
        return "time budget"
    if codes & {NoteCode.ALL_TAKEN, NoteCode.NO_AGENT_AVAILABLE}:
        return "no agent free"
    if codes & {NoteCode.AGENTS_UNREADABLE, NoteCode.RESERVATION_FAILED, NoteCode.PROFILE_UNAVAILABLE}:
        return "DynamoDB slow or failing"
    return "other: " + ", ".join(sorted(codes))


def load(
    handle: Handler, store: DynamoStore | None, calls: int, workers: int, fail_share: float
) -> LoadResult:
    """CALLS calls from distinct callers, WORKERS at a time. For rapport (store given) it also checks that no
    agent is ever rung by two calls at once, that every connected call left its link, and why calls that
    reached the fallback did."""
    lock = threading.Lock()
    holding: dict[str, str] = {}
    double_bookings = errors = 0
    inbound_ms: list[float] = []
    routed: Counter[str] = Counter()
    expected_links: dict[str, tuple[str, str]] = {}
    fallen: list[tuple[str, str]] = []
    chooser = random.Random(7)
    fail = [chooser.random() < fail_share for _ in range(calls)]

    def hold(agent: str | None, transaction: str) -> None:
        nonlocal double_bookings
        if agent is None or not agent.startswith("agent-"):
            return
        with lock:
            if agent in holding:
                double_bookings += 1
            holding[agent] = transaction

    def free(agent: str | None, transaction: str) -> None:
        with lock:
            if agent is not None and holding.get(agent) == transaction:
                del holding[agent]

    def checked(event: dict[str, Any]) -> Any:
        nonlocal errors
        try:
            response = handle(event)
        except Exception:  # noqa: BLE001 - counted: an exception is an error the SMA would see
            with lock:
                errors += 1
            return {"SchemaVersion": "1.0", "Actions": []}
        if response_problems(response):
            with lock:
                errors += 1
        return response

    def one_call(index: int) -> None:
        number = f"+1505555{index:04d}"  # distinct, valid US numbers: links are kept for a year
        call = SimulatedCall(checked, number)
        started = time.perf_counter()
        response = call.new_inbound()
        elapsed = (time.perf_counter() - started) * 1000
        target = bridge_target(response)
        hold(target, call.transaction_id)
        if fail[index] and actions_of(response, "CallAndBridge"):
            free(target, call.transaction_id)  # released by the event we are about to send
            response = call.bridge_failed(actions_of(response, "CallAndBridge")[0])
            target = bridge_target(response)
            hold(target, call.transaction_id)
        if actions_of(response, "CallAndBridge"):
            call.bridge_answered(actions_of(response, "CallAndBridge")[0])
            free(target, call.transaction_id)
            outcome = "agent"
            if target is not None:
                with lock:
                    expected_links[caller_key(number, DEVELOPMENT_PEPPER)] = (target, call.transaction_id)
        else:
            outcome = "fallback"
            with lock:
                fallen.append((number, call.transaction_id))
        call.hangup("LEG-A")
        with lock:
            inbound_ms.append(elapsed)
            routed[outcome] += 1

    started = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one_call, range(calls)))
    seconds = time.perf_counter() - started
    lost = 0
    reasons: Counter[str] = Counter()
    if store is not None:
        now = time.time()
        for key, (agent, transaction) in expected_links.items():
            link = store.caller_context(key, now).last_agent
            if link is None or link.agent_id != agent or link.call_id != transaction:
                lost += 1
        reasons.update(fallback_reason(store, number, call_id) for number, call_id in fallen)
    return LoadResult(calls, seconds, inbound_ms, errors, double_bookings, lost, routed, reasons)


# -- cold start and package sizes ----------------------------------------------------------------------

COLD_START_VARIANTS = ("baseline", "rapport", "rapport+tracer", "sip_rule")


@dataclass(frozen=True)
class ColdStart:
    init_ms: float
    first_ms: float | None
    warm_ms: float | None


def cold_starts(endpoint: str, table: str, runs: int, warm_calls: int) -> dict[str, ColdStart]:
    """Each variant `runs` times in a fresh process, the variants interleaved so drift hits all alike."""
    samples: dict[str, list[dict[str, Any]]] = {which: [] for which in COLD_START_VARIANTS}
    for _ in range(runs):
        for which in COLD_START_VARIANTS:
            output = subprocess.run(  # noqa: S603 - our own script, fixed arguments
                [sys.executable, str(BENCH_DIR / "cold_start.py"), which, endpoint, table, str(warm_calls)],
                capture_output=True,
                text=True,
                check=True,
                cwd=PROJECT_DIR,
            ).stdout
            samples[which].append(json.loads(output.strip().splitlines()[-1]))

    def median_of(runs_of: list[dict[str, Any]], key: str) -> float | None:
        values = [run[key] for run in runs_of if run.get(key) is not None]
        return statistics.median(values) if values else None

    return {
        which: ColdStart(
            init_ms=median_of(runs_of, "init_ms") or 0.0,
            first_ms=median_of(runs_of, "first_ms"),
            warm_ms=median_of(runs_of, "warm_ms"),
        )
        for which, runs_of in samples.items()
    }


def directory_size(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def zipped_size(path: Path) -> int:
    with tempfile.TemporaryDirectory() as scratch:
        return Path(shutil.make_archive(str(Path(scratch) / "package"), "zip", path)).stat().st_size


def tracer_package_cost() -> tuple[int, int, int] | str:
    """What adding aws-xray-sdk (Powertools Tracer's SDK) would add to the layer for python3.13 arm64:
    (unzipped bytes, zipped bytes, of which botocore unzipped), installed as sam build would, with deps."""
    from importlib.metadata import version

    with tempfile.TemporaryDirectory() as target:
        installed = subprocess.run(  # noqa: S603 - pip with fixed arguments
            [
                sys.executable, "-m", "pip", "install", "--quiet", "--target", target,
                "--platform", "manylinux2014_aarch64", "--python-version", "3.13", "--implementation", "cp",
                "--only-binary=:all:", f"aws-xray-sdk=={version('aws-xray-sdk')}",
            ],
            capture_output=True,
            text=True,
        )  # fmt: skip
        if installed.returncode != 0:
            return f"not measured: pip could not fetch aws-xray-sdk ({installed.stderr.strip()[-200:]})"
        root = Path(target)
        botocore = sum(directory_size(path) for path in root.glob("botocore*"))
        return directory_size(root), zipped_size(root), botocore


def package_sizes() -> dict[str, tuple[int, int]] | str:
    sam = PROJECT_DIR / ".venv-sam" / "bin" / "sam"
    if not sam.exists():
        return "sam not installed (run `make setup`)"
    py313 = Path(subprocess.run(["pyenv", "root"], capture_output=True, text=True).stdout.strip())  # noqa: S607
    environment = {**os.environ, "PATH": f"{py313 / 'versions' / '3.13.0' / 'bin'}:{os.environ['PATH']}"}
    with tempfile.TemporaryDirectory() as build:
        subprocess.run(  # noqa: S603
            [str(sam), "build", "--build-dir", build, "--template", str(PROJECT_DIR / "template.yaml")],
            cwd=PROJECT_DIR,
            env=environment,
            check=True,
            capture_output=True,
        )
        sizes = {
            path.name: (directory_size(path), zipped_size(path))
            for path in sorted(Path(build).iterdir())
            if path.is_dir()
        }
    sizes["baseline (app.py only)"] = (
        directory_size(BENCH_DIR / "baseline"),
        zipped_size(BENCH_DIR / "baseline"),
    )
    return sizes


# -- the report -------------------------------------------------------------------------------------------


def ms(value: float) -> str:
    return f"{value:.2f}"


def latency_section(results: dict[int, Sequential], calls: int) -> list[str]:
    lines = [
        f"## NEW_INBOUND_CALL, warm container, one call at a time ({calls} of each kind per roster size)",
        "",
        "Handler time only (the event is decoded before the clock starts). New callers have no profile;",
        "returning callers have an interest and a last-agent link. The floor is the two requests a",
        "routing call cannot do without (read the caller's context, hold an agent) with nothing around",
        "them: no handler, no routing.",
        "",
        "| agents | kind | median ms | p95 ms | p99 ms | median vs baseline | p99 vs baseline"
        " | round trips: usual (most) |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for size, result in results.items():
        base = percentiles(result.inbound["baseline"])
        rows = [
            *result.inbound.items(),
            *((f"floor, {name}", samples) for name, samples in result.floor.items()),
        ]
        for name, samples in rows:
            median, p95, p99 = percentiles(samples)
            rounds = result.rounds.get(name)
            trips = f"{statistics.mode(rounds)} ({max(rounds)})" if rounds else "–"
            lines.append(
                f"| {size:,} | {name} | {ms(median)} | {ms(p95)} | {ms(p99)} | {ratio(median, base[0])}"
                f" | {ratio(p99, base[2])} | {trips} |"
            )
    return lines


def costs_section(results: dict[int, Sequential]) -> list[str]:
    lines = [
        "## DynamoDB requests and capacity units per whole call",
        "",
        "A whole call is every event of it: inbound, (the failover,) the bridge answered, the hang-up.",
        "Units as DynamoDB Local reports them, and as DynamoDB bills them (a read costs at least half a",
        "unit, a failed conditional write one unit; DynamoDB Local reports neither).",
        "",
        "| agents | kind | requests | units (Local) | units (billed) |",
        "|---:|---|---:|---:|---:|",
    ]
    for size, result in results.items():
        for name, samples in result.costs.items():
            requests = statistics.mean(s[0] for s in samples)
            reported = statistics.mean(s[1] for s in samples)
            billed = statistics.mean(s[2] for s in samples)
            lines.append(f"| {size:,} | {name} | {requests:.2f} | {reported:.2f} | {billed:.2f} |")
    return lines


def targets_section(
    results: dict[int, Sequential], computed: dict[int, list[float]], loads: dict[str, LoadResult]
) -> list[str]:
    lines = ["## Targets", "", "| target | figure | |", "|---|---|---|"]
    for size, result in results.items():
        ours, base = percentiles(result.inbound["new caller"]), percentiles(result.inbound["baseline"])
        median_ratio, p99_ratio = ours[0] / base[0], ours[2] / base[2]
        lines.append(
            f"| NEW_INBOUND_CALL median ≤ {MEDIAN_RATIO}× baseline, {size:,} agents | {median_ratio:.2f}×"
            f" ({ms(ours[0])} / {ms(base[0])} ms) | {verdict(median_ratio <= MEDIAN_RATIO)} |"
        )
        lines.append(
            f"| NEW_INBOUND_CALL p99 ≤ {P99_RATIO}× baseline p99, {size:,} agents | {p99_ratio:.2f}×"
            f" ({ms(ours[2])} / {ms(base[2])} ms) | {verdict(p99_ratio <= P99_RATIO)} |"
        )
        floor = statistics.median(result.floor["one after the other"]) / base[0]
        lines.append(
            f"| (what the two requests alone take, one after the other, {size:,} agents) | {floor:.2f}× | – |"
        )
        billed = statistics.mean(s[2] for s in result.costs["new caller, one failover"])
        lines.append(
            f"| whole call (inbound, one failover, bridge, hang-up) ≤ {WHOLE_CALL_UNITS:.0f} units, {size:,}"
            f" agents | {billed:.2f} billed | {verdict(billed <= WHOLE_CALL_UNITS)} |"
        )
        counted = statistics.mean(result.counted.get("new caller, one failover", [0.0]))
        lines.append(
            f"| (of it, the rate limit's count, metered on its own client, {size:,} agents;"
            f" `rate_limit: null` leaves it out) | {counted:.2f} billed | – |"
        )
        costliest, most = max(
            ((kind, statistics.mean(s[2] for s in costs)) for kind, costs in result.costs.items()),
            key=lambda entry: entry[1],
        )
        lines.append(
            f"| (the costliest kind of whole call, {size:,} agents) | {most:.2f} billed ({costliest}) | – |"
        )
        rounds = {kind: max(trips) for kind, trips in result.rounds.items() if kind != "baseline"}
        most, new_most = max(rounds.values()), rounds.get("new caller", 0)
        lines.append(
            f"| NEW_INBOUND_CALL round trips ≤ 3, ≤ 2 without usable profile, {size:,} agents"
            f" | at most {most}; new callers at most {new_most} | {verdict(most <= 3 and new_most <= 2)} |"
        )
    sizes = sorted(results)
    small, large = (statistics.median(results[s].inbound["new caller"]) for s in (sizes[0], sizes[-1]))
    lines.append(
        f"| median at {sizes[-1]:,} agents ≤ {SIZE_RATIO}× median at {sizes[0]:,} | {large / small:.2f}×"
        f" | {verdict(large / small <= SIZE_RATIO)} |"
    )
    for size, samples in computed.items():
        p99 = percentiles(samples)[2]
        lines.append(
            f"| handler compute p99 ≤ {COMPUTE_P99_MS:.0f} ms (store in memory), {size:,} agents"
            f" | {p99:.3f} ms"
            f" | {verdict(p99 <= COMPUTE_P99_MS)} |"
        )
    rapport = next(
        result
        for name, result in loads.items()
        if name.startswith("rapport, concurrency") and "light" not in name
    )
    base_load = next(result for name, result in loads.items() if name.startswith("baseline"))
    share = (rapport.calls / rapport.seconds) / (base_load.calls / base_load.seconds)
    budget = rapport.fallbacks.get("time budget", 0)
    flawless = not (rapport.errors or rapport.double_bookings or rapport.lost_links)
    lines += [
        f"| load: 0 errors, 0 double-bookings, 0 lost links | {rapport.errors}, {rapport.double_bookings},"
        f" {rapport.lost_links} | {verdict(flawless)} |",
        f"| load: no fallback caused by the budget | {budget} of {rapport.routed['fallback']} fallbacks"
        f" | {verdict(budget == 0)} |",
        f"| load: ≥ {THROUGHPUT_SHARE:.0%} of the baseline's calls/s (goal) | {share:.0%}"
        f" | {verdict(share >= THROUGHPUT_SHARE)} |",
    ]
    return lines


def load_section(loads: dict[str, LoadResult], published: dict[str, MetricTotals], workers: int) -> list[str]:
    lines = [
        f"## Load: {next(iter(loads.values())).calls:,} calls over {LOAD_ROSTER:,} agents",
        "",
        f"rapport calls: 20 % ring out the first agent and fail over. {workers} containers of each function",
        "serve the calls (each invocation goes to whichever is free), all in one Python process on this",
        f"machine's {os.cpu_count()} cores with DynamoDB Local. Latency: NEW_INBOUND_CALL. DynamoDB",
        "requests: rapport's counted from the StoreLatency values it published (one per request); the",
        "baseline makes one per call.",
        "",
        "| run | calls/s | vs baseline | DynamoDB requests per call | requests/s | median ms | p95 ms"
        " | p99 ms | errors | double-bookings | lost links | to an agent | fallback (why) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|",
    ]
    base = next(result for name, result in loads.items() if name.startswith("baseline"))
    for name, result in loads.items():
        median, p95, p99 = percentiles(result.inbound_ms)
        rate = result.calls / result.seconds
        rapport = name in published
        requests = (
            len(published[name].durations_ms.get("StoreLatency", [])) / result.calls if rapport else 1.0
        )
        why = ", ".join(f"{reason} {count}" for reason, count in result.fallbacks.most_common()) or "–"
        lines.append(
            f"| {name} | {rate:.0f} | {ratio(rate, base.calls / base.seconds)} | {requests:.2f}"
            f" | {rate * requests:.0f} | {ms(median)} | {ms(p95)}"
            f" | {ms(p99)} | {result.errors} | {result.double_bookings if rapport else '–'}"
            f" | {result.lost_links if rapport else '–'} | {result.routed['agent']}"
            f" | {result.routed['fallback']}"
            f" ({why}) |"
        )
    lines += [
        "",
        "The router's own metrics (the EMF lines it printed) for the same runs, which must agree:",
        "",
        "| run | NewCalls | Fallbacks | Failovers | HandlerErrors | StoreErrors"
        " | StoreLatency median / p95 ms |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, totals in published.items():
        counts = totals.counts
        store_median, store_p95, _ = percentiles(totals.durations_ms.get("StoreLatency", [0.0]))
        lines.append(
            f"| {name} | {counts['NewCalls']} | {counts['Fallbacks']} | {counts['Failovers']}"
            f" | {counts['HandlerErrors']} | {counts['StoreErrors']} | {ms(store_median)} / {ms(store_p95)} |"
        )
    return lines


def cold_section(colds: dict[str, ColdStart], runs: int, warm_calls: int) -> list[str]:
    def shown(value: float | None) -> str:
        return f"{value:.1f}" if value is not None else "not measured"

    lines = [
        f"## Cold start in a fresh process (median of {runs})",
        "",
        f"Warm: median NEW_INBOUND_CALL over the next {warm_calls} calls in the same process."
        " rapport+tracer: the router with Powertools Tracer (aws-xray-sdk, botocore patched), every"
        " invocation sampled and sent.",
        "",
        "| function | imports and set-up ms | first invocation ms | warm NEW_INBOUND_CALL ms |",
        "|---|---:|---:|---:|",
    ]
    lines += [
        f"| {which} | {cold.init_ms:.1f} | {shown(cold.first_ms)} | {shown(cold.warm_ms)} |"
        for which, cold in colds.items()
    ]
    rapport, traced, base = colds["rapport"], colds["rapport+tracer"], colds["baseline"]
    rapport_start = rapport.init_ms + (rapport.first_ms or 0)
    traced_start = traced.init_ms + (traced.first_ms or 0)
    lines.append(
        f"\nrapport / baseline: imports {ratio(rapport.init_ms, base.init_ms)}, first invocation"
        f" {ratio(rapport.first_ms or 0, base.first_ms or 0)}."
        f" Tracer adds {traced_start - rapport_start:+.1f} ms"
        f" to a cold start and {(traced.warm_ms or 0) - (rapport.warm_ms or 0):+.2f} ms to a warm new call."
    )
    return lines


def sizes_section(
    sizes: dict[str, tuple[int, int]] | str, tracer_cost: tuple[int, int, int] | str
) -> list[str]:
    lines = ["## Package sizes (`sam build`, python3.13, arm64)", ""]
    if isinstance(sizes, str):
        lines.append(sizes)
    else:
        lines += ["| package | unzipped KB | zipped KB |", "|---|---:|---:|"]
        lines += [
            f"| {name} | {raw / 1024:.0f} | {packed / 1024:.0f} |" for name, (raw, packed) in sizes.items()
        ]
    if isinstance(tracer_cost, str):
        lines.append(f"\naws-xray-sdk for Tracer: {tracer_cost}")
    else:
        raw, packed, botocore = tracer_cost
        lines.append(
            f"\nPowertools Tracer would add aws-xray-sdk and its dependencies: {raw / 1024:.0f} KB unzipped,"
            f" {packed / 1024:.0f} KB zipped, of which botocore {botocore / 1024:.0f} KB unzipped."
        )
    return lines


def plot(results: dict[int, Sequential], loads: dict[str, LoadResult], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    series: dict[str, list[float]] = {}
    for size, result in results.items():
        series[f"rapport, new caller, {size:,} agents"] = result.inbound["new caller"]
    series["baseline"] = next(iter(results.values())).inbound["baseline"]
    panels = [
        ("NEW_INBOUND_CALL, one call at a time", series),
        ("NEW_INBOUND_CALL under load", {name: result.inbound_ms for name, result in loads.items()}),
    ]
    for axis, (title, data) in zip(axes, panels, strict=True):
        for name, samples in data.items():
            ordered = sorted(samples)
            axis.plot(ordered, [i / len(ordered) for i in range(len(ordered))], label=name)
        axis.set_xscale("log")
        axis.set_xlabel("handler latency (ms, log scale)")
        axis.set_ylabel("share of calls")
        axis.set_title(title, fontsize=10)
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--calls", type=int, default=300, help="calls of each kind, one at a time, per roster size"
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 1_000, 10_000], help="roster sizes")
    parser.add_argument("--compute-calls", type=int, default=3_000)
    parser.add_argument(
        "--alternative-calls", type=int, default=30, help="calls per roster size for each design not taken"
    )
    parser.add_argument("--load-calls", type=int, default=1_000)
    parser.add_argument("--workers", type=int, default=50)
    parser.add_argument(
        "--light-workers", type=int, default=4, help="a second load this machine's cores keep up with"
    )
    parser.add_argument("--cold-runs", type=int, default=7)
    parser.add_argument("--warm-calls", type=int, default=100, help="warm calls after each cold start")
    parser.add_argument("--no-build", action="store_true", help="skip sam build (package sizes)")
    parser.add_argument(
        "--signal-batches", type=int, default=30, help="batches of 100 signals through SignalsFunction"
    )
    options = parser.parse_args()
    OUT_DIR.mkdir(exist_ok=True)
    started = time.perf_counter()

    with DynamoDBLocal() as engine:
        setups = {size: prepare(engine.endpoint, size) for size in sorted(set([*options.sizes, LOAD_ROSTER]))}
        results = {}
        for size in options.sizes:
            # Each roster size's Connect table lives only while its calls are measured: the engine's
            # memory is the same for the measurements after it as it was before Connect was measured.
            contacts = prepare(engine.endpoint, size, connect=True)
            results[size] = sequential(setups[size], options.calls, contacts)
            contacts.store.client.delete_table(TableName=contacts.table)
        computed = {
            size: compute(size, options.compute_calls) for size in (min(options.sizes), max(options.sizes))
        }
        load_setup = setups[LOAD_ROSTER]
        published: dict[str, MetricTotals] = {}
        loads: dict[str, LoadResult] = {}
        for name, workers, kind in (
            (f"rapport, concurrency {options.workers}", options.workers, "rapport"),
            (f"baseline, concurrency {options.workers}", options.workers, "baseline"),
            (f"rapport, concurrency {options.light_workers} (light)", options.light_workers, "rapport"),
        ):
            containers = Containers(kind, engine.endpoint, load_setup.table, workers)
            rapport = kind == "rapport"
            loads[name] = load(
                containers,
                load_setup.store if rapport else None,
                options.load_calls,
                workers,
                0.2 if rapport else 0.0,
            )
            totals = containers.close()
            if rapport:
                published[name] = totals
        rejected = alternatives.measure(
            engine.endpoint,
            {size: roster(size, time.time()) for size in options.sizes},
            options.alternative_calls,
        )
        signal_run = signals.measure(engine.endpoint, options.signal_batches)
        colds = cold_starts(engine.endpoint, load_setup.table, options.cold_runs, options.warm_calls)
        seeding = {size: setup.seed_seconds for size, setup in setups.items()}
    sizes: dict[str, tuple[int, int]] | str = "skipped (--no-build)" if options.no_build else package_sizes()
    tracer_cost: tuple[int, int, int] | str = (
        "skipped (--no-build)" if options.no_build else tracer_package_cost()
    )

    lines = [
        "# rapport benchmark",
        "",
        f"DynamoDB Local on loopback, Python {sys.version.split()[0]}, {os.cpu_count()} cores, run took"
        f" {time.perf_counter() - started:.0f} s. Baseline: `bench/baseline/app.py` (one GetItem, one"
        " CallAndBridge). Seeding the roster in batch writes: "
        + ", ".join(f"{size:,} agents {seconds:.1f} s" for size, seconds in seeding.items())
        + ".",
        "",
        *targets_section(results, computed, loads),
        "",
        *latency_section(results, options.calls),
        "",
        *costs_section(results),
        "",
        f"## The handler's own compute ({options.compute_calls:,} new calls, store in memory)",
        "",
        "| agents | median ms | p95 ms | p99 ms |",
        "|---:|---:|---:|---:|",
        *(
            f"| {size:,} | {percentiles(s)[0]:.3f} | {percentiles(s)[1]:.3f} | {percentiles(s)[2]:.3f} |"
            for size, s in computed.items()
        ),
        "",
        *load_section(loads, published, options.workers),
        "",
        *alternatives.section(rejected),
        "",
        *signals.section(signal_run),
        "",
        *cold_section(colds, options.cold_runs, options.warm_calls),
        "",
        *sizes_section(sizes, tracer_cost),
        "",
        "![latency](latency.png)",
        "",
    ]
    report = "\n".join(lines)
    (OUT_DIR / "results.md").write_text(report)
    plot(results, loads, OUT_DIR / "latency.png")
    print(report)


if __name__ == "__main__":
    main()
