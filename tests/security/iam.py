"""A function's DynamoDB requests, judged by the IAM policy the template gives it.

No IAM runs here, so the policy is read from template.yaml and applied to each request the way the
DynamoDB developer guide documents it ("Using IAM policy conditions for fine-grained access control"):
`dynamodb:LeadingKeys` is the request's partition key, `dynamodb:Attributes` every top-level attribute
the request names (key attributes included: in an update and condition expression, or an item put), and
`dynamodb:ReturnValues` its ReturnValues. A transaction is judged item by item, as IAM does. Allow
statements only; a condition operator this module does not know fails the judgement, so a policy that
uses one is not silently taken as allowing.
"""

from __future__ import annotations

import contextlib
import fnmatch
import re
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from unittest import mock

from botocore.client import BaseClient
from rapport_local.template import load_template

_ACTIONS = {
    "GetItem": "GetItem",
    "Query": "Query",
    "PutItem": "PutItem",
    "UpdateItem": "UpdateItem",
    "DeleteItem": "DeleteItem",
}
_IN_TRANSACTION = {
    "Put": "PutItem",
    "Update": "UpdateItem",
    "Delete": "DeleteItem",
    "ConditionCheck": "ConditionCheckItem",
}
_WORDS = {
    "SET", "REMOVE", "ADD", "DELETE", "AND", "OR", "NOT", "IN", "BETWEEN",
    "attribute_exists", "attribute_not_exists", "attribute_type", "begins_with", "contains", "size",
    "if_not_exists", "list_append",
}  # fmt: skip
_NAME = re.compile(r"(?<![.\w#:])(#?[A-Za-z_][A-Za-z0-9_]*)")


@dataclass(frozen=True)
class Request:
    """One item-level DynamoDB action as IAM judges it."""

    action: str
    partition: str
    attributes: frozenset[str]
    return_values: str | None = None

    def __str__(self) -> str:
        return f"{self.action} on {self.partition.split('#')[0]}# naming {sorted(self.attributes)}"


def _top_level(expression: str | None, names: Mapping[str, str]) -> set[str]:
    """The top-level attribute names an expression uses (`seats.#a.s` names `seats`)."""
    found = set()
    for token in _NAME.findall(expression or ""):
        if token in _WORDS:
            continue
        found.add(names.get(token, token) if token.startswith("#") else token)
    return found


def _judged(action: str, params: Mapping[str, Any]) -> Request:
    names = params.get("ExpressionAttributeNames") or {}
    key = params.get("Key") or {k: v for k, v in (params.get("Item") or {}).items() if k in ("pk", "sk")}
    attributes = set(key)
    if "Item" in params:
        attributes |= set(params["Item"])
    for field in (
        "UpdateExpression",
        "ConditionExpression",
        "ProjectionExpression",
        "KeyConditionExpression",
    ):
        attributes |= _top_level(params.get(field), names)
    partition = str(key.get("pk", {}).get("S", ""))
    if action == "Query":
        values = params.get("ExpressionAttributeValues") or {}
        partition = str(values.get(":pk", {}).get("S", partition))
    return Request(action, partition, frozenset(attributes), params.get("ReturnValues"))


def requests_of(operation: str, params: Mapping[str, Any]) -> Iterator[Request]:
    """The item-level actions of one API call (a transaction: one per item)."""
    if operation == "TransactWriteItems":
        for entry in params["TransactItems"]:
            ((kind, body),) = entry.items()
            yield _judged(_IN_TRANSACTION[kind], body)
    elif operation == "BatchWriteItem":  # judged item by item, under the batch's own action
        for writes in params["RequestItems"].values():
            for write in writes:
                ((_, body),) = write.items()
                yield _judged(operation, body)
    elif operation == "BatchGetItem":
        for reads in params["RequestItems"].values():
            for key in reads["Keys"]:
                yield _judged(
                    operation, {"Key": key, "ProjectionExpression": reads.get("ProjectionExpression")}
                )
    elif operation in _ACTIONS:
        yield _judged(_ACTIONS[operation], params)
    else:
        yield Request(operation, "", frozenset())


def statements_of(function: str) -> list[dict[str, Any]]:
    """The function's inline policy statements that concern DynamoDB."""
    resource = load_template()["Resources"][function]
    statements = []
    for policy in resource["Properties"].get("Policies", []):
        for statement in policy["Statement"]:
            actions = statement.get("Action", []) if isinstance(statement, dict) else []
            actions = [actions] if isinstance(actions, str) else actions
            if any(str(action).startswith("dynamodb:") for action in actions):
                statements.append(statement)
    return statements


def _condition_holds(operator: str, key: str, wanted: Any, request: Request) -> bool:
    patterns = [wanted] if isinstance(wanted, str) else list(wanted)
    if key == "dynamodb:LeadingKeys":
        values: list[str] | None = [request.partition]
    elif key == "dynamodb:Attributes":
        values = sorted(request.attributes)
    elif key == "dynamodb:ReturnValues":
        values = [request.return_values] if request.return_values else None
    else:
        raise ValueError(f"condition key {key} is not modelled")
    if operator == "ForAllValues:StringLike":
        return values is None or all(any(fnmatch.fnmatchcase(v, p) for p in patterns) for v in values)
    if operator == "ForAllValues:StringEquals":
        return values is None or all(v in patterns for v in values)
    if operator == "StringEqualsIfExists":
        return values is None or all(v in patterns for v in values)
    raise ValueError(f"condition operator {operator} is not modelled")


def allowed(statements: list[dict[str, Any]], request: Request) -> bool:
    """Whether some Allow statement grants this item-level action, its conditions all met."""
    for statement in statements:
        assert statement.get("Effect") == "Allow", "only Allow statements are expected"
        actions = statement["Action"]
        if f"dynamodb:{request.action}" not in ([actions] if isinstance(actions, str) else actions):
            continue
        conditions = statement.get("Condition", {})
        if all(
            _condition_holds(operator, key, wanted, request)
            for operator, entries in conditions.items()
            for key, wanted in entries.items()
        ):
            return True
    return False


@contextlib.contextmanager
def recording() -> Iterator[list[Request]]:
    """Every DynamoDB request any client in this process makes while the block runs, as its caller gave
    it: run only the function under test inside."""
    requests: list[Request] = []
    lock = threading.Lock()
    original = BaseClient._make_api_call  # type: ignore[attr-defined] # botocore's one way in

    def recorded(client: BaseClient, operation: str, params: dict[str, Any]) -> Any:
        if client.meta.service_model.service_name == "dynamodb":
            with lock:
                requests.extend(requests_of(operation, params))
        return original(client, operation, params)

    with mock.patch.object(BaseClient, "_make_api_call", recorded):
        yield requests
