"""The SIP media application's side of one call: the events it sends, in the order it sends them.

Used by the scenario player and the tests to drive the real handler. Each method sends one event,
carrying the TransactionAttributes the previous response set, and returns the handler's response.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

Invoke = Callable[[dict[str, Any]], Any]


LOCAL_SMA_ID = "local-sma"
"""The SIP media application id of calls played locally."""


class SimulatedCall:
    def __init__(
        self,
        invoke: Invoke,
        caller: str,
        dialled: str = "+18005550100",
        sip_headers: dict[str, str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._invoke = invoke
        self._clock = clock
        self.transaction_id = str(uuid.uuid4())
        self.sequence = 0
        self.attributes: dict[str, str] = {}
        self.responses: list[Any] = []
        self.leg_a: dict[str, Any] = self._leg("LEG-A", "Inbound", to=dialled, from_=caller)
        if sip_headers:
            self.leg_a["SipHeaders"] = dict(sip_headers)
        self.leg_b: dict[str, Any] | None = None

    def _leg(self, tag: str, direction: str, to: str, from_: str) -> dict[str, Any]:
        return {
            "CallId": str(uuid.uuid4()),
            "ParticipantTag": tag,
            "To": to,
            "From": from_,
            "Direction": direction,
            "StartTimeInMilliseconds": str(int(self._clock() * 1000)),
            "Status": "Connected",
        }

    def event(
        self, event_type: str, participants: list[dict[str, Any]], action_data: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """The next event of this call (it is not sent)."""
        self.sequence += 1
        details: dict[str, Any] = {
            "TransactionId": self.transaction_id,
            "AwsAccountId": "123456789012",
            "AwsRegion": "us-east-1",
            "SipRuleId": "local-sip-rule",
            "SipMediaApplicationId": LOCAL_SMA_ID,
            "Participants": [dict(p) for p in participants],
        }
        if self.attributes:
            details["TransactionAttributes"] = dict(self.attributes)
        event: dict[str, Any] = {
            "SchemaVersion": "1.0",
            "Sequence": self.sequence,
            "InvocationEventType": event_type,
            "CallDetails": details,
        }
        if action_data is not None:
            event["ActionData"] = action_data
        return event

    def send(self, event: dict[str, Any]) -> dict[str, Any]:
        """Deliver an event; keep the attributes the response sets, as the SMA does."""
        response = self._invoke(event)
        self.responses.append(response)
        if isinstance(response, dict) and isinstance(response.get("TransactionAttributes"), dict):
            self.attributes = response["TransactionAttributes"]
        return response if isinstance(response, dict) else {"Actions": []}

    def new_inbound(self) -> dict[str, Any]:
        return self.send(self.event("NEW_INBOUND_CALL", [self.leg_a]))

    def bridge_failed(self, bridge: dict[str, Any], error_type: str = "CallNotAnswered") -> dict[str, Any]:
        """The CallAndBridge with these parameters failed (by default: nobody picked up)."""
        action = {
            "Type": "CallAndBridge",
            "Parameters": bridge,
            "ErrorType": error_type,
            "ErrorMessage": "The bridged party did not answer.",
        }
        return self.send(self.event("ACTION_FAILED", [self.leg_a], action))

    def bridge_answered(self, bridge: dict[str, Any]) -> dict[str, Any]:
        """The bridged party picked up: a B-leg joins, reported as ACTION_SUCCESSFUL of CallAndBridge."""
        target = str((bridge.get("Endpoints") or [{}])[0].get("Uri", ""))
        self.leg_b = self._leg("LEG-B", "Outbound", to=target, from_=str(bridge.get("CallerIdNumber", "")))
        action = {"Type": "CallAndBridge", "Parameters": bridge}
        return self.send(self.event("ACTION_SUCCESSFUL", [self.leg_a, self.leg_b], action))

    def digits(self, question: dict[str, Any], received: str | None) -> dict[str, Any]:
        """The caller answered a SpeakAndGetDigits with these keys (ACTION_SUCCESSFUL), or gave no valid
        answer within its tries (`received` None: ACTION_FAILED, as for a timeout or a wrong key)."""
        action: dict[str, Any] = {"Type": "SpeakAndGetDigits", "Parameters": question}
        if received is not None:
            return self.send(
                self.event("ACTION_SUCCESSFUL", [self.leg_a], {**action, "ReceivedDigits": received})
            )
        action |= {"ErrorType": "InvalidDigitsReceived", "ErrorMessage": "No valid digits were received."}
        return self.send(self.event("ACTION_FAILED", [self.leg_a], action))

    def audio_played(self, play: dict[str, Any]) -> dict[str, Any]:
        """A PlayAudio with these parameters played through (all its repeats): ACTION_SUCCESSFUL."""
        return self.send(
            self.event("ACTION_SUCCESSFUL", [self.leg_a], {"Type": "PlayAudio", "Parameters": play})
        )

    def call_update(self, arguments: dict[str, str]) -> dict[str, Any]:
        """What `UpdateSipMediaApplicationCall(TransactionId, Arguments)` makes the SMA send."""
        action = {"Type": "CallUpdateRequest", "Parameters": {"Arguments": dict(arguments)}}
        return self.send(self.event("CALL_UPDATE_REQUESTED", [self.leg_a], action))

    def meeting_joined(self, join: dict[str, Any]) -> dict[str, Any]:
        """The caller's leg joined the meeting: a LEG-B into the Chime media service appears, reported as
        ACTION_SUCCESSFUL of JoinChimeMeeting."""
        self.leg_b = self._leg("LEG-B", "Outbound", to="SMA", from_=str(self.leg_a["From"]))
        action = {"Type": "JoinChimeMeeting", "Parameters": join}
        return self.send(self.event("ACTION_SUCCESSFUL", [self.leg_a, self.leg_b], action))

    def meeting_join_failed(self, join: dict[str, Any]) -> dict[str, Any]:
        action = {
            "Type": "JoinChimeMeeting",
            "Parameters": join,
            "ErrorType": "InvalidActionParameter",
            "ErrorMessage": "JoinToken parameter value is invalid.",
        }
        return self.send(self.event("ACTION_FAILED", [self.leg_a], action))

    def hangup(self, tag: str = "LEG-A") -> dict[str, Any]:
        """One leg hangs up; the other (if any) is still connected until the handler hangs it up."""
        legs = [leg for leg in (self.leg_a, self.leg_b) if leg is not None]
        gone = next(leg for leg in legs if leg["ParticipantTag"] == tag)
        gone["Status"] = "Disconnected"
        parameters = {"SipResponseCode": "0", "CallId": gone["CallId"], "ParticipantTag": tag}
        return self.send(self.event("HANGUP", legs, {"Type": "Hangup", "Parameters": parameters}))


def actions_of(response: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    """The parameters of every action of this type in a response."""
    return [a.get("Parameters", {}) for a in response.get("Actions", []) if a.get("Type") == kind]


def bridge_target(response: dict[str, Any]) -> str | None:
    """Where a response's CallAndBridge rings (agent user part or number), or None."""
    bridges = actions_of(response, "CallAndBridge")
    return str(bridges[0]["Endpoints"][0]["Uri"]) if bridges else None
