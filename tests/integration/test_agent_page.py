"""The agent page's WebSocket API: sign-in with a page token, presence from the page, offers pushed from
the table's stream, and accept, decline and hang-up answered on the connection. Through the real
handlers (AgentPage*Function) and table, with API Gateway's side played by the local gateway and Chime
stubbed with botocore's Stubber (its answers checked against the service models)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.stub import ANY, Stubber
from builders import RouterFactory, agent
from meetings import AGENT_ATTENDEE, AUDIO_ONLY, CALLER_TOKEN, MEETING, meeting_response
from rapport.models import AgentEndpoint, EndpointKind, Presence
from rapport.page_tokens import issue, verify
from rapport.settings import DEVELOPMENT_PAGE_TOKEN_KEY
from rapport.store.dynamodb import DynamoStore
from rapport_local.engine import local_environment
from rapport_local.http_api import http_request
from rapport_local.lambda_runner import LocalFunction
from rapport_local.page_gateway import (
    PageFunctions,
    PageGateway,
    PageSession,
    Refused,
    StreamPusher,
    locked,
)
from rapport_local.sma_driver import SimulatedCall, actions_of
from websockets.exceptions import InvalidStatus
from websockets.sync.client import connect

pytestmark = pytest.mark.stream

CALLER = "+12025550107"
BUCKET = "rapport-hold-audio"


def token(agent_id: str = "anna", hours: float = 1) -> str:
    return issue(agent_id, int(time.time() + hours * 3600), DEVELOPMENT_PAGE_TOKEN_KEY)


@pytest.fixture
def agents(store: DynamoStore) -> None:
    now = time.time()
    browser = AgentEndpoint(kind=EndpointKind.BROWSER, address="anna")
    store.put_agent(agent("anna", now - 900, endpoint=browser, presence=Presence.OFFLINE))
    store.put_agent(agent("desk-01", now - 300))


@pytest.fixture
def functions(dynamodb_endpoint: str, table: str, agents: None) -> PageFunctions:
    def function(logical_id: str) -> LocalFunction:
        return LocalFunction(
            logical_id,
            resources={"Table": table, "CallerKeySecret": ""},
            environment=local_environment(dynamodb_endpoint),
        )

    return PageFunctions(
        function("AgentPageAuthorizerFunction"),
        function("AgentPageFunction"),
        function("AgentPageGraceFunction"),
    )


@pytest.fixture
def router(make_router: RouterFactory) -> LocalFunction:
    return make_router(environment={"RAPPORT_HOLD_AUDIO_BUCKET": BUCKET})


def presence(store: DynamoStore, agent_id: str = "anna") -> Presence:
    found = store.agent(agent_id)
    assert found is not None
    return found.presence


def chime(functions: PageFunctions) -> tuple[Any, Any]:
    """The page function's container's Chime clients (for botocore's Stubber)."""
    with functions.routes.environment_applied():
        services = functions.routes.module.services()
        return services.meetings, services.voice


def offered(router: LocalFunction) -> SimulatedCall:
    call = SimulatedCall(locked(router), CALLER)
    assert actions_of(call.new_inbound(), "PlayAudio")
    return call


# -- signing in, and presence -------------------------------------------------------------------------


def test_a_page_signed_in_makes_its_agent_available_and_closing_it_offline_after_the_grace(
    functions: PageFunctions, store: DynamoStore
) -> None:
    assert presence(store) is Presence.OFFLINE
    page = PageSession(functions, token())
    assert presence(store) is Presence.ONLINE
    assert page.send("ping") == {"type": "pong"}
    page.close()
    assert presence(store) is Presence.ONLINE  # within the grace period: a reload keeps them
    functions.after_grace("anna")
    assert presence(store) is Presence.OFFLINE


def test_a_page_open_again_within_the_grace_period_keeps_the_agent_available(
    functions: PageFunctions, store: DynamoStore
) -> None:
    first = PageSession(functions, token())
    first.close()
    second = PageSession(functions, token())
    functions.after_grace("anna")  # the first page's grace check, after the second opened
    assert presence(store) is Presence.ONLINE
    second.close()
    functions.after_grace("anna")
    assert presence(store) is Presence.OFFLINE


@pytest.mark.parametrize(
    "bad",
    [
        None,  # no token
        "",
        "not-a-token",
        issue("anna", int(time.time()) - 1, DEVELOPMENT_PAGE_TOKEN_KEY),  # run out
        issue("anna", int(time.time()) + 3600, "someone else's key"),
        issue("desk-01", int(time.time()) + 3600, DEVELOPMENT_PAGE_TOKEN_KEY),  # a desk phone's agent
        issue("nobody", int(time.time()) + 3600, DEVELOPMENT_PAGE_TOKEN_KEY),
    ],
)
def test_a_page_without_a_good_token_for_a_browser_agent_is_refused_and_changes_nothing(
    functions: PageFunctions, store: DynamoStore, bad: str | None
) -> None:
    with pytest.raises(Refused):
        PageSession(functions, bad)  # type: ignore[arg-type]
    assert presence(store) is Presence.OFFLINE
    assert presence(store, "desk-01") is Presence.ONLINE


def test_the_page_is_told_clearly_what_it_sent_wrong(functions: PageFunctions) -> None:
    page = PageSession(functions, token())
    answers = [
        json.loads(functions.send(page.connection, {"agent_id": "anna"}, body) or "{}")
        for body in (
            "{not json",
            '{"action": "accept"}',
            '{"action": "accept", "call_id": "a b"}',
            '{"action": 7}',
        )
    ]
    assert all(answer["type"] == "error" for answer in answers)
    assert "call_id" in answers[1]["error"] and "call_id" in answers[2]["error"]
    assert page.send("dance")["error"] == "unknown action 'dance'"
    assert page.send("accept", "no-such-call")["error"].startswith("no offer of call no-such-call")


# -- offers, accept, decline, hang up -----------------------------------------------------------------


@pytest.fixture
def gateway(functions: PageFunctions) -> Iterator[PageGateway]:
    with PageGateway(functions) as running:
        yield running


@pytest.fixture
def pusher(dynamodb_endpoint: str, table: str, gateway: PageGateway) -> StreamPusher:
    push = LocalFunction(
        "AgentPagePushFunction",
        resources={"Table": table, "CallerKeySecret": ""},
        environment={
            **local_environment(dynamodb_endpoint),
            "RAPPORT_PAGE_SOCKET_CALLBACK_URL": gateway.http_url,
        },
    )
    return StreamPusher(dynamodb_endpoint, table, push)


def test_an_offer_is_pushed_to_the_agents_open_page_without_the_callers_number(
    gateway: PageGateway, pusher: StreamPusher, router: LocalFunction
) -> None:
    with connect(f"{gateway.socket_url}/?token={token()}") as page:
        call = offered(router)
        for _ in range(20):  # as Lambda's poller reads the stream
            if pusher.poll_once():
                break
            time.sleep(0.1)
        pushed = json.loads(page.recv(timeout=5))
    assert pushed["type"] == "offer"
    offer = pushed["offer"]
    assert (offer["call_id"], offer["agent_id"], offer["mode"]) == (
        call.transaction_id,
        "anna",
        "any_available",
    )
    assert offer["reasons"] == ["agent `anna` available, idle for 15 min"]
    assert CALLER[2:] not in json.dumps(pushed)
    # Only new offers pass the template's filter: the agent's other writes are not pushed.
    assert all(record["dynamodb"]["Keys"]["pk"]["S"].startswith("OFFER#") for record in pusher.handed)


def test_a_caller_who_hangs_up_on_hold_is_taken_off_the_agents_page(
    gateway: PageGateway, pusher: StreamPusher, router: LocalFunction, store: DynamoStore
) -> None:
    with connect(f"{gateway.socket_url}/?token={token()}") as page:
        call = offered(router)
        pusher.poll_once()
        for _ in range(20):
            if pusher.handed:
                break
            time.sleep(0.1)
            pusher.poll_once()
        assert json.loads(page.recv(timeout=5))["type"] == "offer"
        call.hangup("LEG-A")  # on hold, before anyone answered
        for _ in range(20):
            if pusher.poll_once():
                break
            time.sleep(0.1)
        assert json.loads(page.recv(timeout=5)) == {"type": "withdrawn", "call_id": call.transaction_id}
    anna = store.agent("anna")
    assert anna is not None and anna.reserved_by is None  # free again at once


def test_a_page_with_a_bad_token_cannot_open_the_socket(gateway: PageGateway) -> None:
    with pytest.raises(InvalidStatus) as refused:
        connect(f"{gateway.socket_url}/?token=forged")
    assert refused.value.response.status_code == 403


def test_a_page_that_is_gone_is_forgotten_when_an_offer_finds_it_closed(
    gateway: PageGateway, pusher: StreamPusher, router: LocalFunction, store: DynamoStore, table: str
) -> None:
    page = PageSession(gateway.functions, token())  # signed in, but no socket behind it any more
    offered(router)
    for _ in range(20):
        if pusher.poll_once():
            break
        time.sleep(0.1)
    remaining = store.client.query(
        TableName=table,
        KeyConditionExpression="pk = :pk",
        ExpressionAttributeValues={":pk": {"S": "PAGE#anna"}},
    )["Items"]
    assert page.connection not in json.dumps(remaining)


def test_accepting_on_the_page_makes_the_meeting_joins_the_caller_and_hanging_up_ends_it(
    functions: PageFunctions, router: LocalFunction
) -> None:
    page = PageSession(functions, token())
    call = offered(router)
    meetings, voice = chime(functions)
    told = {"rp_offer": "accept", "rp_agent": "anna", "JoinToken": CALLER_TOKEN, "MeetingId": MEETING}
    with Stubber(meetings) as meetings_stub, Stubber(voice) as voice_stub:
        meetings_stub.add_response(
            "create_meeting_with_attendees",
            meeting_response(call.transaction_id),
            {
                "ClientRequestToken": call.transaction_id,
                "MediaRegion": ANY,
                "ExternalMeetingId": call.transaction_id,
                "Attendees": [
                    {"ExternalUserId": f"caller-{call.transaction_id}"[:64], "Capabilities": AUDIO_ONLY},
                    {"ExternalUserId": "agent-anna", "Capabilities": AUDIO_ONLY},
                ],
            },
        )
        voice_stub.add_response(
            "update_sip_media_application_call",
            {"SipMediaApplicationCall": {"TransactionId": call.transaction_id}},
            {"SipMediaApplicationId": "local-sma", "TransactionId": call.transaction_id, "Arguments": told},
        )
        accepted = page.send("accept", call.transaction_id)
        meetings_stub.assert_no_pending_responses()
        voice_stub.assert_no_pending_responses()
    assert accepted["type"] == "accepted" and accepted["call_id"] == call.transaction_id
    assert accepted["meeting"]["MeetingId"] == MEETING and accepted["attendee"] == AGENT_ATTENDEE
    (join,) = actions_of(call.call_update(told), "JoinChimeMeeting")
    call.meeting_joined(join)
    # The agent hangs up on the page: the meeting ends, and the SMA hears the meeting leg drop.
    with Stubber(meetings) as meetings_stub:
        meetings_stub.add_response("delete_meeting", {}, {"MeetingId": MEETING})
        assert page.send("hangup", call.transaction_id) == {"type": "ended", "call_id": call.transaction_id}
        meetings_stub.assert_no_pending_responses()
    hung_up = call.hangup("LEG-B")
    assert [h["CallId"] for h in actions_of(hung_up, "Hangup")] == [call.leg_a["CallId"]]
    # A meeting is hung up once, and only by its own agent.
    assert page.send("hangup", call.transaction_id)["type"] == "error"


def test_another_agents_page_cannot_answer_or_end_anna_s_calls(
    functions: PageFunctions, router: LocalFunction, store: DynamoStore
) -> None:
    browser = AgentEndpoint(kind=EndpointKind.BROWSER, address="boris")
    store.put_agent(agent("boris", time.time() - 10, endpoint=browser))
    anna = PageSession(functions, token())
    call = offered(router)
    boris = PageSession(functions, token("boris"))
    for action in ("accept", "decline", "hangup"):
        assert boris.send(action, call.transaction_id)["type"] == "error"
    assert boris.send("offers")["offers"] == []
    assert [o["call_id"] for o in anna.send("offers")["offers"]] == [call.transaction_id]


def test_declining_on_the_page_moves_the_call_to_the_next_agent(
    functions: PageFunctions, router: LocalFunction
) -> None:
    page = PageSession(functions, token())
    call = offered(router)
    _, voice = chime(functions)
    with Stubber(voice) as voice_stub:
        voice_stub.add_response(
            "update_sip_media_application_call",
            {"SipMediaApplicationCall": {"TransactionId": call.transaction_id}},
            {
                "SipMediaApplicationId": "local-sma",
                "TransactionId": call.transaction_id,
                "Arguments": {"rp_offer": "decline", "rp_agent": "anna"},
            },
        )
        assert page.send("decline", call.transaction_id) == {
            "type": "declined",
            "call_id": call.transaction_id,
        }
    bridged = call.call_update({"rp_offer": "decline", "rp_agent": "anna"})
    (bridge,) = actions_of(bridged, "CallAndBridge")
    assert "desk-01" in bridge["Endpoints"][0]["Uri"]
    assert page.send("offers") == {"type": "offers", "offers": []}


# -- page links, from the agents API --------------------------------------------------------------------


@pytest.fixture
def agents_api(dynamodb_endpoint: str, table: str, agents: None) -> LocalFunction:
    return LocalFunction(
        "AgentsFunction",
        resources={"Table": table, "CallerKeySecret": ""},
        environment=local_environment(dynamodb_endpoint),
    )


def test_the_agents_api_hands_out_page_links_for_browser_agents_only(agents_api: LocalFunction) -> None:
    def post(path: str) -> tuple[int, dict[str, Any]]:
        answer = agents_api.invoke(http_request(path, ""))
        return answer["statusCode"], json.loads(answer["body"])

    status, link = post("/agents/anna/page-link")
    assert status == 200
    assert verify(link["token"], DEVELOPMENT_PAGE_TOKEN_KEY, time.time()).agent_id == "anna"
    assert 9.9 * 3600 < link["expires_at"] - time.time() <= 10 * 3600  # PageTokenHours
    assert link["socket_url"].startswith("wss://")
    status, refused = post("/agents/desk-01/page-link")
    assert status == 409 and "voice_connector" in refused["error"]
    assert post("/agents/nobody/page-link")[0] == 404


# -- the events/agent_page samples, as `sam local invoke` would replay them --------------------------------

SAMPLES = Path(__file__).resolve().parents[2] / "events" / "agent_page"


def test_every_agent_page_sample_gets_the_answer_its_readme_names(
    dynamodb_endpoint: str, table: str, store: DynamoStore
) -> None:
    browser = AgentEndpoint(kind=EndpointKind.BROWSER, address="potsdam-13")
    store.put_agent(agent("potsdam-13", time.time() - 60, endpoint=browser, presence=Presence.OFFLINE))

    def replay(logical_id: str, name: str) -> Any:
        function = LocalFunction(
            logical_id,
            resources={"Table": table, "CallerKeySecret": ""},
            environment=local_environment(dynamodb_endpoint),
        )
        return function.invoke(json.loads((SAMPLES / name).read_text()))

    policy = replay("AgentPageAuthorizerFunction", "authorize.json")
    assert policy["policyDocument"]["Statement"][0]["Effect"] == "Allow"
    assert policy["context"] == {"agent_id": "potsdam-13"}
    assert replay("AgentPageFunction", "connect.json") == {"statusCode": 200}
    assert presence(store, "potsdam-13") is Presence.ONLINE
    answers = {
        name: json.loads(replay("AgentPageFunction", name)["body"])
        for name in ("offers.json", "accept.json", "hangup.json")
    }
    assert answers["offers.json"] == {"type": "offers", "offers": []}
    assert answers["accept.json"]["error"].startswith("no offer of call 82f28b9c")
    assert answers["hangup.json"]["error"].startswith("potsdam-13 is in no meeting")
    assert replay("AgentPagePushFunction", "stream_offer.json") == {"batchItemFailures": []}
    assert replay("AgentPageFunction", "disconnect.json") == {"statusCode": 200}
    assert replay("AgentPageGraceFunction", "grace.json") == {"batchItemFailures": []}
    assert presence(store, "potsdam-13") is Presence.OFFLINE
