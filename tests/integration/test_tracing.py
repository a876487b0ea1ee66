"""With the stack's Tracing parameter Active, the router sends X-Ray segments: one subsegment per
DynamoDB request, annotated with the route, and nothing that identifies the caller. With the default
(PassThrough) it sends nothing. Each case runs in a fresh process with a UDP listener as the daemon."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from builders import agent
from rapport.numbers import caller_key
from rapport.settings import DEVELOPMENT_PEPPER
from rapport.store import Store
from rapport_local.sma_contract import response_problems
from rapport_local.sma_driver import bridge_target

SCRIPT = Path(__file__).with_name("traced_router.py")
CALLER = "+493055501042"


def traced_call(endpoint: str, table: str, tracing: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The response to one NEW_INBOUND_CALL, and every segment document the router sent."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as daemon:
        daemon.bind(("127.0.0.1", 0))
        daemon.settimeout(0.5)
        address = f"127.0.0.1:{daemon.getsockname()[1]}"
        run = subprocess.run(
            [sys.executable, str(SCRIPT), endpoint, table, tracing, address, CALLER],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        )
        segments = []
        while True:
            try:
                packet = daemon.recv(65535).decode()
            except TimeoutError:
                break
            header, _, body = packet.partition("\n")
            assert json.loads(header) == {"format": "json", "version": 1}
            segments.append(json.loads(body))
    return json.loads(run.stdout.strip().splitlines()[-1]), segments


@pytest.fixture
def one_agent(store: Store) -> None:
    store.put_agent(agent("berlin-07", time.time() - 600))


def test_active_tracing_records_each_dynamodb_request_and_no_caller_identity(
    dynamodb_endpoint: str, table: str, one_agent: None
) -> None:
    response, segments = traced_call(dynamodb_endpoint, table, "Active")
    assert response_problems(response) == []
    assert bridge_target(response) == "berlin-07"
    operations = [s["aws"]["operation"] for s in segments if s.get("namespace") == "aws"]
    assert operations == ["Query", "Query", "TransactWriteItems"]
    (handler,) = [s for s in segments if s["name"] == "## lambda_handler"]
    annotations = handler["annotations"]
    assert annotations["event_type"] == "NEW_INBOUND_CALL"
    assert (annotations["route"], annotations["mode"]) == ("agent", "any_available")
    sent = json.dumps(segments)
    for secret in (CALLER, CALLER.lstrip("+"), caller_key(CALLER, DEVELOPMENT_PEPPER)):
        assert secret not in sent


def test_pass_through_tracing_sends_nothing(dynamodb_endpoint: str, table: str, one_agent: None) -> None:
    response, segments = traced_call(dynamodb_endpoint, table, "PassThrough")
    assert bridge_target(response) == "berlin-07"
    assert segments == []
