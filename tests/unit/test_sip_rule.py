"""Custom::SipRule, seen from CloudFormation's side.

The handler runs against a real chime-sdk-voice client whose calls a botocore Stubber answers, and crhelper
PUTs its response over TLS to a stand-in for CloudFormation's pre-signed URL on loopback. Each test asserts
what CloudFormation would see (status, physical id, data, reason) and exactly which Chime calls were made.
The function runs as the template deploys it in a stack named `rapport`: it manages the rule
`rapport-inbound` for the SIP media application SMA_ID, and no other.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import logging
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
OTHER_RULE_ID = "5d2c9a87-0000-4000-8000-000000000303"  # another stack's rule in the same account
SMA_ID = "0a5e7c1d-0000-4000-8000-000000000201"
OTHER_SMA_ID = "e4b0a6f3-0000-4000-8000-000000000202"
RULE_NAME = "rapport-inbound"
NUMBER = "+12025550123"
TARGETS = [{"SipMediaApplicationId": SMA_ID, "Priority": 1, "AwsRegion": "us-east-1"}]
OTHER_TARGETS = [{"SipMediaApplicationId": OTHER_SMA_ID, "Priority": 1, "AwsRegion": "us-east-1"}]


def sip_rule(
    rule_id: str,
    name: str = RULE_NAME,
    *,
    number: str = NUMBER,
    disabled: bool = False,
    targets: list[dict[str, Any]] = TARGETS,
) -> dict[str, Any]:
    """A SipRule as chime-sdk-voice returns it."""
    return {
        "SipRuleId": rule_id,
        "Name": name,
        "Disabled": disabled,
        "TriggerType": "ToPhoneNumber",
        "TriggerValue": number,
        "TargetApplications": targets,
    }


@pytest.fixture
def app(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """functions/sip_rule/app.py, loaded afresh under a unique name (as the local runner loads it), with
    the environment the template gives it."""
    monkeypatch.setenv("RAPPORT_SIP_MEDIA_APPLICATION_ID", SMA_ID)
    monkeypatch.setenv("RAPPORT_SIP_RULE_NAME", RULE_NAME)
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


@pytest.fixture
def chime_calls(app: ModuleType, chime: Stubber) -> list[str]:
    """The chime-sdk-voice operations the handler called, in order, answered by the Stubber or not."""
    calls: list[str] = []
    app.voice_client().meta.events.register(
        "provide-client-params.chime-sdk-voice.*", lambda model, **_: calls.append(model.name)
    )
    return calls


class LogLines(logging.Handler):
    """The function's log lines, as its Powertools formatter writes them to CloudWatch."""

    def __init__(self, formatter: logging.Formatter) -> None:
        super().__init__()
        self.setFormatter(formatter)
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


@pytest.fixture
def logs(app: ModuleType) -> Iterator[list[dict[str, Any]]]:
    handler = LogLines(app.logger.registered_formatter)
    app.logger.addHandler(handler)
    yield handler.lines
    app.logger.removeHandler(handler)


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
        {"SipRule": sip_rule(NEW_RULE_ID)},
        expected_params={
            "Name": RULE_NAME,
            "TriggerType": "ToPhoneNumber",
            "TriggerValue": NUMBER,
            "TargetApplications": TARGETS,
            "Disabled": False,
        },
    )

    response = run(app, event("create", cloudformation), cloudformation)

    assert response["Status"] == "SUCCESS", response["Reason"]
    assert response["PhysicalResourceId"] == NEW_RULE_ID
    assert response["Data"] == {"SipRuleId": NEW_RULE_ID}
    chime.assert_no_pending_responses()


def test_update_with_the_same_number_enables_and_retargets_the_rule_in_place(
    app: ModuleType, chime: Stubber, chime_calls: list[str], cloudformation: CloudFormationStandIn
) -> None:
    chime.add_response(
        "get_sip_rule",
        {"SipRule": sip_rule(OLD_RULE_ID, disabled=True)},
        expected_params={"SipRuleId": OLD_RULE_ID},
    )
    chime.add_response(
        "update_sip_rule",
        {"SipRule": sip_rule(OLD_RULE_ID)},
        expected_params={
            "SipRuleId": OLD_RULE_ID,
            "Name": RULE_NAME,
            "Disabled": False,
            "TargetApplications": TARGETS,
        },
    )

    response = run(app, event("update", cloudformation), cloudformation)

    assert response["Status"] == "SUCCESS", response["Reason"]
    assert response["PhysicalResourceId"] == OLD_RULE_ID  # same id: CloudFormation deletes nothing
    assert response["Data"] == {"SipRuleId": OLD_RULE_ID}
    assert chime_calls == ["GetSipRule", "UpdateSipRule"]
    chime.assert_no_pending_responses()


def test_update_with_a_new_number_creates_a_new_rule(
    app: ModuleType, chime: Stubber, chime_calls: list[str], cloudformation: CloudFormationStandIn
) -> None:
    request = event("update", cloudformation)
    request["ResourceProperties"]["PhoneNumber"] = "+12025550147"
    # The old rule is this stack's, so CloudFormation may delete it once it has the new id.
    chime.add_response(
        "get_sip_rule", {"SipRule": sip_rule(OLD_RULE_ID)}, expected_params={"SipRuleId": OLD_RULE_ID}
    )
    chime.add_response(
        "create_sip_rule",
        {"SipRule": sip_rule(NEW_RULE_ID, number="+12025550147")},
        expected_params={
            "Name": RULE_NAME,
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
    assert chime_calls == ["GetSipRule", "CreateSipRule"]
    chime.assert_no_pending_responses()


def test_update_recreates_a_rule_deleted_outside_cloudformation(
    app: ModuleType, chime: Stubber, chime_calls: list[str], cloudformation: CloudFormationStandIn
) -> None:
    chime.add_client_error(
        "get_sip_rule",
        service_error_code="NotFoundException",
        http_status_code=404,
        expected_params={"SipRuleId": OLD_RULE_ID},
    )
    chime.add_response(
        "create_sip_rule",
        {"SipRule": sip_rule(NEW_RULE_ID)},
        expected_params={
            "Name": RULE_NAME,
            "TriggerType": "ToPhoneNumber",
            "TriggerValue": NUMBER,
            "TargetApplications": TARGETS,
            "Disabled": False,
        },
    )

    response = run(app, event("update", cloudformation), cloudformation)

    assert response["Status"] == "SUCCESS", response["Reason"]
    assert response["PhysicalResourceId"] == NEW_RULE_ID
    assert chime_calls == ["GetSipRule", "CreateSipRule"]
    chime.assert_no_pending_responses()


@pytest.mark.parametrize("already_disabled", [False, True])
def test_delete_disables_the_rule_before_deleting_it(
    app: ModuleType,
    chime: Stubber,
    chime_calls: list[str],
    cloudformation: CloudFormationStandIn,
    already_disabled: bool,
) -> None:
    current = sip_rule(OLD_RULE_ID, disabled=already_disabled)
    chime.add_response("get_sip_rule", {"SipRule": current}, expected_params={"SipRuleId": OLD_RULE_ID})
    if not already_disabled:
        chime.add_response(
            "update_sip_rule",
            {"SipRule": {**current, "Disabled": True}},
            expected_params={"SipRuleId": OLD_RULE_ID, "Name": RULE_NAME, "Disabled": True},
        )
    chime.add_response("delete_sip_rule", {}, expected_params={"SipRuleId": OLD_RULE_ID})

    response = run(app, event("delete", cloudformation), cloudformation)

    assert response["Status"] == "SUCCESS", response["Reason"]
    assert response["PhysicalResourceId"] == OLD_RULE_ID
    disabling = [] if already_disabled else ["UpdateSipRule"]
    assert chime_calls == ["GetSipRule", *disabling, "DeleteSipRule"]
    chime.assert_no_pending_responses()


# Rules a forged event may name: it controls the physical id and the properties, but not the rule itself.
NOT_THIS_STACKS = pytest.mark.parametrize(
    "rule",
    [
        pytest.param(sip_rule(OTHER_RULE_ID, "other-inbound", targets=OTHER_TARGETS), id="another-stack"),
        pytest.param(sip_rule(OTHER_RULE_ID, targets=OTHER_TARGETS), id="our-name-another-sma"),
        pytest.param(sip_rule(OTHER_RULE_ID, "headphones-line"), id="our-sma-another-name"),
        pytest.param(sip_rule(OTHER_RULE_ID, targets=TARGETS + OTHER_TARGETS), id="our-sma-and-another"),
    ],
)


@NOT_THIS_STACKS
def test_forged_delete_of_a_rule_not_this_stacks_neither_disables_nor_deletes_it(
    app: ModuleType,
    chime: Stubber,
    chime_calls: list[str],
    logs: list[dict[str, Any]],
    cloudformation: CloudFormationStandIn,
    rule: dict[str, Any],
) -> None:
    # The forged event's properties name this stack's rule and SMA; the rule behind its id is another's.
    request = event("delete", cloudformation, PhysicalResourceId=OTHER_RULE_ID)
    chime.add_response("get_sip_rule", {"SipRule": rule}, expected_params={"SipRuleId": OTHER_RULE_ID})

    response = run(app, request, cloudformation)

    assert chime_calls == ["GetSipRule"]
    # Success, so that a real Delete of a rule changed by hand cannot hold up the stack's deletion for good.
    assert response["Status"] == "SUCCESS", response["Reason"]
    assert response["PhysicalResourceId"] == OTHER_RULE_ID
    errors = [line for line in logs if line["level"] == "ERROR"]
    assert [line.get("sip_rule_id") for line in errors] == [OTHER_RULE_ID]
    assert NUMBER not in json.dumps(logs)
    chime.assert_no_pending_responses()


@NOT_THIS_STACKS
@pytest.mark.parametrize("number", [NUMBER, "+12025550147"], ids=["same-number", "new-number"])
def test_forged_update_of_a_rule_not_this_stacks_fails_and_changes_nothing(
    app: ModuleType,
    chime: Stubber,
    chime_calls: list[str],
    logs: list[dict[str, Any]],
    cloudformation: CloudFormationStandIn,
    rule: dict[str, Any],
    number: str,
) -> None:
    # Same number: it would be retargeted to this stack's SMA. New number: a new rule, and CloudFormation
    # would then delete the named one.
    request = event("update", cloudformation, PhysicalResourceId=OTHER_RULE_ID)
    request["ResourceProperties"]["PhoneNumber"] = number
    chime.add_response("get_sip_rule", {"SipRule": rule}, expected_params={"SipRuleId": OTHER_RULE_ID})

    response = run(app, request, cloudformation)

    assert chime_calls == ["GetSipRule"]
    assert response["Status"] == "FAILED"
    assert response["PhysicalResourceId"] == OTHER_RULE_ID
    assert response["Reason"].startswith(f"SIP rule {OTHER_RULE_ID} is not this stack's")
    assert [line.get("sip_rule_id") for line in logs if line["level"] == "ERROR"] == [OTHER_RULE_ID]
    assert NUMBER not in json.dumps(logs)
    chime.assert_no_pending_responses()


@pytest.mark.parametrize(
    ("name", "value"), [("Name", "other-inbound"), ("SipMediaApplicationId", OTHER_SMA_ID)]
)
@pytest.mark.parametrize("request_type", ["create", "update"])
def test_properties_for_a_rule_not_this_stacks_fail_without_a_chime_call(
    app: ModuleType,
    chime_calls: list[str],
    cloudformation: CloudFormationStandIn,
    request_type: str,
    name: str,
    value: str,
) -> None:
    # A rule made under another name or for another SMA would be one this function then refuses to delete.
    request = event(request_type, cloudformation)
    request["ResourceProperties"][name] = value

    response = run(app, request, cloudformation)

    assert response["Status"] == "FAILED"
    assert response["Reason"] == (
        "Invalid Custom::SipRule properties: this function manages only the rule named rapport-inbound"
        f" for SIP media application {SMA_ID}"
    )
    assert chime_calls == []


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
    chime.add_response("get_sip_rule", {"SipRule": sip_rule(OLD_RULE_ID, disabled=True)})
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
