"""Custom::HoldAudio, seen from CloudFormation's side: the events/hold_audio/ samples through the handler,
against S3 on loopback (moto's server: no S3 engine runs here otherwise), crhelper answering the
CloudFormation stand-in. The clip a caller hears is there after Create; a team's own clip is never
overwritten or deleted; Delete leaves the bucket empty so the stack can remove it."""

from __future__ import annotations

import copy
import importlib.util
import io
import json
import sys
import uuid
import wave
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from botocore.config import Config
from cfn import CloudFormationStandIn, FakeLambdaContext, cfn_environment, cloudformation, tls_ca
from rapport_local.engine import LOCAL_CREDENTIALS

__all__ = ["cfn_environment", "cloudformation", "tls_ca"]

REPO = Path(__file__).resolve().parents[2]
APP_PATH = REPO / "functions" / "hold_audio" / "app.py"
EVENTS = REPO / "events" / "hold_audio"
BUCKET = "rapport-holdaudiobucket-example"  # the samples' bucket


@pytest.fixture
def s3(sqs_endpoint: str) -> Any:
    client = boto3.client(
        "s3",
        endpoint_url=sqs_endpoint,  # moto's server answers every service it knows on one port
        region_name="us-east-1",
        aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        config=Config(s3={"addressing_style": "path"}),
    )
    client.create_bucket(Bucket=BUCKET)
    yield client
    for item in client.list_objects_v2(Bucket=BUCKET).get("Contents", []):
        client.delete_object(Bucket=BUCKET, Key=item["Key"])
    client.delete_bucket(Bucket=BUCKET)


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch, s3: Any) -> ModuleType:
    name = f"hold_audio_app_{uuid.uuid4().hex}"
    spec = importlib.util.spec_from_file_location(name, APP_PATH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)
    spec.loader.exec_module(module)
    monkeypatch.setattr(module, "s3", lambda: s3)
    return module


def run(app: ModuleType, name: str, cloudformation: CloudFormationStandIn, **changes: Any) -> dict[str, Any]:
    request: dict[str, Any] = json.loads((EVENTS / f"{name}.json").read_text())
    request["ResponseURL"] = cloudformation.response_url
    request.update(copy.deepcopy(changes))
    before = len(cloudformation.responses)
    app.lambda_handler(request, FakeLambdaContext())
    assert len(cloudformation.responses) == before + 1
    response: dict[str, Any] = cloudformation.responses[-1][1]
    assert (response["RequestId"], response["LogicalResourceId"]) == (request["RequestId"], "HoldAudio")
    return response


def seconds_of(s3: Any) -> float:
    body = s3.get_object(Bucket=BUCKET, Key="hold.wav")["Body"].read()
    with wave.open(io.BytesIO(body)) as clip:
        assert (clip.getnchannels(), clip.getsampwidth(), clip.getframerate()) == (1, 2, 8000)
        return float(clip.getnframes() / clip.getframerate())


def test_create_puts_the_clip_the_sma_plays_and_update_rewrites_it_at_its_new_length(
    app: ModuleType, s3: Any, cloudformation: CloudFormationStandIn
) -> None:
    created = run(app, "create", cloudformation)
    assert created["Status"] == "SUCCESS", created.get("Reason")
    assert created["PhysicalResourceId"] == f"s3://{BUCKET}/hold.wav"
    assert seconds_of(s3) == 10
    assert run(app, "update", cloudformation)["Status"] == "SUCCESS"
    assert seconds_of(s3) == 15
    assert run(app, "delete", cloudformation)["Status"] == "SUCCESS"
    assert s3.list_objects_v2(Bucket=BUCKET).get("KeyCount") == 0  # the bucket can go with the stack


def test_a_clip_of_the_teams_own_is_never_overwritten_or_deleted(
    app: ModuleType, s3: Any, cloudformation: CloudFormationStandIn
) -> None:
    own = b"RIFF-our-own-jingle"
    s3.put_object(Bucket=BUCKET, Key="hold.wav", Body=own)
    for name in ("create", "update", "delete"):
        assert run(app, name, cloudformation)["Status"] == "SUCCESS"
        assert s3.get_object(Bucket=BUCKET, Key="hold.wav")["Body"].read() == own


def test_bad_properties_fail_with_a_clear_reason_and_write_nothing(
    app: ModuleType, s3: Any, cloudformation: CloudFormationStandIn
) -> None:
    request = json.loads((EVENTS / "create.json").read_text())
    properties = {**request["ResourceProperties"], "Seconds": "0", "Key": "../../etc"}
    failed = run(app, "create", cloudformation, ResourceProperties=properties)
    assert failed["Status"] == "FAILED"
    assert "Seconds" in failed["Reason"] and "Key" in failed["Reason"]
    assert s3.list_objects_v2(Bucket=BUCKET).get("KeyCount") == 0
    # CloudFormation then rolls back with a Delete of what never existed: nothing to do, and it succeeds.
    rollback = run(app, "delete", cloudformation, PhysicalResourceId=failed["PhysicalResourceId"])
    assert rollback["Status"] == "SUCCESS"
