"""A Chime SDK meeting as CreateMeetingWithAttendees returns it for an accepted browser call: the shapes
the Stubber answers with (checked against the service model) and the page joins with."""

from __future__ import annotations

from typing import Any

MEETING = "9f1c2b3a-4d5e-4f60-8a7b-1c2d3e4f5a6b"
CALLER_TOKEN = "dGhlIGNhbGxlciBhdHRlbmRlZSdzIGpvaW4gdG9rZW4"
"""The caller attendee's join token: what the SIP media application joins the caller with."""
AUDIO_ONLY = {"Audio": "SendReceive", "Video": "None", "Content": "None"}
AGENT_ATTENDEE = {
    "ExternalUserId": "agent-anna",
    "AttendeeId": "6a7b8c9d-0e1f-4a2b-8c3d-4e5f6a7b8c9d",
    "JoinToken": "YWdlbnQgYW5uYSdzIGpvaW4gdG9rZW4",
    "Capabilities": AUDIO_ONLY,
}
SIGNALING_URL = "wss://signal.m1.ue1.app.chime.aws/control/x"


def meeting_response(call_id: str) -> dict[str, Any]:
    return {
        "Meeting": {
            "MeetingId": MEETING,
            "ExternalMeetingId": call_id,
            "MediaRegion": "us-east-1",
            "MediaPlacement": {
                "AudioHostUrl": "abc.k.m1.ue1.app.chime.aws:3478",
                "AudioFallbackUrl": "wss://haxrp.m1.ue1.app.chime.aws:443/calls/x",
                "SignalingUrl": SIGNALING_URL,
                "TurnControlUrl": "https://ccp.cp.ue1.app.chime.aws/v2/turn_sessions",
                "EventIngestionUrl": "https://data.svc.ue1.ingest.chime.aws/v1/client-events",
            },
        },
        "Attendees": [
            {
                "ExternalUserId": f"caller-{call_id}",
                "AttendeeId": "1a2b3c4d-5e6f-4a7b-8c9d-0e1f2a3b4c5d",
                "JoinToken": CALLER_TOKEN,
                "Capabilities": AUDIO_ONLY,
            },
            AGENT_ATTENDEE,
        ],
        "Errors": [],
    }
