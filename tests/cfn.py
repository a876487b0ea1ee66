"""CloudFormation's side of a custom resource, on loopback: the pre-signed ResponseURL crhelper PUTs its
answer to (over TLS, as the real one is), a Lambda context, and an environment with no AWS account.
Test modules import the fixtures they use (`from cfn import cfn_environment, cloudformation, tls_ca`)."""

from __future__ import annotations

import json
import logging
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import trustme


class CloudFormationStandIn(ThreadingHTTPServer):
    """Receives the responses crhelper PUTs to the ResponseURL (always over HTTPS, as the real URL is)."""

    def __init__(self, tls: ssl.SSLContext) -> None:
        super().__init__(("127.0.0.1", 0), _ResponseReceiver)
        self.socket = tls.wrap_socket(self.socket, server_side=True)
        self.responses: list[tuple[str, dict[str, Any]]] = []

    @property
    def response_url(self) -> str:
        return f"https://127.0.0.1:{self.server_address[1]}/cfn-response?X-Amz-Signature=example"


class _ResponseReceiver(BaseHTTPRequestHandler):
    server: CloudFormationStandIn

    def do_PUT(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.responses.append((self.path, json.loads(body)))
        self.send_response(200)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
        pass


@dataclass
class FakeLambdaContext:
    function_name: str = "rapport-CustomResourceFunction-EXAMPLE"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = (
        "arn:aws:lambda:us-east-1:123456789012:function:rapport-CustomResourceFunction-EXAMPLE"
    )
    aws_request_id: str = "5f0b3c1e-0000-4000-8000-000000000401"

    def get_remaining_time_in_millis(self) -> int:
        # crhelper arms a "timed out" timer at remaining - 0.5 s and cancels it when the handler returns;
        # its Delete wait for logs is max(0, remaining - 15 s) capped by sleep_on_delete, which app sets to 0.
        return 30_000


@pytest.fixture(scope="module")
def tls_ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def cloudformation(tls_ca: trustme.CA) -> Iterator[CloudFormationStandIn]:
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls_ca.issue_cert("127.0.0.1").configure_cert(tls)
    server = CloudFormationStandIn(tls)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture(autouse=True)
def cfn_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tls_ca: trustme.CA, cloudformation: CloudFormationStandIn
) -> Iterator[None]:
    """No AWS account: fixed region and fake keys, no instance metadata, and trust in the stand-in's CA."""
    ca_file = tmp_path / "ca.pem"
    tls_ca.cert_pem.write_to_path(str(ca_file))
    # crhelper builds its TLS context with ssl.create_default_context(), which honours SSL_CERT_FILE.
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.delenv("AWS_SAM_LOCAL", raising=False)
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "rapport")
    cloudformation.responses.clear()
    # crhelper sets the root and boto loggers' levels on every call; give other tests theirs back.
    loggers = [logging.getLogger(name) for name in ("", "boto", "boto3", "botocore", "urllib3")]
    levels = [each.level for each in loggers]
    yield
    for each, level in zip(loggers, levels, strict=True):
        each.setLevel(level)
