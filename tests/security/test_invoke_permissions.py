"""Who may invoke rapport's functions: every resource-based permission names the one source it admits.

Read from the template as CloudFormation receives it (SAM's translator adds the permissions of each
function's events), so a permission SAM writes counts as much as one the template declares.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
SMA_ARN = (
    "arn:${AWS::Partition}:chime:${AWS::Region}:${AWS::AccountId}"
    ":sma/${SipMediaApplication.SipMediaApplicationId}"
)


@pytest.fixture(scope="module")
def resources() -> dict[str, Any]:
    python = REPO / ".venv-sam" / "bin" / "python"
    if not python.is_file():
        pytest.skip("no SAM CLI environment in .venv-sam (make setup installs it)")
    done = subprocess.run(
        [str(python), str(Path(__file__).with_name("transformed.py")), str(REPO / "template.yaml")],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "AWS_DEFAULT_REGION": "us-east-1"},
        timeout=120,
    )
    transformed: dict[str, Any] = json.loads(done.stdout)["Resources"]
    return transformed


def permissions(resources: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        name: resource["Properties"]
        for name, resource in resources.items()
        if resource["Type"] == "AWS::Lambda::Permission"
    }


def test_every_invoke_permission_names_its_source(resources: dict[str, Any]) -> None:
    found = permissions(resources)
    assert len(found) >= 20  # the HTTP routes, the buses, Connect, the WebSocket API, the SMA
    unscoped = [name for name, properties in found.items() if "SourceArn" not in properties]
    assert unscoped == []


def test_only_this_stacks_sip_media_application_may_invoke_the_router(resources: dict[str, Any]) -> None:
    chime = {
        name: properties
        for name, properties in permissions(resources).items()
        if properties["Principal"] == "voiceconnector.chime.amazonaws.com"
    }
    assert list(chime) == ["SmaInvokePermission"]
    assert chime["SmaInvokePermission"]["SourceArn"] == {"Fn::Sub": SMA_ARN}
    assert chime["SmaInvokePermission"]["SourceAccount"] == {"Ref": "AWS::AccountId"}
    # Scoped to the SMA, the permission can only exist once the SMA does; no call comes in before it.
    assert "DependsOn" not in resources["SipMediaApplication"]


def test_the_sip_rule_that_brings_calls_waits_for_the_permission(resources: dict[str, Any]) -> None:
    rule = resources.get("SipRule")
    if rule is None:
        pytest.skip("the translated template has no SIP rule without a PhoneNumber condition resolved")
    depends = rule.get("DependsOn", [])
    assert "SmaInvokePermission" in ([depends] if isinstance(depends, str) else depends)
