"""Browser agents, the SIP media application's side: hold while the agent's page is offered the call,
join the Chime SDK meeting when they accept, and on to the next candidate when they decline or let the
offer run out. Replayed as the SMA sends the documented events, through the real handler and table."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from botocore.stub import ANY, Stubber
from builders import RouterFactory, agent, state_of
from meetings import AGENT_ATTENDEE, CALLER_TOKEN, MEETING, meeting_response
from rapport.models import AgentEndpoint, AttemptOutcome, EndpointKind, Outcome
from rapport.numbers import caller_key
from rapport.settings import DEVELOPMENT_PEPPER
from rapport.store.dynamodb import DynamoStore
from rapport_local.engine import local_environment
from rapport_local.http_api import http_request
from rapport_local.lambda_runner import LocalFunction
from rapport_local.sma_contract import response_problems
from rapport_local.sma_driver import SimulatedCall, actions_of, bridge_target

CALLER = "+12025550107"
BUCKET = "rapport-hold-audio"


@pytest.fixture
def router(make_router: RouterFactory, store: DynamoStore) -> LocalFunction:
    now = time.time()
    # Anna works in the browser and has been free longest; the desk phone is next.
    store.put_agent(
        agent("anna", now - 900, endpoint=AgentEndpoint(kind=EndpointKind.BROWSER, address="anna"))
    )
    store.put_agent(agent("desk-01", now - 300))
    return make_router(environment={"RAPPORT_HOLD_AUDIO_BUCKET": BUCKET})


def meetings(router: LocalFunction) -> Any:
    """The router container's chime-sdk-meetings client (for botocore's Stubber)."""
    with router.environment_applied():
        return router.module.services().meetings


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
        {"rp_offer": "accept", "rp_agent": "anna", "JoinToken": CALLER_TOKEN, "MeetingId": MEETING}
    )
    (join,) = actions_of(answer, "JoinChimeMeeting")
    assert join == {"JoinToken": CALLER_TOKEN, "MeetingId": MEETING, "CallId": call.leg_a["CallId"]}
    assert call.attributes["rp_meet"] == MEETING
    assert call.meeting_joined(join)["Actions"] == []
    anna = store.agent("anna")
    assert anna is not None and anna.state.value == "on_call"
    with Stubber(meetings(router)) as chime:
        chime.add_response("delete_meeting", {}, {"MeetingId": MEETING})
        hung_up = call.hangup("LEG-A")
        chime.assert_no_pending_responses()  # the meeting was ended: the agent's page session ends too
    assert [h["CallId"] for h in actions_of(hung_up, "Hangup")] == [call.leg_b["CallId"]]  # type: ignore[index]
    record = store.decision(caller_key(CALLER, DEVELOPMENT_PEPPER), call.transaction_id)
    assert record is not None and (record.agent_id, record.outcome) == ("anna", Outcome.ENDED)


def test_the_agent_leaving_hangs_up_the_caller_whether_or_not_the_meeting_is_still_there(
    router: LocalFunction, store: DynamoStore
) -> None:
    call, _ = offered(router)
    joined = call.call_update(
        {"rp_offer": "accept", "rp_agent": "anna", "JoinToken": CALLER_TOKEN, "MeetingId": MEETING}
    )
    call.meeting_joined(actions_of(joined, "JoinChimeMeeting")[0])
    with Stubber(meetings(router)) as chime:
        # The agent's page ended the meeting first: the meeting leg drops, the meeting is gone already.
        chime.add_client_error("delete_meeting", "NotFoundException", http_status_code=404)
        hung_up = call.hangup("LEG-B")
        chime.assert_no_pending_responses()
    assert [h["CallId"] for h in actions_of(hung_up, "Hangup")] == [call.leg_a["CallId"]]
    anna = store.agent("anna")
    assert anna is not None and anna.state.value == "wrap_up"


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
            {"rp_offer": "accept", "rp_agent": "anna", "JoinToken": CALLER_TOKEN, "MeetingId": MEETING}
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
        {"rp_offer": "accept", "rp_agent": "desk-01", "JoinToken": CALLER_TOKEN, "MeetingId": MEETING},
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


# -- the agent's answer, through the agents API ---------------------------------------------------------


@pytest.fixture
def agents_api(dynamodb_endpoint: str, table: str) -> LocalFunction:
    return LocalFunction(
        "AgentsFunction",
        resources={
            "Table": table,
            "CallerKeySecret": "",
            "SipMediaApplication.SipMediaApplicationId": "local-sma",
        },
        environment=local_environment(dynamodb_endpoint),
    )


def api(agents: LocalFunction, method: str, path: str, status: int = 200) -> Any:
    event = http_request(path, "")
    event["requestContext"]["http"]["method"] = method
    event["routeKey"] = f"{method} {path}"
    event.pop("body")
    answer = agents.invoke(event)
    assert answer["statusCode"] == status, answer.get("body")
    return json.loads(answer["body"])


def clients(agents: LocalFunction) -> tuple[Any, Any]:
    with agents.environment_applied():
        services = agents.module.services()
        return services.meetings, services.voice


def test_the_page_sees_the_offer_accepts_it_and_the_sma_joins_the_caller(
    router: LocalFunction, agents_api: LocalFunction
) -> None:
    call, _ = offered(router)
    (offer,) = api(agents_api, "GET", "/agents/anna/offers")["offers"]
    assert (offer["call_id"], offer["agent_id"], offer["mode"]) == (
        call.transaction_id,
        "anna",
        "any_available",
    )
    assert offer["reasons"] and CALLER[2:] not in json.dumps(offer)  # reasons, never the number
    meetings, voice = clients(agents_api)
    # What the SMA is asked to do: join the caller, as the caller attendee, into the meeting just made.
    told = {"rp_offer": "accept", "rp_agent": "anna", "JoinToken": CALLER_TOKEN, "MeetingId": MEETING}
    with Stubber(meetings) as chime, Stubber(voice) as sma:
        chime.add_response(
            "create_meeting_with_attendees",
            meeting_response(call.transaction_id),
            {
                "ClientRequestToken": call.transaction_id,
                "MediaRegion": ANY,
                "ExternalMeetingId": call.transaction_id,
                "Attendees": ANY,
            },
        )
        sma.add_response(
            "update_sip_media_application_call",
            {"SipMediaApplicationCall": {"TransactionId": call.transaction_id}},
            {"SipMediaApplicationId": "local-sma", "TransactionId": call.transaction_id, "Arguments": told},
        )
        accepted = api(agents_api, "POST", f"/agents/anna/offers/{call.transaction_id}/accept")
        chime.assert_no_pending_responses()
        sma.assert_no_pending_responses()
    assert accepted["meeting"]["MeetingId"] == MEETING and accepted["attendee"] == AGENT_ATTENDEE
    # The SMA sends what the update asked for; the router joins the caller into the meeting.
    (join,) = actions_of(call.call_update(told), "JoinChimeMeeting")
    assert (join["JoinToken"], join["MeetingId"]) == (CALLER_TOKEN, MEETING)
    # One answer counts: the offer is gone.
    api(agents_api, "POST", f"/agents/anna/offers/{call.transaction_id}/accept", status=404)
    assert api(agents_api, "GET", "/agents/anna/offers")["offers"] == []


def test_declining_through_the_api_moves_the_call_on(
    router: LocalFunction, agents_api: LocalFunction
) -> None:
    call, _ = offered(router)
    _, voice = clients(agents_api)
    with Stubber(voice) as sma:
        sma.add_response(
            "update_sip_media_application_call",
            {"SipMediaApplicationCall": {"TransactionId": call.transaction_id}},
            {
                "SipMediaApplicationId": "local-sma",
                "TransactionId": call.transaction_id,
                "Arguments": {"rp_offer": "decline", "rp_agent": "anna"},
            },
        )
        api(agents_api, "POST", f"/agents/anna/offers/{call.transaction_id}/decline")
        sma.assert_no_pending_responses()
    assert bridge_target(call.call_update({"rp_offer": "decline", "rp_agent": "anna"})) == "desk-01"


def offers_of(store: DynamoStore, agent_id: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = store.client.query(
        TableName=store.table_name,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": f"OFFER#{agent_id}"}},
    )["Items"]
    return items


def test_a_caller_who_hangs_up_on_hold_takes_the_offer_back_and_frees_the_agent(
    router: LocalFunction, store: DynamoStore
) -> None:
    call, _ = offered(router)
    assert call.attributes["rp_offered"] == "1" and len(offers_of(store, "anna")) == 1
    assert call.hangup("LEG-A")["Actions"] == []
    assert offers_of(store, "anna") == []  # the page is told through the stream (test_agent_page.py)
    anna = store.agent("anna")
    assert anna is not None and anna.reserved_by is None


def test_once_the_call_moves_on_to_a_phone_no_offer_stands(router: LocalFunction) -> None:
    call, hold = offered(router)
    assert bridge_target(call.audio_played(hold)) == "desk-01"
    assert "rp_offered" not in call.attributes  # a hang-up now withdraws nothing
