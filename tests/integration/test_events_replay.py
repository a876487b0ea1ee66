"""Every sample in events/sma/ replayed through SmaRouterFunction exactly as `sam local invoke -e` would:
handler and environment from template.yaml, the layer on the path, a real table behind it.

(The events/sip_rule/ samples are replayed by tests/unit/test_sip_rule.py, which also stands in for
CloudFormation's response endpoint.)
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from builders import agent, state_of
from rapport.store.dynamodb import DynamoStore
from rapport_local.lambda_runner import LocalFunction
from rapport_local.sma_contract import response_problems
from rapport_local.sma_driver import actions_of, bridge_target

EVENTS = Path(__file__).resolve().parents[2] / "events" / "sma"
SAMPLES = sorted(EVENTS.glob("*.json"))
DOCUMENTED_TYPES = {
    "NEW_INBOUND_CALL",
    "NEW_OUTBOUND_CALL",
    "ACTION_SUCCESSFUL",
    "ACTION_FAILED",
    "ACTION_INTERRUPTED",
    "HANGUP",
    "CALL_ANSWERED",
    "INVALID_LAMBDA_RESPONSE",
    "DIGITS_RECEIVED",
    "CALL_UPDATE_REQUESTED",
    "RINGING",
}


def load(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return event


def test_every_documented_event_type_has_a_sample() -> None:
    types = {json.loads(path.read_text())["InvocationEventType"] for path in SAMPLES}
    assert types >= DOCUMENTED_TYPES


@pytest.fixture
def roster(store: DynamoStore) -> None:
    # The agents the samples name, plus a spare, all free.
    now = time.time()
    for index, agent_id in enumerate(["berlin-07", "hamburg-02", "munich-01", "spare-01"]):
        store.put_agent(agent(agent_id, idle_since=now - 600 + index))


@pytest.mark.usefixtures("roster")
@pytest.mark.parametrize("sample", SAMPLES, ids=lambda path: path.stem)
def test_sample_gets_a_response_the_sma_accepts(router: LocalFunction, sample: Path) -> None:
    response = router.invoke(json.loads(sample.read_text()))
    assert response_problems(response) == []


@pytest.mark.usefixtures("roster")
@pytest.mark.parametrize("name", ["new_inbound_call.json", "new_inbound_call_sip_headers.json"])
def test_new_call_is_bridged_to_an_agent(router: LocalFunction, name: str) -> None:
    event = load(name)
    response = router.invoke(event)
    assert bridge_target(response) in {"berlin-07", "hamburg-02", "munich-01", "spare-01"}
    assert response["TransactionAttributes"]["rp_stage"] == "agent"
    # The agent's phone is told the decision id, which the CRM posts the call's outcome with.
    headers = actions_of(response, "CallAndBridge")[0]["SipHeaders"]
    assert headers["x-rapport-decision"] == event["CallDetails"]["TransactionId"]
    assert headers["x-rapport-agent"] == bridge_target(response)


@pytest.mark.usefixtures("roster")
def test_unanswered_bridge_rings_the_next_candidate(router: LocalFunction) -> None:
    event = load("action_failed_call_and_bridge.json")
    response = router.invoke(event)
    # berlin-07 did not answer; hamburg-02 is the next candidate the attributes name.
    assert bridge_target(response) == "hamburg-02"
    assert state_of(response["TransactionAttributes"], event["CallDetails"]["TransactionId"]).attempt == 2


@pytest.mark.usefixtures("roster")
@pytest.mark.parametrize(
    ("name", "granted"),
    [
        ("action_successful_speak_and_get_digits.json", True),
        ("action_failed_speak_and_get_digits.json", False),
    ],
)
def test_an_answer_to_the_in_call_question_is_recorded_and_the_call_routed(
    router: LocalFunction, store: DynamoStore, name: str, granted: bool
) -> None:
    event = load(name)
    response = router.invoke(event)
    assert [a["Type"] for a in response["Actions"]] == ["Speak", "CallAndBridge"]
    assert response["Actions"][0]["Parameters"]["LanguageCode"] == "de-DE"
    caller_key = event["CallDetails"]["TransactionAttributes"]["rp_caller"]
    profile = store.caller_context(caller_key, time.time()).profile
    assert profile is not None
    consent = profile.consents["interest_routing"]
    assert (consent.granted, consent.source) == (granted, "ivr")


@pytest.mark.usefixtures("roster")
def test_unanswered_fallback_ends_with_the_message(router: LocalFunction) -> None:
    response = router.invoke(load("action_failed_fallback.json"))
    assert [a["Type"] for a in response["Actions"]] == ["Speak", "Hangup"]


@pytest.mark.usefixtures("roster")
@pytest.mark.parametrize(
    ("name", "remaining_tag"),
    [("hangup_caller_bridged.json", "LEG-B"), ("hangup_agent_bridged.json", "LEG-A")],
)
def test_hangup_of_one_leg_hangs_up_the_other(router: LocalFunction, name: str, remaining_tag: str) -> None:
    event = load(name)
    remaining = next(p for p in event["CallDetails"]["Participants"] if p["ParticipantTag"] == remaining_tag)
    response = router.invoke(event)
    assert [h["CallId"] for h in actions_of(response, "Hangup")] == [remaining["CallId"]]


@pytest.mark.usefixtures("roster")
@pytest.mark.parametrize(
    "name", ["hangup_caller_bridged.json", "hangup_agent_bridged.json", "hangup_single_leg.json"]
)
def test_hangup_stores_the_decision_record_the_call_carried(
    router: LocalFunction, store: DynamoStore, name: str
) -> None:
    event = load(name)
    stored = state_of(event["CallDetails"]["TransactionAttributes"], event["CallDetails"]["TransactionId"])
    router.invoke(event)
    assert stored.record is not None
    record = store.decision(stored.caller_key, stored.record.call_id)
    assert record is not None and record.attempts == [
        attempt.model_copy(update={"pool": ""}) for attempt in stored.record.attempts
    ]


@pytest.mark.usefixtures("roster")
def test_invalid_lambda_response_answers_with_the_fallback(router: LocalFunction) -> None:
    response = router.invoke(load("invalid_lambda_response.json"))
    assert [a["Type"] for a in response["Actions"]] == ["Speak", "Hangup"]


@pytest.mark.usefixtures("roster")
@pytest.mark.parametrize(
    "name",
    [
        "action_successful_speak.json",
        "action_interrupted.json",
        "call_answered.json",
        "ringing.json",
        "digits_received.json",
        "call_update_requested.json",
        "new_outbound_call.json",
        "unknown_event_type.json",
        "hangup_single_leg.json",
    ],
)
def test_events_that_need_nothing_get_no_actions(router: LocalFunction, name: str) -> None:
    assert router.invoke(load(name))["Actions"] == []
