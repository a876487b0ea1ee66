"""One cold start, in this fresh process: import a function's module, then invoke it once.

Usage: cold_start.py rapport|baseline|sip_rule ENDPOINT TABLE. Prints JSON with init_ms (module
execution: imports and module-level set-up) and first_ms (the first invocation, NEW_INBOUND_CALL).
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from rapport_local.lambda_runner import FakeLambdaContext, LocalFunction
from rapport_local.sma_driver import SimulatedCall
from rapport_local.template import load_template

BENCH_DIR = Path(__file__).resolve().parent
VOICE_CONNECTOR_ARN = "arn:aws:chime:us-east-1:123456789012:vc/abcdefghijklmnopqrstu1"


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


def main() -> None:
    which, endpoint, table = sys.argv[1:4]
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
    else:
        logical_id = "SmaRouterFunction" if which == "rapport" else "SipRuleFunction"
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
        # LocalFunction reads template.yaml again; Lambda does not, so that time is taken off.
        started += parse_ms / 1000
        loaded = time.perf_counter()
        if which == "rapport":
            function.invoke(event)
    finished = time.perf_counter()
    result["init_ms"] = (loaded - started) * 1000
    result["first_ms"] = (finished - loaded) * 1000 if which != "sip_rule" else None
    print(json.dumps(result))


if __name__ == "__main__":
    main()
