"""The actions and response envelope the SIP media application accepts, shaped as the Chime guide defines."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError
from sma_actions import (
    MAX_ACTIONS,
    MAX_TRANSACTION_ATTRIBUTES,
    BridgeEndpoint,
    CallAndBridge,
    Hangup,
    Speak,
    response,
)

VOICE_CONNECTOR_ARN = "arn:aws:chime:us-east-1:111122223333:vc/abcdef1ghij2klmno3pqr4"
CALLER_LEG = "0bd8e57c-e5d7-4d30-983a-8f833d3da667"


# -- builders -----------------------------------------------------------------------------------------


def to_pstn(number: str = "+18005550199") -> BridgeEndpoint:
    return BridgeEndpoint(BridgeEndpointType="PSTN", Uri=number)


def to_agent(user: str = "berlin-07") -> BridgeEndpoint:
    return BridgeEndpoint(BridgeEndpointType="AWS", Uri=user, Arn=VOICE_CONNECTOR_ARN)


def bridge(*endpoints: BridgeEndpoint, timeout: int = 20) -> CallAndBridge:
    return CallAndBridge(
        CallTimeoutSeconds=timeout, CallerIdNumber="+18005550100", Endpoints=list(endpoints) or [to_agent()]
    )


def only_action(body: dict[str, Any]) -> dict[str, Any]:
    (action,) = body["Actions"]
    assert isinstance(action, dict)
    return action


# -- the envelope -------------------------------------------------------------------------------------


def test_no_actions_is_a_valid_empty_answer_that_keeps_stored_attributes() -> None:
    assert response([]) == {"SchemaVersion": "1.0", "Actions": []}


def test_attributes_are_sent_when_given() -> None:
    body = response([], {"rp_stage": "done"})

    assert body["TransactionAttributes"] == {"rp_stage": "done"}


def test_empty_attributes_are_sent_to_clear_them() -> None:
    assert response([], {})["TransactionAttributes"] == {}


def test_ten_actions_and_ten_attributes_are_accepted() -> None:
    actions = [Hangup(CallId=CALLER_LEG)] * MAX_ACTIONS
    stored = {f"key{index}": "value" for index in range(MAX_TRANSACTION_ATTRIBUTES)}

    body = response(list(actions), stored)

    assert len(body["Actions"]) == 10
    assert len(body["TransactionAttributes"]) == 10


def test_more_than_ten_actions_are_refused() -> None:
    with pytest.raises(ValueError, match="actions"):
        response([Hangup(CallId=CALLER_LEG)] * 11)


def test_more_than_ten_attributes_are_refused() -> None:
    with pytest.raises(ValueError, match="attributes"):
        response([], {f"key{index}": "value" for index in range(11)})


def test_the_answer_is_plain_json() -> None:
    body = response(
        [bridge(to_agent()), Speak(CallId=CALLER_LEG, Text="Goodbye."), Hangup(CallId=CALLER_LEG)],
        {"rp_stage": "agent"},
    )

    assert json.loads(json.dumps(body)) == body


def test_actions_keep_their_order_and_are_typed_by_their_chime_name() -> None:
    body = response([Speak(CallId=CALLER_LEG, Text="Goodbye."), Hangup(CallId=CALLER_LEG)])

    assert [action["Type"] for action in body["Actions"]] == ["Speak", "Hangup"]


# -- CallAndBridge ------------------------------------------------------------------------------------


def test_a_bridge_to_a_voice_connector_agent_has_the_documented_shape() -> None:
    action = only_action(response([bridge(to_agent())]))

    assert action == {
        "Type": "CallAndBridge",
        "Parameters": {
            "CallTimeoutSeconds": 20,
            "CallerIdNumber": "+18005550100",
            "Endpoints": [{"BridgeEndpointType": "AWS", "Uri": "berlin-07", "Arn": VOICE_CONNECTOR_ARN}],
        },
    }


def test_a_bridge_to_a_pstn_number_sends_no_arn() -> None:
    action = only_action(response([bridge(to_pstn())]))

    assert action["Parameters"]["Endpoints"] == [{"BridgeEndpointType": "PSTN", "Uri": "+18005550199"}]


@pytest.mark.parametrize("count", [0, 2])
def test_a_bridge_has_exactly_one_endpoint(count: int) -> None:
    with pytest.raises(ValidationError):
        CallAndBridge(CallTimeoutSeconds=20, CallerIdNumber="+18005550100", Endpoints=[to_pstn()] * count)


@pytest.mark.parametrize("seconds", [1, 30, 120])
def test_ring_timeouts_from_1_to_120_seconds_are_accepted(seconds: int) -> None:
    assert bridge(timeout=seconds).CallTimeoutSeconds == seconds


@pytest.mark.parametrize("seconds", [0, -5, 121])
def test_ring_timeouts_outside_1_to_120_seconds_are_refused(seconds: int) -> None:
    with pytest.raises(ValidationError):
        bridge(timeout=seconds)


def test_an_unknown_endpoint_type_is_refused() -> None:
    with pytest.raises(ValidationError):
        BridgeEndpoint(BridgeEndpointType="SIP", Uri="berlin-07")


def test_a_voice_connector_endpoint_without_its_arn_is_refused() -> None:
    with pytest.raises(ValidationError):
        BridgeEndpoint(BridgeEndpointType="AWS", Uri="berlin-07")


# -- Speak --------------------------------------------------------------------------------------------


def test_speak_has_the_documented_parameters() -> None:
    action = only_action(
        response(
            [Speak(CallId=CALLER_LEG, Text="Einen Moment bitte.", LanguageCode="de-DE", VoiceId="Vicki")]
        )
    )

    assert action["Type"] == "Speak"
    assert action["Parameters"] == {
        "CallId": CALLER_LEG,
        "Text": "Einen Moment bitte.",
        "Engine": "neural",
        "LanguageCode": "de-DE",
        "TextType": "text",
        "VoiceId": "Vicki",
    }


def test_speak_accepts_up_to_1000_characters() -> None:
    assert len(Speak(CallId=CALLER_LEG, Text="a" * 1000).Text) == 1000


@pytest.mark.parametrize("text", ["", "a" * 1001])
def test_speak_refuses_empty_or_too_long_text(text: str) -> None:
    with pytest.raises(ValidationError):
        Speak(CallId=CALLER_LEG, Text=text)


@pytest.mark.parametrize("field", [{"Engine": "generative"}, {"TextType": "markdown"}])
def test_speak_refuses_undocumented_options(field: dict[str, str]) -> None:
    with pytest.raises(ValidationError):
        Speak.model_validate({"CallId": CALLER_LEG, "Text": "Hello.", **field})


# -- Hangup -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("code", ["0", "480", "486"])
def test_hangup_accepts_the_documented_sip_codes(code: str) -> None:
    action = only_action(response([Hangup(CallId=CALLER_LEG, SipResponseCode=code)]))

    assert action["Parameters"] == {"SipResponseCode": code, "CallId": CALLER_LEG}


@pytest.mark.parametrize("code", ["200", "500", "", "busy"])
def test_hangup_refuses_other_sip_codes(code: str) -> None:
    with pytest.raises(ValidationError):
        Hangup(CallId=CALLER_LEG, SipResponseCode=code)


def test_a_hangup_by_participant_tag_sends_no_call_id() -> None:
    action = only_action(response([Hangup(ParticipantTag="LEG-A")]))

    assert action == {"Type": "Hangup", "Parameters": {"SipResponseCode": "0", "ParticipantTag": "LEG-A"}}
