"""Actions the SIP media application understands, and the response envelope that carries them."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

SCHEMA_VERSION = "1.0"
MAX_ACTIONS = 10
MAX_TRANSACTION_ATTRIBUTES = 10


class _Parameters(BaseModel):
    model_config = ConfigDict(frozen=True)


class BridgeEndpoint(_Parameters):
    BridgeEndpointType: Literal["PSTN", "AWS"]
    Uri: str
    Arn: str | None = None

    @model_validator(mode="after")
    def _aws_needs_arn(self) -> BridgeEndpoint:
        if self.BridgeEndpointType == "AWS" and not self.Arn:
            raise ValueError("an AWS (Voice Connector) endpoint needs the Voice Connector's Arn")
        return self


class CallAndBridge(_Parameters):
    CallTimeoutSeconds: int = Field(ge=1, le=120)
    CallerIdNumber: str
    Endpoints: list[BridgeEndpoint] = Field(min_length=1, max_length=1)
    SipHeaders: dict[str, str] | None = None
    """`x-` headers for the bridged party (Voice Connector bridges), at most 2,048 characters in all."""


class Speech(_Parameters):
    """What to say, as `Speak` and `SpeakAndGetDigits` take it (Amazon Polly)."""

    Text: str = Field(min_length=1, max_length=1000)
    Engine: Literal["standard", "neural"] = "neural"
    LanguageCode: str = "en-US"
    TextType: Literal["text", "ssml"] = "text"
    VoiceId: str = "Joanna"


class Speak(Speech):
    CallId: str


class SpeakAndGetDigits(_Parameters):
    """Ask, and collect the key the caller presses; ACTION_SUCCESSFUL carries `ReceivedDigits`, and a
    timeout or keys that do not match `InputDigitsRegex` (after `Repeat` tries) end in ACTION_FAILED."""

    CallId: str
    SpeechParameters: Speech
    FailureSpeechParameters: Speech
    InputDigitsRegex: str
    MinNumberOfDigits: int = Field(default=1, ge=1)
    MaxNumberOfDigits: int = Field(default=1, ge=1)
    TerminatorDigits: list[str] = Field(default_factory=lambda: ["#"])
    InBetweenDigitsDurationInMilliseconds: int = Field(default=3000, ge=1000)
    Repeat: int = Field(default=2, ge=1, le=5)
    RepeatDurationInMilliseconds: int = Field(default=6000, ge=1000)


class AudioSource(_Parameters):
    Type: Literal["S3"] = "S3"
    BucketName: str = Field(min_length=3, max_length=63)
    Key: str = Field(min_length=1, max_length=1024)


class PlayAudio(_Parameters):
    """Audio from S3 on one leg, `Repeat` times; interruptible (a call update ends it early). When it has
    played through, the SMA sends ACTION_SUCCESSFUL."""

    CallId: str
    AudioSource: AudioSource
    Repeat: int = Field(default=1, ge=1, le=100)


class JoinChimeMeeting(_Parameters):
    """Join the caller's leg into a Chime SDK meeting as the attendee of `JoinToken`. Not on a bridged call.
    `MeetingId` is required for meetings made with the chime-sdk-meetings API."""

    JoinToken: str = Field(min_length=2, max_length=2048)
    MeetingId: str = Field(min_length=2, max_length=64)
    CallId: str


class Hangup(_Parameters):
    SipResponseCode: Literal["0", "480", "486"] = "0"
    CallId: str | None = None
    ParticipantTag: str | None = None


Action = CallAndBridge | Speak | SpeakAndGetDigits | PlayAudio | JoinChimeMeeting | Hangup


def response(actions: list[Action], attributes: dict[str, str] | None = None) -> dict[str, Any]:
    """The Lambda's answer. `attributes=None` leaves the call's TransactionAttributes as they are."""
    if len(actions) > MAX_ACTIONS:
        raise ValueError(f"at most {MAX_ACTIONS} actions per response")
    body: dict[str, Any] = {
        "SchemaVersion": SCHEMA_VERSION,
        "Actions": [
            {"Type": type(action).__name__, "Parameters": action.model_dump(exclude_none=True)}
            for action in actions
        ],
    }
    if attributes is not None:
        if len(attributes) > MAX_TRANSACTION_ATTRIBUTES:
            raise ValueError(f"at most {MAX_TRANSACTION_ATTRIBUTES} transaction attributes")
        body["TransactionAttributes"] = attributes
    return body
