"""Injection through every text a caller or an invoker controls: SIP headers, numbers, event fields,
signal text. None of it may break a log line or a SIP header, reach a `Speak` text, or make the logs
grow without bound.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from attacks import ATTACKER, call
from builders import agent
from rapport.catalog import CatalogFile
from rapport.log_privacy import MAX_VALUE_CHARS
from rapport.settings import Settings
from rapport.store.dynamodb import DynamoStore
from rapport.store.signals import SignalStore
from rapport_local.http_api import http_request
from rapport_local.lambda_runner import LocalFunction
from rapport_local.sma_contract import response_problems
from rapport_local.sma_driver import SimulatedCall, actions_of

CATALOG = Path(__file__).resolve().parents[2] / "examples" / "catalog.json"
LONG = "A" * 100_000
PAYLOADS = [
    "x200\r\nX-Injected: 1",
    "x200\nVia: SIP/2.0/UDP evil.example",
    '<speak><prosody volume="x-loud">Call +1 900 555 0199 now</prosody></speak>',
    "x200\x00\x07\x1b[31m\u202e",
    LONG,
    '"}\n{"level":"INFO","message":"forged line"}',
]
CONTROL = re.compile(r"[\x00-\x1f\x7f\u2028\u2029\u202a-\u202e]")


@pytest.fixture
def desk(store: DynamoStore) -> None:
    store.put_agent(agent("desk-01", time.time() - 600, proficiency={"x200-headphones": 5}))


def spoken(response: dict[str, Any]) -> list[str]:
    texts = []
    for action in response.get("Actions", []):
        parameters = action.get("Parameters", {})
        for field in ("Text",):
            if field in parameters:
                texts.append(parameters[field])
        for speech in ("SpeechParameters", "FailureSpeechParameters"):
            if speech in parameters:
                texts.append(parameters[speech]["Text"])
    return texts


def sip_headers(response: dict[str, Any]) -> dict[str, str]:
    headers: dict[str, str] = {}
    for bridge in actions_of(response, "CallAndBridge"):
        headers.update(bridge.get("SipHeaders") or {})
    return headers


def assert_log_lines_hold(lines: list[str]) -> None:
    """Each record is one JSON line of bounded length: nothing injected starts a line of its own."""
    for line in lines:
        assert "\n" not in line and "\r" not in line
        document = json.loads(line)
        assert document["message"] != "forged line"
        assert len(line) < 3 * MAX_VALUE_CHARS + 4000


@pytest.mark.parametrize("payload", PAYLOADS, ids=["crlf", "lf", "ssml", "control", "long", "json"])
def test_sip_headers_from_the_caller_never_reach_a_header_a_speak_text_or_a_raw_log_line(
    router: LocalFunction, desk: None, log_lines: list[str], payload: str
) -> None:
    headers = {
        "x-rapport-products": payload,
        "x-rapport-purpose": payload,
        "User-to-User": payload,
        "Diversion": f"<sip:{payload}@example.com>;reason=unconditional",
    }
    placed = SimulatedCall(router.invoke, ATTACKER, sip_headers=headers)
    answer = placed.new_inbound()
    assert response_problems(answer) == []
    for name, value in sip_headers(answer).items():
        assert not CONTROL.search(name + value) and len(value) <= 80
        assert payload not in value
    messages = {Settings(TABLE_NAME="any").fallback_message}
    assert all(text in messages for text in spoken(answer))
    assert_log_lines_hold(log_lines)


@pytest.mark.parametrize("payload", PAYLOADS, ids=["crlf", "lf", "ssml", "control", "long", "json"])
def test_event_fields_an_invoker_fills_are_logged_bounded_and_on_one_line(
    router: LocalFunction, log_lines: list[str], payload: str
) -> None:
    """The SMA's error texts are logged as they come (INVALID_LAMBDA_RESPONSE, ACTION_FAILED); an invoker
    could fill them, and the numbers, ids and tags, with anything."""
    placed = SimulatedCall(router.invoke, payload)
    placed.leg_a["CallId"] = payload
    placed.leg_a["ParticipantTag"] = payload
    rejected = placed.event(
        "INVALID_LAMBDA_RESPONSE",
        [placed.leg_a],
        {"Type": "CallAndBridge", "ErrorType": payload, "ErrorMessage": payload},
    )
    rejected["ErrorMessage"] = payload
    for event in (placed.event("NEW_INBOUND_CALL", [placed.leg_a]), rejected):
        answer = placed.send(event)
        assert response_problems(answer) == [] or answer.get("Actions") == []
        assert all(payload not in text for text in spoken(answer))
    assert_log_lines_hold(log_lines)
    assert sum(len(line) for line in log_lines) < 20 * MAX_VALUE_CHARS  # not the 100,000 characters sent


def test_signal_text_reaches_the_reasons_only_as_matched_words(
    router: LocalFunction, make_signals: Any, desk: None, store: DynamoStore
) -> None:
    """A post's words become evidence in reasons and the screen pop; what is not a matched word, a
    header break or markup included, does not."""
    SignalStore(store.client, store.table_name).put_products(CatalogFile.load(CATALOG).products)
    text = "I want to buy the X200 headphones\r\nX-Injected: 1 <speak>now</speak>\x1b[31m"
    signal = {"signal_id": "inj-1", "caller": ATTACKER, "source": "social", "text": text, "language": "en"}
    signal["observed_at"] = "2026-12-01T18:05:00Z"
    answer = make_signals().invoke(http_request("/signals", {"signals": [signal]}))
    assert answer["statusCode"] == 200, answer["body"]
    placed = call(router, ATTACKER)  # a US number: interests are used unless the caller objected
    answer = placed.new_inbound()
    assert sip_headers(answer).get("x-rapport-interest") == "x200-headphones"  # the words did count
    for value in sip_headers(answer).values():
        assert not CONTROL.search(value) and "Injected" not in value and "speak" not in value
    assert all("speak" not in text for text in spoken(answer))
