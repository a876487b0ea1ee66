"""What the SIP media application accepts as a Lambda response, checked the way the SMA would.

Used by the scenario player and the tests, so that a response Chime would refuse
(INVALID_LAMBDA_RESPONSE) is caught here first. Sources: the Chime SDK developer guide pages on
invocation responses, CallAndBridge, Speak, Hangup and transaction attributes.
"""

from __future__ import annotations

import re
from typing import Any

_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_AWS_URI = re.compile(r"^[A-Za-z0-9&=+$/%\-_!~*().]{1,30}$")
_VOICE_CONNECTOR_ARN = re.compile(r"^arn:aws[a-z-]*:chime:[a-z0-9-]+:\d{12}:vc/[A-Za-z0-9]+$")
KNOWN_ACTIONS = {
    "CallAndBridge",
    "Hangup",
    "Speak",
    "SpeakAndGetDigits",
    "PlayAudio",
    "PlayAudioAndGetDigits",
    "Pause",
    "SendDigits",
    "ReceiveDigits",
    "RecordAudio",
    "JoinChimeMeeting",
    "ModifyChimeMeetingAttendees",
    "StartBotConversation",
    "StartCallRecording",
    "StopCallRecording",
    "PauseCallRecording",
    "ResumeCallRecording",
    "VoiceFocus",
}


def _call_and_bridge(parameters: dict[str, Any]) -> list[str]:
    problems = []
    timeout = parameters.get("CallTimeoutSeconds", 30)
    if not isinstance(timeout, int) or not 1 <= timeout <= 120:
        problems.append("CallAndBridge.CallTimeoutSeconds must be 1-120")
    if not _E164.match(str(parameters.get("CallerIdNumber", ""))):
        problems.append("CallAndBridge.CallerIdNumber must be an E.164 number")
    endpoints = parameters.get("Endpoints")
    if not isinstance(endpoints, list) or len(endpoints) != 1:
        return [*problems, "CallAndBridge.Endpoints must hold exactly one endpoint"]
    endpoint = endpoints[0]
    kind = endpoint.get("BridgeEndpointType")
    if kind == "PSTN":
        if not _E164.match(str(endpoint.get("Uri", ""))):
            problems.append("PSTN endpoint Uri must be an E.164 number")
    elif kind == "AWS":
        if not _VOICE_CONNECTOR_ARN.match(str(endpoint.get("Arn", ""))):
            problems.append("AWS endpoint needs a Voice Connector Arn")
        if not _AWS_URI.match(str(endpoint.get("Uri", ""))):
            problems.append("AWS endpoint Uri must be 1-30 allowed characters")
    else:
        problems.append(f"unknown BridgeEndpointType {kind!r}")
    return problems + _sip_headers(parameters.get("SipHeaders"))


def _sip_headers(headers: object) -> list[str]:
    """`SipHeaders` of a bridge: `x-` headers (not `X-AMZN`), `User-to-User` or `Diversion`, string values,
    at most 2,048 characters in all."""
    if headers is None:
        return []
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        return ["CallAndBridge.SipHeaders must map header names to strings"]
    problems = []
    for name in headers:
        lowered = str(name).lower()
        if lowered.startswith("x-amzn"):
            problems.append(f"SipHeaders: {name} is reserved")
        elif not (lowered.startswith("x-") or lowered in ("user-to-user", "diversion")):
            problems.append(f"SipHeaders: {name} is not an x- header, User-to-User or Diversion")
    if sum(len(str(name)) + len(value) for name, value in headers.items()) > 2048:
        problems.append("SipHeaders: more than 2,048 characters")
    return problems


def _speak_and_get_digits(parameters: dict[str, Any]) -> list[str]:
    """The documented requirements: CallId, SpeechParameters with 1-1,000 characters of Text, and
    RepeatDurationInMilliseconds; digit counts that make sense."""
    problems = []
    if not parameters.get("CallId"):
        problems.append("SpeakAndGetDigits needs a CallId")
    for name in ("SpeechParameters", "FailureSpeechParameters"):
        speech = parameters.get(name)
        if name == "SpeechParameters" or speech is not None:
            text = str(speech.get("Text", "")) if isinstance(speech, dict) else ""
            if not 1 <= len(text) <= 1000:
                problems.append(f"SpeakAndGetDigits.{name}.Text must be 1-1,000 characters")
    if not isinstance(parameters.get("RepeatDurationInMilliseconds"), int):
        problems.append("SpeakAndGetDigits needs RepeatDurationInMilliseconds")
    low, high = parameters.get("MinNumberOfDigits", 1), parameters.get("MaxNumberOfDigits", 128)
    if not (isinstance(low, int) and isinstance(high, int) and 1 <= low <= high):
        problems.append("SpeakAndGetDigits digit counts must be 1 <= Min <= Max")
    return problems


def _play_audio(parameters: dict[str, Any]) -> list[str]:
    """`PlayAudio`: a CallId (or LEG-A/LEG-B), an S3 source with bucket and key, Repeat 1-100."""
    problems = []
    if not (parameters.get("CallId") or parameters.get("ParticipantTag") in ("LEG-A", "LEG-B")):
        problems.append("PlayAudio needs a CallId or ParticipantTag")
    source = parameters.get("AudioSource")
    if not isinstance(source, dict) or source.get("Type") != "S3":
        problems.append("PlayAudio.AudioSource must be {Type: S3, BucketName, Key}")
    elif not source.get("BucketName") or not source.get("Key"):
        problems.append("PlayAudio.AudioSource needs a BucketName and a Key")
    repeat = parameters.get("Repeat", 1)
    if not isinstance(repeat, int) or not 1 <= repeat <= 100:
        problems.append("PlayAudio.Repeat must be 1-100")
    return problems


def _join_chime_meeting(parameters: dict[str, Any]) -> list[str]:
    """`JoinChimeMeeting`: `JoinToken` (not `AttendeeJoinToken`) and, for chime-sdk-meetings meetings,
    `MeetingId`; the caller's leg by CallId or LEG-A."""
    problems = []
    if "AttendeeJoinToken" in parameters:
        problems.append("JoinChimeMeeting takes JoinToken, not AttendeeJoinToken")
    if not parameters.get("JoinToken"):
        problems.append("JoinChimeMeeting needs a JoinToken")
    if not parameters.get("MeetingId"):
        problems.append("JoinChimeMeeting needs the MeetingId of a chime-sdk-meetings meeting")
    if not (parameters.get("CallId") or parameters.get("ParticipantTag") == "LEG-A"):
        problems.append("JoinChimeMeeting needs a CallId or ParticipantTag LEG-A")
    return problems


def response_problems(response: Any) -> list[str]:
    """Every reason the SMA would reject this response; empty when it is valid."""
    if not isinstance(response, dict):
        return ["response is not a JSON object"]
    problems = []
    if response.get("SchemaVersion") != "1.0":
        problems.append("SchemaVersion must be '1.0'")
    actions = response.get("Actions")
    if not isinstance(actions, list):
        return [*problems, "Actions must be a list"]
    if len(actions) > 10:
        problems.append("at most 10 actions")
    attributes = response.get("TransactionAttributes")
    if attributes is not None:
        if not isinstance(attributes, dict) or len(attributes) > 10:
            problems.append("TransactionAttributes must be a map of at most 10 entries")
        elif not all(isinstance(k, str) and isinstance(v, str) for k, v in attributes.items()):
            problems.append("TransactionAttributes values must be strings")
    for action in actions:
        kind = action.get("Type") if isinstance(action, dict) else None
        parameters = action.get("Parameters", {}) if isinstance(action, dict) else {}
        if kind not in KNOWN_ACTIONS:
            problems.append(f"unknown action {kind!r}")
        elif kind == "CallAndBridge":
            problems += _call_and_bridge(parameters)
        elif kind == "Speak":
            if not parameters.get("CallId"):
                problems.append("Speak needs a CallId")
            if not 1 <= len(str(parameters.get("Text", ""))) <= 1000:
                problems.append("Speak.Text must be 1-1,000 characters")
        elif kind == "SpeakAndGetDigits":
            problems += _speak_and_get_digits(parameters)
        elif kind == "PlayAudio":
            problems += _play_audio(parameters)
        elif kind == "JoinChimeMeeting":
            problems += _join_chime_meeting(parameters)
        elif kind == "Hangup":
            if not (parameters.get("CallId") or parameters.get("ParticipantTag")):
                problems.append("Hangup needs a CallId or ParticipantTag")
            if str(parameters.get("SipResponseCode", "0")) not in {"0", "480", "486"}:
                problems.append("Hangup.SipResponseCode must be 0, 480 or 486")
    return problems
