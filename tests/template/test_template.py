"""template.yaml: it lints clean, declares what the design binds us to, and builds into deployable artefacts.

`sam validate --lint` and `sam build` use the SAM CLI named by RAPPORT_SAM (default: .venv-sam/bin/sam in the
repository); they are skipped only when that executable does not exist.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cfnlint.api import lint_file
from rapport import SERVICE_NAME
from rapport.telemetry import Metric
from rapport_local.template import load_template, resources_of_type

pytestmark = pytest.mark.template

REPO = Path(__file__).resolve().parents[2]
TEMPLATE = REPO / "template.yaml"
ROUTER_TABLE_ACTIONS = {
    "dynamodb:Query",
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
}
KEY_CONDITION = "HasCustomerManagedKey"
KEY_ARN = {"Fn::GetAtt": ["CustomerManagedKey", "Arn"]}
_LEFT_OUT = object()


def with_encryption_key(template: dict[str, Any], customer_managed: bool) -> dict[str, Any]:
    """The template as CloudFormation deploys it with EncryptionKey=customer-managed, or with the default:
    the key's condition decided, and what it leaves out (AWS::NoValue, the key's own resources) gone.
    Every other condition stays as written."""

    def decide(node: Any) -> Any:
        if isinstance(node, dict):
            if set(node) == {"Fn::If"} and node["Fn::If"][0] == KEY_CONDITION:
                _, when_on, when_off = node["Fn::If"]
                chosen = when_on if customer_managed else when_off
                return _LEFT_OUT if chosen == {"Ref": "AWS::NoValue"} else decide(chosen)
            entries = {key: decide(value) for key, value in node.items()}
            return {key: value for key, value in entries.items() if value is not _LEFT_OUT}
        if isinstance(node, list):
            return [item for item in map(decide, node) if item is not _LEFT_OUT]
        return node

    decided: dict[str, Any] = decide(template)
    for section in ("Resources", "Outputs"):
        decided[section] = {
            name: entry
            for name, entry in decided[section].items()
            if customer_managed or entry.get("Condition") != KEY_CONDITION
        }
    return decided


@pytest.fixture(scope="module")
def resources() -> dict[str, Any]:
    """The template's resources as its defaults deploy them (each service's own encryption key)."""
    template = with_encryption_key(load_template(TEMPLATE), customer_managed=False)
    resources: dict[str, Any] = template["Resources"]
    return resources


def policy_statements(function: dict[str, Any]) -> list[dict[str, Any]]:
    """The inline statements of a SAM function's Policies (no managed policies or SAM templates allowed)."""
    statements: list[dict[str, Any]] = []
    for policy in function["Properties"].get("Policies", []):
        assert isinstance(policy, dict), f"only inline statements are expected, got {policy!r}"
        assert set(policy) == {"Statement"}, f"only inline statements are expected, got {policy!r}"
        statements.extend(policy["Statement"])
    return statements


def actions_of(statement: dict[str, Any]) -> list[str]:
    actions = statement["Action"]
    return [actions] if isinstance(actions, str) else list(actions)


def test_cfn_lint_reports_no_errors_or_warnings() -> None:
    matches = lint_file(TEMPLATE)
    assert [str(match) for match in matches] == []


def test_table_is_on_demand_with_ttl_backups_and_encryption_and_outlives_the_stack(
    resources: dict[str, Any],
) -> None:
    table = resources["Table"]
    properties = table["Properties"]

    assert table["Type"] == "AWS::DynamoDB::Table"
    assert properties["BillingMode"] == "PAY_PER_REQUEST"
    assert properties["KeySchema"] == [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ]
    assert "GlobalSecondaryIndexes" not in properties
    assert properties["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert properties["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert properties["SSESpecification"]["SSEEnabled"] is True
    # It holds consents and decision records: deleting or replacing the stack must not lose them.
    assert table["DeletionPolicy"] == "Retain"
    assert table["UpdateReplacePolicy"] == "Retain"


def test_sip_media_application_invokes_the_router_alias(resources: dict[str, Any]) -> None:
    assert resources["SmaRouterFunction"]["Properties"]["AutoPublishAlias"] == "live"
    sma = resources["SipMediaApplication"]["Properties"]
    assert sma["Endpoints"] == [{"LambdaArn": {"Ref": "SmaRouterFunction.Alias"}}]
    assert sma["AwsRegion"] == {"Ref": "AWS::Region"}


def test_only_this_stacks_sip_media_application_may_invoke_the_router(resources: dict[str, Any]) -> None:
    permission = resources["SmaInvokePermission"]
    assert permission["Type"] == "AWS::Lambda::Permission"
    assert permission["Properties"] == {
        "Action": "lambda:InvokeFunction",
        "FunctionName": {"Ref": "SmaRouterFunction.Alias"},
        "Principal": "voiceconnector.chime.amazonaws.com",
        "SourceAccount": {"Ref": "AWS::AccountId"},
        "SourceArn": {
            "Fn::Sub": "arn:${AWS::Partition}:chime:${AWS::Region}:${AWS::AccountId}"
            ":sma/${SipMediaApplication.SipMediaApplicationId}"
        },
    }


def test_router_reads_and_writes_the_table_but_never_scans_and_deletes_only_offers(
    resources: dict[str, Any],
) -> None:
    statements = policy_statements(resources["SmaRouterFunction"])
    actions = {action for statement in statements for action in actions_of(statement)}
    (deletes,) = [s for s in statements if "dynamodb:DeleteItem" in actions_of(s)]
    assert deletes["Condition"] == {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["OFFER#*"]}}
    assert not actions & {
        "dynamodb:Scan",
        "dynamodb:BatchWriteItem",
        "dynamodb:TransactWriteItems",
        "dynamodb:ConditionCheckItem",
    }
    assert not [action for action in actions if action.endswith("*")], "no wildcard actions"
    assert {action for action in actions if action.startswith("dynamodb:")} == ROUTER_TABLE_ACTIONS
    for statement in statements:
        if any(action.startswith("dynamodb:") for action in actions_of(statement)):
            assert statement["Resource"] == {"Fn::GetAtt": ["Table", "Arn"]}
        elif actions_of(statement) == ["chime:DeleteMeeting"]:
            # Ending a browser call's meeting: meetings only, no other Chime resource.
            assert statement["Resource"]["Fn::Sub"].endswith(":meeting/*")
        else:
            assert actions_of(statement) == ["secretsmanager:GetSecretValue"]
            assert statement["Resource"] == {"Ref": "CallerKeySecret"}


def test_sip_rule_exists_only_with_a_phone_number_and_its_function_only_manages_sip_rules(
    resources: dict[str, Any],
) -> None:
    rule = resources["SipRule"]
    assert rule["Type"] == "Custom::SipRule"
    assert rule["Condition"] == "HasPhoneNumber"
    assert rule["Properties"]["ServiceToken"] == {"Fn::GetAtt": ["SipRuleFunction", "Arn"]}
    assert rule["Properties"]["SipMediaApplicationId"] == {
        "Fn::GetAtt": ["SipMediaApplication", "SipMediaApplicationId"]
    }

    function = resources["SipRuleFunction"]
    assert function["Properties"]["CodeUri"] == "functions/sip_rule/"
    # The function touches only the rule its environment names; the rule must be that one.
    environment = function["Properties"]["Environment"]["Variables"]
    assert environment["RAPPORT_SIP_MEDIA_APPLICATION_ID"] == rule["Properties"]["SipMediaApplicationId"]
    assert environment["RAPPORT_SIP_RULE_NAME"] == rule["Properties"]["Name"]
    actions = {action for statement in policy_statements(function) for action in actions_of(statement)}
    assert actions == {
        "chime:CreateSipRule",
        "chime:UpdateSipRule",
        "chime:GetSipRule",
        "chime:DeleteSipRule",
    }


def alarm_metrics(alarm: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """An alarm's metric-math inputs by Id: namespace, name and dimensions of each MetricStat."""
    return {
        query["Id"]: {
            "namespace": query["MetricStat"]["Metric"]["Namespace"],
            "name": query["MetricStat"]["Metric"]["MetricName"],
            "dimensions": {d["Name"]: d["Value"] for d in query["MetricStat"]["Metric"]["Dimensions"]},
        }
        for query in alarm["Properties"]["Metrics"]
        if "MetricStat" in query
    }


def test_alarms_read_the_metrics_the_router_publishes_under_its_dimensions(
    resources: dict[str, Any],
) -> None:
    environment = load_template(TEMPLATE)["Globals"]["Function"]["Environment"]["Variables"]
    namespace = environment["POWERTOOLS_METRICS_NAMESPACE"]
    # The router's stack dimension comes from RAPPORT_STACK_NAME: the alarms must name the same stack.
    assert environment["RAPPORT_STACK_NAME"] == {"Ref": "AWS::StackName"}
    alarms = {name: r for name, r in resources.items() if r["Type"] == "AWS::CloudWatch::Alarm"}
    assert set(alarms) == {"FallbackRateAlarm", "RouterErrorsAlarm", "AbuseAlarm"}
    published = {metric.value for metric in Metric}
    for name, alarm in alarms.items():
        for query in alarm_metrics(alarm).values():
            if query["namespace"] == "AWS/Lambda":
                assert query["dimensions"] == {"FunctionName": {"Ref": "SmaRouterFunction"}}, name
            else:
                assert query["namespace"] == namespace, name
                assert query["name"] in published, name
                assert query["dimensions"] == {"service": SERVICE_NAME, "stack": {"Ref": "AWS::StackName"}}
        returned = [query for query in alarm["Properties"]["Metrics"] if query.get("ReturnData")]
        assert len(returned) == 1 and "Expression" in returned[0], name
        assert alarm["Properties"]["TreatMissingData"] == "notBreaching", name


def test_fallback_rate_alarm_divides_fallbacks_by_new_calls_above_a_minimum_volume(
    resources: dict[str, Any],
) -> None:
    alarm = resources["FallbackRateAlarm"]["Properties"]
    inputs = alarm_metrics(resources["FallbackRateAlarm"])
    assert {query["name"] for query in inputs.values()} == {"NewCalls", "Fallbacks"}
    (rate,) = [query for query in alarm["Metrics"] if query.get("ReturnData")]
    expression = rate["Expression"]["Fn::Sub"]
    assert "100 * FILL(fallbacks, 0) / calls" in expression
    assert "calls >= ${FallbackRateAlarmMinCalls}" in expression
    assert alarm["Threshold"] == {"Ref": "FallbackRateAlarmPercent"}
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold"


def test_errors_alarm_covers_lambda_errors_throttles_handler_errors_and_rejected_responses(
    resources: dict[str, Any],
) -> None:
    inputs = alarm_metrics(resources["RouterErrorsAlarm"])
    assert {query["name"] for query in inputs.values()} == {
        "Errors",
        "Throttles",
        "HandlerErrors",
        "RejectedResponses",
    }
    (errors,) = [q for q in resources["RouterErrorsAlarm"]["Properties"]["Metrics"] if q.get("ReturnData")]
    assert all(f"FILL({metric_id}, 0)" in errors["Expression"] for metric_id in inputs)
    assert resources["RouterErrorsAlarm"]["Properties"]["Threshold"] == 1


def test_abuse_alarm_adds_forged_state_rate_limited_calls_and_refused_endpoints(
    resources: dict[str, Any],
) -> None:
    inputs = alarm_metrics(resources["AbuseAlarm"])
    assert {query["name"] for query in inputs.values()} == {"ForgedState", "RateLimited", "EndpointRefused"}
    (abuse,) = [q for q in resources["AbuseAlarm"]["Properties"]["Metrics"] if q.get("ReturnData")]
    assert all(f"FILL({metric_id}, 0)" in abuse["Expression"] for metric_id in inputs)
    assert resources["AbuseAlarm"]["Properties"]["Threshold"] == {"Ref": "AbuseAlarmThreshold"}


def test_router_tracing_follows_the_parameter_and_the_layer_has_no_tracing_sdk(
    resources: dict[str, Any],
) -> None:
    template = load_template(TEMPLATE)
    assert template["Parameters"]["Tracing"]["Default"] == "PassThrough"
    assert resources["SmaRouterFunction"]["Properties"]["Tracing"] == {"Ref": "Tracing"}
    # aws-xray-sdk depends on botocore: in the layer it would shadow the runtime's own.
    requirements = (REPO / "layers" / "rapport" / "requirements.txt").read_text().lower()
    assert "xray" not in requirements and "[tracer]" not in requirements


def test_dashboard_is_valid_json_and_shows_only_metrics_the_router_publishes(
    resources: dict[str, Any],
) -> None:
    body = resources["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    names = set(re.findall(r"\$\{([^}]+)\}", body))
    assert names == {"AWS::Region", "AWS::StackName", "SmaRouterFunction", "FallbackRateAlarmPercent"}
    local = {"AWS::Region": "us-east-1", "AWS::StackName": "prod", "SmaRouterFunction": "fn"}
    substituted = re.sub(r"\$\{([^}]+)\}", lambda m: local.get(m.group(1), "25"), body)
    widgets = json.loads(substituted)["widgets"]
    published = {metric.value for metric in Metric}
    shown = set()
    for widget in widgets:
        for row in widget["properties"]["metrics"]:
            fields = [field for field in row if isinstance(field, str)]
            if not fields:  # a metric-math expression
                assert isinstance(row[0], dict) and "expression" in row[0]
                continue
            namespace, name, *dimensions = fields
            pairs = dict(zip(dimensions[::2], dimensions[1::2], strict=True))
            if namespace == "AWS/Lambda":
                assert pairs == {"FunctionName": "fn"}
            else:
                assert (namespace, name in published) == ("Rapport", True), name
                assert pairs == {"service": SERVICE_NAME, "stack": "prod"}
                shown.add(name)
    assert shown == published  # every metric the router publishes is on the page


def test_alarms_notify_the_topic_only_when_one_is_given(resources: dict[str, Any]) -> None:
    conditions = load_template(TEMPLATE)["Conditions"]
    assert conditions["HasAlarmTopic"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "AlarmTopicArn"}, ""]}]}
    for name in ("FallbackRateAlarm", "RouterErrorsAlarm", "AbuseAlarm"):
        properties = resources[name]["Properties"]
        for actions in ("AlarmActions", "OKActions"):
            assert properties[actions] == {
                "Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]
            }, name


@pytest.fixture(scope="module")
def sam() -> Path:
    path = Path(os.environ.get("RAPPORT_SAM", ".venv-sam/bin/sam"))
    path = path if path.is_absolute() else REPO / path
    if not path.is_file():
        pytest.skip(f"no SAM CLI at {path}: set RAPPORT_SAM or install aws-sam-cli into .venv-sam")
    return path


@pytest.fixture(scope="module")
def sam_environment() -> dict[str, str]:
    """The process environment with a python3.13 (which `sam build` needs for this runtime) first on PATH.

    pyenv's shims do not count: a shim for a version that is not selected fails sam's check. Without pyenv,
    a python3.13 already on PATH is used.
    """
    environment = {**os.environ, "SAM_CLI_TELEMETRY": "0"}
    pyenv_root = os.environ.get("PYENV_ROOT") or _pyenv_root()
    candidates = sorted(Path(pyenv_root).glob("versions/3.13*/bin/python3.13")) if pyenv_root else []
    if candidates:
        environment["PATH"] = f"{candidates[-1].parent}{os.pathsep}{environment.get('PATH', '')}"
    return environment


def _pyenv_root() -> str | None:
    pyenv = shutil.which("pyenv")
    if pyenv is None:
        return None
    return subprocess.run([pyenv, "root"], capture_output=True, text=True, check=True).stdout.strip()


def run_sam(sam: Path, environment: dict[str, str], *arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(sam), *arguments],
        cwd=REPO,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_sam_validate_with_lint_passes(sam: Path, sam_environment: dict[str, str]) -> None:
    result = run_sam(sam, sam_environment, "validate", "--lint", "--region", "us-east-1", "-t", str(TEMPLATE))
    assert result.returncode == 0, result.stdout + result.stderr


def test_sam_build_packages_the_layer_for_arm64_and_the_custom_resource_with_crhelper(
    sam: Path, sam_environment: dict[str, str], tmp_path: Path
) -> None:
    build = tmp_path / "build"
    result = run_sam(sam, sam_environment, "build", "-t", str(TEMPLATE), "--build-dir", str(build))
    assert result.returncode == 0, result.stdout + result.stderr

    layer = build / "RapportLayer" / "python"
    assert (layer / "rapport" / "__init__.py").is_file()
    # The functions run on arm64: a compiled dependency built for x86_64 would fail at import there.
    compiled = sorted(path.name for path in layer.glob("pydantic_core/_pydantic_core*.so"))
    assert compiled, "pydantic-core's compiled module is missing from the layer"
    assert all("aarch64" in name for name in compiled), compiled
    assert (build / "SipRuleFunction" / "crhelper" / "__init__.py").is_file()
    assert (build / "SipRuleFunction" / "app.py").is_file()


def test_signals_function_is_fed_by_the_bus_the_queue_and_an_iam_authorised_api(
    resources: dict[str, Any],
) -> None:
    function = resources["SignalsFunction"]["Properties"]
    events = function["Events"]
    assert events["Queue"]["Properties"]["Queue"] == {"Fn::GetAtt": ["SignalsQueue", "Arn"]}
    assert events["Queue"]["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert events["Queue"]["Properties"]["BatchSize"] == 100
    assert events["Bus"]["Properties"]["Pattern"] == {"detail-type": ["rapport.signal"]}
    assert events["Bus"]["Properties"]["EventBusName"] == {"Ref": "SignalsBus"}
    assert (events["Http"]["Properties"]["Path"], events["Http"]["Properties"]["Method"]) == (
        "/signals",
        "POST",
    )
    api = resources[events["Http"]["Properties"]["ApiId"]["Ref"]]["Properties"]
    assert api["Auth"]["DefaultAuthorizer"] == "AWS_IAM"
    # A message that keeps failing ends on the dead-letter queue, where rapport also puts rejects.
    redrive = resources["SignalsQueue"]["Properties"]["RedrivePolicy"]
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": ["SignalsDeadLetterQueue", "Arn"]}
    assert function["Environment"]["Variables"]["RAPPORT_REJECTS_QUEUE_URL"] == {
        "Ref": "SignalsDeadLetterQueue"
    }
    on_failure = function["EventInvokeConfig"]["DestinationConfig"]["OnFailure"]
    assert on_failure["Destination"] == {"Fn::GetAtt": ["SignalsDeadLetterQueue", "Arn"]}


def test_signals_function_reads_and_writes_the_table_and_sends_only_to_its_dead_letter_queue(
    resources: dict[str, Any],
) -> None:
    statements = policy_statements(resources["SignalsFunction"])
    by_service: dict[str, set[str]] = {}
    for statement in statements:
        for action in actions_of(statement):
            by_service.setdefault(action.split(":")[0], set()).add(action)
            resource = {
                "dynamodb": {"Fn::GetAtt": ["Table", "Arn"]},
                "secretsmanager": {"Ref": "CallerKeySecret"},
                "sqs": {"Fn::GetAtt": ["SignalsDeadLetterQueue", "Arn"]},
            }[action.split(":")[0]]
            assert statement["Resource"] == resource
    # Transactions are authorised per action: their Puts need PutItem, nothing more.
    assert by_service["dynamodb"] == {"dynamodb:Query", "dynamodb:BatchGetItem", "dynamodb:PutItem"}
    assert by_service["sqs"] == {"sqs:SendMessage"}


def test_every_function_logs_to_a_group_kept_as_long_as_the_shortest_policy_retention(
    resources: dict[str, Any],
) -> None:
    template = load_template(TEMPLATE)
    parameter = template["Parameters"]["LogRetentionDays"]
    policy = json.loads((REPO / "layers/rapport/rapport/policy/jurisdictions.json").read_text())
    rule_sets = [policy["default"], *policy["jurisdictions"].values()]
    shortest = min(days for rule_set in rule_sets for days in rule_set["retention_days"].values())
    assert parameter["Default"] == shortest
    functions = {name: r for name, r in resources.items() if r["Type"] == "AWS::Serverless::Function"}
    assert {"SmaRouterFunction", "SignalsFunction", "PrivacyFunction", "SipRuleFunction"} <= set(functions)
    for name, function in functions.items():
        group = function["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
        assert resources[group]["Type"] == "AWS::Logs::LogGroup", name
        assert resources[group]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}, name


def test_privacy_function_answers_five_iam_authorised_routes_and_cannot_scan(
    resources: dict[str, Any],
) -> None:
    function = resources["PrivacyFunction"]["Properties"]
    routes = {(e["Properties"]["Path"], e["Properties"]["Method"]) for e in function["Events"].values()}
    assert routes == {
        (f"/privacy/{name}", "POST") for name in ("consent", "objection", "access", "erasure", "explanation")
    }
    apis = {e["Properties"]["ApiId"]["Ref"] for e in function["Events"].values()}
    assert all(resources[api]["Properties"]["Auth"]["DefaultAuthorizer"] == "AWS_IAM" for api in apis)
    table_actions = {
        action
        for statement in policy_statements(resources["PrivacyFunction"])
        for action in actions_of(statement)
        if action.startswith("dynamodb:")
    }
    # Erasure deletes by key within one caller's partition: no Scan, no table-wide access pattern.
    assert table_actions == {
        "dynamodb:Query",
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "dynamodb:DeleteItem",
        "dynamodb:BatchWriteItem",
    }


def test_the_in_call_question_is_off_unless_asked_for_and_the_policy_can_be_overridden() -> None:
    template = load_template(TEMPLATE)
    assert template["Parameters"]["AskForConsent"]["Default"] == "false"
    router = template["Resources"]["SmaRouterFunction"]["Properties"]["Environment"]["Variables"]
    assert router["RAPPORT_ASK_FOR_CONSENT"] == {"Ref": "AskForConsent"}
    shared = template["Globals"]["Function"]["Environment"]["Variables"]
    assert shared["RAPPORT_POLICY_OVERRIDES"] == {"Ref": "PrivacyPolicyOverrides"}
    assert template["Parameters"]["PrivacyPolicyOverrides"]["Default"] == ""


def test_agents_function_answers_its_openapi_routes_on_an_iam_api_and_holds_no_caller_secret(
    resources: dict[str, Any],
) -> None:
    function = resources["AgentsFunction"]["Properties"]
    events = function["Events"].values()
    apis = {e["Properties"]["ApiId"]["Ref"] for e in events if e["Type"] == "HttpApi"}
    assert all(resources[api]["Properties"]["Auth"]["DefaultAuthorizer"] == "AWS_IAM" for api in apis)
    rules = [e["Properties"] for e in events if e["Type"] == "EventBridgeRule"]
    assert rules == [{"EventBusName": {"Ref": "SignalsBus"}, "Pattern": {"detail-type": ["rapport.outcome"]}}]
    actions = {
        action
        for statement in policy_statements(resources["AgentsFunction"])
        for action in actions_of(statement)
    }
    # The table, the dead-letter queue for outcome events that could not be counted, the meetings and
    # call updates of browser agents' calls, and the page-token key; not the caller-key secret.
    assert {action.split(":")[0] for action in actions} == {"dynamodb", "sqs", "chime", "secretsmanager"}
    secrets = [
        statement["Resource"]
        for statement in policy_statements(resources["AgentsFunction"])
        if any(action.startswith("secretsmanager:") for action in actions_of(statement))
    ]
    assert secrets == [{"Ref": "PageTokenSecret"}]
    chime = {
        action: statement["Resource"]
        for statement in policy_statements(resources["AgentsFunction"])
        for action in actions_of(statement)
        if action.startswith("chime:")
    }
    assert set(chime) == {
        "chime:CreateMeetingWithAttendees",
        "chime:DeleteMeeting",
        "chime:UpdateSipMediaApplicationCall",
    }
    assert chime["chime:CreateMeetingWithAttendees"]["Fn::Sub"].endswith(":meeting/*")
    assert chime["chime:UpdateSipMediaApplicationCall"]["Fn::Sub"].endswith(
        ":sma/${SipMediaApplication.SipMediaApplicationId}"
    )
    assert "dynamodb:Scan" not in actions
    assert {action for action in actions if action.startswith("sqs:")} == {"sqs:SendMessage"}
    template = load_template(TEMPLATE)
    assert template["Parameters"]["AwayAfterNoAnswers"]["Default"] == 3
    router = resources["SmaRouterFunction"]["Properties"]["Environment"]["Variables"]
    assert router["RAPPORT_AWAY_AFTER_NO_ANSWERS"] == {"Ref": "AwayAfterNoAnswers"}


def test_only_the_named_connect_instance_may_invoke_the_connect_router(resources: dict[str, Any]) -> None:
    permission = resources["ConnectInvokePermission"]
    assert permission["Condition"] == "HasConnectInstance"
    assert permission["Properties"]["Principal"] == "connect.amazonaws.com"
    assert permission["Properties"]["SourceArn"] == {"Ref": "ConnectInstanceArn"}
    assert permission["Properties"]["SourceAccount"] == {"Ref": "AWS::AccountId"}
    assert permission["Properties"]["FunctionName"] == {"Ref": "ConnectRouterFunction.Alias"}
    association = resources["ConnectIntegration"]
    assert association["Condition"] == "HasConnectInstance"
    assert association["Properties"]["IntegrationType"] == "LAMBDA_FUNCTION"
    assert association["Properties"]["InstanceId"] == {"Ref": "ConnectInstanceArn"}
    template = load_template(TEMPLATE)
    assert template["Conditions"]["HasConnectInstance"] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "ConnectInstanceArn"}, ""]}]
    }
    assert template["Parameters"]["ConnectInstanceArn"]["Default"] == ""
    # Connect rings its own agents: the function reads and keeps records, and reserves nobody.
    actions = {
        action
        for statement in policy_statements(resources["ConnectRouterFunction"])
        for action in actions_of(statement)
    }
    assert actions == {
        "dynamodb:Query",
        "dynamodb:GetItem",
        "dynamodb:PutItem",
        "secretsmanager:GetSecretValue",
    }
    assert resources["ConnectRouterFunction"]["Properties"]["Timeout"] <= 8


def test_the_agent_event_consumer_exists_only_with_a_stream_and_reports_partial_failures(
    resources: dict[str, Any],
) -> None:
    function = resources["ConnectAgentEventsFunction"]
    assert function["Condition"] == "HasAgentEventStream"
    assert resources["ConnectAgentEventsLogGroup"]["Condition"] == "HasAgentEventStream"
    (source,) = function["Properties"]["Events"].values()
    assert source["Type"] == "Kinesis"
    assert source["Properties"]["Stream"] == {"Ref": "ConnectAgentEventStreamArn"}
    assert source["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    actions = {action for statement in policy_statements(function) for action in actions_of(statement)}
    assert actions == {"dynamodb:GetItem", "dynamodb:UpdateItem"}


def test_only_this_stacks_sma_may_read_the_hold_audio(resources: dict[str, Any]) -> None:
    bucket = resources["HoldAudioBucket"]["Properties"]
    assert all(bucket["PublicAccessBlockConfiguration"].values())
    statements = resources["HoldAudioBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    (read,) = [s for s in statements if s["Effect"] == "Allow"]
    assert read["Principal"] == {"Service": "voiceconnector.chime.amazonaws.com"}
    assert read["Action"] == "s3:GetObject"
    condition = read["Condition"]["StringEquals"]
    assert condition["aws:SourceAccount"] == {"Ref": "AWS::AccountId"}
    assert condition["aws:SourceArn"]["Fn::Sub"].endswith(":sma/${SipMediaApplication.SipMediaApplicationId}")
    (tls,) = [s for s in statements if s["Effect"] == "Deny"]
    assert tls["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    router = resources["SmaRouterFunction"]["Properties"]["Environment"]["Variables"]
    assert router["RAPPORT_HOLD_AUDIO_BUCKET"] == {"Ref": "HoldAudioBucket"}
    # The stack writes the clip at deploy; its function touches that one object and nothing else.
    clip = resources["HoldAudio"]
    assert clip["Type"] == "Custom::HoldAudio"
    assert (
        clip["Properties"]["Bucket"] == {"Ref": "HoldAudioBucket"} and clip["Properties"]["Key"] == "hold.wav"
    )
    assert clip["Properties"]["Seconds"] == {"Ref": "HoldAudioSeconds"}
    granted = {
        action: statement["Resource"]
        for statement in policy_statements(resources["HoldAudioFunction"])
        for action in actions_of(statement)
    }
    assert set(granted) == {"s3:GetObject", "s3:PutObject", "s3:DeleteObject"}
    assert all(
        r == {"Fn::Sub": "arn:${AWS::Partition}:s3:::${HoldAudioBucket}/hold.wav"} for r in granted.values()
    )


# -- browser agents' pages ------------------------------------------------------------------------------

PAGE_FUNCTIONS = (
    "AgentPageFunction",
    "AgentPageAuthorizerFunction",
    "AgentPagePushFunction",
    "AgentPageGraceFunction",
)


def test_the_agent_page_socket_signs_pages_in_with_a_token_and_answers_each_message(
    resources: dict[str, Any],
) -> None:
    api = resources["AgentPageSocket"]["Properties"]
    assert (api["ProtocolType"], api["RouteSelectionExpression"]) == ("WEBSOCKET", "$request.body.action")
    routes = {
        r["Properties"]["RouteKey"]: (name, r["Properties"])
        for name, r in resources.items()
        if r["Type"] == "AWS::ApiGatewayV2::Route"
    }
    assert set(routes) == {
        "$connect",
        "$disconnect",
        "$default",
        "accept",
        "decline",
        "hangup",
        "offers",
        "ping",
    }
    _, connect = routes["$connect"]
    assert connect["AuthorizationType"] == "CUSTOM"
    authorizer = resources[connect["AuthorizerId"]["Ref"]]["Properties"]
    assert authorizer["AuthorizerType"] == "REQUEST"
    assert authorizer["IdentitySource"] == ["route.request.querystring.token"]
    assert "${AgentPageAuthorizerFunction.Arn}" in authorizer["AuthorizerUri"]["Fn::Sub"]
    # Only $connect is authorised: later messages ride the connection, whose agent the authoriser named.
    assert all("AuthorizationType" not in props for key, (_, props) in routes.items() if key != "$connect")
    answered = {
        r["Properties"]["RouteId"]["Ref"]
        for r in resources.values()
        if r["Type"] == "AWS::ApiGatewayV2::RouteResponse"
    }
    assert answered == {name for key, (name, _) in routes.items() if key not in ("$connect", "$disconnect")}
    integration = resources["AgentPageSocketIntegration"]["Properties"]
    assert "${AgentPageFunction.Arn}" in integration["IntegrationUri"]["Fn::Sub"]
    for permission in ("AgentPageFunctionPermission", "AgentPageAuthorizerPermission"):
        properties = resources[permission]["Properties"]
        assert properties["Principal"] == "apigateway.amazonaws.com"
        assert ":${AgentPageSocket}/" in properties["SourceArn"]["Fn::Sub"]


def test_offers_reach_pages_from_the_stream_filtered_to_offers_made_and_ended(
    resources: dict[str, Any],
) -> None:
    from rapport_local.page_gateway import matches, stream_filter

    assert resources["Table"]["Properties"]["StreamSpecification"] == {"StreamViewType": "NEW_IMAGE"}
    event = resources["AgentPagePushFunction"]["Properties"]["Events"]["Offers"]
    assert event["Type"] == "DynamoDB" and event["Properties"]["Stream"] == {
        "Fn::GetAtt": ["Table", "StreamArn"]
    }
    (pattern,) = stream_filter()

    def record(name: str, pk: str) -> dict[str, Any]:
        return {"eventName": name, "dynamodb": {"Keys": {"pk": {"S": pk}, "sk": {"S": "x"}}}}

    assert matches(pattern, record("INSERT", "OFFER#anna"))
    assert matches(pattern, record("REMOVE", "OFFER#anna"))  # answered elsewhere, or the caller hung up
    assert not matches(pattern, record("MODIFY", "OFFER#anna"))
    assert not matches(pattern, record("REMOVE", "PAGE#anna"))
    assert not matches(pattern, record("INSERT", "PAGE#anna"))
    assert not matches(pattern, record("INSERT", "CALLER#abc"))


def test_the_page_functions_hold_least_privilege_and_never_the_caller_key_secret(
    resources: dict[str, Any],
) -> None:
    granted = {
        name: {
            action: statement["Resource"]
            for statement in policy_statements(resources[name])
            for action in actions_of(statement)
        }
        for name in PAGE_FUNCTIONS
    }
    for name, actions in granted.items():
        assert {"Ref": "CallerKeySecret"} not in actions.values(), name
        assert "dynamodb:Scan" not in actions and "dynamodb:BatchWriteItem" not in actions, name
    assert {a for a in granted["AgentPageAuthorizerFunction"]} == {"secretsmanager:GetSecretValue"}
    assert granted["AgentPageAuthorizerFunction"]["secretsmanager:GetSecretValue"] == {
        "Ref": "PageTokenSecret"
    }
    routes = granted["AgentPageFunction"]
    assert routes["chime:CreateMeetingWithAttendees"]["Fn::Sub"].endswith(":meeting/*")
    assert routes["chime:DeleteMeeting"]["Fn::Sub"].endswith(":meeting/*")
    assert routes["chime:UpdateSipMediaApplicationCall"]["Fn::Sub"].endswith(
        ":sma/${SipMediaApplication.SipMediaApplicationId}"
    )
    assert routes["sqs:SendMessage"] == {"Fn::GetAtt": ["AgentPageGraceQueue", "Arn"]}
    push = granted["AgentPagePushFunction"]
    assert set(push) == {"dynamodb:Query", "dynamodb:DeleteItem", "execute-api:ManageConnections"}
    assert push["execute-api:ManageConnections"]["Fn::Sub"].endswith(
        ":${AgentPageSocket}/live/POST/@connections/*"
    )
    assert not any(
        action.startswith(("chime:", "sqs:", "secretsmanager:"))
        for action in granted["AgentPageGraceFunction"]
    )


def test_a_closed_page_is_checked_after_the_grace_period_and_page_links_run_out() -> None:
    template = load_template(TEMPLATE)
    grace = template["Parameters"]["PageGraceSeconds"]
    assert (grace["Default"], grace["MaxValue"]) == (60, 900)  # SQS delays a message at most 15 minutes
    hours = template["Parameters"]["PageTokenHours"]
    assert (hours["Default"], hours["MaxValue"]) == (10, 24)
    routes = template["Resources"]["AgentPageFunction"]["Properties"]["Environment"]["Variables"]
    assert routes["RAPPORT_PAGE_GRACE_SECONDS"] == {"Ref": "PageGraceSeconds"}
    router = template["Resources"]["SmaRouterFunction"]["Properties"]["Environment"]["Variables"]
    # How long a browser agent has to accept: the ring timeout, which the hold audio covers.
    assert router["RAPPORT_RING_TIMEOUT_SECONDS"] == {"Ref": "RingTimeoutSeconds"}
    assert template["Parameters"]["RingTimeoutSeconds"]["Default"] == 20
    grace_events = template["Resources"]["AgentPageGraceFunction"]["Properties"]["Events"]["Closed"]
    assert grace_events["Properties"]["FunctionResponseTypes"] == ["ReportBatchItemFailures"]


# -- encryption at rest (README, "Encryption at rest") --------------------------------------------------


def test_by_default_each_service_keeps_its_own_key_and_no_role_may_use_ours() -> None:
    template = load_template(TEMPLATE)
    parameter = template["Parameters"]["EncryptionKey"]
    assert (parameter["Default"], parameter["AllowedValues"]) == ("aws", ["aws", "customer-managed"])
    assert template["Conditions"][KEY_CONDITION] == {
        "Fn::Equals": [{"Ref": "EncryptionKey"}, "customer-managed"]
    }
    default = with_encryption_key(template, customer_managed=False)
    assert not [name for name, r in default["Resources"].items() if r["Type"].startswith("AWS::KMS::")]
    assert "CustomerManagedKey" not in json.dumps([default["Resources"], default["Outputs"]])
    for name, function in resources_of_type(default, "AWS::Serverless::Function").items():
        statements = policy_statements(function)
        assert not [a for s in statements for a in actions_of(s) if a.startswith("kms:")], name
    assert default["Resources"]["Table"]["Properties"]["SSESpecification"] == {"SSEEnabled": True}
    for name, queue in resources_of_type(default, "AWS::SQS::Queue").items():
        assert queue["Properties"]["SqsManagedSseEnabled"] is True, name


def test_with_the_customer_managed_key_the_table_secrets_queues_and_logs_are_encrypted_with_it() -> None:
    keyed = with_encryption_key(load_template(TEMPLATE), customer_managed=True)
    resources = keyed["Resources"]
    key = resources["CustomerManagedKey"]
    assert key["Type"] == "AWS::KMS::Key" and key["Properties"]["EnableKeyRotation"] is True
    # The table and the pepper outlive the stack; the key they cannot be read without must too.
    assert (key["DeletionPolicy"], key["UpdateReplacePolicy"]) == ("Retain", "Retain")
    assert resources["CustomerManagedKeyAlias"]["Properties"]["TargetKeyId"] == {"Ref": "CustomerManagedKey"}
    assert keyed["Outputs"]["CustomerManagedKeyArn"]["Value"] == KEY_ARN

    assert resources["Table"]["Properties"]["SSESpecification"] == {
        "SSEEnabled": True,
        "SSEType": "KMS",
        "KMSMasterKeyId": KEY_ARN,
    }
    secrets = resources_of_type(keyed, "AWS::SecretsManager::Secret")
    assert {"CallerKeySecret", "PageTokenSecret"} <= set(secrets)
    assert all(secret["Properties"]["KmsKeyId"] == KEY_ARN for secret in secrets.values())
    queues = resources_of_type(keyed, "AWS::SQS::Queue")
    assert "SignalsDeadLetterQueue" in queues and "AgentPageGraceQueue" in queues
    for name, queue in queues.items():
        assert queue["Properties"]["KmsMasterKeyId"] == KEY_ARN, name
        assert queue["Properties"]["SqsManagedSseEnabled"] is False, name  # one kind of SSE at a time
    log_groups = resources_of_type(keyed, "AWS::Logs::LogGroup")
    assert all(group["Properties"]["KmsKeyId"] == KEY_ARN for group in log_groups.values())
    # Chime's voice service reads the hold clip with the bucket policy alone: it stays on SSE-S3.
    bucket = resources["HoldAudioBucket"]["Properties"]
    (rule,) = bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert rule["ServerSideEncryptionByDefault"] == {"SSEAlgorithm": "AES256"}


def test_the_key_lets_in_the_account_and_cloudwatch_logs_for_this_stacks_log_groups_only() -> None:
    keyed = with_encryption_key(load_template(TEMPLATE), customer_managed=True)
    statements = keyed["Resources"]["CustomerManagedKey"]["Properties"]["KeyPolicy"]["Statement"]
    assert len(statements) == 2
    (account,) = [s for s in statements if "AWS" in s["Principal"]]
    assert account["Principal"]["AWS"] == {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:root"}
    (logs,) = [s for s in statements if "Service" in s["Principal"]]
    assert logs["Principal"]["Service"] == {"Fn::Sub": "logs.${AWS::Region}.amazonaws.com"}
    scope = logs["Condition"]["ArnLike"]["kms:EncryptionContext:aws:logs:arn"]["Fn::Sub"]
    assert scope.endswith(":log-group:/rapport/${AWS::StackName}/*")
    for name, group in resources_of_type(keyed, "AWS::Logs::LogGroup").items():
        assert group["Properties"]["LogGroupName"]["Fn::Sub"].startswith("/rapport/${AWS::StackName}/"), name


def key_needs(function: dict[str, Any]) -> tuple[set[str], set[str]]:
    """The KMS actions a function's role needs with the customer-managed key, and the services that call
    KMS for it (kms:ViaService), from what the function touches: the table and its stream (the table key),
    a secret, a queue it is fed by, a queue it or Lambda's on-failure destination sends to (new data keys)."""
    touched = {action for s in policy_statements(function) for action in actions_of(s)}
    sources = {event["Type"] for event in function["Properties"].get("Events", {}).values()}
    destination = function["Properties"].get("EventInvokeConfig", {}).get("DestinationConfig", {})
    sends = "sqs:SendMessage" in touched or destination.get("OnFailure", {}).get("Type") == "SQS"
    services = set()
    if "DynamoDB" in sources or any(action.startswith("dynamodb:") for action in touched):
        services.add("dynamodb")
    if "secretsmanager:GetSecretValue" in touched:
        services.add("secretsmanager")
    if "SQS" in sources or sends:
        services.add("sqs")
    if not services:
        return set(), set()
    return ({"kms:Decrypt", "kms:GenerateDataKey"} if sends else {"kms:Decrypt"}), services


def test_each_role_may_use_the_key_for_what_it_touches_and_only_through_that_service() -> None:
    template, functions = load_template(TEMPLATE), "AWS::Serverless::Function"
    default = resources_of_type(with_encryption_key(template, customer_managed=False), functions)
    keyed = resources_of_type(with_encryption_key(template, customer_managed=True), functions)
    needs = {name: key_needs(function) for name, function in default.items()}
    # Spot checks that the derivation sees what the functions do.
    assert needs["SmaRouterFunction"] == ({"kms:Decrypt"}, {"dynamodb", "secretsmanager"})
    assert needs["AgentPagePushFunction"] == ({"kms:Decrypt"}, {"dynamodb"})
    assert needs["AgentsFunction"] == (
        {"kms:Decrypt", "kms:GenerateDataKey"},
        {"dynamodb", "secretsmanager", "sqs"},
    )
    assert needs["HoldAudioFunction"] == needs["SipRuleFunction"] == (set(), set())
    for name, function in keyed.items():
        actions, services = needs[name]
        granted = [s for s in policy_statements(function) if any(a.startswith("kms:") for a in actions_of(s))]
        if not actions:
            assert granted == [], name
            continue
        (statement,) = granted
        assert (statement["Effect"], statement["Resource"]) == ("Allow", KEY_ARN), name
        assert set(actions_of(statement)) == actions, name
        via = {value["Fn::Sub"] for value in statement["Condition"]["StringEquals"]["kms:ViaService"]}
        assert via == {f"{service}.${{AWS::Region}}.amazonaws.com" for service in services}, name
