"""Shared fixtures: one DynamoDB Local per session, a fresh table per test, the router as Lambda runs it."""

from __future__ import annotations

import logging
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from builders import RouterFactory, SignalsFactory
from rapport import SERVICE_NAME
from rapport.store.dynamodb import DynamoStore
from rapport_local.engine import (
    LOCAL_CREDENTIALS,
    DynamoDBLocal,
    create_table,
    local_client,
    local_environment,
)
from rapport_local.lambda_runner import LocalFunction

PROJECT_DIR = Path(__file__).resolve().parents[1]
VOICE_CONNECTOR_ARN = "arn:aws:chime:us-east-1:123456789012:vc/abcdefghijklmnopqrstu1"
ROUTER_PARAMETERS = {"AgentVoiceConnectorArn": VOICE_CONNECTOR_ARN, "CallerIdNumber": "+18005550100"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "integration" in item.path.parts:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def dynamodb_endpoint() -> Iterator[str]:
    """The real DynamoDB engine (DynamoDB Local) on a free loopback port, stopped after the session."""
    with DynamoDBLocal() as engine:
        yield engine.endpoint


@pytest.fixture
def table(dynamodb_endpoint: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A table created from template.yaml's definition, dropped after the test; with its stream only for
    tests marked `stream` (DynamoDB Local slows down as stream records pile up over a session)."""
    name = f"rapport-test-{uuid.uuid4().hex[:12]}"
    create_table(dynamodb_endpoint, name, stream=request.node.get_closest_marker("stream") is not None)
    yield name
    local_client(dynamodb_endpoint).delete_table(TableName=name)


@pytest.fixture
def store(dynamodb_endpoint: str, table: str) -> DynamoStore:
    return DynamoStore(local_client(dynamodb_endpoint), table)


@pytest.fixture
def make_router(dynamodb_endpoint: str, table: str) -> RouterFactory:
    """SmaRouterFunction as `sam local invoke` would run it, against this test's table."""

    def make(
        parameters: dict[str, str] | None = None,
        environment: dict[str, str] | None = None,
        endpoint: str | None = None,
        table: str = table,
    ) -> LocalFunction:
        return LocalFunction(
            "SmaRouterFunction",
            parameters={**ROUTER_PARAMETERS, **(parameters or {})},
            resources={"Table": table, "CallerKeySecret": ""},
            environment={**local_environment(endpoint or dynamodb_endpoint), **(environment or {})},
        )

    return make


@pytest.fixture
def router(make_router: RouterFactory) -> LocalFunction:
    return make_router()


class LogCollector(logging.Handler):
    """Every line the rapport loggers emit, formatted exactly as Lambda would print it."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        target = logging.getLogger(SERVICE_NAME)
        formatter = next((h.formatter for h in target.handlers if h is not self and h.formatter), None)
        self.lines.append(formatter.format(record) if formatter else record.getMessage())


@pytest.fixture
def log_lines() -> Iterator[list[str]]:
    collector = LogCollector()
    target = logging.getLogger(SERVICE_NAME)
    target.addHandler(collector)
    yield collector.lines
    target.removeHandler(collector)


@pytest.fixture(scope="session")
def sqs_endpoint() -> Iterator[str]:
    """SQS for the signals' dead-letter queue: moto's server on a free loopback port (no SQS engine runs
    here otherwise), stopped after the session."""
    from moto.server import ThreadedMotoServer

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def dead_letter_queue(sqs_endpoint: str) -> str:
    client = boto3.session.Session().client(
        "sqs",
        endpoint_url=sqs_endpoint,
        region_name="us-east-1",
        aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )
    url: str = client.create_queue(QueueName=f"rapport-dlq-{uuid.uuid4().hex[:12]}")["QueueUrl"]
    return url


@pytest.fixture
def make_signals(
    dynamodb_endpoint: str, table: str, sqs_endpoint: str, dead_letter_queue: str
) -> SignalsFactory:
    """SignalsFunction as `sam local invoke` would run it, against this test's table and queue."""

    def make(environment: dict[str, str] | None = None, endpoint: str | None = None) -> LocalFunction:
        return LocalFunction(
            "SignalsFunction",
            resources={"Table": table, "CallerKeySecret": "", "SignalsDeadLetterQueue": dead_letter_queue},
            environment={
                **local_environment(endpoint or dynamodb_endpoint),
                "AWS_ENDPOINT_URL_SQS": sqs_endpoint,
                **(environment or {}),
            },
        )

    return make


@pytest.fixture
def signals_function(make_signals: SignalsFactory) -> LocalFunction:
    return make_signals()
