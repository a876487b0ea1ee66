"""Browser agents, the SIP media application's side: hold while the agent's page is offered the call,
join the Chime SDK meeting when they accept, and on to the next candidate when they decline or let the
offer run out. Replayed as the SMA sends the documented events, through the real handler and table."""

from __future__ import annotations

import time
from typing import Any

import pytest
from builders import RouterFactory, agent, state_of
from rapport.models import AgentEndpoint, AttemptOutcome, EndpointKind, Outcome
from rapport.numbers import caller_key
from rapport.settings import DEVELOPMENT_PEPPER
from rapport.store.dynamodb import DynamoStore
from rapport_local.lambda_runner import LocalFunction
from rapport_local.sma_contract import response_problems
from rapport_local.sma_driver import SimulatedCall, actions_of, bridge_target

CALLER = "+12025550107"
BUCKET = "rapport-hold-audio"
MEETING = "9f1c2b3a-4d5e-4f60-8a7b-1c2d3e4f5a6b"
TOKEN = "dGhlIGNhbGxlciBhdHRlbmRlZSdzIGpvaW4gdG9rZW4"


@pytest.fixture
def router(make_router: RouterFactory, store: DynamoStore) -> LocalFunction:
    now = time.time()
    # Anna works in the browser and has been free longest; the desk phone is next.
    store.put_agent(
        agent("anna", now - 900, endpoint=AgentEndpoint(kind=EndpointKind.BROWSER, address="anna"))
    )
    store.put_agent(agent("desk-01", now - 300))
    return make_router(environment={"RAPPORT_HOLD_AUDIO_BUCKET": BUCKET})


def checked(router: LocalFunction) -> Any:
    def invoke(event: dict[str, Any]) -> Any:
        response = router.invoke(event)
        assert response_problems(response) == [], event["InvocationEventType"]
        return response

    return invoke


def offered(router: LocalFunction) -> tuple[SimulatedCall, dict[str, Any]]:
    call = SimulatedCall(checked(router), CALLER)
    response = call.new_inbound()
    (hold,) = actions_of(response, "PlayAudio")
    return call, hold


def test_a_browser_agent_is_offered_the_call_while_the_caller_hears_hold_audio(router: LocalFunction) -> None:
    call, hold = offered(router)
    assert hold == {
        "CallId": call.leg_a["CallId"],
        "AudioSource": {"Type": "S3", "BucketName": BUCKET, "Key": "hold.wav"},
        "Repeat": 2,  # 20 s ring timeout over a 10 s clip
    }
    state = state_of(call.attributes, call.transaction_id)
    assert state.agent_id == "anna" and state.ringing is not None


def test_accepting_joins_the_caller_into_the_meeting_and_hang_up_ends_it(
    router: LocalFunction, store: DynamoStore
) -> None:
    call, _ = offered(router)
    answer = call.call_update(
        {"rp_offer": "accept", "rp_agent": "anna", "JoinToken": TOKEN, "MeetingId": MEETING}
    )
    (join,) = actions_of(answer, "JoinChimeMeeting")
    assert join == {"JoinToken": TOKEN, "MeetingId": MEETING, "CallId": call.leg_a["CallId"]}
    assert call.attributes["rp_meet"] == MEETING
    assert call.meeting_joined(join)["Actions"] == []
    anna = store.agent("anna")
    assert anna is not None and anna.state.value == "on_call"
    hung_up = call.hangup("LEG-A")
    assert [h["CallId"] for h in actions_of(hung_up, "Hangup")] == [call.leg_b["CallId"]]  # type: ignore[index]
    record = store.decision(caller_key(CALLER, DEVELOPMENT_PEPPER), call.transaction_id)
    assert record is not None and (record.agent_id, record.outcome) == ("anna", Outcome.ENDED)


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        ("decline", "OfferDeclined"),
        ("timeout", "OfferNotAccepted"),
        ("join failed", "InvalidActionParameter"),
    ],
)
def test_a_declined_unanswered_or_failed_offer_goes_to_the_next_candidate_who_may_be_a_phone(
    router: LocalFunction, store: DynamoStore, answer: str, why: str
) -> None:
    call, hold = offered(router)
    if answer == "decline":
        response = call.call_update({"rp_offer": "decline", "rp_agent": "anna"})
    elif answer == "timeout":
        response = call.audio_played(hold)
    else:
        joined = call.call_update(
            {"rp_offer": "accept", "rp_agent": "anna", "JoinToken": TOKEN, "MeetingId": MEETING}
        )
        response = call.meeting_join_failed(actions_of(joined, "JoinChimeMeeting")[0])
    assert bridge_target(response) == "desk-01"  # no bridge existed yet, so a bridge is possible now
    record = state_of(call.attributes, call.transaction_id).record
    assert record is not None
    first = record.attempts[0]
    assert (first.agent_id, first.outcome, first.error) == ("anna", AttemptOutcome.NO_ANSWER, why)
    anna = store.agent("anna")
    assert anna is not None and anna.reserved_by is None  # free again


def test_an_answer_for_an_agent_not_offered_the_call_changes_nothing(router: LocalFunction) -> None:
    call, _ = offered(router)
    before = dict(call.attributes)
    for arguments in (
        {"rp_offer": "accept", "rp_agent": "desk-01", "JoinToken": TOKEN, "MeetingId": MEETING},
        {"rp_offer": "accept", "rp_agent": "anna"},  # nothing to join with
        {"reason": "agent-available"},
    ):
        assert call.call_update(arguments)["Actions"] == []
    assert call.attributes == before


def test_without_a_hold_audio_bucket_browser_agents_are_not_offered_calls(
    make_router: RouterFactory, store: DynamoStore
) -> None:
    store.put_agent(
        agent("anna", time.time() - 900, endpoint=AgentEndpoint(kind=EndpointKind.BROWSER, address="anna"))
    )
    store.put_agent(agent("desk-01", time.time() - 300))
    call = SimulatedCall(checked(make_router()), CALLER)
    assert bridge_target(call.new_inbound()) == "desk-01"
