"""Custom::SipRule, seen from CloudFormation's side.

The handler runs against a real chime-sdk-voice client whose calls a botocore Stubber answers, and crhelper
PUTs its response over TLS to a stand-in for CloudFormation's pre-signed URL on loopback. Each test asserts
what CloudFormation would see (status, physical id, data, reason) and exactly which Chime calls were made.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import logging
import ssl
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
import trustme
from botocore.stub import Stubber

REPO = Path(__file__).resolve().parents[2]
APP_PATH = REPO / "functions" / "sip_rule" / "app.py"
EVENTS = REPO / "events" / "sip_rule"

OLD_RULE_ID = "9b3f6e2a-0000-4000-8000-000000000301"  # the rule in events/sip_rule/{update,delete}.json
NEW_RULE_ID = "c7d81f04-0000-4000-8000-000000000302"
SMA_ID = "0a5e7c1d-0000-4000-8000-000000000201"
TARGETS = [{"SipMediaApplicationId": SMA_ID, "Priority": 1, "AwsRegion": "us-east-1"}]


def sip_rule(
    rule_id: str, name: str, *, number: str = "+12025550123", disabled: bool = False
) -> dict[str, Any]:
    """A SipRule as chime-sdk-voice returns it."""
    return {
        "SipRuleId": rule_id,
        "Name": name,
        "Disabled": disabled,
        "TriggerType": "ToPhoneNumber",
        "TriggerValue": number,
        "TargetApplications": TARGETS,
    }


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
    function_name: str = "rapport-SipRuleFunction-EXAMPLE"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = (
        "arn:aws:lambda:us-east-1:123456789012:function:rapport-SipRuleFunction-EXAMPLE"
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
def aws_environment(
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


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """functions/sip_rule/app.py, loaded afresh under a unique name (as the local runner loads it)."""
    name = f"sip_rule_app_{uuid.uuid4().hex}"
    spec = importlib.util.spec_from_file_location(name, APP_PATH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def chime(app: ModuleType, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stubber]:
    """The chime-sdk-voice client the handler uses, with every call answered (and checked) by a Stubber."""
    client = boto3.client("chime-sdk-voice", region_name="us-east-1")
    monkeypatch.setattr(app, "voice_client", lambda: client)
    with Stubber(client) as stubber:
        yield stubber


def event(name: str, cloudformation: CloudFormationStandIn, **changes: Any) -> dict[str, Any]:
    """A sample from events/sip_rule/, answering to the stand-in, with top-level fields replaced."""
    sample: dict[str, Any] = json.loads((EVENTS / f"{name}.json").read_text())
    sample["ResponseURL"] = cloudformation.response_url
    sample.update(copy.deepcopy(changes))
    return sample


def run(app: ModuleType, request: dict[str, Any], cloudformation: CloudFormationStandIn) -> dict[str, Any]:
    """Invoke the handler; return the one response CloudFormation received, after checking its envelope."""
    before = len(cloudformation.responses)
    app.lambda_handler(request, FakeLambdaContext())
    assert len(cloudformation.responses) == before + 1, "expected exactly one response to CloudFormation"
    path, response = cloudformation.responses[-1]
    assert path == "/cfn-response?X-Amz-Signature=example"
    assert response["StackId"] == request["StackId"]
    assert response["RequestId"] == request["RequestId"]
    assert response["LogicalResourceId"] == "SipRule"
    return response


def test_create_routes_the_number_to_the_sma_and_reports_the_rule_id(
    app: ModuleType, chime: Stubber, cloudformation: CloudFormationStandIn
) -> None:
    chime.add_response(
        "create_sip_rule",
        {"SipRule": sip_rule(NEW_RULE_ID, "rapport-inbound")},
        expected_params={
            "Name": "rapport-inbound",
            "TriggerType": "ToPhoneNumber",
            "TriggerValue": "+12025550123",
            "TargetApplications": TARGETS,
            "Disabled": False,
        },
    )

    response = run(app, event("create", cloudformation), cloudformation)

    assert response["Status"] == "SUCCESS", response["Reason"]
    assert response["PhysicalResourceId"] == NEW_RULE_ID
    assert response["Data"] == {"SipRuleId": NEW_RULE_ID}
    chime.assert_no_pending_responses()


def test_update_with_the_same_number_changes_the_rule_in_place(
    app: ModuleType, chime: Stubber, cloudformation: CloudFormationStandIn
) -> None:
    chime.add_response(
        "update_sip_rule",
        {"SipRule": sip_rule(OLD_RULE_ID, "rapport-main-line")},
        expected_params={
            "SipRuleId": OLD_RULE_ID,
            "Name": "rapport-main-line",
            "Disabled": False,
            "TargetApplications": TARGETS,
        },
    )

    response = run(app, event("update", cloudformation), cloudformation)

    assert response["Status"] == "SUCCESS", response["Reason"]
    assert response["PhysicalResourceId"] == OLD_RULE_ID  # same id: CloudFormation deletes nothing
    assert response["Data"] == {"SipRuleId": OLD_RULE_ID}
    chime.assert_no_pending_responses()


def test_update_with_a_new_number_creates_a_new_rule(
    app: ModuleType, chime: Stubber, cloudformation: CloudFormationStandIn
) -> None:
    request = event("update", cloudformation)
    request["ResourceProperties"]["PhoneNumber"] = "+12025550147"
    chime.add_response(
        "create_sip_rule",
        {"SipRule": sip_rule(NEW_RULE_ID, "rapport-main-line", number="+12025550147")},
        expected_params={
            "Name": "rapport-main-line",
            "TriggerType": "ToPhoneNumber",
            "TriggerValue": "+12025550147",
            "TargetApplications": TARGETS,
            "Disabled": False,
        },
    )

    response = run(app, request, cloudformation)

    assert response["Status"] == "SUCCESS", response["Reason"]
    # A new physical id is what makes CloudFormation delete the old number's rule afterwards.
    assert response["PhysicalResourceId"] == NEW_RULE_ID
    assert response["Data"] == {"SipRuleId": NEW_RULE_ID}
    chime.assert_no_pending_responses()


def test_update_recreates_a_rule_deleted_outside_cloudformation(
    app: ModuleType, chime: Stubber, cloudformation: CloudFormationStandIn
) -> None:
    chime.add_client_error("update_sip_rule", service_error_code="NotFoundException", http_status_code=404)
    chime.add_response(
        "create_sip_rule",
        {"SipRule": sip_rule(NEW_RULE_ID, "rapport-main-line")},
        expected_params={
            "Name": "rapport-main-line",
            "TriggerType": "ToPhoneNumber",
            "TriggerValue": "+12025550123",
            "TargetApplications": TARGETS,
            "Disabled": False,
        },
    )

    response = run(app, event("update", cloudformation), cloudformation)

    assert response["Status"] == "SUCCESS", response["Reason"]
    assert response["PhysicalResourceId"] == NEW_RULE_ID
    chime.assert_no_pending_responses()


@pytest.mark.parametrize("already_disabled", [False, True])
def test_delete_disables_the_rule_before_deleting_it(
    app: ModuleType, chime: Stubber, cloudformation: CloudFormationStandIn, already_disabled: bool
) -> None:
    # The rule's current name is used, whatever the (possibly stale) properties say.
    current = sip_rule(OLD_RULE_ID, "renamed-in-console", disabled=already_disabled)
    chime.add_response("get_sip_rule", {"SipRule": current}, expected_params={"SipRuleId": OLD_RULE_ID})
    if not already_disabled:
        chime.add_response(
            "update_sip_rule",
            {"SipRule": {**current, "Disabled": True}},
            expected_params={"SipRuleId": OLD_RULE_ID, "Name": "renamed-in-console", "Disabled": True},
        )
    chime.add_response("delete_sip_rule", {}, expected_params={"SipRuleId": OLD_RULE_ID})

    response = run(app, event("delete", cloudformation), cloudformation)

    assert response["Status"] == "SUCCESS", response["Reason"]
    assert response["PhysicalResourceId"] == OLD_RULE_ID
    chime.assert_no_pending_responses()


def test_delete_of_a_rule_that_is_already_gone_succeeds(
    app: ModuleType, chime: Stubber, cloudformation: CloudFormationStandIn
) -> None:
    chime.add_client_error(
        "get_sip_rule",
        service_error_code="NotFoundException",
        http_status_code=404,
        expected_params={"SipRuleId": OLD_RULE_ID},
    )

    response = run(app, event("delete", cloudformation), cloudformation)

    assert response["Status"] == "SUCCESS", response["Reason"]
    assert response["PhysicalResourceId"] == OLD_RULE_ID
    chime.assert_no_pending_responses()


def test_delete_that_chime_refuses_is_reported_as_failed(
    app: ModuleType, chime: Stubber, cloudformation: CloudFormationStandIn
) -> None:
    chime.add_response("get_sip_rule", {"SipRule": sip_rule(OLD_RULE_ID, "rapport-main-line", disabled=True)})
    chime.add_client_error(
        "delete_sip_rule",
        service_error_code="ServiceFailureException",
        service_message="The service encountered an unexpected error.",
        http_status_code=500,
    )

    response = run(app, event("delete", cloudformation), cloudformation)

    # Claiming success here would leave a live rule behind that no stack owns.
    assert response["Status"] == "FAILED"
    assert "ServiceFailureException" in response["Reason"]
    chime.assert_no_pending_responses()


def test_failed_create_is_reported_and_its_rollback_delete_touches_nothing(
    app: ModuleType, chime: Stubber, cloudformation: CloudFormationStandIn
) -> None:
    chime.add_client_error(
        "create_sip_rule",
        service_error_code="ConflictException",
        service_message="A SIP rule already exists for this phone number.",
        http_status_code=409,
    )

    created = run(app, event("create", cloudformation), cloudformation)

    assert created["Status"] == "FAILED"
    assert "ConflictException" in created["Reason"]
    assert "already exists for this phone number" in created["Reason"]
    assert created["Data"] == {}
    chime.assert_no_pending_responses()

    # CloudFormation rolls back with a Delete for the stand-in id crhelper returned. No Chime call is
    # stubbed any more, so any call would fail the Delete.
    rollback = event("delete", cloudformation, PhysicalResourceId=created["PhysicalResourceId"])
    deleted = run(app, rollback, cloudformation)

    assert deleted["Status"] == "SUCCESS", deleted["Reason"]
    assert deleted["PhysicalResourceId"] == created["PhysicalResourceId"]


@pytest.mark.parametrize(
    ("name", "value", "problem"),
    [
        ("PhoneNumber", "202-555-0123", "PhoneNumber: String should match pattern"),
        ("PhoneNumber", None, "PhoneNumber: Field required"),
        ("Name", "rapport/inbound", "Name: String should match pattern"),
        ("SipMediaApplicationId", "", "SipMediaApplicationId: String should match pattern"),
        ("AwsRegion", "Virginia", "AwsRegion: String should match pattern"),
    ],
)
@pytest.mark.parametrize("request_type", ["create", "update"])
def test_bad_properties_fail_with_a_clear_reason_and_no_chime_call(
    app: ModuleType,
    chime: Stubber,
    cloudformation: CloudFormationStandIn,
    request_type: str,
    name: str,
    value: str | None,
    problem: str,
) -> None:
    request = event(request_type, cloudformation)
    if value is None:
        del request["ResourceProperties"][name]
    else:
        request["ResourceProperties"][name] = value

    response = run(app, request, cloudformation)

    assert response["Status"] == "FAILED"
    # Nothing is stubbed: had the handler called Chime, the reason would be the Stubber's complaint.
    assert response["Reason"].startswith("Invalid Custom::SipRule properties: ")
    assert problem in response["Reason"]
