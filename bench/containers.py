"""Function containers for the bench: the router and the baseline as Lambda would run them.

One container of each (`router`, `load_baseline`) for calls made one at a time, and `Containers` for the
load runs: many containers of one function, serving one invocation at a time each.

The load runs keep every container in this one process. Tried the other way, one process per container
as Lambda has it, 50 containers and DynamoDB Local on 2 cores: DynamoDB Local was starved of CPU and the
router's requests took 195 ms at the median (41 ms in one process, where the interpreter lock leaves
the engine a core), so the figures measured this machine's scheduler rather than the router.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import queue
import random
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any
from unittest import mock

from rapport_local.emf import MetricSink, MetricTotals
from rapport_local.engine import local_environment
from rapport_local.lambda_runner import FakeLambdaContext, LocalFunction

BENCH_DIR = Path(__file__).resolve().parent
VOICE_CONNECTOR_ARN = "arn:aws:chime:us-east-1:123456789012:vc/abcdefghijklmnopqrstu1"


def load_baseline(endpoint: str, table: str) -> ModuleType:
    """A fresh copy of the baseline module (a container of it), its table set as Lambda would."""
    name = f"rapport_bench_baseline_{table}_{random.getrandbits(32)}"
    spec = importlib.util.spec_from_file_location(name, BENCH_DIR / "baseline" / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    with mock.patch.dict(os.environ, {**local_environment(endpoint), "TABLE_NAME": table}):
        spec.loader.exec_module(module)
    return module


def connect_router(endpoint: str, table: str) -> LocalFunction:
    """ConnectRouterFunction as Lambda runs it (a container of it) over this table."""
    return LocalFunction(
        "ConnectRouterFunction",
        resources={"Table": table, "CallerKeySecret": ""},
        environment={**local_environment(endpoint), "POWERTOOLS_LOG_LEVEL": "ERROR"},
    )


BENCH_POLICY = '{"version": "bench", "rate_limit": {"calls": 1000, "minutes": 10}}'


def router(endpoint: str, table: str) -> LocalFunction:
    """SmaRouterFunction as Lambda runs it (a container of it) over this table."""
    return LocalFunction(
        "SmaRouterFunction",
        # The bench's no-answers fall on random agents, not on one who is away from the desk: setting
        # agents away for them would measure a shrinking roster, not the cost of a call.
        # Each call is still counted for the rate limit (its write is measured); the limit is raised so
        # that the bench's 60 returning callers, each calling many times, are all routed.
        parameters={
            "AgentVoiceConnectorArn": VOICE_CONNECTOR_ARN,
            "AwayAfterNoAnswers": "50",
            "PrivacyPolicyOverrides": BENCH_POLICY,
        },
        resources={"Table": table, "CallerKeySecret": ""},
        environment={**local_environment(endpoint), "POWERTOOLS_LOG_LEVEL": "ERROR"},
    )


class Containers:
    """`count` warm containers of one function (`kind`: rapport or baseline) in this process; each
    invocation is served by whichever is free, so the events of one call may well meet different
    containers, as in Lambda. They print their metrics to one `MetricSink`."""

    def __init__(self, kind: str, endpoint: str, table: str, count: int) -> None:
        self.metrics = MetricSink()
        self._stack = contextlib.ExitStack()
        self._free: queue.SimpleQueue[Callable[[dict[str, Any]], Any]] = queue.SimpleQueue()
        self._stack.enter_context(contextlib.redirect_stdout(self.metrics))
        if kind == "rapport":
            functions = [router(endpoint, table) for _ in range(count)]
            # One environment serves all: the containers differ only in their copy of the module.
            self._stack.enter_context(functions[0].environment_applied())
            for function in functions:
                function.run({"InvocationEventType": "RINGING"})  # warm, as in steady traffic
                self._free.put(function.handle)
        else:
            for _ in range(count):
                self._free.put(_baseline_handler(load_baseline(endpoint, table)))

    def __call__(self, event: dict[str, Any]) -> Any:
        handle = self._free.get()
        try:
            return handle(event)
        finally:
            self._free.put(handle)

    def close(self) -> MetricTotals:
        """The metrics the containers printed."""
        self._stack.close()
        return self.metrics.totals


def _baseline_handler(module: ModuleType) -> Callable[[dict[str, Any]], Any]:
    """One baseline container's handler, fed a decoded copy of each event as Lambda would."""
    context = FakeLambdaContext("baseline", 4, 512)
    return lambda event: module.lambda_handler(json.loads(json.dumps(event)), context)
