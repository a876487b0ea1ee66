"""`make bench`: rapport's figures beside a minimal baseline, measured in the same run.

Against DynamoDB Local on loopback (one engine, one table, same machine for both):
1. latency of NEW_INBOUND_CALL and of a whole call, sequential, warm container;
2. DynamoDB requests and consumed capacity per call;
3. cold start of each function in a fresh process (imports, then the first invocation);
4. package sizes from `sam build`;
5. load: CALLS calls at concurrency WORKERS, with errors, double-bookings and lost last-agent links.
Writes bench/out/results.md and bench/out/latency.png, and prints the Markdown.
"""

from __future__ import annotations

import argparse
import importlib.util
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
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, redirect_stdout
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any
from unittest import mock

from rapport.models import AgentEndpoint, EndpointKind
from rapport.numbers import caller_key
from rapport.settings import DEVELOPMENT_PEPPER
from rapport.store import Store
from rapport_local import PROJECT_DIR
from rapport_local.emf import MetricSink
from rapport_local.engine import DynamoDBLocal, create_table, local_client, local_environment
from rapport_local.lambda_runner import FakeLambdaContext, LocalFunction
from rapport_local.scenario import ScenarioAgent
from rapport_local.sma_contract import response_problems
from rapport_local.sma_driver import SimulatedCall, actions_of, bridge_target

BENCH_DIR = Path(__file__).resolve().parent
OUT_DIR = BENCH_DIR / "out"
TABLE = "rapport-bench"
VOICE_CONNECTOR_ARN = "arn:aws:chime:us-east-1:123456789012:vc/abcdefghijklmnopqrstu1"
COMPANY_NUMBER = "+18005550100"
PRODUCTS = ["x200-headphones", "soundbar-s5", "smart-tv-q9", "mesh-router-m3", "warranty-plus"]

Handler = Callable[[dict[str, Any]], Any]


def percentiles(samples: list[float]) -> tuple[float, float, float]:
    ordered = sorted(samples)

    def at(share: float) -> float:
        return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]

    return statistics.median(ordered), at(0.95), at(0.99)


def percent(part: float, whole: float) -> str:
    return f"{100 * part / whole:+.1f} %" if whole else "–"


def ratio(ours: float, theirs: float) -> str:
    return f"{ours / theirs:.1f}×" if theirs else "–"


# -- the two handlers ---------------------------------------------------------------------------------


def load_baseline(endpoint: str) -> tuple[ModuleType, dict[str, str]]:
    environment = {**local_environment(endpoint), "TABLE_NAME": TABLE}
    spec = importlib.util.spec_from_file_location("rapport_bench_baseline", BENCH_DIR / "baseline" / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    with mock.patch.dict(os.environ, environment):
        spec.loader.exec_module(module)
    return module, environment


@dataclass
class Handlers:
    rapport: LocalFunction
    baseline: ModuleType
    baseline_environment: dict[str, str]

    @contextmanager
    def applied(self) -> Iterator[tuple[Handler, Handler]]:
        """Both handlers callable from many threads (their environments differ only in TABLE_NAME
        and log level, which each read once at set-up)."""
        with self.rapport.environment_applied():
            yield self.rapport.handle, self.call_baseline

    def call_baseline(self, event: dict[str, Any]) -> Any:
        return self.baseline.lambda_handler(event, FakeLambdaContext("baseline", 4, 512))


def seed(store: Store, agents: int) -> None:
    now = time.time()
    for index in range(agents):
        agent_id = f"agent-{index:03d}"
        spec = ScenarioAgent(
            agent_id=agent_id,
            endpoint=AgentEndpoint(kind=EndpointKind.VOICE_CONNECTOR, address=agent_id),
            proficiency={PRODUCTS[index % len(PRODUCTS)]: 1 + index % 5},
            idle_minutes=index,
            wrap_up_seconds=0,
        )
        store.put_agent(spec.agent(now))
    store.client.put_item(
        TableName=TABLE,
        Item={
            "pk": {"S": f"FORWARD#{COMPANY_NUMBER}"},
            "sk": {"S": "TARGET"},
            "target": {"S": "agent-000"},
            "arn": {"S": VOICE_CONNECTOR_ARN},
        },
    )


# -- sequential latency, requests and capacity --------------------------------------------------------


@dataclass
class Meter:
    """Counts DynamoDB requests and their consumed capacity on one client."""

    requests: Counter[str] = field(default_factory=Counter)
    capacity: float = 0.0

    def attach(self, client: Any) -> None:
        events = client.meta.events
        events.register("provide-client-params.dynamodb.*", self._ask_for_capacity)
        events.register("before-call.dynamodb.*", self._count)
        events.register("after-call.dynamodb.*", self._add_capacity)

    def _ask_for_capacity(self, params: dict[str, Any], **_: Any) -> None:
        params.setdefault("ReturnConsumedCapacity", "TOTAL")

    def _count(self, model: Any, **_: Any) -> None:
        self.requests[model.name] += 1

    def _add_capacity(self, parsed: dict[str, Any], **_: Any) -> None:
        consumed = parsed.get("ConsumedCapacity")
        for entry in consumed if isinstance(consumed, list) else [consumed] if consumed else []:
            self.capacity += float(entry.get("CapacityUnits", 0))

    def snapshot(self) -> tuple[int, float]:
        return sum(self.requests.values()), self.capacity


def rapport_call(handle: Handler, number: str, fail_first: bool) -> tuple[list[float], SimulatedCall]:
    """Inbound, optionally one failover, bridge, hang-up; the handler's time for each invocation."""
    times: list[float] = []

    def timed(event: dict[str, Any]) -> Any:
        started = time.perf_counter()
        response = handle(event)
        times.append((time.perf_counter() - started) * 1000)
        return response

    call = SimulatedCall(timed, number)
    response = call.new_inbound()
    if fail_first and actions_of(response, "CallAndBridge"):
        response = call.bridge_failed(actions_of(response, "CallAndBridge")[0])
    if actions_of(response, "CallAndBridge"):
        call.bridge_answered(actions_of(response, "CallAndBridge")[0])
        call.hangup("LEG-A")
    return times, call


def metered_call(
    meter: Meter, handle: Handler, number: str, fail_first: bool
) -> tuple[list[float], tuple[int, float]]:
    """`rapport_call`, with the DynamoDB requests and capacity `meter` saw during it."""
    before = meter.snapshot()
    times, _ = rapport_call(handle, number, fail_first)
    after = meter.snapshot()
    return times, (after[0] - before[0], after[1] - before[1])


def sequential(handlers: Handlers, meter: Meter, baseline_meter: Meter, calls: int) -> dict[str, Any]:
    results: dict[str, Any] = {
        "inbound": {"rapport": [], "baseline": []},
        "whole": {"rapport": [], "baseline": []},
    }
    requests: dict[str, list[tuple[int, float]]] = {"inbound": [], "whole": [], "baseline": []}
    with handlers.applied() as (rapport, baseline):
        for index in range(calls):
            # Alternate the two so that both see the same engine state and machine load.
            times, used = metered_call(meter, rapport, f"+1202555{index:04d}", fail_first=True)
            results["inbound"]["rapport"].append(times[0])
            results["whole"]["rapport"].append(sum(times))
            requests["whole"].append(used)

            _, used = metered_call(meter, rapport, f"+1303555{index:04d}", fail_first=False)
            requests["inbound"].append(used)

            times, used = metered_call(baseline_meter, baseline, f"+1404555{index:04d}", fail_first=False)
            results["inbound"]["baseline"].append(times[0])
            results["whole"]["baseline"].append(sum(times))
            requests["baseline"].append(used)
    results["requests"] = requests
    return results


# -- load ---------------------------------------------------------------------------------------------


@dataclass
class LoadResult:
    calls: int
    seconds: float
    inbound_ms: list[float]
    errors: int
    double_bookings: int
    lost_links: int
    routed: Counter[str]


def load(handle: Handler, store: Store | None, calls: int, workers: int, fail_share: float) -> LoadResult:
    """CALLS calls from distinct callers, WORKERS at a time. For rapport (store given) it also checks
    that no agent is ever rung by two calls at once and that every connected call left its link."""
    lock = threading.Lock()
    holding: dict[str, str] = {}
    double_bookings = 0
    errors = 0
    inbound_ms: list[float] = []
    routed: Counter[str] = Counter()
    expected_links: dict[str, tuple[str, str]] = {}
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
            call.hangup("LEG-A")
            outcome = "agent"
            if target is not None:
                with lock:
                    expected_links[caller_key(number, DEVELOPMENT_PEPPER)] = (target, call.transaction_id)
        else:
            outcome = "fallback"
        with lock:
            inbound_ms.append(elapsed)
            routed[outcome] += 1

    started = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(one_call, range(calls)))
    seconds = time.perf_counter() - started
    lost = 0
    if store is not None:
        now = time.time()
        for key, (agent, transaction) in expected_links.items():
            link = store.caller_context(key, now).last_agent
            if link is None or link.agent_id != agent or link.call_id != transaction:
                lost += 1
    return LoadResult(calls, seconds, inbound_ms, errors, double_bookings, lost, routed)


# -- cold start and package sizes ----------------------------------------------------------------------


COLD_START_VARIANTS = ("baseline", "rapport", "rapport+tracer", "sip_rule")


@dataclass(frozen=True)
class ColdStart:
    init_ms: float
    first_ms: float | None
    warm_ms: float | None


def cold_starts(endpoint: str, runs: int, warm_calls: int) -> dict[str, ColdStart]:
    """Each variant `runs` times in a fresh process, the variants interleaved so drift hits all alike."""
    samples: dict[str, list[dict[str, Any]]] = {which: [] for which in COLD_START_VARIANTS}
    for _ in range(runs):
        for which in COLD_START_VARIANTS:
            output = subprocess.run(  # noqa: S603 - our own script, fixed arguments
                [sys.executable, str(BENCH_DIR / "cold_start.py"), which, endpoint, TABLE, str(warm_calls)],
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


# -- report -------------------------------------------------------------------------------------------


def latency_rows(name: str, ours: list[float], theirs: list[float]) -> list[str]:
    o, t = percentiles(ours), percentiles(theirs)
    return [
        f"| {name} | rapport | {o[0]:.2f} | {o[1]:.2f} | {o[2]:.2f} |",
        f"| {name} | baseline | {t[0]:.2f} | {t[1]:.2f} | {t[2]:.2f} |",
        f"| {name} | ratio | {ratio(o[0], t[0])} | {ratio(o[1], t[1])} | {ratio(o[2], t[2])} |",
    ]


def plot(sequential_results: dict[str, Any], loads: dict[str, LoadResult], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, 2, figsize=(11, 4))
    panels = [
        ("NEW_INBOUND_CALL, one call at a time", sequential_results["inbound"]),
        (
            f"NEW_INBOUND_CALL under load ({next(iter(loads.values())).calls} calls, concurrency)",
            {name: result.inbound_ms for name, result in loads.items()},
        ),
    ]
    for axis, (title, series) in zip(axes, panels, strict=True):
        for name, samples in series.items():
            ordered = sorted(samples)
            axis.plot(ordered, [i / len(ordered) for i in range(len(ordered))], label=name)
        axis.set_xscale("log")
        axis.set_xlabel("handler latency (ms, log scale)")
        axis.set_ylabel("share of calls")
        axis.set_title(title, fontsize=10)
        axis.grid(True, alpha=0.3)
        axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=300, help="sequential calls per path")
    parser.add_argument("--load-calls", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=50)
    parser.add_argument(
        "--light-workers", type=int, default=4, help="a second rapport load this machine's cores can serve"
    )
    parser.add_argument("--agents", type=int, default=80)
    parser.add_argument("--cold-runs", type=int, default=7)
    parser.add_argument("--warm-calls", type=int, default=100, help="warm calls after each cold start")
    parser.add_argument("--no-build", action="store_true", help="skip sam build (package sizes)")
    options = parser.parse_args()
    OUT_DIR.mkdir(exist_ok=True)

    with DynamoDBLocal() as engine:
        create_table(engine.endpoint, TABLE)
        store = Store(local_client(engine.endpoint), TABLE)
        seed(store, options.agents)
        rapport = LocalFunction(
            "SmaRouterFunction",
            parameters={"AgentVoiceConnectorArn": VOICE_CONNECTOR_ARN},
            resources={"Table": TABLE, "CallerKeySecret": ""},
            environment={**local_environment(engine.endpoint), "POWERTOOLS_LOG_LEVEL": "ERROR"},
        )
        baseline, baseline_environment = load_baseline(engine.endpoint)
        handlers = Handlers(rapport, baseline, baseline_environment)
        with redirect_stdout(MetricSink()):
            rapport.invoke({"InvocationEventType": "RINGING"})  # warm containers, as in steady traffic
        meter, baseline_meter = Meter(), Meter()
        meter.attach(rapport.module.services().store.client)
        baseline_meter.attach(baseline.dynamodb)
        with redirect_stdout(MetricSink()):
            sequential_results = sequential(handlers, meter, baseline_meter, options.calls)
        # The router prints its metrics (EMF) to stdout; each load run's are kept and compared below.
        published: dict[str, MetricSink] = {}

        def run_load(
            name: str, handle: Handler, checked: Store | None, workers: int, share: float
        ) -> LoadResult:
            published[name] = MetricSink()
            with redirect_stdout(published[name]):
                return load(handle, checked, options.load_calls, workers, fail_share=share)

        with handlers.applied() as (handle_rapport, handle_baseline):
            loads = {
                f"rapport, concurrency {options.workers}": run_load(
                    f"rapport, concurrency {options.workers}", handle_rapport, store, options.workers, 0.2
                ),
                f"baseline, concurrency {options.workers}": run_load(
                    f"baseline, concurrency {options.workers}", handle_baseline, None, options.workers, 0.0
                ),
                f"rapport, concurrency {options.light_workers}": run_load(
                    f"rapport, concurrency {options.light_workers}",
                    handle_rapport,
                    store,
                    options.light_workers,
                    0.2,
                ),
            }
        colds = cold_starts(engine.endpoint, options.cold_runs, options.warm_calls)
    sizes: dict[str, tuple[int, int]] | str = "skipped (--no-build)" if options.no_build else package_sizes()
    tracer_cost = "skipped (--no-build)" if options.no_build else tracer_package_cost()

    lines = [
        "# rapport benchmark",
        "",
        f"DynamoDB Local on loopback, {options.agents} agents, Python {sys.version.split()[0]}, "
        f"{os.cpu_count()} cores. Baseline: `bench/baseline/app.py` (one GetItem, one CallAndBridge).",
        "",
        f"## Handler latency, warm, one call at a time ({options.calls} calls each)",
        "",
        "Whole call: rapport = inbound, one no-answer failover, bridge, hang-up (4 invocations);"
        " baseline = inbound, bridge, hang-up (3 invocations; it has no failover).",
        "",
        "| path | handler | median ms | p95 ms | p99 ms |",
        "|---|---|---:|---:|---:|",
        *latency_rows(
            "NEW_INBOUND_CALL",
            sequential_results["inbound"]["rapport"],
            sequential_results["inbound"]["baseline"],
        ),
        *latency_rows(
            "whole call", sequential_results["whole"]["rapport"], sequential_results["whole"]["baseline"]
        ),
        "",
        "## DynamoDB requests and consumed capacity per call",
        "",
        "| call | requests | capacity units |",
        "|---|---:|---:|",
    ]
    for name, key in (
        ("rapport: inbound, bridge, hang-up", "inbound"),
        ("rapport: with one failover", "whole"),
        ("baseline: inbound, bridge, hang-up", "baseline"),
    ):
        samples = sequential_results["requests"][key]
        requests, capacity = (statistics.mean(s[0] for s in samples), statistics.mean(s[1] for s in samples))
        lines.append(f"| {name} | {requests:.2f} | {capacity:.2f} |")
    lines += [
        f"\nRequests by operation (rapport, all sequential calls): {dict(meter.requests.most_common())}",
        "",
        f"## Cold start in a fresh process (median of {options.cold_runs})",
        "",
        "Warm: median NEW_INBOUND_CALL over the next"
        f" {options.warm_calls} calls in the same process. rapport+tracer: the same router with Powertools"
        " Tracer (aws-xray-sdk, botocore patched, handler captured), every invocation sampled and sent.",
        "",
        "| function | imports and set-up ms | first invocation ms | warm NEW_INBOUND_CALL ms |",
        "|---|---:|---:|---:|",
    ]

    def shown(value: float | None) -> str:
        return f"{value:.1f}" if value is not None else "not measured"

    for which, cold in colds.items():
        lines.append(f"| {which} | {cold.init_ms:.1f} | {shown(cold.first_ms)} | {shown(cold.warm_ms)} |")
    rapport_cold, traced, base = colds["rapport"], colds["rapport+tracer"], colds["baseline"]
    lines.append(
        f"\nrapport / baseline: imports {ratio(rapport_cold.init_ms, base.init_ms)},"
        f" first invocation {ratio(rapport_cold.first_ms or 0, base.first_ms or 0)}."
        " sip_rule's first invocation needs CloudFormation and Chime, so only its imports are timed."
    )
    rapport_start = rapport_cold.init_ms + (rapport_cold.first_ms or 0)
    traced_start = traced.init_ms + (traced.first_ms or 0)
    warm_extra = (traced.warm_ms or 0) - (rapport_cold.warm_ms or 0)
    lines.append(
        f"Tracer: cold start (imports + first call) {traced_start - rapport_start:+.1f} ms"
        f" ({percent(traced_start - rapport_start, rapport_start)}),"
        f" warm NEW_INBOUND_CALL {warm_extra:+.2f} ms ({percent(warm_extra, rapport_cold.warm_ms or 0)})."
    )
    lines += ["", "## Package sizes (`sam build`, python3.13, arm64)", ""]
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
        layer = sizes.get("RapportLayer") if isinstance(sizes, dict) else None
        grows = (
            f"; the layer would grow to {ratio(layer[1] + packed, layer[1])} its zipped size" if layer else ""
        )
        lines.append(
            f"\nPowertools Tracer would add aws-xray-sdk and its dependencies: {raw / 1024:.0f} KB unzipped,"
            f" {packed / 1024:.0f} KB zipped, of which botocore {botocore / 1024:.0f} KB unzipped (a second"
            f" copy of the runtime's own, which would shadow it){grows}."
        )
    lines += [
        "",
        f"## Load: {options.load_calls} calls at concurrency {options.workers} (and {options.light_workers})",
        "",
        "rapport calls: 20 % ring out the first agent and fail over. One module serves all threads, so all"
        f" {options.workers} simulated containers share this machine's {os.cpu_count()} cores with DynamoDB"
        " Local: once they saturate, calls queue for CPU, spend the 1.5 s budget waiting and take the"
        " fallback. Lambda gives each container its own CPU; the lighter run shows routing when the cores"
        " keep up. Latency: NEW_INBOUND_CALL.",
        "",
        "| handler | calls/s | median ms | p95 ms | p99 ms | errors | double-bookings"
        " | lost last-agent links | routed to agent | fallback |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, result in loads.items():
        m, p95, p99 = percentiles(result.inbound_ms)
        checks = (result.double_bookings, result.lost_links) if name.startswith("rapport") else ("–", "–")
        lines.append(
            f"| {name} | {result.calls / result.seconds:.0f} | {m:.2f} | {p95:.2f} | {p99:.2f}"
            f" | {result.errors} | {checks[0]} | {checks[1]} | {result.routed['agent']}"
            f" | {result.routed['fallback']} |"
        )
    lines += [
        "",
        "The router's own metrics (EMF lines it printed) for the same runs; they must agree with what the"
        " load generator saw.",
        "",
        "| run | NewCalls | routed to agent (Routed* − Failovers) | Fallbacks | Failovers | HandlerErrors"
        " | StoreErrors | NewCallLatency median ms | StoreLatency median / p95 ms |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, sink in published.items():
        if not name.startswith("rapport"):
            continue
        counts = sink.totals.counts
        routed = sum(counts[m] for m in ("RoutedKnownAgent", "RoutedInterest", "RoutedAnyAvailable"))
        latency = sink.totals.durations_ms.get("NewCallLatency", [0.0])
        store_median, store_p95, _ = percentiles(sink.totals.durations_ms.get("StoreLatency", [0.0]))
        lines.append(
            f"| {name} | {counts['NewCalls']} | {routed - counts['Failovers']} | {counts['Fallbacks']}"
            f" | {counts['Failovers']} | {counts['HandlerErrors']} | {counts['StoreErrors']}"
            f" | {statistics.median(latency):.2f} | {store_median:.2f} / {store_p95:.2f} |"
        )
    lines += ["", "![latency](latency.png)", ""]
    report = "\n".join(lines)
    (OUT_DIR / "results.md").write_text(report)
    plot(sequential_results, loads, OUT_DIR / "latency.png")
    print(report)


if __name__ == "__main__":
    main()
