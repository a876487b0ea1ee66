"""No caller's phone number, in any spelling or by its last six digits, in anything rapport writes or
answers: table items, log lines, metrics, TransactionAttributes, API responses. The one exception is
the caller's own access export, which must hold it.

Every kind of flow the suite plays is played here once more, with everything captured: the scenario
files (signals, calls, failovers, fallbacks, an objection, an erasure), every sample event in events/
through its function, the privacy API with good and bad requests, the in-call question, and SIP errors
that quote numbers as the SIP media application writes them.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import re
from pathlib import Path
from typing import Any

import phonenumbers
import pytest
from rapport import SERVICE_NAME
from rapport.log_privacy import RedactingFormatter
from rapport_local.engine import local_client, local_environment
from rapport_local.http_api import http_request
from rapport_local.lambda_runner import LocalFunction
from rapport_local.scenario import PrivacyStep, Scenario, ScenarioCall, ScenarioPlayer
from rapport_local.sma_driver import SimulatedCall, actions_of

PROJECT_DIR = Path(__file__).resolve().parents[2]
SCENARIOS = [
    PROJECT_DIR / "examples" / "demo.json",
    *sorted((PROJECT_DIR / "tests" / "scenarios").glob("*.json")),
]
EVENTS = PROJECT_DIR / "events"
# Hashes and ids are hex: digits inside them are not numbers.
_HEX_IDS = re.compile(
    r"[0-9a-f]{64}|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", re.IGNORECASE
)
_JOINED = re.compile(r"(?<=\d)[ \-./()]+(?=\d)")
_DIGIT_RUNS = re.compile(r"(?<![\d.])\d+")


def caller_numbers() -> set[str]:
    """Every caller number the flows below use (not the business's own numbers, which may be shown)."""
    numbers: set[str] = set()
    for path in SCENARIOS:
        scenario = Scenario.load(path)
        numbers |= {caller.number for caller in scenario.callers}
        numbers |= {step.number for step in scenario.calls if isinstance(step, PrivacyStep)}
        numbers |= {step.from_ for step in scenario.calls if isinstance(step, ScenarioCall)}
        numbers |= {signal.from_ for signal in scenario.signals}
    for path in (EVENTS / "sma").glob("*.json"):
        for leg in json.loads(path.read_text())["CallDetails"].get("Participants", []):
            if leg.get("ParticipantTag") == "LEG-A" and leg.get("Direction") == "Inbound":
                numbers.add(leg["From"])
    for path in [*(EVENTS / "signals").glob("*.json"), *(EVENTS / "privacy").glob("*.json")]:
        numbers |= set(re.findall(r'"(?:caller|number)\\?": \\?"(\+\d+)', path.read_text()))
    return {number for number in numbers if number.startswith("+")} | {SIP_CALLER, IVR_CALLER}


SIP_CALLER = "+12125550188"
IVR_CALLER = "+498955501099"


def spellings(number: str) -> tuple[list[str], str]:
    """The digit strings a number may hide in (international without +, with 00, national), and its
    last six digits."""
    parsed = phonenumbers.parse(number)
    national = str(parsed.national_number)
    digits = number.lstrip("+")
    return [digits, f"00{digits}", f"0{national}", national], digits[-6:]


def leaks(text: str, numbers: set[str]) -> list[str]:
    """Which numbers `text` gives away, in any spelling, or by their last six digits."""
    plain = _JOINED.sub("", _HEX_IDS.sub("<id>", text))
    runs = _DIGIT_RUNS.findall(plain)
    found = []
    for number in numbers:
        forms, last_six = spellings(number)
        for run in runs:
            if any(form in run for form in forms) or (len(run) <= 9 and run.endswith(last_six)):
                found.append(number)
                break
    return sorted(found)


class Capture:
    """Everything the functions answered and printed (log lines and metrics go to stdout, as in Lambda)."""

    def __init__(self) -> None:
        self.answers: list[tuple[str, Any]] = []
        self.printed = io.StringIO()

    def invoke(self, function: LocalFunction, event: Any, label: str) -> Any:
        with contextlib.redirect_stdout(self.printed):
            answer = function.invoke(event)
        self.answers.append((label, answer))
        return answer


@pytest.fixture
def functions(dynamodb_endpoint: str, table: str) -> dict[str, LocalFunction]:
    environment = {**local_environment(dynamodb_endpoint), "POWERTOOLS_LOG_LEVEL": "DEBUG"}
    resources = {"Table": table, "CallerKeySecret": "", "SignalsDeadLetterQueue": ""}
    parameters = {"CallerIdNumber": "+18005550100", "FallbackRoute": "+18005550199"}
    return {
        name: LocalFunction(name, parameters=parameters, resources=resources, environment=environment)
        for name in ("SmaRouterFunction", "SignalsFunction", "PrivacyFunction")
    } | {
        "AskingRouter": LocalFunction(
            "SmaRouterFunction",
            parameters={**parameters, "AskForConsent": "true"},
            resources=resources,
            environment=environment,
        )
    }


def test_no_raw_number_anywhere_across_every_flow(
    dynamodb_endpoint: str, table: str, functions: dict[str, LocalFunction], capfd: pytest.CaptureFixture[str]
) -> None:
    numbers = caller_numbers()
    capture = Capture()
    # Every log line as the functions format it for CloudWatch.
    logged = io.StringIO()
    handler = logging.StreamHandler(logged)
    handler.setFormatter(RedactingFormatter())
    logging.getLogger(SERVICE_NAME).addHandler(handler)

    router, signals, privacy = (
        functions[n] for n in ("SmaRouterFunction", "SignalsFunction", "PrivacyFunction")
    )

    # The scenario files: signals, calls, failovers, fallbacks, objection, erasure.
    for path in SCENARIOS:
        player = ScenarioPlayer(
            Scenario.load(path),
            dynamodb_endpoint,
            table_name=table,
            environment={"POWERTOOLS_LOG_LEVEL": "DEBUG"},
        )
        original = player.invoke

        def recorded(
            event: dict[str, Any], function: LocalFunction | None = None, _original: Any = original
        ) -> Any:
            answer = _original(event, function)
            capture.answers.append(("scenario", answer))
            return answer

        player.invoke = recorded  # type: ignore[method-assign]
        player.load()
        player.play()

    # Every sample event through its function, as `sam local invoke -e` would send it.
    for path in sorted((EVENTS / "sma").glob("*.json")):
        capture.invoke(router, json.loads(path.read_text()), path.name)
    for path in sorted((EVENTS / "signals").glob("*.json")):
        capture.invoke(signals, json.loads(path.read_text()), path.name)
    own_exports = []
    for path in sorted((EVENTS / "privacy").glob("*.json")):
        answer = capture.invoke(privacy, json.loads(path.read_text()), path.name)
        if path.stem == "access":
            own_exports.append(answer)

    # Bad requests: numbers in every wrong spelling must not be echoed back.
    for wrong in (
        "0049 30 5550 1042",
        "004930555010421",
        "+49 (30) 5550-1042",
        "12125550143",
        "sip:+12025550107@x",
    ):
        capture.invoke(privacy, http_request("/privacy/access", {"number": wrong}), "bad access")
        capture.invoke(
            privacy, http_request("/privacy/consent", {"number": wrong, "purposes": ["x"]}), "bad consent"
        )
        signal = {
            "signal_id": "bad",
            "caller": wrong,
            "source": "web",
            "observed_at": "2026-12-01T10:00:00Z",
            "text": "x",
        }
        capture.invoke(signals, http_request("/signals", signal), "bad signal")

    # A SIP error that quotes the caller's number the way the SMA writes it.
    sip_call = SimulatedCall(lambda e: capture.invoke(router, e, "sip error"), SIP_CALLER)
    first = sip_call.new_inbound()
    for bridge in actions_of(first, "CallAndBridge")[:1]:
        failed = sip_call.event(
            "ACTION_FAILED",
            [sip_call.leg_a],
            {
                "Type": "CallAndBridge",
                "Parameters": bridge,
                "ErrorType": "CallNotAnswered",
                "ErrorMessage": (
                    "Not answered: sip:12125550188@10.0.0.1 (From 0012125550188, national (212) 555-0188)"
                ),
            },
        )
        capture.invoke(router, failed, "sip error")
    rejected = sip_call.event("INVALID_LAMBDA_RESPONSE", [sip_call.leg_a])
    rejected |= {
        "ErrorType": "InvalidActionParameter",
        "ErrorMessage": "Bad Uri sip:12125550188@vc.example, tel:0012125550188",
    }
    capture.invoke(router, rejected, "sip error")
    sip_call.hangup("LEG-A")

    # The in-call question, answered yes, then a call that is not asked again.
    asking = functions["AskingRouter"]
    ivr = SimulatedCall(lambda e: capture.invoke(asking, e, "ivr"), IVR_CALLER)
    question = actions_of(ivr.new_inbound(), "SpeakAndGetDigits")
    assert question, "the caller without a recorded choice is asked"
    answer = ivr.digits(question[0], "1")
    for bridge in actions_of(answer, "CallAndBridge")[:1]:
        ivr.bridge_answered(bridge)
    ivr.hangup("LEG-A")
    export = capture.invoke(privacy, http_request("/privacy/access", {"number": IVR_CALLER}), "own export")
    own_exports.append(export)
    capture.invoke(privacy, http_request("/privacy/explanation", {"number": IVR_CALLER}), "explain")

    # Everything captured, checked.
    assert IVR_CALLER in export["body"], "the caller's own access export holds their number"
    problems = []
    for label, answer in capture.answers:
        if any(answer is own for own in own_exports):
            continue
        if found := leaks(json.dumps(_without_caller_id(answer), ensure_ascii=False), numbers):
            problems.append(f"response to {label}: {found}")
    logging.getLogger(SERVICE_NAME).removeHandler(handler)
    captured = capfd.readouterr()
    lines = [
        *logged.getvalue().splitlines(),
        *capture.printed.getvalue().splitlines(),
        *captured.out.splitlines(),
        *captured.err.splitlines(),
    ]
    assert len(lines) > 100, "the flows logged and published metrics"
    problems += [f"printed: {line[:200]}" for line in lines if leaks(line, numbers)]
    client = local_client(dynamodb_endpoint)
    items: list[dict[str, Any]] = []
    params: dict[str, Any] = {"TableName": table}
    while True:
        page = client.scan(**params)
        items += page["Items"]
        if "LastEvaluatedKey" not in page:
            break
        params["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    assert len(items) > 50
    problems += [
        f"table item {item['pk']}/{item['sk']}" for item in items if leaks(json.dumps(item), numbers)
    ]
    assert problems == [], "\n".join(problems)


def _without_caller_id(answer: Any) -> Any:
    """A response without the caller ID of its bridges: with no CallerIdNumber configured, the agent's
    phone shows the caller's own number, as the phone network would show it anyway. It is not kept."""
    if not isinstance(answer, dict) or not isinstance(answer.get("Actions"), list):
        return answer
    actions = [
        {**action, "Parameters": {k: v for k, v in action["Parameters"].items() if k != "CallerIdNumber"}}
        if action.get("Type") == "CallAndBridge"
        else action
        for action in answer["Actions"]
    ]
    return {**answer, "Actions": actions}


def test_the_leak_check_finds_what_it_looks_for() -> None:
    numbers = {"+493055501042", "+12125550143"}
    assert leaks("caller 0049 30 5550 1042 hung up", numbers) == ["+493055501042"]
    assert leaks("sip:12125550143@10.0.0.1", numbers) == ["+12125550143"]
    assert leaks("national 030 5550-1042", numbers) == ["+493055501042"]
    assert leaks("ends …550143 here", numbers) == ["+12125550143"]
    assert leaks("(212) 555-0143", numbers) == ["+12125550143"]
    key = "dcc7a4d46bc6bf6110917874fb8ecf428efbddaf298efeecfd696c8ba6a777ec"
    assert leaks(f"caller_key {key} at 1764612300.501042", numbers) == []
