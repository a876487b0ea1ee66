"""The roster as people run it, end to end against DynamoDB Local: AgentsFunction's HTTP API as API
Gateway calls it, its OpenAPI document, the `rapport agents` commands, and what routing does with the
changes (the router as the SIP media application calls it)."""

from __future__ import annotations

import itertools
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from builders import RouterFactory, interest, later, profile, state_of
from rapport.numbers import caller_key
from rapport.settings import DEVELOPMENT_PEPPER
from rapport.store.layout import POOL_READ_BYTES, POOL_WRITE_BYTES, item_size
from rapport_local.cli import agents_openapi_document, main
from rapport_local.engine import local_client, local_environment
from rapport_local.http_api import http_request
from rapport_local.lambda_runner import LocalFunction
from rapport_local.sma_driver import SimulatedCall, actions_of, bridge_target
from rapport_local.template import load_template

PROJECT_DIR = Path(__file__).resolve().parents[2]
OPENAPI = PROJECT_DIR / "api" / "agents.openapi.json"
MARK_US = "+12025550107"


@pytest.fixture
def agents(dynamodb_endpoint: str, table: str) -> LocalFunction:
    """AgentsFunction as `sam local invoke` would run it, against this test's table."""
    return LocalFunction(
        "AgentsFunction",
        resources={
            "Table": table,
            "CallerKeySecret": "",
            "SipMediaApplication.SipMediaApplicationId": "local-sma",
        },
        environment=local_environment(dynamodb_endpoint),
    )


def request(
    method: str, path: str, body: object = None, query: dict[str, str] | None = None
) -> dict[str, Any]:
    event = http_request(path, body if body is not None else "")
    event["requestContext"]["http"]["method"] = method
    event["routeKey"] = f"{method} {path}"
    if body is None:
        event.pop("body")
    if query:
        event["rawQueryString"] = "&".join(f"{k}={v}" for k, v in query.items())
        event["queryStringParameters"] = dict(query)
    return event


VOICE_CONNECTOR = "arn:aws:chime:us-east-1:123456789012:vc/abcdefghijklmnopqrstu1"


def ask(
    agents: LocalFunction,
    method: str,
    path: str,
    body: object = None,
    status: int = 200,
    query: dict[str, str] | None = None,
    **params: str,
) -> Any:
    answer = agents.invoke(request(method, path, body, {**(query or {}), **params} or None))
    assert answer["statusCode"] == status, answer.get("body")
    return json.loads(answer["body"])


def ask_as_a_client_would(agents: LocalFunction, method: str, path: str, body: object, status: int) -> Any:
    """Like `ask`, but asks again (a few times) when the answer is the documented `503 retry: true`:
    on a busy machine DynamoDB Local may refuse a connection, and a client is told to ask again."""
    for _ in range(5):
        answer = agents.invoke(request(method, path, body))
        if answer["statusCode"] != 503:
            break
        assert json.loads(answer["body"])["retry"] is True
    assert answer["statusCode"] == status, answer.get("body")
    return json.loads(answer["body"])


def new_agent(agent_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "agent_id": agent_id,
        "name": fields.pop("name", agent_id.title()),
        "endpoint": fields.pop("endpoint", {"kind": "voice_connector", "address": agent_id}),
        **fields,
    }


def key(number: str) -> str:
    return caller_key(number, DEVELOPMENT_PEPPER)


def place_call(router: LocalFunction, caller: str = MARK_US) -> tuple[SimulatedCall, dict[str, Any]]:
    placed = SimulatedCall(router.invoke, caller)
    return placed, placed.new_inbound()


# -- the API and its description ------------------------------------------------------------------------


def test_the_openapi_file_is_what_the_function_accepts_and_the_template_routes() -> None:
    assert json.loads(OPENAPI.read_text()) == json.loads(agents_openapi_document()), (
        "api/agents.openapi.json is out of date: run `rapport agents openapi --write`"
    )
    document = json.loads(OPENAPI.read_text())
    described = {
        (method.upper(), path) for path, operations in document["paths"].items() for method in operations
    }
    events = load_template()["Resources"]["AgentsFunction"]["Properties"]["Events"].values()
    routed = {(e["Properties"]["Method"], e["Properties"]["Path"]) for e in events if e["Type"] == "HttpApi"}
    assert described == routed


def test_an_agent_is_added_read_changed_and_removed(agents: LocalFunction) -> None:
    body = new_agent(
        "berlin-07",
        name="Anna Weber",
        products={"x200-headphones": 5},
        languages=["de", "en"],
        wrap_up_seconds=45,
    )
    added = ask(agents, "POST", "/agents", body, status=201)
    assert (added["name"], added["status"], added["state"], added["wrap_up_seconds"]) == (
        "Anna Weber",
        "available",
        "idle",
        45,
    )
    assert ask(agents, "GET", "/agents/berlin-07")["products"] == {"x200-headphones": 5}
    changed = ask(agents, "PATCH", "/agents/berlin-07", {"products": {"soundbar-s5": 4}, "name": "Anna W."})
    assert (changed["products"], changed["name"], changed["languages"]) == (
        {"soundbar-s5": 4},
        "Anna W.",
        ["de", "en"],
    )
    removed = ask(agents, "DELETE", "/agents/berlin-07")
    assert removed == {"agent_id": "berlin-07", "removed": True, "was_on_a_call": False}
    ask(agents, "GET", "/agents/berlin-07", status=404)
    ask(agents, "DELETE", "/agents/berlin-07", status=404)


def test_bad_input_gets_a_clear_error_and_nothing_is_written(agents: LocalFunction, store: Any) -> None:
    answer = ask(
        agents,
        "POST",
        "/agents",
        {
            "agent_id": "x y",
            "name": "",
            "endpoint": {"kind": "pstn", "address": "030 1234"},
            "products": {"p": 7},
        },
        status=400,
    )
    problems = "\n".join(answer["problems"])
    for field in ("agent_id", "name", "endpoint", "products.p"):
        assert field in problems, field
    assert "E.164" in problems
    assert ask(agents, "POST", "/agents", {**new_agent("a-1"), "colour": "red"}, status=400)["problems"]
    assert store.agents() == []
    ask(agents, "POST", "/agents", new_agent("a-1"), status=201)
    assert ask(agents, "POST", "/agents", new_agent("a-1", name="Someone else"), status=409)["error"]
    assert ask(agents, "GET", "/agents/a-1")["name"] == "A-1"
    ask(agents, "PATCH", "/agents/nobody", {"name": "x"}, status=404)
    ask(agents, "PUT", "/agents/a-1/status", {"status": "sleeping"}, status=400)
    ask(agents, "GET", "/agents", status=400, limit="0")


def test_the_roster_lists_in_pages_across_pools(agents: LocalFunction) -> None:
    for index in range(35):
        ask(
            agents,
            "POST",
            "/agents",
            new_agent(f"agent-{index:02d}", products={"soundbar-s5": 3}),
            status=201,
        )
    seen: list[str] = []
    pages = 0
    after: str | None = None
    while True:
        query = {"limit": "10", **({"next": after} if after else {})}
        page = ask(agents, "GET", "/agents", query=query)
        pages += 1
        seen += [agent["agent_id"] for agent in page["agents"]]
        after = page["next"]
        if after is None:
            break
    assert sorted(seen) == [f"agent-{index:02d}" for index in range(35)] and len(seen) == 35
    assert pages >= 4
    assert len({agent["pool"] for agent in ask(agents, "GET", "/agents", limit="100")["agents"]}) >= 3


def test_agents_added_at_once_all_land_and_every_pool_stays_within_its_limits(
    agents: LocalFunction, dynamodb_endpoint: str, table: str
) -> None:
    threads = [
        threading.Thread(
            target=lambda i=index: ask_as_a_client_would(
                agents, "POST", "/agents", new_agent(f"rush-{i:02d}"), status=201
            )
        )
        for index in range(24)
    ]
    with agents.environment_applied():
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    listed = ask(agents, "GET", "/agents", limit="100")["agents"]
    assert sorted(a["agent_id"] for a in listed) == [f"rush-{i:02d}" for i in range(24)]
    client = local_client(dynamodb_endpoint)
    items = client.scan(TableName=table)["Items"]
    pools = {item["pk"]["S"] for item in items if item["pk"]["S"].startswith("POOL#")}
    directory = next(item for item in items if item["pk"]["S"] == "DIRECTORY")
    assert {f"POOL#{p['S']}" for p in directory["pools"]["L"]} == pools
    for item in items:
        if item["sk"]["S"] == "AVAIL":
            assert item_size(item) <= POOL_WRITE_BYTES
        if item["sk"]["S"] == "ROSTER":
            assert item_size(item) <= POOL_READ_BYTES


# -- what routing does with it --------------------------------------------------------------------------


def test_status_decides_who_is_offered_calls(agents: LocalFunction, make_router: RouterFactory) -> None:
    ask(agents, "POST", "/agents", new_agent("only-one"), status=201)
    away = ask(agents, "PUT", "/agents/only-one/status", {"status": "away", "reason": "lunch"})
    assert (away["status"], away["status_reason"]) == ("away", "lunch")
    _, response = place_call(make_router())  # a fresh container: nothing cached
    assert bridge_target(response) is None and actions_of(response, "Speak")
    ask(agents, "PUT", "/agents/only-one/status", {"status": "available"})
    _, response = place_call(make_router())
    assert bridge_target(response) == "only-one"
    assert ask(agents, "GET", "/agents/only-one")["state"] == "ringing"


def test_an_agent_takes_as_many_calls_at_once_as_they_have_lines_and_no_more(
    agents: LocalFunction, make_router: RouterFactory
) -> None:
    body = new_agent("two-lines", max_concurrent_calls=2, wrap_up_seconds=0)
    added = ask(agents, "POST", "/agents", body, status=201)
    assert (added["max_concurrent_calls"], [line["state"] for line in added["lines"]]) == (
        2,
        ["idle", "idle"],
    )
    router = make_router()
    first, answer_1 = place_call(router, "+12025550101")
    second, answer_2 = place_call(router, "+12025550102")
    _, answer_3 = place_call(make_router(), "+12025550103")  # another container: it reads the pool
    assert bridge_target(answer_1) == bridge_target(answer_2) == "two-lines"
    assert bridge_target(answer_3) is None and actions_of(answer_3, "Speak")
    first.bridge_answered(actions_of(answer_1, "CallAndBridge")[0])
    shown = ask(agents, "GET", "/agents/two-lines")
    assert (shown["state"], shown["calls_now"], [line["state"] for line in shown["lines"]]) == (
        "on_call",
        2,
        ["on_call", "ringing"],
    )
    first.hangup("LEG-A")  # line 1 free again (no wrap-up): the next call takes it
    _, answer_4 = place_call(make_router(), "+12025550104")
    assert bridge_target(answer_4) == "two-lines"
    # One line fewer while both are held: the call on line 2 goes on, and ends without trouble.
    fewer = ask(agents, "PATCH", "/agents/two-lines", {"max_concurrent_calls": 1})
    assert (fewer["max_concurrent_calls"], len(fewer["lines"]), fewer["calls_now"]) == (1, 1, 1)
    second.bridge_answered(actions_of(answer_2, "CallAndBridge")[0])
    assert actions_of(second.hangup("LEG-A"), "Hangup")
    ask(agents, "PATCH", "/agents/two-lines", {"max_concurrent_calls": 3})
    shown = ask(agents, "GET", "/agents/two-lines")
    assert [line["state"] for line in shown["lines"]] == ["ringing", "idle", "idle"]
    ask(agents, "PATCH", "/agents/two-lines", {"max_concurrent_calls": 5}, status=400)


def test_a_changed_skill_changes_the_next_route(
    agents: LocalFunction, make_router: RouterFactory, store: Any
) -> None:
    ask(agents, "POST", "/agents", new_agent("tv-expert", products={"smart-tv-q9": 5}), status=201)
    ask(agents, "POST", "/agents", new_agent("generalist"), status=201)
    store.put_caller(key(MARK_US), profile(), [interest("mesh-router-m3", 0.9, time.time())])
    ask(agents, "PATCH", "/agents/generalist", {"products": {"mesh-router-m3": 4}})
    _, response = place_call(make_router())
    assert bridge_target(response) == "generalist"


def test_removing_an_agent_on_a_call_lets_the_call_end_cleanly(
    agents: LocalFunction, router: LocalFunction, store: Any
) -> None:
    ask(agents, "POST", "/agents", new_agent("busy-one"), status=201)
    placed, response = place_call(router)
    bridge = actions_of(response, "CallAndBridge")[0]
    placed.bridge_answered(bridge)
    assert ask(agents, "GET", "/agents/busy-one")["on_a_call"] is True
    removed = ask(agents, "DELETE", "/agents/busy-one")
    assert removed["was_on_a_call"] is True
    hangup = placed.hangup("LEG-A")
    assert [h["CallId"] for h in actions_of(hangup, "Hangup")] == [placed.leg_b["CallId"]]  # type: ignore[index]
    record = store.decision(key(MARK_US), placed.transaction_id)
    assert record is not None and record.agent_id == "busy-one"
    assert ask(agents, "GET", "/agents", limit="10")["agents"] == []


# -- the commands ---------------------------------------------------------------------------------------


def test_the_commands_change_the_roster_and_what_simulate_routes(
    dynamodb_endpoint: str, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    table = "rapport-agents-cli"
    common = ["--endpoint", dynamodb_endpoint, "--table", table]
    tv = ["--product", "smart-tv-q9=5"]
    assert main(["agents", "add", "tv-07", "--name", "TV Expert", "--at", "vc:tv-07", *tv, *common]) == 0
    assert main(["agents", "add", "phone-1", "--name", "Phone", "--at", "pstn:+493055501099", *common]) == 0
    assert main(["agents", "add", "bad", "--name", "x", "--at", "pstn:12345", *common]) == 2
    assert "E.164" in capsys.readouterr().err
    calls_only = tmp_path / "calls.json"
    calls_only.write_text(
        json.dumps(
            {
                "parameters": {
                    "AgentVoiceConnectorArn": VOICE_CONNECTOR,
                    "PstnCountryCodes": "49",  # phone-1's German number may be rung
                },
                "callers": [
                    {"number": MARK_US, "interests": [{"product": "smart-tv-q9", "score": 0.9}]},
                ],
                "calls": [{"name": "a TV question", "from": MARK_US}],
            }
        )
    )
    simulate = ["simulate", str(calls_only), "--endpoint", dynamodb_endpoint, "--table", table]
    assert main(simulate) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[0])["agent"] == "tv-07"
    # The expert goes away: the same call goes to the one who is left.
    assert main(["agents", "set-status", "tv-07", "away", "--reason", "training", *common]) == 0
    capsys.readouterr()
    assert main(["agents", "list", *common]) == 0
    listed = {a["agent_id"]: a["status"] for a in map(json.loads, capsys.readouterr().out.splitlines())}
    assert listed == {"tv-07": "away", "phone-1": "available"}
    assert main(simulate) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[0])["agent"] == "phone-1"


def test_an_agent_who_misses_three_calls_in_a_row_is_set_away_with_the_reason(
    agents: LocalFunction, router: LocalFunction, store: Any
) -> None:
    ask(agents, "POST", "/agents", new_agent("flaky", products={"smart-tv-q9": 5}), status=201)
    ask(agents, "POST", "/agents", new_agent("steady"), status=201)
    # A caller whose rules allow interest routing (consented) but not the last-agent link (needs consent
    # in the strictest set), so that every call rings the product's expert first.
    ana = "+5511955501234"
    store.put_caller(
        key(ana), profile(consents={"interest_routing": True}), [interest("smart-tv-q9", 0.9, time.time())]
    )
    rung = []
    for index in range(4):
        with later(router, index * 600):  # ten minutes apart: wrap-ups are over
            placed, response = place_call(router, ana)
            rung.append(bridge_target(response))
            if bridge_target(response) == "flaky":
                response = placed.bridge_failed(actions_of(response, "CallAndBridge")[0])
            placed.bridge_answered(actions_of(response, "CallAndBridge")[0])
            placed.hangup("LEG-A")
    assert rung == ["flaky", "flaky", "flaky", "steady"]
    flaky = ask(agents, "GET", "/agents/flaky")
    assert (flaky["status"], flaky["status_reason"], flaky["no_answers_in_a_row"]) == (
        "away",
        "3 calls not answered in a row",
        3,
    )
    # Back from the break: available again, and the count starts afresh.
    back = ask(agents, "PUT", "/agents/flaky/status", {"status": "available", "reason": "back"})
    assert (back["status"], back["no_answers_in_a_row"]) == ("available", 0)


# -- outcomes -------------------------------------------------------------------------------------------


def outcome(call_id: str, agent_id: str, sale: bool, product: str = "smart-tv-q9") -> dict[str, Any]:
    return {
        "call_id": call_id,
        "agent_id": agent_id,
        "outcomes": [{"product": product, "sale": sale, "value": 899.0}],
    }


def test_an_outcome_counts_once_in_the_agents_record(agents: LocalFunction) -> None:
    ask(agents, "POST", "/agents", new_agent("tv-07", products={"smart-tv-q9": 5}), status=201)
    first = ask(agents, "POST", "/outcomes", outcome("call-1", "tv-07", True))
    assert first["results"] == [{"product": "smart-tv-q9", "status": "counted"}]
    again = ask(agents, "POST", "/outcomes", outcome("call-1", "tv-07", True))
    assert again["results"] == [{"product": "smart-tv-q9", "status": "duplicate"}]
    ask(agents, "POST", "/outcomes", outcome("call-2", "tv-07", False))
    assert ask(agents, "GET", "/agents/tv-07")["record"] == {"smart-tv-q9": {"calls": 2, "sales": 1}}
    ask(agents, "POST", "/outcomes", outcome("call-3", "nobody", True), status=404)
    bad = ask(agents, "POST", "/outcomes", {"call_id": "x", "agent_id": "tv-07", "outcomes": []}, status=400)
    assert any("outcomes" in problem for problem in bad["problems"])


def test_outcomes_from_the_bus_count_once_and_bad_ones_are_dropped(agents: LocalFunction) -> None:
    ask(agents, "POST", "/agents", new_agent("tv-07", products={"smart-tv-q9": 5}), status=201)
    event = {
        "version": "0",
        "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
        "detail-type": "rapport.outcome",
        "source": "crm.example",
        "account": "123456789012",
        "time": "2026-12-02T10:00:00Z",
        "region": "us-east-1",
        "resources": [],
        "detail": outcome("call-9", "tv-07", True),
    }
    assert agents.invoke(event)["results"][0]["status"] == "counted"
    assert agents.invoke(event)["results"][0]["status"] == "duplicate"  # EventBridge delivered it twice
    assert agents.invoke({**event, "detail": {"call_id": "call-10"}})["rejected"]
    assert agents.invoke({**event, "detail": outcome("call-11", "nobody", True)})["rejected"]
    assert ask(agents, "GET", "/agents/tv-07")["record"] == {"smart-tv-q9": {"calls": 1, "sales": 1}}


def test_outcomes_shift_the_next_similar_call_and_the_reason_gives_the_figure(
    agents: LocalFunction, make_router: RouterFactory, store: Any
) -> None:
    # Two equally skilled agents; the one who has been idle longer would get the call.
    ask(agents, "POST", "/agents", new_agent("seller", products={"smart-tv-q9": 4}), status=201)
    ask(agents, "POST", "/agents", new_agent("talker", products={"smart-tv-q9": 4}), status=201)
    store.put_caller(key(MARK_US), profile(), [interest("smart-tv-q9", 0.9, time.time())])
    first, before = place_call(make_router())
    first_choice = bridge_target(before)
    assert first_choice in {"seller", "talker"}
    first.hangup("LEG-A")  # the caller gave up while it rang: the agent is free at once
    other = "talker" if first_choice == "seller" else "seller"
    # The CRM reports: the other one sold on 12 of 20 calls, the first choice on 1 of 20.
    for index in range(20):
        ask(agents, "POST", "/outcomes", outcome(f"o-{index}", other, index < 12))
        ask(agents, "POST", "/outcomes", outcome(f"f-{index}", first_choice, index < 1))
    store.put_caller(key("+12025550109"), profile(), [interest("smart-tv-q9", 0.9, time.time())])
    placed, after = place_call(make_router(), "+12025550109")  # a fresh container reads the new records
    assert bridge_target(after) == other
    record = state_of(placed.attributes, placed.transaction_id).record
    assert record is not None
    skill = record.candidates[0].skills["smart-tv-q9"]
    assert skill.calls == 20
    from rapport.explain import candidate_reasons

    reasons = candidate_reasons(record.candidates[0], record.interests, time.time())
    # (12 sales + the prior 0.2 x 5) / (20 calls + 5): 52 %.
    assert any("converts 52% (20 calls)" in reason for reason in reasons), reasons


# -- correctness under contention -----------------------------------------------------------------------


def test_two_hundred_whole_calls_while_outcomes_and_status_changes_arrive(
    agents: LocalFunction, make_router: RouterFactory, store: Any
) -> None:
    """200 calls at once over 20 agents, each call whole (ring, 1 in 5 unanswered then the next agent,
    talk, hang up), while outcomes of finished calls and status changes arrive at the same time. No agent
    is held by two calls at once, no call is lost, and every agent is available again at the end."""
    lines = {f"agent-{index:02d}": 2 if index % 5 == 0 else 1 for index in range(20)}
    for agent_id, most in lines.items():
        body = new_agent(
            agent_id,
            products={"smart-tv-q9": 1 + int(agent_id[-2:]) % 5},
            wrap_up_seconds=0,
            max_concurrent_calls=most,
        )
        ask(agents, "POST", "/agents", body, status=201)
    # Misses are part of the test; setting agents away for them is another test's business.
    routers = [make_router(parameters={"AwayAfterNoAnswers": "50"}) for _ in range(2)]
    for router in (*routers, agents):
        router.invoke({"InvocationEventType": "RINGING"})  # containers warm: settings and clients built
    lock = threading.Lock()
    held: list[tuple[str, str, float, float]] = []  # (agent, call, held from, let go no earlier than)
    finished: list[tuple[str, str]] = []
    answers: list[str] = []

    def whole_call(index: int) -> None:
        router = routers[index % 2]
        placed = SimulatedCall(router.handle, f"+1202555{4000 + index:04d}")
        response = placed.new_inbound()
        acquired = time.monotonic()
        for attempt in range(3):
            bridges = actions_of(response, "CallAndBridge")
            if not bridges:
                break
            target = str(bridge_target(response))
            if attempt == 0 and index % 5 == 0:
                released = time.monotonic()
                response = placed.bridge_failed(bridges[0])
                with lock:
                    held.append((target, placed.transaction_id, acquired, released))
                acquired = time.monotonic()
                continue
            placed.bridge_answered(bridges[0])
            released = time.monotonic()
            placed.hangup("LEG-A")
            with lock:
                held.append((target, placed.transaction_id, acquired, released))
                finished.append((placed.transaction_id, target))
            break
        else:
            placed.hangup("LEG-A")
        with lock:
            answers.append(
                "agent" if placed.leg_b is not None else "message" if actions_of(response, "Speak") else "?"
            )

    stop = threading.Event()

    sent = [0]

    def crm_and_supervisor() -> None:
        """Outcomes of finished calls and status changes, while the calls go on."""
        flip = 0
        while not stop.is_set():
            with lock:
                todo = finished[sent[0] :]
            for call_id, agent_id in todo:
                agents.handle(request("POST", "/outcomes", outcome(call_id, agent_id, sent[0] % 3 == 0)))
                sent[0] += 1
            agent_id = f"agent-{flip % 20:02d}"
            status = "away" if flip % 2 == 0 else "available"
            agents.handle(request("PUT", f"/agents/{agent_id}/status", {"status": status}))
            flip += 1

    with routers[0].environment_applied(), routers[1].environment_applied(), agents.environment_applied():
        side = threading.Thread(target=crm_and_supervisor)
        side.start()
        with ThreadPoolExecutor(24) as pool:
            list(pool.map(whole_call, range(200)))
        stop.set()
        side.join()

    # No call lost: each reached an agent or heard the closing message, and each left a decision record.
    assert len(answers) == 200 and "?" not in answers
    assert answers.count("agent") >= 20
    # No agent held by more calls at once than they have lines (two calls for four of them, one for the
    # rest): at no moment do more holds overlap.
    changes: dict[str, list[tuple[float, int]]] = {}
    for agent_id, _, start, end in held:
        changes.setdefault(agent_id, []).extend([(start, 1), (end, -1)])
    most_at_once: dict[str, int] = {}
    for agent_id, steps in changes.items():
        steps.sort()  # at the same instant a hold that ends (-1) is counted before one that begins
        running = list(itertools.accumulate(step for _, step in steps))
        most_at_once[agent_id] = max(running)
        assert most_at_once[agent_id] <= lines[agent_id], f"{agent_id} held by too many calls at once"
    assert any(most_at_once.get(agent_id, 0) == 2 for agent_id, most in lines.items() if most == 2)
    # Every agent free again (nobody locked by a call), and available once the last status is set.
    for index in range(20):
        ask(agents, "PUT", f"/agents/agent-{index:02d}/status", {"status": "available"})
    now_listed = ask(agents, "GET", "/agents", limit="100")["agents"]
    # Nobody is left on a call: every answered call was hung up and let its agent go.
    assert [a["agent_id"] for a in now_listed if a["state"] in ("on_call", "wrap_up")] == []
    # A call whose handler ran out of time (or lost its reservation's answer) answers the caller without
    # letting go of the agent it had just reserved; that reservation lapses by itself (ring timeout +
    # 15 s). After it, everyone is free.
    with mock.patch.object(agents.module, "now", return_value=time.time() + 40):
        for listed in ask(agents, "GET", "/agents", limit="100")["agents"]:
            assert (listed["status"], listed["on_a_call"], listed["state"]) == ("available", False, "idle")
    # Every outcome of a finished call counted once: the rest sent now, then all of them again.
    with agents.environment_applied():
        for call_id, agent_id in [*finished[sent[0] :], *finished]:
            agents.handle(request("POST", "/outcomes", outcome(call_id, agent_id, False)))
    listed = ask(agents, "GET", "/agents", limit="100")["agents"]
    assert sum(record["calls"] for a in listed for record in a["record"].values()) == len(finished)


def test_more_lines_than_the_agents_pool_has_room_for_are_refused_and_nothing_changes(
    agents: LocalFunction,
) -> None:
    # Agents with 30-character ids fill a pool's 1 KB availability item long before 16 of them.
    ids = [f"agent-with-a-long-identifier{index:02d}" for index in range(12)]
    for agent_id in ids:
        ask(agents, "POST", "/agents", new_agent(agent_id), status=201)
    pools = {ask(agents, "GET", f"/agents/{agent_id}")["pool"] for agent_id in ids}
    first_pool = ask(agents, "GET", f"/agents/{ids[0]}")["pool"]
    assert len(pools) > 1  # the first pool filled up
    refused = ask(agents, "PATCH", f"/agents/{ids[0]}", {"max_concurrent_calls": 4}, status=409)
    assert "no room" in refused["error"]
    unchanged = ask(agents, "GET", f"/agents/{ids[0]}")
    assert (unchanged["max_concurrent_calls"], len(unchanged["lines"]), unchanged["pool"]) == (
        1,
        1,
        first_pool,
    )
