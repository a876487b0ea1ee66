"""A caller's rights end to end, against DynamoDB Local: PrivacyFunction's HTTP API as API Gateway calls
it, the router as the SIP media application calls it, and SignalsFunction for the signals that follow.

Each right has its test: consent and its withdrawal, objection, access, erasure (the whole table
scanned afterwards), explanation, the interest cap, the in-call question, and the replay of erasures
into a restored table.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from builders import RouterFactory, SignalsFactory, agent, checked_call, interest, later, profile, state_of
from rapport.catalog import CatalogFile
from rapport.models import Grounds, RoutingMode
from rapport.numbers import caller_key
from rapport.settings import DEVELOPMENT_PEPPER
from rapport.store.dynamodb import DynamoStore
from rapport.store.layout import from_item
from rapport.store.signals import SignalStore
from rapport_local.engine import create_table, local_client, local_environment
from rapport_local.http_api import http_request
from rapport_local.lambda_runner import LocalFunction
from rapport_local.sma_driver import SimulatedCall, actions_of, bridge_target

PROJECT_DIR = Path(__file__).resolve().parents[2]
LENA_DE = "+493055501042"
MARK_US = "+12025550107"
KAI_DE = "+498955501099"


def key(number: str) -> str:
    return caller_key(number, DEVELOPMENT_PEPPER)


@pytest.fixture(autouse=True)
def catalog(dynamodb_endpoint: str, table: str) -> None:
    products = CatalogFile.load(PROJECT_DIR / "examples" / "catalog.json").products
    SignalStore(local_client(dynamodb_endpoint), table).put_products(products)


@pytest.fixture
def privacy(dynamodb_endpoint: str, table: str) -> LocalFunction:
    """PrivacyFunction as `sam local invoke` would run it, against this test's table."""
    return LocalFunction(
        "PrivacyFunction",
        resources={"Table": table, "CallerKeySecret": ""},
        environment=local_environment(dynamodb_endpoint),
    )


def ask(privacy: LocalFunction, path: str, body: object, status: int = 200) -> dict[str, Any]:
    answer = privacy.invoke(http_request(path, body))
    assert answer["statusCode"] == status, answer["body"]
    result: dict[str, Any] = json.loads(answer["body"])
    return result


def mode_of(placed: SimulatedCall) -> RoutingMode:
    return state_of(placed.attributes, placed.transaction_id).mode


def routed(store: DynamoStore, caller: str, placed: SimulatedCall) -> RoutingMode:
    """How a finished call was routed, as its decision record says."""
    record = store.decision(key(caller), placed.transaction_id)
    assert record is not None
    return record.mode


def call(router: LocalFunction, caller: str) -> SimulatedCall:
    return checked_call(router, caller)


def whole_call(router: LocalFunction, caller: str) -> SimulatedCall:
    """A call answered by the first agent it rings, then hung up by the caller."""
    placed = call(router, caller)
    response = placed.new_inbound()
    bridges = actions_of(response, "CallAndBridge")
    assert bridges, response
    placed.bridge_answered(bridges[0])
    placed.hangup("LEG-A")
    return placed


def scan(dynamodb_endpoint: str, table: str) -> list[dict[str, Any]]:
    client = local_client(dynamodb_endpoint)
    items: list[dict[str, Any]] = []
    params: dict[str, Any] = {"TableName": table}
    while True:
        page = client.scan(**params)
        items += [from_item(item) for item in page["Items"]]
        if "LastEvaluatedKey" not in page:
            return items
        params["ExclusiveStartKey"] = page["LastEvaluatedKey"]


@pytest.fixture
def shop(store: DynamoStore) -> float:
    now = time.time()
    store.put_agent(agent("berlin-07", now - 3000, proficiency={"x200-headphones": 5}))
    store.put_agent(agent("hamburg-02", now - 1000, proficiency={"mesh-router-m3": 5}))
    store.put_agent(agent("cologne-04", now - 9000, proficiency={}))
    return now


# -- consent --------------------------------------------------------------------------------------------


def test_consent_is_recorded_with_source_time_and_history_and_a_repeat_changes_nothing(
    privacy: LocalFunction,
) -> None:
    body = {
        "number": LENA_DE,
        "purposes": ["interest_routing"],
        "granted": True,
        "source": "web",
        "at": "2026-11-30T10:00:00Z",
        "request_id": "web-1",
    }
    first = ask(privacy, "/privacy/consent", body)
    again = ask(privacy, "/privacy/consent", body)
    assert first["outcome"] == "changed" and again["outcome"] == "unchanged"
    assert first["consents"]["interest_routing"] == {
        "granted": True,
        "at": "2026-11-30T10:00:00+00:00",
        "source": "web",
    }
    export = ask(privacy, "/privacy/access", {"number": LENA_DE})
    assert [(h["what"], h["value"], h["source"]) for h in export["consent_history"]] == [
        ("interest_routing", True, "web")
    ]
    withdrawn = ask(privacy, "/privacy/consent", {**body, "granted": False, "at": None, "source": "crm"})
    assert withdrawn["consents"]["interest_routing"]["granted"] is False
    export = ask(privacy, "/privacy/access", {"number": LENA_DE})
    assert [(h["value"], h["source"]) for h in export["consent_history"]] == [(True, "web"), (False, "crm")]
    assert export["routing_now"]["interest_routing"] is False


def test_a_withdrawn_consent_stops_interest_routing_on_the_next_call(
    privacy: LocalFunction, router: LocalFunction, store: DynamoStore, shop: float
) -> None:
    store.put_caller(
        key(LENA_DE), profile(consents={"interest_routing": True}), [interest("x200-headphones", 0.9, shop)]
    )
    assert routed(store, LENA_DE, whole_call(router, LENA_DE)) is RoutingMode.INTEREST
    ask(
        privacy,
        "/privacy/consent",
        {"number": LENA_DE, "purposes": ["interest_routing"], "granted": False, "source": "web"},
    )
    next_call = call(router, LENA_DE)
    response = next_call.new_inbound()
    # Known-agent routing stays (legitimate interest in Germany); interest data is no longer used.
    assert mode_of(next_call) is not RoutingMode.INTEREST
    assert bridge_target(response) is not None
    record = state_of(next_call.attributes, next_call.transaction_id).record
    assert record is not None and record.privacy.interests is False
    assert record.privacy.interests_grounds is Grounds.NEEDS_CONSENT


def test_bad_requests_get_a_clear_error_that_never_repeats_the_number(privacy: LocalFunction) -> None:
    answer = ask(
        privacy, "/privacy/consent", {"number": "0171 5550199", "purposes": [], "granted": "yes"}, 400
    )
    text = json.dumps(answer)
    assert "5550199" not in text
    problems = "\n".join(answer["problems"])
    assert "number" in problems and "purposes" in problems and "source" in problems
    assert ask(privacy, "/privacy/objection", {"number": MARK_US, "source": "x", "extra": 1}, 400)["problems"]
    assert privacy.invoke(http_request("/privacy/access", "{not json"))["statusCode"] == 400
    explain = ask(privacy, "/privacy/explanation", {"language": "de"}, 400)
    assert any("number" in problem for problem in explain["problems"])


# -- objection ------------------------------------------------------------------------------------------


def test_an_objection_changes_the_very_next_routing_decision_and_drops_new_signals(
    privacy: LocalFunction,
    router: LocalFunction,
    store: DynamoStore,
    shop: float,
    make_signals: SignalsFactory,
) -> None:
    store.put_caller(key(MARK_US), profile(), [interest("mesh-router-m3", 0.9, shop)])
    assert routed(store, MARK_US, whole_call(router, MARK_US)) is RoutingMode.INTEREST
    objection = ask(privacy, "/privacy/objection", {"number": MARK_US, "source": "letter"})
    assert objection["objected"] is True and objection["deleted"]["interests"] == 1
    after = call(router, MARK_US)
    after.new_inbound()
    assert mode_of(after) is RoutingMode.ANY_AVAILABLE
    record = state_of(after.attributes, after.transaction_id).record
    assert record is not None
    assert (record.privacy.interests_grounds, record.privacy.known_agent_grounds) == (Grounds.OBJECTED,) * 2
    signal = {
        "signal_id": "after-objection",
        "caller": MARK_US,
        "source": "web",
        "observed_at": "2026-12-01T10:00:00Z",
        "products": [{"product": "mesh-router-m3", "strength": 0.9}],
    }
    answer = make_signals().invoke(http_request("/signals", signal))
    assert json.loads(answer["body"])["results"][0]["status"] == "objected"
    assert store.caller_context(key(MARK_US), time.time()).interests == []
    assert (
        ask(privacy, "/privacy/objection", {"number": MARK_US, "source": "letter"})["outcome"] == "unchanged"
    )


# -- access and explanation -----------------------------------------------------------------------------


def test_an_access_export_matches_what_routing_used(
    privacy: LocalFunction, router: LocalFunction, store: DynamoStore, shop: float
) -> None:
    store.put_caller(
        key(LENA_DE),
        profile(consents={"interest_routing": True}),
        [interest("x200-headphones", 0.8, shop - 86400)],
    )
    placed = whole_call(router, LENA_DE)
    record = store.decision(key(LENA_DE), placed.transaction_id)
    assert record is not None
    export = ask(privacy, "/privacy/access", {"number": LENA_DE})
    assert export["number"] == LENA_DE
    [decision] = export["decisions"]
    assert decision["call_id"] == placed.transaction_id and decision["mode"] == "interest"
    assert decision["agent_id"] == "berlin-07"
    used = decision["interests_used"]["x200-headphones"]
    assert used["score"] == record.interests["x200-headphones"].score
    assert [i["product"] for i in export["interests"]] == ["x200-headphones"]
    assert export["last_agent"]["agent_id"] == "berlin-07"
    # German caller, German reasons: the same facts routing recorded.
    assert any("Interesse an `x200-headphones`" in reason for reason in decision["reasons"])
    assert decision["language"] == "de"
    explained = ask(privacy, "/privacy/explanation", {"number": LENA_DE, "language": "en"})["decision"]
    assert explained["call_id"] == placed.transaction_id
    assert any("interest in `x200-headphones`" in reason for reason in explained["reasons"])


def test_a_call_without_a_usable_number_can_be_explained_by_its_call_id(
    privacy: LocalFunction, router: LocalFunction, shop: float
) -> None:
    placed = whole_call(router, "anonymous")
    explained = ask(privacy, "/privacy/explanation", {"call_id": placed.transaction_id})["decision"]
    assert explained["call_id"] == placed.transaction_id
    assert any("no usable caller number" in reason for reason in explained["reasons"])


# -- erasure --------------------------------------------------------------------------------------------


def test_erasure_leaves_nothing_derived_from_the_number_and_its_receipt_holds_no_number(
    privacy: LocalFunction,
    router: LocalFunction,
    store: DynamoStore,
    shop: float,
    dynamodb_endpoint: str,
    table: str,
    make_signals: SignalsFactory,
) -> None:
    ask(
        privacy,
        "/privacy/consent",
        {"number": LENA_DE, "purposes": ["interest_routing"], "granted": True, "source": "web"},
    )
    signals = make_signals()
    for index in range(20):  # enough to leave counted-signal items behind, as well as the interest
        signals.invoke(
            http_request(
                "/signals",
                {
                    "signal_id": f"s-{index}",
                    "caller": LENA_DE,
                    "source": "social",
                    "observed_at": "2026-12-01T10:00:00Z",
                    "products": [{"product": "x200-headphones", "strength": 0.2}],
                },
            )
        )
    whole_call(router, LENA_DE)
    whole_call(router, LENA_DE)
    whole_call(router, MARK_US)  # another caller, who must keep everything
    lena, mark = key(LENA_DE), key(MARK_US)
    before = [item for item in scan(dynamodb_endpoint, table) if lena in json.dumps(item)]
    kinds = {str(item["sk"]).split("#")[0] for item in before}
    assert {"PROFILE", "INTEREST", "DECISION"} <= kinds
    mark_before = [item for item in scan(dynamodb_endpoint, table) if mark in json.dumps(item)]

    receipt = ask(privacy, "/privacy/erasure", {"number": LENA_DE, "request_id": "dsr-1"})
    assert receipt["total"] == len(before)
    assert receipt["deleted"]["decision_records"] == 2 and receipt["deleted"]["profile"] == 1
    text = json.dumps(receipt)
    assert LENA_DE not in text and LENA_DE[-6:] not in text and lena not in text

    remaining = [item for item in scan(dynamodb_endpoint, table) if lena in json.dumps(item)]
    # Only the erasure log keeps the caller key (never the number), to erase a restored backup again.
    assert [(item["pk"], item["sk"]) for item in remaining] == [("ERASURES", lena)]
    assert [item for item in scan(dynamodb_endpoint, table) if mark in json.dumps(item)] == mark_before
    again = ask(privacy, "/privacy/erasure", {"number": LENA_DE})
    assert again["total"] == 0
    assert ask(privacy, "/privacy/access", {"number": LENA_DE})["profile"] is None
    # The audit trail recorded every operation, and names nobody.
    trail = [item for item in scan(dynamodb_endpoint, table) if str(item["pk"]).startswith("AUDIT#")]
    assert {"consent", "erasure"} <= {item["operation"] for item in trail}
    assert all(lena not in json.dumps(item) and LENA_DE[-6:] not in json.dumps(item) for item in trail)


def test_erasures_are_replayed_into_a_table_restored_from_before_them(
    privacy: LocalFunction, store: DynamoStore, dynamodb_endpoint: str, table: str, shop: float
) -> None:
    store.put_caller(
        key(LENA_DE), profile(consents={"interest_routing": True}), [interest("x200-headphones", 0.8, shop)]
    )
    store.put_caller(key(MARK_US), profile(), [interest("mesh-router-m3", 0.8, shop)])
    restored = f"{table}-restored"
    create_table(dynamodb_endpoint, restored)
    client = local_client(dynamodb_endpoint)
    for item in client.scan(TableName=table)["Items"]:  # the backup, taken before the erasure
        client.put_item(TableName=restored, Item=item)
    since = time.time() - 1
    ask(privacy, "/privacy/erasure", {"number": LENA_DE})
    from rapport_local.cli import main

    assert (
        main(
            [
                "privacy",
                "replay-erasures",
                "--since",
                _iso(since),
                "--table",
                restored,
                "--log-table",
                table,
                "--endpoint",
                dynamodb_endpoint,
            ]
        )
        == 0
    )
    left = [from_item(item) for item in client.scan(TableName=restored)["Items"]]
    assert not [item for item in left if item["pk"] == f"CALLER#{key(LENA_DE)}"]
    assert [item for item in left if item["pk"] == f"CALLER#{key(MARK_US)}"]
    client.delete_table(TableName=restored)


def _iso(epoch: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch, UTC).isoformat()


# -- the interest cap -----------------------------------------------------------------------------------


def test_the_interest_cap_holds_and_the_reason_says_so(
    make_router: RouterFactory, store: DynamoStore, shop: float
) -> None:
    # Two calls on interest data in 7 days at most; no known-agent routing, so every call could use them.
    overrides = {
        "version": "cap-test",
        "jurisdictions": {"US": {"interest_cap": {"times": 2, "days": 7}, "known_agent": "never"}},
    }
    router = make_router(parameters={"PrivacyPolicyOverrides": json.dumps(overrides)})
    store.put_caller(key(MARK_US), profile(), [interest("mesh-router-m3", 0.9, shop)])
    records = []
    for index in range(4):
        with later(router, index * 600):  # ten minutes apart: the agent is out of wrap-up again
            placed = whole_call(router, MARK_US)
        record = store.decision(key(MARK_US), placed.transaction_id)
        assert record is not None
        records.append(record)
    assert [r.mode for r in records] == [RoutingMode.INTEREST] * 2 + [RoutingMode.ANY_AVAILABLE] * 2
    capped = records[2]
    assert capped.privacy.interests is False and capped.privacy.interests_grounds.value == "capped"
    assert capped.privacy.policy_version == "cap-test"
    assert [note.detail for note in capped.notes if note.code.value == "interest_cap"] == ["2/7"]


# -- asked in the call ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("pressed", "granted"), [("1", True), ("2", False), (None, False)])
def test_a_caller_is_asked_once_and_the_answer_is_recorded_as_consent_from_ivr(
    make_router: RouterFactory,
    privacy: LocalFunction,
    store: DynamoStore,
    shop: float,
    pressed: str | None,
    granted: bool,
) -> None:
    router = make_router(parameters={"AskForConsent": "true"})
    store.put_caller(key(KAI_DE), None, [interest("x200-headphones", 0.9, shop)])
    placed = call(router, KAI_DE)
    question = actions_of(placed.new_inbound(), "SpeakAndGetDigits")
    assert question and "1" in question[0]["SpeechParameters"]["Text"]
    assert question[0]["SpeechParameters"]["LanguageCode"] == "de-DE"
    assert [a.agent_id for a in store.agents() if a.reserved_by] == []  # nobody is held while asking
    answer = placed.digits(question[0], pressed)
    spoken = actions_of(answer, "Speak")
    assert spoken and bridge_target(answer) is not None
    assert mode_of(placed) is (RoutingMode.INTEREST if granted else RoutingMode.ANY_AVAILABLE)
    export = ask(privacy, "/privacy/access", {"number": KAI_DE})
    assert export["profile"]["consents"]["interest_routing"]["granted"] is granted
    assert export["profile"]["consents"]["interest_routing"]["source"] == "ivr"
    placed.bridge_answered(actions_of(answer, "CallAndBridge")[0])
    placed.hangup("LEG-A")
    # Never asked twice: the next call routes at once.
    again = call(router, KAI_DE).new_inbound()
    assert not actions_of(again, "SpeakAndGetDigits") and bridge_target(again) is not None


def test_nobody_is_asked_by_default(router: LocalFunction, store: DynamoStore, shop: float) -> None:
    store.put_caller(key(KAI_DE), None, [interest("x200-headphones", 0.9, shop)])
    response = call(router, KAI_DE).new_inbound()
    assert not actions_of(response, "SpeakAndGetDigits") and bridge_target(response) is not None


# -- retention ------------------------------------------------------------------------------------------


def test_a_record_that_copies_interests_is_kept_no_longer_than_the_interests(
    router: LocalFunction, store: DynamoStore, shop: float
) -> None:
    store.put_caller(
        key(LENA_DE), profile(consents={"interest_routing": True}), [interest("x200-headphones", 0.9, shop)]
    )
    placed = whole_call(router, LENA_DE)
    record = store.decision(key(LENA_DE), placed.transaction_id)
    assert record is not None and record.interests
    kept_days = (record.expires_at - record.decided_at) / 86400
    assert kept_days == pytest.approx(90, abs=0.01)  # Germany: interests 90 days, decision records 180
    assert record.link is not None and record.link.expires_at <= record.expires_at


def test_every_privacy_sample_replays_as_sam_local_invoke_would(privacy: LocalFunction) -> None:
    samples = sorted((PROJECT_DIR / "events" / "privacy").glob("*.json"))
    assert {path.stem for path in samples} >= {
        "consent",
        "withdraw",
        "objection",
        "access",
        "erasure",
        "explanation",
    }
    for name in ("consent", "withdraw", "objection", "access", "explanation", "erasure"):
        answer = privacy.invoke(json.loads((PROJECT_DIR / "events" / "privacy" / f"{name}.json").read_text()))
        assert answer["statusCode"] == 200, (name, answer["body"])
        assert json.loads(answer["body"]), name


def test_a_profile_past_its_proof_period_counts_for_nothing_and_a_new_choice_starts_afresh(
    privacy: LocalFunction, router: LocalFunction, store: DynamoStore, shop: float
) -> None:
    lapsed = profile(consents={"interest_routing": True}, at=shop - 4 * 365 * 86400)
    lapsed = lapsed.model_copy(update={"expires_at": shop - 86400})
    store.put_caller(key(LENA_DE), lapsed, [interest("x200-headphones", 0.9, shop)])
    placed = call(router, LENA_DE)
    placed.new_inbound()
    assert mode_of(placed) is not RoutingMode.INTEREST  # TTL has not deleted it yet; reads ignore it
    assert ask(privacy, "/privacy/access", {"number": LENA_DE})["profile"] is None
    given = {"number": LENA_DE, "purposes": ["interest_routing"], "granted": True, "source": "web"}
    assert ask(privacy, "/privacy/consent", given)["outcome"] == "changed"
    export = ask(privacy, "/privacy/access", {"number": LENA_DE})
    assert export["profile"]["consents"]["interest_routing"]["source"] == "web"
    assert export["profile"]["kept_until"] > export["generated_at"]
