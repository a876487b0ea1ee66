"""The agent page in headless Chromium: the real page and its real script (amazon-chime-sdk-js bundled),
signed in over a real WebSocket to the local stand-in for API Gateway, which runs the real page functions
against DynamoDB Local. Only the meeting session is a stub (no Chime media runs here), and Chime's APIs
are botocore's Stubber. Each state is saved as a screenshot in build/screenshots/."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.stub import ANY, Stubber
from browser.page_desk import CALLER, RING_SECONDS, SCREENSHOTS, STUB_SESSION, Desk, settled
from builders import state_of
from meetings import AGENT_ATTENDEE, CALLER_TOKEN, MEETING, SIGNALING_URL, meeting_response
from playwright.sync_api import Browser, Page, expect, sync_playwright
from rapport.models import AttemptOutcome, Presence
from rapport.page_tokens import issue
from rapport.settings import DEVELOPMENT_PAGE_TOKEN_KEY
from rapport_local.agent_page import LocalDesk
from rapport_local.cli import DEMO_SCENARIO
from rapport_local.scenario import Scenario, ScenarioPlayer
from rapport_local.sma_driver import actions_of, bridge_target

pytestmark = pytest.mark.stream

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--use-fake-ui-for-media-stream",
                "--use-fake-device-for-media-stream",
            ],
        )
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser, bundle: Path, desk: Desk) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 760, "height": 640})
    opened = context.new_page()
    opened.add_init_script(STUB_SESSION)
    problems: list[str] = []
    opened.on("pageerror", lambda error: problems.append(str(error)))
    opened.goto(desk.link())
    yield opened
    context.close()
    assert problems == []  # no script error on the page, whatever the test did


def shot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"agent-page-{name}.png"))


def test_offer_accept_call_mute_and_hang_up_with_the_keyboard(page: Page, desk: Desk) -> None:
    expect(page.locator("#presence")).to_have_text("Available")
    assert desk.store.agent("anna").presence is Presence.ONLINE  # type: ignore[union-attr]
    assert "token=" not in page.url  # read, then taken out of the address bar
    shot(page, "available")

    call, _ = desk.call()
    offer = page.locator(f'.offer[data-call-id="{call.transaction_id}"]')
    expect(offer).to_be_visible(timeout=5000)
    expect(offer.locator(".mode")).to_have_text("matches the caller's interests")
    expect(offer.locator(".interest")).to_have_text("Interested in x200-headphones")
    expect(offer.locator(".reasons")).to_have_text(
        "interest in x200-headphones 0.80 from a social signal of "
        f"{time.strftime('%-d %b', time.gmtime(time.time() - 3600))}"
        " → agent anna, proficiency 5, no calls of it yet"
    )
    expect(offer.locator(".accept")).to_be_focused()  # the offer takes the focus: Enter accepts
    assert CALLER[2:] not in page.content()
    shot(page, "offer")

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
        page.keyboard.press("Enter")
        expect(page.locator("#call-state")).to_have_text("On call", timeout=5000)
        meetings.assert_no_pending_responses()
        voice.assert_no_pending_responses()
    # The session was made with the meeting and the agent's own attendee, as the SDK parsed them.
    configuration = page.evaluate("window.stubbed.configuration")
    assert configuration == {
        "meetingId": MEETING,
        "attendeeId": AGENT_ATTENDEE["AttendeeId"],
        "externalUserId": "agent-anna",
        "joinToken": AGENT_ATTENDEE["JoinToken"],
        "signalingURL": SIGNALING_URL,
    }
    assert page.evaluate("window.stubbed.calls")[:3] == [
        "presence",
        "startAudioInput:fake-microphone",
        "bindAudioElement",
    ]
    expect(page.locator("#presence")).to_have_text("On a call")
    # The SMA joins the caller into the same meeting.
    (join,) = actions_of(call.call_update(told), "JoinChimeMeeting")
    assert (join["MeetingId"], join["JoinToken"]) == (MEETING, CALLER_TOKEN)
    call.meeting_joined(join)
    shot(page, "on-call")

    expect(page.locator("#hang-up")).to_be_focused()
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Enter")
    expect(page.locator("#mute")).to_have_attribute("aria-pressed", "true")
    expect(page.locator("#mute")).to_have_text("Unmute")
    assert page.evaluate("window.stubbed.calls").count("mute") == 1
    shot(page, "muted")

    with Stubber(desk.meetings) as meetings:
        meetings.add_response("delete_meeting", {}, {"MeetingId": MEETING})
        page.keyboard.press("Tab")
        page.keyboard.press("Enter")
        expect(page.locator("#call-state")).to_have_text("You hung up.")
        shot(page, "hung-up")
        settled(meetings)  # the page's hangup reached the function, which ended the meeting
    assert "stop" in page.evaluate("window.stubbed.calls")
    # The meeting leg drops; the SMA hangs up the caller.
    assert [h["CallId"] for h in actions_of(call.hangup("LEG-B"), "Hangup")] == [call.leg_a["CallId"]]
    expect(page.locator("#call")).to_be_hidden(timeout=5000)
    expect(page.locator("#presence")).to_have_text("Available")


def test_declining_on_the_page_moves_the_call_to_a_desk_phone(page: Page, desk: Desk) -> None:
    expect(page.locator("#presence")).to_have_text("Available")
    call, _ = desk.call()
    offer = page.locator(f'.offer[data-call-id="{call.transaction_id}"]')
    expect(offer).to_be_visible(timeout=5000)
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
        page.keyboard.press("Tab")  # from Accept to Decline
        expect(offer.locator(".decline")).to_be_focused()
        page.keyboard.press("Enter")
        expect(offer).to_have_count(0, timeout=5000)
        voice.assert_no_pending_responses()
    expect(page.locator("#no-offers")).to_be_visible()
    shot(page, "declined")
    assert bridge_target(call.call_update({"rp_offer": "decline", "rp_agent": "anna"})) == "desk-01"


def test_an_offer_not_answered_in_time_leaves_the_page_and_the_call_moves_on(page: Page, desk: Desk) -> None:
    expect(page.locator("#presence")).to_have_text("Available")
    call, hold = desk.call()
    offer = page.locator(f'.offer[data-call-id="{call.transaction_id}"]')
    expect(offer).to_be_visible(timeout=5000)
    expect(offer.locator(".countdown")).to_contain_text("s to answer")
    shot(page, "counting-down")
    expect(offer).to_have_count(0, timeout=(RING_SECONDS + 3) * 1000)
    # The hold audio ran out meanwhile: the SMA says so, and the router rings the next agent.
    assert bridge_target(call.audio_played(hold)) == "desk-01"
    record = state_of(call.attributes, call.transaction_id).record
    assert record is not None
    first = record.attempts[0]
    assert (first.agent_id, first.outcome, first.error) == (
        "anna",
        AttemptOutcome.NO_ANSWER,
        "OfferNotAccepted",
    )


def test_a_caller_who_hangs_up_on_hold_disappears_from_the_page(page: Page, desk: Desk) -> None:
    expect(page.locator("#presence")).to_have_text("Available")
    call, _ = desk.call()
    offer = page.locator(f'.offer[data-call-id="{call.transaction_id}"]')
    expect(offer).to_be_visible(timeout=5000)
    call.hangup("LEG-A")
    expect(offer).to_have_count(0, timeout=5000)  # well before its countdown would have ended
    expect(page.locator("#announcer")).to_contain_text("no longer waiting")


def test_closing_the_page_sets_the_agent_offline_after_the_grace_period(page: Page, desk: Desk) -> None:
    expect(page.locator("#presence")).to_have_text("Available")
    page.close()
    deadline = time.time() + 5
    while desk.store.agent("anna").presence is not Presence.OFFLINE and time.time() < deadline:  # type: ignore[union-attr]
        time.sleep(0.05)
    assert desk.store.agent("anna").presence is Presence.OFFLINE  # type: ignore[union-attr]


def test_a_link_that_has_run_out_brings_the_sign_in_form_back(
    browser: Browser, bundle: Path, desk: Desk
) -> None:
    context = browser.new_context()
    page = context.new_page()
    token = issue("anna", int(time.time()) - 60, DEVELOPMENT_PAGE_TOKEN_KEY)
    page.goto(f"{desk.gateway.http_url}/index.html#socket={desk.gateway.socket_url}&token={token}")
    expect(page.locator("#sign-in")).to_be_visible(timeout=15000)
    expect(page.locator("#problem")).to_contain_text("no longer works")
    expect(page.locator("#socket-url")).to_be_focused()
    shot(page, "signed-out")
    context.close()
    assert desk.store.agent("anna").presence is Presence.OFFLINE  # type: ignore[union-attr]


# -- rapport agent-page: the same page with everything behind it, locally -------------------------------


def test_rapport_agent_page_serves_the_page_and_a_terminal_call_is_taken_in_it(
    browser: Browser, bundle: Path, dynamodb_endpoint: str, table: str
) -> None:
    said: list[str] = []
    player = ScenarioPlayer(Scenario.load(DEMO_SCENARIO), dynamodb_endpoint, table_name=table)
    player.load(open_pages=False)
    desk = LocalDesk(player, dynamodb_endpoint, table, grace_seconds=0, say=said.append)
    try:
        assert player.store.agent("potsdam-13").presence is Presence.OFFLINE  # type: ignore[union-attr]
        link = desk.links()["potsdam-13"]
        context = browser.new_context(viewport={"width": 760, "height": 640})
        page = context.new_page()
        page.goto(link)
        expect(page.locator("#presence")).to_have_text("Available")
        call_id = desk.ring("+4933155501099")  # Clara, who wants the e-bike
        offer = page.locator(f'.offer[data-call-id="{call_id}"]')
        expect(offer).to_be_visible(timeout=5000)
        expect(offer.locator(".interest")).to_have_text("Interested in e-bike-c7")
        page.keyboard.press("Enter")
        expect(page.locator("#call-state")).to_have_text("On call · caller connected", timeout=5000)
        deadline = time.time() + 5
        while not desk.in_meeting and time.time() < deadline:
            time.sleep(0.05)
        assert list(desk.in_meeting.values()) == [call_id]  # the local SMA joined the caller
        page.locator("#hang-up").click()
        expect(page.locator("#call-state")).to_have_text("You hung up.")
        deadline = time.time() + 5
        while not any("the agent hung up" in line for line in said) and time.time() < deadline:
            time.sleep(0.05)
        assert any("the agent hung up" in line for line in said)  # and so did the caller's leg
        assert desk.in_meeting == {} and desk.chime.meetings == {}
        context.close()
    finally:
        desk.close()
