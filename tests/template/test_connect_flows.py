"""The importable Amazon Connect contact flows in connect/: their structure against the flow language's
documented actions, and every value they read from rapport against what ConnectRouterFunction returns."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from rapport_local.lambda_runner import LocalFunction

FLOWS = sorted((Path(__file__).resolve().parents[2] / "connect").glob("*.json"))
# The flow language's action types these flows may use (Amazon Connect API reference, "Flow language":
# contact actions, flow control actions, participant actions), with the error types each documents.
DOCUMENTED = {
    "InvokeLambdaFunction": {"NoMatchingError"},
    "Compare": {"NoMatchingCondition"},
    "UpdateContactTargetQueue": {"NoMatchingError"},
    "UpdateRoutingCriteria": {"NoMatchingError"},
    "TransferContactToQueue": {"QueueAtCapacity", "NoMatchingError"},
    "MessageParticipant": {"NoMatchingError"},
    "DisconnectParticipant": set(),
}
# Characters the flow language does not allow in an action's Identifier.
FORBIDDEN_IN_ID = re.compile(r"[%:(\\/)=$,;\[\]{}]")
EXTERNAL = re.compile(r"\$\.External\.([A-Za-z0-9_]+)")


def load(path: Path) -> dict[str, Any]:
    flow: dict[str, Any] = json.loads(path.read_text())
    return flow


@pytest.fixture(scope="module")
def function() -> LocalFunction:
    return LocalFunction("ConnectRouterFunction", resources={"Table": "rapport-test", "CallerKeySecret": ""})


def test_there_is_a_flow_for_each_answer_mode() -> None:
    modes = {
        action["Parameters"]["ResponseValidation"]["ResponseType"]
        for path in FLOWS
        for action in load(path)["Actions"]
        if action["Type"] == "InvokeLambdaFunction"
    }
    assert modes == {"STRING_MAP", "JSON"}


@pytest.mark.parametrize("path", FLOWS, ids=lambda path: path.stem)
def test_every_action_is_documented_connected_and_has_its_error_branch(path: Path) -> None:
    flow = load(path)
    assert flow["Version"] == "2019-10-30"
    actions = {action["Identifier"]: action for action in flow["Actions"]}
    assert len(actions) == len(flow["Actions"]), "identifiers must be unique"
    assert flow["StartAction"] in actions
    for identifier, action in actions.items():
        assert len(identifier) <= 50 and not FORBIDDEN_IN_ID.search(identifier), identifier
        assert action["Type"] in DOCUMENTED, action["Type"]
        transitions = action["Transitions"]
        targets = [transitions.get("NextAction")]
        targets += [branch["NextAction"] for branch in transitions.get("Errors", [])]
        targets += [branch["NextAction"] for branch in transitions.get("Conditions", [])]
        assert all(target in actions for target in targets if target is not None), identifier
        if action["Type"] == "DisconnectParticipant":
            continue
        assert transitions.get("NextAction") in actions, f"{identifier} leads nowhere"
        handled = {branch["ErrorType"] for branch in transitions.get("Errors", [])}
        assert handled == DOCUMENTED[action["Type"]], f"{identifier} must handle {DOCUMENTED[action['Type']]}"
    # Every action is reachable from the start.
    seen, todo = set(), [flow["StartAction"]]
    while todo:
        current = todo.pop()
        if current in seen:
            continue
        seen.add(current)
        transitions = actions[current]["Transitions"]
        todo += [transitions["NextAction"]] if "NextAction" in transitions else []
        todo += [branch["NextAction"] for branch in transitions.get("Errors", [])]
        todo += [branch["NextAction"] for branch in transitions.get("Conditions", [])]
    assert seen == set(actions)


@pytest.mark.parametrize("path", FLOWS, ids=lambda path: path.stem)
def test_every_value_a_flow_reads_is_one_the_function_returns(path: Path, function: LocalFunction) -> None:
    flow = load(path)
    (invoke,) = [action for action in flow["Actions"] if action["Type"] == "InvokeLambdaFunction"]
    mode = invoke["Parameters"]["ResponseValidation"]["ResponseType"]
    assert invoke["Parameters"]["LambdaInvocationAttributes"]["response"] == mode
    assert int(invoke["Parameters"]["InvocationTimeLimitSeconds"]) <= 8
    read = set(EXTERNAL.findall(json.dumps(flow)))
    assert read
    returned = set(function.module.fallback_answer(None, mode, "error"))
    assert read <= returned, read - returned
