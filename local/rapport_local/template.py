"""Reading template.yaml: CloudFormation's short tags, the table definition and a function's spec."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from rapport_local import PROJECT_DIR

TEMPLATE = PROJECT_DIR / "template.yaml"


class _CfnLoader(yaml.SafeLoader):
    """SafeLoader that turns `!Ref x` into {"Ref": x} and `!Sub s` into {"Fn::Sub": s}, and so on."""


def _short_tag(loader: yaml.SafeLoader, tag_suffix: str, node: yaml.Node) -> dict[str, Any]:
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    if tag_suffix == "Ref":
        return {"Ref": value}
    if tag_suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{tag_suffix}": value}


_CfnLoader.add_multi_constructor("!", _short_tag)


def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    with path.open(encoding="utf-8") as handle:
        document = yaml.load(handle, Loader=_CfnLoader)  # noqa: S506 - SafeLoader plus CFN tags
    if not isinstance(document, dict):
        raise ValueError(f"{path} is not a CloudFormation template")
    return document


def resources_of_type(template: dict[str, Any], resource_type: str) -> dict[str, dict[str, Any]]:
    return {
        name: resource
        for name, resource in template.get("Resources", {}).items()
        if resource.get("Type") == resource_type
    }


def table_definition(template: dict[str, Any], table_name: str) -> tuple[dict[str, Any], str | None]:
    """`create_table` arguments for the template's one table, and its TTL attribute."""
    tables = resources_of_type(template, "AWS::DynamoDB::Table")
    if len(tables) != 1:
        raise ValueError(f"expected one AWS::DynamoDB::Table in the template, found {len(tables)}")
    properties = next(iter(tables.values()))["Properties"]
    arguments: dict[str, Any] = {
        "TableName": table_name,
        "AttributeDefinitions": properties["AttributeDefinitions"],
        "KeySchema": properties["KeySchema"],
        "BillingMode": properties.get("BillingMode", "PAY_PER_REQUEST"),
    }
    if "GlobalSecondaryIndexes" in properties:
        arguments["GlobalSecondaryIndexes"] = properties["GlobalSecondaryIndexes"]
    if "StreamSpecification" in properties:
        arguments["StreamSpecification"] = {"StreamEnabled": True, **properties["StreamSpecification"]}
    ttl = properties.get("TimeToLiveSpecification", {})
    return arguments, ttl.get("AttributeName") if ttl.get("Enabled") else None


@dataclass(frozen=True)
class FunctionSpec:
    logical_id: str
    code_dir: Path
    handler: str
    timeout: int
    memory_mb: int
    environment: dict[str, Any]
    layer_dirs: list[Path]


def function_spec(template: dict[str, Any], logical_id: str, project_dir: Path = PROJECT_DIR) -> FunctionSpec:
    """A function's code, handler, limits, environment (Globals merged in) and layers' folders."""
    resource = template["Resources"][logical_id]
    if resource.get("Type") != "AWS::Serverless::Function":
        raise ValueError(f"{logical_id} is not an AWS::Serverless::Function")
    defaults = template.get("Globals", {}).get("Function", {})
    properties = {**defaults, **resource["Properties"]}
    environment = {
        **defaults.get("Environment", {}).get("Variables", {}),
        **resource["Properties"].get("Environment", {}).get("Variables", {}),
    }
    layer_dirs = []
    for layer in properties.get("Layers", []):
        if isinstance(layer, dict) and "Ref" in layer:
            layer_resource = template["Resources"][layer["Ref"]]
            layer_dirs.append(project_dir / layer_resource["Properties"]["ContentUri"])
    return FunctionSpec(
        logical_id=logical_id,
        code_dir=project_dir / properties["CodeUri"],
        handler=properties["Handler"],
        timeout=int(properties.get("Timeout", 3)),
        memory_mb=int(properties.get("MemorySize", 128)),
        environment=environment,
        layer_dirs=layer_dirs,
    )


def resolve(value: Any, refs: dict[str, str]) -> str:
    """A template value (plain, `Ref` or `Fn::GetAtt`) as the string Lambda would see in its
    environment; an attribute is looked up as `Resource.Attribute` among the resources given."""
    if isinstance(value, dict) and set(value) == {"Ref"}:
        name = value["Ref"]
        if name not in refs:
            raise KeyError(f"no local value for Ref {name}; pass it as a parameter or resource")
        return refs[name]
    if isinstance(value, dict) and set(value) == {"Fn::GetAtt"}:
        target = value["Fn::GetAtt"]
        name = ".".join(target) if isinstance(target, list) else str(target)
        if name not in refs:
            raise KeyError(f"no local value for {name}; pass it as a resource")
        return refs[name]
    if isinstance(value, dict) and set(value) == {"Fn::Sub"} and isinstance(value["Fn::Sub"], str):
        return re.sub(r"\$\{([A-Za-z0-9:.]+)\}", lambda name: _ref(name.group(1), refs), value["Fn::Sub"])
    if isinstance(value, str | int | float | bool):
        return str(value)
    raise ValueError(f"cannot resolve {value!r} locally")


def _ref(name: str, refs: dict[str, str]) -> str:
    if name not in refs:
        raise KeyError(f"no local value for {name} in a Sub; pass it as a parameter or resource")
    return refs[name]


def parameter_defaults(template: dict[str, Any]) -> dict[str, str]:
    return {name: str(spec.get("Default", "")) for name, spec in template.get("Parameters", {}).items()}
