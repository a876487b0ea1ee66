"""The agent's screen pop: x- SIP headers on a Voice Connector bridge, with the decision id, the agent,
the mode and the top interest, never anything that names the caller."""

from __future__ import annotations

import sipmessage
from rapport.models import DecisionRecord, InterestFact, PrivacyFacts, RoutingMode
from screen_pop import AGENT, DECISION, INTEREST, MODE, screen_pop

CALL_ID = "bc8b3bdf-5e60-4479-aded-4471af2e6df0"


def record(interests: dict[str, float], used: bool = True, call_id: str = CALL_ID) -> DecisionRecord:
    return DecisionRecord(
        call_id=call_id,
        caller_key="ab" * 32,
        decided_at=1_790_000_000.0,
        mode=RoutingMode.INTEREST,
        interests={
            p: InterestFact(score=s, at=1_790_000_000.0, sources=["social"]) for p, s in interests.items()
        },
        privacy=PrivacyFacts(interests=used),
        expires_at=1_800_000_000.0,
    )


def round_trip(headers: dict[str, str]) -> dict[str, str]:
    """The headers as a SIP parser on the agent's side reads them back."""
    invite = sipmessage.Request("INVITE", sipmessage.URI.parse("sip:berlin-07@vc.example.com"))
    for name, value in headers.items():
        invite.headers.add(name, value)
    parsed = sipmessage.Message.parse(bytes(invite))
    names = list(parsed.headers.keys())  # sipmessage's Headers is not iterable itself
    return {name: str(parsed.headers.get(name)) for name in names}


def test_the_agent_learns_the_decision_mode_and_top_interest() -> None:
    headers = screen_pop(
        record({"x200-headphones": 0.82, "soundbar-s5": 0.3}), "berlin-07", RoutingMode.INTEREST
    )
    assert headers == {
        DECISION: CALL_ID,
        AGENT: "berlin-07",
        MODE: "interest",
        INTEREST: "x200-headphones",
    }
    assert round_trip(headers) == headers
    assert sum(len(name) + len(value) for name, value in headers.items()) <= 2048
    assert all(name.startswith("x-") for name in headers)


def test_no_interest_header_where_interest_data_was_not_used() -> None:
    headers = screen_pop(record({}, used=False), "cologne-04", RoutingMode.ANY_AVAILABLE)
    assert INTEREST not in headers and headers[MODE] == "any_available"


def test_a_value_that_is_not_a_sip_token_is_left_out_not_sent() -> None:
    headers = screen_pop(record({}, call_id="x\r\nInjected: 1"), "berlin-07", RoutingMode.INTEREST)
    assert DECISION not in headers
    assert round_trip(headers) == headers  # nothing smuggled in


def test_nothing_without_a_record_or_an_agent() -> None:
    assert screen_pop(None, "berlin-07", RoutingMode.INTEREST) == {}
    assert screen_pop(record({}), None, RoutingMode.INTEREST) == {}
