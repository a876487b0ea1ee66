"""One cold start, in this fresh process: import a function's module, then invoke it once.

Usage: cold_start.py rapport|rapport+tracer|baseline|sip_rule ENDPOINT TABLE [WARM_CALLS]. Prints JSON
with init_ms (module execution: imports and module-level set-up), first_ms (the first invocation,
NEW_INBOUND_CALL) and, for rapport, warm_ms: the median NEW_INBOUND_CALL of WARM_CALLS more calls
(each answered and hung up, so agents are freed again).

Both rapport variants run in the environment Lambda gives a traced invocation (LAMBDA_TASK_ROOT, a
sampled trace header). rapport is the router as shipped (no tracing SDK); rapport+tracer is the router as
it would run with Powertools Tracer: aws-xray-sdk loaded, botocore patched, the handler captured
(responses not recorded: they hold the caller ID). Segments go by UDP to the X-Ray daemon's address,
where nothing listens here; sending them is still part of the cost.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from rapport_local.lambda_runner import FakeLambdaContext, LocalFunction
from rapport_local.sma_driver import SimulatedCall, actions_of
from rapport_local.template import load_template

BENCH_DIR = Path(__file__).resolve().parent
VOICE_CONNECTOR_ARN = "arn:aws:chime:us-east-1:123456789012:vc/abcdefghijklmnopqrstu1"
# What Lambda adds to the environment of a sampled, traced invocation (the IDs are examples): with these,
# Powertools Tracer is on and sends segments by UDP to the daemon's address.
TRACED_ENVIRONMENT = {
    "LAMBDA_TASK_ROOT": str(BENCH_DIR),
    "_X_AMZN_TRACE_ID": "Root=1-6748b0c0-3c1d2e5f8a9b0c1d2e3f4a5b;Parent=53995c3f42cd8ad8;Sampled=1",
    "AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1:2000",
    "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
}


def local_env(endpoint: str, table: str) -> dict[str, str]:
    return {
        "AWS_ENDPOINT_URL_DYNAMODB": endpoint,
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "local",
        "AWS_SECRET_ACCESS_KEY": "local",
        "TABLE_NAME": table,
        "POWERTOOLS_LOG_LEVEL": "ERROR",
    }


def warm_median(invoke: Any, calls: int) -> float | None:
    """Median NEW_INBOUND_CALL time over `calls` whole calls (inbound, answered, hung up)."""
    times = []
    for index in range(calls):
        call = SimulatedCall(invoke, f"+1202555{index:04d}")
        started = time.perf_counter()
        response = call.new_inbound()
        times.append((time.perf_counter() - started) * 1000)
        if actions_of(response, "CallAndBridge"):
            call.bridge_answered(actions_of(response, "CallAndBridge")[0])
        call.hangup("LEG-A")
    return statistics.median(times) if times else None


def main() -> None:
    which, endpoint, table = sys.argv[1:4]
    warm_calls = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    event = SimulatedCall(lambda e: e, "+12025550107").event("NEW_INBOUND_CALL", [])
    event["CallDetails"]["Participants"] = [
        {
            "CallId": "a",
            "ParticipantTag": "LEG-A",
            "To": "+18005550100",
            "From": "+12025550107",
            "Direction": "Inbound",
            "StartTimeInMilliseconds": "0",
            "Status": "Connected",
        }
    ]
    result: dict[str, Any] = {"function": which}
    if which == "baseline":
        os.environ.update(local_env(endpoint, table))
        started = time.perf_counter()
        spec = importlib.util.spec_from_file_location("baseline_app", BENCH_DIR / "baseline" / "app.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        loaded = time.perf_counter()
        module.lambda_handler(event, FakeLambdaContext("baseline", 4, 512))
        finished = time.perf_counter()
    else:
        logical_id = "SmaRouterFunction" if which.startswith("rapport") else "SipRuleFunction"
        traced = which == "rapport+tracer"
        os.environ.update(TRACED_ENVIRONMENT)
        parse_started = time.perf_counter()
        load_template()
        parse_ms = (time.perf_counter() - parse_started) * 1000
        started = time.perf_counter()
        function = LocalFunction(
            logical_id,
            parameters={"AgentVoiceConnectorArn": VOICE_CONNECTOR_ARN},
            resources={"Table": table, "CallerKeySecret": ""},
            environment=local_env(endpoint, table),
        )
        handler = function.module.lambda_handler
        if traced:
            from aws_lambda_powertools import Tracer

            tracer = Tracer(service="rapport", patch_modules=["botocore"])
            handler = tracer.capture_lambda_handler(handler, capture_response=False)
        # LocalFunction reads template.yaml again; Lambda does not, so that time is taken off.
        started += parse_ms / 1000
        loaded = time.perf_counter()
        if which.startswith("rapport"):
            with function.environment_applied(), contextlib.redirect_stdout(io.StringIO()):
                handler(event, function.context())
                finished = time.perf_counter()
                result["warm_ms"] = warm_median(lambda e: handler(e, function.context()), warm_calls)
        else:
            finished = time.perf_counter()
    result["init_ms"] = (loaded - started) * 1000
    result["first_ms"] = (finished - loaded) * 1000 if which != "sip_rule" else None
    print(json.dumps(result))


if __name__ == "__main__":
    main()
