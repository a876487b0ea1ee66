"""Run one call through SmaRouterFunction in this fresh process, as Lambda runs a traced invocation.

Usage: traced_router.py ENDPOINT TABLE TRACING DAEMON_ADDRESS CALLER. TRACING is the stack parameter
(Active or PassThrough). Prints the NEW_INBOUND_CALL response as JSON. A separate process, because turning
Tracer on patches botocore for the whole process.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys

from rapport_local.engine import local_environment
from rapport_local.lambda_runner import LocalFunction, traced_environment
from rapport_local.sma_driver import SimulatedCall


def main() -> None:
    endpoint, table, tracing, daemon = sys.argv[1:5]
    os.environ.update(traced_environment(daemon))
    router = LocalFunction(
        "SmaRouterFunction",
        parameters={
            "Tracing": tracing,
            "CallerIdNumber": "+18005550100",
            "AgentVoiceConnectorArn": "arn:aws:chime:us-east-1:123456789012:vc/abcdefghijklmnopqrstu1",
        },
        resources={"Table": table, "CallerKeySecret": ""},
        environment=local_environment(endpoint),
    )
    with contextlib.redirect_stdout(io.StringIO()):  # the handler's log and metric lines
        response = SimulatedCall(router.invoke, sys.argv[5]).new_inbound()
    print(json.dumps(response))


if __name__ == "__main__":
    main()
