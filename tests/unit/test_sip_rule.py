"""Custom::SipRule, seen from CloudFormation's side.

The handler runs against a real chime-sdk-voice client whose calls a botocore Stubber answers, and crhelper
PUTs its response over TLS to a stand-in for CloudFormation's pre-signed URL on loopback. Each test asserts
what CloudFormation would see (status, physical id, data, reason) and exactly which Chime calls were made.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from cfn import CloudFormationStandIn, FakeLambdaContext, cfn_environment, cloudformation, tls_ca

__all__ = ["cfn_environment", "cloudformation", "tls_ca"]  # fixtures, shared with the other custom resource

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
