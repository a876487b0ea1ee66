"""SignalsFunction end to end: its three inputs, the scores it keeps, the privacy gate, bad input and
failure, against DynamoDB Local (and moto's SQS for the dead-letter queue)."""

from __future__ import annotations

import itertools
import json
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from builders import SignalsFactory
from rapport.catalog import CatalogFile
from rapport.ingest import KEEP_CONTRIBUTIONS
from rapport.models import CallerProfile, Consent, Interest
from rapport.numbers import caller_key
from rapport.settings import DEVELOPMENT_PEPPER
from rapport.store.dynamodb import DynamoStore
from rapport.store.signals import SignalStore
from rapport_local.cli import main
from rapport_local.engine import LOCAL_CREDENTIALS, local_client
from rapport_local.lambda_runner import LocalFunction
from rapport_local.sqs import sqs_record

PROJECT_DIR = Path(__file__).resolve().parents[2]
EVENTS = PROJECT_DIR / "events" / "signals"
US_CALLER = "+12025550107"
DE_CALLER = "+493055501042"
DAY = 86_400.0


@pytest.fixture(autouse=True)
def catalog(dynamodb_endpoint: str, table: str) -> None:
    products = CatalogFile.load(PROJECT_DIR / "examples" / "catalog.json").products
    SignalStore(local_client(dynamodb_endpoint), table).put_products(products)


def signal(signal_id: str, caller: str = US_CALLER, days_ago: float = 0.0, **kind: Any) -> dict[str, Any]:
    observed = datetime.fromtimestamp(time.time() - days_ago * DAY, tz=UTC).isoformat()
    body = {"signal_id": signal_id, "caller": caller, "source": "social", "observed_at": observed}
    return {**body, **(kind or {"products": [{"product": "x200-headphones", "strength": 0.5}]})}


def queue_event(*bodies: Any) -> dict[str, Any]:
    return {"Records": [sqs_record(b if isinstance(b, str) else json.dumps(b)) for b in bodies]}


def interest(store: DynamoStore, number: str, product: str) -> Interest | None:
    context = store.caller_context(caller_key(number, DEVELOPMENT_PEPPER), time.time())
    return next((i for i in context.interests if i.product == product), None)


def stored_interest(dynamodb_endpoint: str, table: str, number: str, product: str) -> Interest | None:
    """The whole item, contributions and version included (the call path reads less of it)."""
    key = caller_key(number, DEVELOPMENT_PEPPER)
    _, found = SignalStore(local_client(dynamodb_endpoint), table).read([], [(key, product)])
    return found[(key, product)]


def dead_letters(sqs_endpoint: str, url: str) -> list[dict[str, Any]]:
    client = boto3.session.Session().client(
        "sqs",
        endpoint_url=sqs_endpoint,
        region_name="us-east-1",
        aws_access_key_id=LOCAL_CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=LOCAL_CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
    )
    messages = client.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get(
        "Messages", []
    )
    return [json.loads(message["Body"]) for message in messages]


# -- the three inputs, with their documented event shapes -------------------------------------------------


def test_the_queue_sample_stores_good_signals_and_dead_letters_the_bad_one_redacted(
    signals_function: LocalFunction,
    store: DynamoStore,
    sqs_endpoint: str,
    dead_letter_queue: str,
    log_lines: list[str],
) -> None:
    event = json.loads((EVENTS / "sqs.json").read_text())
    answer = signals_function.invoke(event)
    assert answer == {"batchItemFailures": []}  # the bad record is settled: retrying cannot mend it
    assert interest(store, "+493055501042", "x200-headphones") is None  # DE, no consent on record
    router = interest(store, "+12025550107", "mesh-router-m3")
    assert router is not None and router.sources == ["social"]
    assert router.evidence == "thinking about … mesh router"
    soundbar = interest(store, "+12125550143", "soundbar-s5")
    assert soundbar is not None and soundbar.score == pytest.approx(0.3, abs=0.01)
    [letter] = dead_letters(sqs_endpoint, dead_letter_queue)
    assert letter["via"] == "sqs"
    problems = " ".join(letter["problems"])
    for field in ("caller", "source", "observed_at", "products"):
        assert field in problems
    assert "0301234567" not in json.dumps(letter) + "\n".join(log_lines)
    assert "caller" not in letter["signal"]


def test_eventbridge_sample_stores_the_post_of_a_consenting_caller(
    signals_function: LocalFunction, store: DynamoStore
) -> None:
    number = "+498955501088"
    store.put_caller(
        caller_key(number, DEVELOPMENT_PEPPER),
        CallerProfile(consents={"interest_routing": Consent(granted=True, at=time.time(), source="web")}),
        [],
    )
    answer = signals_function.invoke(json.loads((EVENTS / "eventbridge.json").read_text()))
    assert answer["results"][0]["status"] == "stored"
    stored = interest(store, number, "x200-headphones")
    assert stored is not None and stored.evidence == "will … X200 kaufen"


def test_eventbridge_dead_letters_a_bad_detail_without_its_number(
    signals_function: LocalFunction, sqs_endpoint: str, dead_letter_queue: str, log_lines: list[str]
) -> None:
    event = json.loads((EVENTS / "eventbridge.json").read_text())
    event["detail"] = {
        **event["detail"],
        "source": "fax",
        "text": "Call me on +4930 5550 1042 about the X200",
    }
    answer = signals_function.invoke(event)
    assert answer["results"][0]["status"] == "rejected"
    [letter] = dead_letters(sqs_endpoint, dead_letter_queue)
    assert letter["via"] == "eventbridge"
    assert letter["problems"] == ["source: Input should be 'social', 'web', 'crm' or 'call'"]
    assert letter["signal"]["caller_key"] == caller_key("+498955501088", DEVELOPMENT_PEPPER)
    everything = json.dumps(letter) + "\n".join(log_lines)
    assert "+498955501088" not in everything
    assert "5550 1042" not in everything  # a number in the text is masked too


def test_http_sample_answers_per_signal(signals_function: LocalFunction, store: DynamoStore) -> None:
    answer = signals_function.invoke(json.loads((EVENTS / "http.json").read_text()))
    assert answer["statusCode"] == 200
    results = json.loads(answer["body"])["results"]
    assert [r["status"] for r in results] == ["stored", "stored"]
    assert interest(store, "+12125550143", "soundbar-s5") is not None


def http_event(body: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / "http.json").read_text())
    return {**event, "body": body}


def test_http_answers_bad_input_with_specific_errors_and_keeps_the_rest(
    signals_function: LocalFunction, store: DynamoStore, log_lines: list[str]
) -> None:
    good = signal("web-1", products=[{"product": "smart-tv-q9", "strength": 0.4}])
    bad_number = signal("web-2", caller="+4930 not a number")
    unknown = signal("web-3", products=[{"product": "toaster-t1", "strength": 0.4}])
    answer = signals_function.invoke(http_event(json.dumps({"signals": [good, bad_number, unknown]})))
    assert answer["statusCode"] == 207
    results = json.loads(answer["body"])["results"]
    assert [r["status"] for r in results] == ["stored", "rejected", "rejected"]
    assert results[1]["problems"] == [
        "caller: must be a valid number in E.164 form:"
        " a plus sign, the country code and the number, no spaces"
    ]
    assert results[2]["problems"] == ["products: not in the catalog: toaster-t1"]
    assert interest(store, US_CALLER, "smart-tv-q9") is not None
    assert "not a number" not in answer["body"] + "\n".join(log_lines)

    assert signals_function.invoke(http_event("{not json"))["statusCode"] == 400
    too_many = json.dumps({"signals": [good] * 101})
    assert signals_function.invoke(http_event(too_many))["statusCode"] == 400
    only_bad = signals_function.invoke(http_event(json.dumps(bad_number)))
    assert only_bad["statusCode"] == 400


# -- scores -------------------------------------------------------------------------------------------


def test_a_redelivered_batch_counts_once(
    signals_function: LocalFunction, dynamodb_endpoint: str, table: str
) -> None:
    event = queue_event(signal("s-1"), signal("s-2"))
    signals_function.invoke(event)
    first = stored_interest(dynamodb_endpoint, table, US_CALLER, "x200-headphones")
    signals_function.invoke(event)  # SQS delivers again (a visibility timeout ran out)
    signals_function.invoke(queue_event(signal("s-2")))  # and a producer sends one again
    again = stored_interest(dynamodb_endpoint, table, US_CALLER, "x200-headphones")
    assert first is not None and again is not None
    assert again.score == first.score == pytest.approx(1 - 0.5 * 0.5, abs=0.001)
    assert sorted(c.signal_id for c in again.recent) == ["s-1", "s-2"]


def test_a_signal_delivered_again_after_many_newer_ones_still_counts_once(
    signals_function: LocalFunction, dynamodb_endpoint: str, table: str
) -> None:
    first = signal("early")
    signals_function.invoke(queue_event(first))
    for index in range(20):  # more than an interest remembers itself: "early" moves to a SIGNAL# item
        signals_function.invoke(queue_event(signal(f"later-{index}", days_ago=0)))
    before = stored_interest(dynamodb_endpoint, table, US_CALLER, "x200-headphones")
    answer = signals_function.invoke(http_event(json.dumps(first)))
    assert json.loads(answer["body"])["results"][0]["status"] == "duplicate"
    after = stored_interest(dynamodb_endpoint, table, US_CALLER, "x200-headphones")
    assert before is not None and after is not None
    assert (after.version, after.score) == (before.version, before.score)


def test_repeated_signals_add_with_diminishing_returns_up_to_one(
    signals_function: LocalFunction, dynamodb_endpoint: str, table: str
) -> None:
    scores = []
    for index in range(8):
        signals_function.invoke(queue_event(signal(f"r-{index}")))
        found = stored_interest(dynamodb_endpoint, table, US_CALLER, "x200-headphones")
        assert found is not None
        scores.append(found.score)
    steps = [later - earlier for earlier, later in itertools.pairwise(scores)]
    assert all(step > 0 for step in steps)
    assert all(later < earlier for earlier, later in itertools.pairwise(steps))
    assert scores[-1] <= 1.0
    found = stored_interest(dynamodb_endpoint, table, US_CALLER, "x200-headphones")
    assert found is not None and len(found.recent) == KEEP_CONTRIBUTIONS  # the newest few, not all


def test_old_signals_count_faded_and_signals_past_retention_not_at_all(
    signals_function: LocalFunction, dynamodb_endpoint: str, table: str
) -> None:
    signals_function.invoke(queue_event(signal("old-1", days_ago=14)))  # one half-life ago
    found = stored_interest(dynamodb_endpoint, table, US_CALLER, "x200-headphones")
    assert found is not None
    assert found.score == pytest.approx(0.5, abs=0.001)  # as of when it was seen
    now_worth = found.score * 0.5 ** ((time.time() - found.updated_at) / DAY / 14)
    assert now_worth == pytest.approx(0.25, abs=0.01)
    answer = signals_function.invoke(
        http_event(json.dumps(signal("old-2", caller="+12125550143", days_ago=181)))
    )  # the US keeps interests 180 days
    assert json.loads(answer["body"])["results"][0]["status"] == "expired"
    assert stored_interest(dynamodb_endpoint, table, "+12125550143", "x200-headphones") is None


def test_items_expire_by_the_jurisdictions_retention(
    signals_function: LocalFunction, dynamodb_endpoint: str, table: str
) -> None:
    signals_function.invoke(queue_event(signal("ttl-1")))
    found = stored_interest(dynamodb_endpoint, table, US_CALLER, "x200-headphones")
    assert found is not None and found.expires_at == pytest.approx(found.updated_at + 180 * DAY, abs=1)


def test_two_invocations_changing_one_interest_at_once_lose_nothing(
    make_signals: SignalsFactory, dynamodb_endpoint: str, table: str
) -> None:
    functions = [make_signals() for _ in range(4)]
    errors: list[BaseException] = []

    def send(index: int, function: LocalFunction) -> None:
        try:
            for round_ in range(3):
                answer = function.handle(queue_event(signal(f"c-{index}-{round_}")))
                assert answer == {"batchItemFailures": []}
        except BaseException as error:  # reported below
            errors.append(error)

    with functions[0].environment_applied():
        threads = [threading.Thread(target=send, args=(i, f)) for i, f in enumerate(functions)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert errors == []
    found = stored_interest(dynamodb_endpoint, table, US_CALLER, "x200-headphones")
    assert found is not None
    assert found.version == 12  # every one of the 12 signals was added exactly once
    assert found.score == pytest.approx(1 - 0.5**12, abs=0.001)


# -- the privacy gate -----------------------------------------------------------------------------------


def test_signals_are_kept_only_where_policy_allows(
    signals_function: LocalFunction, store: DynamoStore, dynamodb_endpoint: str, table: str
) -> None:
    consenting, objecting = "+493055501043", "+12025550199"
    store.put_caller(
        caller_key(consenting, DEVELOPMENT_PEPPER),
        CallerProfile(consents={"interest_routing": Consent(granted=True, at=time.time(), source="web")}),
        [],
    )
    store.put_caller(
        caller_key(objecting, DEVELOPMENT_PEPPER), CallerProfile(objected=True, objected_at=time.time()), []
    )
    printed = []
    answer = signals_function.invoke(
        http_event(
            json.dumps(
                {"signals": [signal("p-1", DE_CALLER), signal("p-2", consenting), signal("p-3", objecting)]}
            )
        )
    )
    printed.append(answer)
    statuses = [r["status"] for r in json.loads(answer["body"])["results"]]
    assert statuses == ["not_permitted", "stored", "objected"]
    assert stored_interest(dynamodb_endpoint, table, DE_CALLER, "x200-headphones") is None
    assert stored_interest(dynamodb_endpoint, table, objecting, "x200-headphones") is None
    assert stored_interest(dynamodb_endpoint, table, consenting, "x200-headphones") is not None


# -- failure --------------------------------------------------------------------------------------------


def test_with_the_table_unreachable_every_signal_comes_back(make_signals: SignalsFactory) -> None:
    function = make_signals(endpoint="http://127.0.0.1:9")
    event = queue_event(signal("f-1"), signal("f-2"))
    answer = function.invoke(event)
    failed = {failure["itemIdentifier"] for failure in answer["batchItemFailures"]}
    assert failed == {record["messageId"] for record in event["Records"]}
    http = function.invoke(http_event(json.dumps(signal("f-3"))))
    assert http["statusCode"] == 503
    with pytest.raises(Exception, match=r"could not be stored for now"):
        function.invoke(json.loads((EVENTS / "eventbridge.json").read_text()))


def test_a_batch_of_100_costs_a_few_requests(signals_function: LocalFunction) -> None:
    numbers = [f"+1202555{index:04d}" for index in range(100)]
    event = queue_event(*(signal(f"b-{i}", number) for i, number in enumerate(numbers)))
    services = signals_function.module.services
    with signals_function.environment_applied():
        signals_function.run(event)
        requests = services().store.requests
    # The catalog, profiles and interests (2 reads of 100 keys), up to 4 transactions sent at once.
    assert sum(requests.values()) <= 7
    assert requests["TransactWriteItems"] <= 4


# -- the commands -------------------------------------------------------------------------------------


def test_signals_match_names_the_mesh_router_from_the_demo_catalog(
    capsys: pytest.CaptureFixture[str],
) -> None:
    text = "Unser WLAN ist eine Katastrophe, ich überlege einen Mesh-Router zu kaufen"
    assert main(["signals", "match", text, "I returned it"]) == 0
    first, second = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert first["text"] == text and first["language"] == "de"
    assert [i["product"] for i in first["interests"]] == ["mesh-router-m3"]
    assert first["interests"][0]["evidence"] == "überlege … Mesh-Router … kaufen"
    assert second["interests"] == []


def test_signals_match_takes_a_catalog_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    catalog = tmp_path / "bikes.json"
    catalog.write_text(
        json.dumps({"products": [{"product_id": "cargo-bike", "synonyms": {"de": ["Lastenrad"]}}]})
    )
    assert main(["signals", "match", "--catalog", str(catalog), "Wir suchen ein Lastenrad"]) == 0
    [line] = capsys.readouterr().out.splitlines()
    assert json.loads(line)["interests"][0]["product"] == "cargo-bike"
    catalog.write_text(json.dumps({"products": [{"product_id": "Not An Id"}]}))
    assert main(["signals", "match", "--catalog", str(catalog), "x"]) == 2


def test_catalog_load_and_list(dynamodb_endpoint: str, capsys: pytest.CaptureFixture[str]) -> None:
    table = "rapport-catalog-command"
    demo = PROJECT_DIR / "examples" / "catalog.json"
    assert main(["catalog", "load", str(demo), "--endpoint", dynamodb_endpoint, "--table", table]) == 0
    capsys.readouterr()
    assert main(["catalog", "list", "--endpoint", dynamodb_endpoint, "--table", table]) == 0
    listed = [json.loads(line)["product_id"] for line in capsys.readouterr().out.splitlines()]
    assert sorted(listed) == sorted(p.product_id for p in CatalogFile.load(demo).products)
