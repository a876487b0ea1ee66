"""The SIP media application's invocation event, as pydantic models that never refuse a call.

AWS adds fields over time and some documented examples disagree (`SipApplicationId`, `Leg-A`, where
INVALID_LAMBDA_RESPONSE puts its error): unknown fields are ignored, both spellings are accepted, and
`parse_event` salvages what it can from a malformed event instead of raising.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cached_property
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, ValidationError, field_validator
from rapport.numbers import PhoneNumber, parse_number


class _AwsModel(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)


class Participant(_AwsModel):
    call_id: str | None = Field(default=None, alias="CallId")
    tag: str | None = Field(default=None, alias="ParticipantTag")
    to: str | None = Field(default=None, alias="To")
    from_: str | None = Field(default=None, alias="From")
    direction: str | None = Field(default=None, alias="Direction")
    status: str | None = Field(default=None, alias="Status")
    sip_headers: dict[str, str] = Field(default_factory=dict, alias="SipHeaders")

    @field_validator("tag")
    @classmethod
    def _upper_tag(cls, value: str | None) -> str | None:
        return value.upper() if value else value

    @property
    def connected(self) -> bool:
        return (self.status or "").lower() == "connected"

    def header(self, name: str) -> str | None:
        """A SIP header's value, matching the name without regard to case."""
        wanted = name.lower()
        return next((value for key, value in self.sip_headers.items() if key.lower() == wanted), None)


class ActionData(_AwsModel):
    type: str | None = Field(default=None, alias="Type")
    parameters: dict[str, Any] = Field(default_factory=dict, alias="Parameters")
    error_type: str | None = Field(default=None, alias="ErrorType")
    received_digits: str | None = Field(default=None, alias="ReceivedDigits")
    """What the caller keyed in, on ACTION_SUCCESSFUL of SpeakAndGetDigits."""
    error_message: str | None = Field(default=None, alias="ErrorMessage")


class CallDetails(_AwsModel):
    transaction_id: str = Field(default="", alias="TransactionId")
    transaction_attributes: dict[str, str] = Field(default_factory=dict, alias="TransactionAttributes")
    aws_region: str | None = Field(default=None, alias="AwsRegion")
    sip_media_application_id: str | None = Field(
        default=None, validation_alias=AliasChoices("SipMediaApplicationId", "SipApplicationId")
    )
    participants: list[Participant] = Field(default_factory=list, alias="Participants")


class SmaEvent(_AwsModel):
    schema_version: str = Field(default="1.0", alias="SchemaVersion")
    sequence: int = Field(default=0, alias="Sequence")
    event_type: str = Field(default="", alias="InvocationEventType")
    action_data: ActionData | None = Field(default=None, alias="ActionData")
    call_details: CallDetails = Field(default_factory=CallDetails, alias="CallDetails")
    error_type: str | None = Field(default=None, alias="ErrorType")
    error_message: str | None = Field(default=None, alias="ErrorMessage")

    def leg(self, tag: str) -> Participant | None:
        return next((p for p in self.call_details.participants if p.tag == tag), None)

    @cached_property
    def caller_number(self) -> PhoneNumber | None:
        """The caller's number, when LEG-A's `From` is one (parsed once per event)."""
        leg = self.caller_leg
        return parse_number(leg.from_) if leg else None

    @property
    def caller_leg(self) -> Participant | None:
        """LEG-A: the inbound caller (or the first participant when tags are missing)."""
        participants = self.call_details.participants
        return self.leg("LEG-A") or (participants[0] if participants else None)


def _salvage(model: type[_AwsModel], raw: Any) -> dict[str, Any]:
    """The fields of `raw` that validate one by one for `model`, keyed by alias."""
    if not isinstance(raw, Mapping):
        return {}
    kept: dict[str, Any] = {}
    for name, value in raw.items():
        try:
            model.model_validate({name: value})
        except ValidationError:
            continue
        kept[name] = value
    return kept


def parse_event(raw: Any) -> tuple[SmaEvent, list[str]]:
    """The event as a model, plus a list of problems found on the way. Never raises.

    When the whole event does not validate, each field is tried on its own and the broken ones are
    dropped (each participant's fields too, attributes value by value), so a call with one odd field
    is still routed.
    """
    try:
        return SmaEvent.model_validate(raw), []
    except ValidationError as error:
        problems = [f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors()[:5]]
    event = _salvage(SmaEvent, raw)
    raw_details = raw.get("CallDetails") if isinstance(raw, Mapping) else None
    if isinstance(raw_details, Mapping):
        details = _salvage(CallDetails, {k: v for k, v in raw_details.items() if k != "Participants"})
        participants = raw_details.get("Participants")
        details["Participants"] = [
            _salvage(Participant, entry)
            for entry in (participants if isinstance(participants, list) else [])
            if isinstance(entry, Mapping)
        ]
        attributes = raw_details.get("TransactionAttributes")
        if isinstance(attributes, Mapping):
            details["TransactionAttributes"] = {
                str(k): v for k, v in attributes.items() if isinstance(v, str)
            }
        event["CallDetails"] = details
    return SmaEvent.model_validate(event), problems
