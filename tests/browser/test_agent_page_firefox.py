"""The agent page in Firefox (Debian's firefox-esr, headless), as in Chromium: the real page and its real
script, signed in over a real WebSocket to the local stand-in for API Gateway, which runs the real page
functions against DynamoDB Local. Only the meeting session is a stub, and Chime's APIs are botocore's
Stubber. Taken by the keyboard alone, as in test_agent_page_browser.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.stub import ANY, Stubber
from browser.firefox import Firefox
from browser.page_desk import CALLER, SCREENSHOTS, STUB_SESSION, Desk, settled
from meetings import AGENT_ATTENDEE, CALLER_TOKEN, MEETING, SIGNALING_URL, meeting_response
from rapport.models import Presence
from rapport_local.sma_driver import actions_of, bridge_target

pytestmark = pytest.mark.stream


@pytest.fixture
def firefox(bundle: Path, desk: Desk) -> Iterator[Firefox]:
    with Firefox() as browser:
        browser.open(desk.link(), init=STUB_SESSION)
        yield browser
        assert browser.send("errors") == []  # no script error on the page, whatever the test did


def test_offer_accept_call_mute_and_hang_up_with_the_keyboard_in_firefox(
    firefox: Firefox, desk: Desk
) -> None:
    firefox.wait("#presence", text="Available", timeout=15000)
    assert desk.store.agent("anna").presence is Presence.ONLINE  # type: ignore[union-attr]
    assert "token=" not in firefox.evaluate("location.href")  # read, then taken out of the address bar

    call, _ = desk.call()
    offer = f'.offer[data-call-id="{call.transaction_id}"]'
    firefox.wait(offer)
    firefox.wait(f"{offer} .mode", text="matches the caller's interests")
    firefox.wait(f"{offer} .interest", text="Interested in x200-headphones")
    firefox.wait(f"{offer} .reasons", contains="→ agent anna, proficiency 5")
    assert firefox.focused(f"{offer} .accept")  # the offer takes the focus: Enter accepts
    assert CALLER[2:] not in firefox.send("content")

    told = {"rp_offer": "accept", "rp_agent": "anna", "JoinToken": CALLER_TOKEN, "MeetingId": MEETING}
    with Stubber(desk.meetings) as meetings, Stubber(desk.voice) as voice:
        meetings.add_response(
            "create_meeting_with_attendees",
            meeting_response(call.transaction_id),
            {
                "ClientRequestToken": call.transaction_id,
                "MediaRegion": ANY,
                "ExternalMeetingId": call.transaction_id,
                "Attendees": ANY,
            },
        )
        voice.add_response(
            "update_sip_media_application_call",
            {"SipMediaApplicationCall": {"TransactionId": call.transaction_id}},
            {"SipMediaApplicationId": "local-sma", "TransactionId": call.transaction_id, "Arguments": told},
        )
        firefox.press("Enter")
        firefox.wait("#call-state", text="On call")
        meetings.assert_no_pending_responses()
        voice.assert_no_pending_responses()
    # The session was made with the meeting and the agent's own attendee, as the SDK parsed them.
    assert firefox.evaluate("window.stubbed.configuration") == {
        "meetingId": MEETING,
        "attendeeId": AGENT_ATTENDEE["AttendeeId"],
        "externalUserId": "agent-anna",
        "joinToken": AGENT_ATTENDEE["JoinToken"],
        "signalingURL": SIGNALING_URL,
    }
    assert firefox.evaluate("window.stubbed.calls")[:3] == [
        "presence",
        "startAudioInput:fake-microphone",
        "bindAudioElement",
    ]
    firefox.wait("#presence", text="On a call")
    (join,) = actions_of(call.call_update(told), "JoinChimeMeeting")
    call.meeting_joined(join)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    firefox.send("shot", path=str(SCREENSHOTS / "agent-page-firefox-on-call.png"))

    assert firefox.focused("#hang-up")
    firefox.press("Shift+Tab")
    firefox.press("Enter")
    firefox.wait("#mute", text="Unmute")
    assert firefox.attribute("#mute", "aria-pressed") == "true"
    assert firefox.evaluate("window.stubbed.calls").count("mute") == 1

    with Stubber(desk.meetings) as meetings:
        meetings.add_response("delete_meeting", {}, {"MeetingId": MEETING})
        firefox.press("Tab")
        firefox.press("Enter")
        firefox.wait("#call-state", text="You hung up.")
        settled(meetings)  # the page's hangup reached the function, which ended the meeting
    assert "stop" in firefox.evaluate("window.stubbed.calls")
    assert [h["CallId"] for h in actions_of(call.hangup("LEG-B"), "Hangup")] == [call.leg_a["CallId"]]
    firefox.wait("#call", hidden=True)
    firefox.wait("#presence", text="Available")


def test_declining_in_firefox_moves_the_call_to_a_desk_phone(firefox: Firefox, desk: Desk) -> None:
    firefox.wait("#presence", text="Available", timeout=15000)
    call, _ = desk.call()
    offer = f'.offer[data-call-id="{call.transaction_id}"]'
    firefox.wait(offer)
    with Stubber(desk.voice) as voice:
        voice.add_response(
            "update_sip_media_application_call",
            {"SipMediaApplicationCall": {"TransactionId": call.transaction_id}},
            {
                "SipMediaApplicationId": "local-sma",
                "TransactionId": call.transaction_id,
                "Arguments": {"rp_offer": "decline", "rp_agent": "anna"},
            },
        )
        firefox.press("Tab")  # from Accept to Decline
        assert firefox.focused(f"{offer} .decline")
        firefox.press("Enter")
        firefox.wait(offer, gone=True)
        voice.assert_no_pending_responses()
    firefox.wait("#no-offers")
    assert bridge_target(call.call_update({"rp_offer": "decline", "rp_agent": "anna"})) == "desk-01"
