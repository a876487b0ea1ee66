"""Reading the SIP media application's invocation event: documented shapes, AWS quirks, broken input.

The sample events in `events/sma/` are the documented shapes; malformed variants are derived from them.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sma_events import SmaEvent, parse_event

EVENTS = Path(__file__).resolve().parents[2] / "events" / "sma"
EVENT_FILES = sorted(EVENTS.glob("*.json"))

Path_ = tuple[str | int, ...]


# -- builders -----------------------------------------------------------------------------------------


def sample(name: str) -> dict[str, Any]:
    """A fresh copy of one sample event, free to be broken by the test."""
    event: dict[str, Any] = json.loads((EVENTS / f"{name}.json").read_text(encoding="utf-8"))
    return event


def bridged() -> dict[str, Any]:
    """Two connected legs, transaction attributes and ActionData: the richest sample."""
    return sample("action_successful_call_and_bridge")


def tags(event: SmaEvent) -> list[str | None]:
    return [participant.tag for participant in event.call_details.participants]


def call_ids(event: SmaEvent) -> list[str | None]:
    return [participant.call_id for participant in event.call_details.participants]


# -- the documented shapes ----------------------------------------------------------------------------


def test_there_are_sample_events_to_read() -> None:
    assert len(EVENT_FILES) >= 10


@pytest.mark.parametrize("path", EVENT_FILES, ids=lambda path: path.stem)
def test_every_sample_event_parses_without_problems(path: Path) -> None:
    raw = json.loads(path.read_text(encoding="utf-8"))

    event, problems = parse_event(raw)

    assert problems == []
    details = raw["CallDetails"]
    assert event.event_type == raw["InvocationEventType"]
    assert event.sequence == raw["Sequence"]
    assert event.call_details.transaction_id == details["TransactionId"]
    assert event.call_details.transaction_attributes == details.get("TransactionAttributes", {})
    assert call_ids(event) == [p["CallId"] for p in details["Participants"]]
    assert tags(event) == [p["ParticipantTag"].upper() for p in details["Participants"]]
    assert [p.from_ for p in event.call_details.participants] == [p["From"] for p in details["Participants"]]


def test_the_caller_leg_of_an_inbound_call_carries_the_caller_number() -> None:
    event, _ = parse_event(sample("new_inbound_call"))

    assert event.caller_leg is not None
    assert event.caller_leg.from_ == "+493055501042"
    assert event.caller_leg.to == "+18005550100"
    assert event.caller_leg.connected


def test_action_data_of_a_failed_bridge_names_the_action_and_the_error() -> None:
    event, _ = parse_event(sample("action_failed_call_and_bridge"))

    assert event.action_data is not None
    assert event.action_data.type == "CallAndBridge"
    assert event.action_data.error_type == "CallNotAnswered"
    assert event.action_data.parameters["Endpoints"][0]["Uri"] == "berlin-07"


def test_invalid_lambda_response_errors_are_read_at_top_level_and_in_action_data() -> None:
    event, _ = parse_event(sample("invalid_lambda_response"))

    assert event.error_type == "TransactionAttributesInvalidMapSize"
    assert event.action_data is not None
    assert event.action_data.error_type == "TransactionAttributesInvalidMapSize"


def test_sip_headers_are_found_without_regard_to_case() -> None:
    event, _ = parse_event(sample("new_inbound_call_sip_headers"))

    assert event.caller_leg is not None
    assert event.caller_leg.header("X-RAPPORT-PRODUCT") == "x200-headphones"
    assert (
        event.caller_leg.header(
            "diversion",
        )
        is not None
    )
    assert event.caller_leg.header("x-not-sent") is None


def test_the_sip_application_id_spelling_is_accepted() -> None:
    raw = sample("new_inbound_call")
    raw["CallDetails"]["SipApplicationId"] = raw["CallDetails"].pop("SipMediaApplicationId")

    event, problems = parse_event(raw)

    assert problems == []
    assert event.call_details.sip_media_application_id == "10a74c68-9533-4112-8ad4-b54fb95a916d"


def test_a_mixed_case_participant_tag_is_normalised() -> None:
    raw = bridged()
    raw["CallDetails"]["Participants"][0]["ParticipantTag"] = "Leg-A"
    raw["CallDetails"]["Participants"][1]["ParticipantTag"] = "leg-b"

    event, _ = parse_event(raw)

    assert tags(event) == ["LEG-A", "LEG-B"]
    assert event.leg("LEG-B") is not None


def test_without_tags_the_first_participant_is_the_caller() -> None:
    raw = sample("new_inbound_call")
    del raw["CallDetails"]["Participants"][0]["ParticipantTag"]

    event, _ = parse_event(raw)

    assert event.caller_leg is not None
    assert event.caller_leg.from_ == "+493055501042"


def test_fields_aws_adds_later_are_ignored() -> None:
    raw = bridged()
    raw["BrandNewTopLevelField"] = {"nested": [1, 2]}
    raw["ActionData"]["FutureFlag"] = True
    raw["CallDetails"]["Region2"] = "eu-central-1"
    raw["CallDetails"]["Participants"][0]["MediaRegion"] = ["x"]

    event, problems = parse_event(raw)

    assert problems == []
    assert event == parse_event(bridged())[0]


# -- malformed events: never raise, keep what is valid -------------------------------------------------


def test_participants_as_a_string_drop_the_participants_only() -> None:
    raw = bridged()
    raw["CallDetails"]["Participants"] = "LEG-A,LEG-B"

    event, problems = parse_event(raw)

    assert problems
    assert event.call_details.participants == []
    assert event.event_type == "ACTION_SUCCESSFUL"
    assert event.call_details.transaction_attributes["rp_link"] == "180"
    assert event.call_details.transaction_id == "6428e0d8-362e-46f6-8651-ecd25f4f6789"


def test_a_participant_with_a_wrong_typed_field_loses_only_that_field() -> None:
    raw = bridged()
    raw["CallDetails"]["Participants"][1]["Status"] = {"unexpected": "object"}

    event, problems = parse_event(raw)

    assert problems
    assert tags(event) == ["LEG-A", "LEG-B"]
    leg_b = event.leg("LEG-B")
    assert leg_b is not None
    assert leg_b.status is None
    assert leg_b.call_id == raw["CallDetails"]["Participants"][1]["CallId"]
    assert event.caller_leg is not None
    assert event.caller_leg.from_ == "+493055501042"


def test_non_string_transaction_attributes_are_dropped_and_the_rest_kept() -> None:
    raw = bridged()
    raw["CallDetails"]["TransactionAttributes"]["rp_attempt"] = 1
    raw["CallDetails"]["TransactionAttributes"]["rp_extra"] = None

    event, problems = parse_event(raw)

    assert problems
    attributes = event.call_details.transaction_attributes
    assert "rp_attempt" not in attributes
    assert "rp_extra" not in attributes
    assert attributes["rp_link"] == "180"
    assert attributes["rp_stage"] == "agent"


def test_action_data_as_a_list_is_dropped_and_the_rest_kept() -> None:
    raw = bridged()
    raw["ActionData"] = [raw["ActionData"]]

    event, problems = parse_event(raw)

    assert problems
    assert event.action_data is None
    assert tags(event) == ["LEG-A", "LEG-B"]
    assert event.event_type == "ACTION_SUCCESSFUL"


def test_an_event_without_call_details_has_empty_call_details() -> None:
    raw = bridged()
    del raw["CallDetails"]

    event, _ = parse_event(raw)

    assert event.event_type == "ACTION_SUCCESSFUL"
    assert event.call_details.participants == []
    assert event.call_details.transaction_attributes == {}
    assert event.caller_leg is None


@pytest.mark.parametrize("raw", [None, [], [bridged()], 42, "NEW_INBOUND_CALL", 3.5, True])
def test_a_non_object_event_is_reported_not_raised(raw: Any) -> None:
    event, problems = parse_event(raw)

    assert problems
    assert event.event_type == ""
    assert event.call_details.participants == []


def test_a_broken_event_keeps_its_call_id_for_the_logs() -> None:
    raw = bridged()
    raw["CallDetails"]["Participants"] = 7

    event, _ = parse_event(raw)

    assert event.call_details.transaction_id == "6428e0d8-362e-46f6-8651-ecd25f4f6789"


def test_salvage_keeps_the_valid_top_level_fields() -> None:
    raw = sample("invalid_lambda_response")
    raw["CallDetails"]["Participants"][0]["Status"] = 0

    event, problems = parse_event(raw)

    assert problems
    assert event.sequence == 2
    assert event.error_type == "TransactionAttributesInvalidMapSize"
    assert event.call_details.aws_region == "us-east-1"
    assert event.call_details.sip_media_application_id == "10a74c68-9533-4112-8ad4-b54fb95a916d"


# -- fuzzing ------------------------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=25,
)


@given(json_values)
def test_any_json_input_parses_without_raising(raw: Any) -> None:
    event, problems = parse_event(raw)

    assert isinstance(event, SmaEvent)
    assert isinstance(problems, list)


def paths(value: Any, prefix: Path_ = ()) -> list[Path_]:
    """Every key/index path below the root of a JSON document."""
    found: list[Path_] = []
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, child in items:
        found.append((*prefix, key))
        found.extend(paths(child, (*prefix, key)))
    return found


def mutated(raw: dict[str, Any], path: Path_, replacement: Any, delete: bool) -> dict[str, Any]:
    result = copy.deepcopy(raw)
    parent: Any = result
    for key in path[:-1]:
        parent = parent[key]
    if delete and isinstance(parent, dict):
        del parent[path[-1]]
    else:
        parent[path[-1]] = replacement
    return result


def related(a: Path_, b: Path_) -> bool:
    """True when one path lies on the other (a change at one can affect the other)."""
    shorter = min(len(a), len(b))
    return a[:shorter] == b[:shorter]


@settings(max_examples=300)
@given(
    name=st.sampled_from([path.stem for path in EVENT_FILES]),
    data=st.data(),
    replacement=json_values,
    delete=st.booleans(),
)
def test_one_broken_field_costs_only_itself(
    name: str, data: st.DataObject, replacement: Any, delete: bool
) -> None:
    raw = sample(name)
    path = data.draw(st.sampled_from(paths(raw)))

    event, _ = parse_event(mutated(raw, path, replacement, delete))

    if not related(path, ("InvocationEventType",)):
        assert event.event_type == raw["InvocationEventType"]
    if not related(path, ("Sequence",)):
        assert event.sequence == raw["Sequence"]
    if not related(path, ("CallDetails", "AwsRegion")):
        assert event.call_details.aws_region == raw["CallDetails"]["AwsRegion"]
    if not related(path, ("CallDetails", "TransactionAttributes")):
        assert event.call_details.transaction_attributes == raw["CallDetails"].get(
            "TransactionAttributes", {}
        )
    kept = call_ids(event)
    for index, participant in enumerate(raw["CallDetails"]["Participants"]):
        if not related(path, ("CallDetails", "Participants", index)):
            assert participant["CallId"] in kept
