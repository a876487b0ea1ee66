"""Amazon Chime SDK meetings and the SIP media application's call updates, stood in for locally.

No Chime engine runs here (and moto has none), so the demo and `rapport agent-page` answer the boto3
clients' requests themselves, in botocore's `before-call` hook, the way botocore's Stubber does: the
request is still built and validated by botocore from the service model, and each answer is checked
against the operation's output shape before the client parses it. Only three operations are answered:

- `CreateMeetingWithAttendees`: a meeting with media URLs and an attendee (with a join token) each;
- `DeleteMeeting`: the meeting ends (`NotFoundException` for one that is gone), and whoever is listening
  hears of it (the SIP media application's meeting leg drops);
- `UpdateSipMediaApplicationCall`: the arguments are handed to the local SIP media application, which
  sends them to the router as `CALL_UPDATE_REQUESTED` (202: the router runs after, as in AWS).

Anything else is refused loudly: this is no Chime, only what rapport asks of it.
"""

from __future__ import annotations

import secrets
import threading
import uuid
from collections.abc import Callable
from typing import Any

from botocore.awsrequest import AWSResponse, HTTPHeaders
from botocore.model import OperationModel
from botocore.validate import ParamValidator


def _keep_params(params: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
    """The request's parameters as the caller gave them (validated by botocore), for the answer."""
    context["local_chime_params"] = dict(params)


DEFAULT_CAPABILITIES = {"Audio": "SendReceive", "Video": "SendReceive", "Content": "SendReceive"}

CallUpdate = Callable[[str, dict[str, str]], None]
"""The SIP media application told to update a call: its transaction id and the arguments."""
MeetingEnded = Callable[[str], None]


class LocalChime:
    def __init__(self, region: str = "us-east-1") -> None:
        self.region = region
        self.meetings: dict[str, dict[str, Any]] = {}
        self.deleted: list[str] = []
        self.updates: list[tuple[str, dict[str, str]]] = []
        self._lock = threading.Lock()
        self._on_update: list[CallUpdate] = []
        self._on_end: list[MeetingEnded] = []

    def on_call_update(self, listener: CallUpdate) -> None:
        self._on_update.append(listener)

    def on_meeting_ended(self, listener: MeetingEnded) -> None:
        self._on_end.append(listener)

    def attach(self, *clients: Any) -> None:
        """Answer these `chime-sdk-meetings` / `chime-sdk-voice` clients' requests from here on."""
        for client in clients:
            events = client.meta.events
            events.register(
                "before-parameter-build.*.*", _keep_params, unique_id=f"local-chime-in-{id(self)}"
            )
            events.register("before-call.*.*", self._answer, unique_id=f"local-chime-{id(self)}")

    # -- the hook -------------------------------------------------------------------------------------------

    def _answer(self, model: OperationModel, context: dict[str, Any], **_: Any) -> tuple[AWSResponse, Any]:
        operation = model.name
        body: dict[str, Any] = context.get("local_chime_params", {})
        if operation == "CreateMeetingWithAttendees":
            return self._ok(model, 200, self._create(body))
        if operation == "DeleteMeeting":
            meeting_id = str(body["MeetingId"])
            if not self._delete(meeting_id):
                return self._error(404, "NotFoundException", f"The meeting {meeting_id} does not exist.")
            return self._ok(model, 204, {})
        if operation == "UpdateSipMediaApplicationCall":
            transaction_id = str(body["TransactionId"])
            arguments = {str(k): str(v) for k, v in (body.get("Arguments") or {}).items()}
            with self._lock:
                self.updates.append((transaction_id, arguments))
            for listener in list(self._on_update):
                listener(transaction_id, arguments)
            return self._ok(model, 202, {"SipMediaApplicationCall": {"TransactionId": transaction_id}})
        return self._error(400, "BadRequestException", f"{operation} is not stood in for locally")

    def _create(self, body: dict[str, Any]) -> dict[str, Any]:
        meeting_id = str(uuid.uuid4())
        host = f"{meeting_id[:8]}.local.invalid"
        meeting = {
            "MeetingId": meeting_id,
            "ExternalMeetingId": body.get("ExternalMeetingId", meeting_id),
            "MediaRegion": body.get("MediaRegion", self.region),
            "MediaPlacement": {
                "AudioHostUrl": f"{host}:3478",
                "AudioFallbackUrl": f"wss://{host}:443/calls/{meeting_id}",
                "SignalingUrl": f"wss://{host}/control/{meeting_id}",
                "TurnControlUrl": f"https://{host}/v2/turn_sessions",
                "EventIngestionUrl": f"https://{host}/v1/client-events",
            },
            "MeetingArn": f"arn:aws:chime:{self.region}:123456789012:meeting/{meeting_id}",
        }
        attendees = [
            {
                "ExternalUserId": attendee["ExternalUserId"],
                "AttendeeId": str(uuid.uuid4()),
                "JoinToken": secrets.token_urlsafe(32),
                "Capabilities": attendee.get("Capabilities") or dict(DEFAULT_CAPABILITIES),
            }
            for attendee in body.get("Attendees", [])
        ]
        with self._lock:
            self.meetings[meeting_id] = {"Meeting": meeting, "Attendees": attendees}
        return {"Meeting": meeting, "Attendees": attendees, "Errors": []}

    def _delete(self, meeting_id: str) -> bool:
        with self._lock:
            if self.meetings.pop(meeting_id, None) is None:
                return False
            self.deleted.append(meeting_id)
        for listener in list(self._on_end):
            listener(meeting_id)
        return True

    @staticmethod
    def _ok(model: OperationModel, status: int, parsed: dict[str, Any]) -> tuple[AWSResponse, Any]:
        if model.output_shape is not None:
            report = ParamValidator().validate(parsed, model.output_shape)
            if report.has_errors():
                raise ValueError(
                    f"local {model.name} answer does not fit the model: {report.generate_report()}"
                )
        answer = {**parsed, "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": {}}}
        return AWSResponse("https://local.invalid", status, HTTPHeaders(), None), answer

    @staticmethod
    def _error(status: int, code: str, message: str) -> tuple[AWSResponse, Any]:
        answer = {
            "Error": {"Code": code, "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": status, "HTTPHeaders": {}},
        }
        return AWSResponse("https://local.invalid", status, HTTPHeaders(), None), answer
