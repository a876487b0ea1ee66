"""Phone numbers never reach a log line, in any spelling, even by accident; what only looks like one stays."""

from __future__ import annotations

import io
import json
import logging
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import phonenumbers
import pytest
from aws_lambda_powertools import Logger
from hypothesis import given
from hypothesis import strategies as st
from phonenumbers import PhoneNumberFormat, PhoneNumberType
from rapport import log_privacy
from rapport.log_privacy import MASK, RedactingFormatter, redact

CALL_ID = "12345678-1234-5678-9abc-123456789012"
CALLER_KEY = "dcc7a4d46bc6bf6110917874fb8ecf428efbddaf298efeecfd696c8ba6a777ec"
POWERTOOLS_TIMESTAMP = "2026-11-28 16:05:21,085+0000"


def last_six_digits(number: str) -> str:
    return "".join(char for char in number if char.isdigit())[-6:]


# -- numbers, in every spelling they arrive in ------------------------------------------------------------


@pytest.mark.parametrize(
    ("before", "number", "after"),
    [
        # E.164, as rapport itself writes numbers
        ("caller ", "+493055501042", " said hello"),
        ("caller ", "+49 30 5550 1042", " said hello"),
        ("caller ", "+1-202-555-0107", " said hello"),
        ("caller ", "+1 (202) 555-0107", " said hello"),
        ("caller ", "+442079460123", " said hello"),
        ("caller ", "+44 (0)20 7946 0123", " said hello"),
        ("caller ", "(+49) 30 5550 1042", " said hello"),
        # as the SIP media application's errors and SIP URIs carry them
        ("From ", "12125550143", " rejected"),
        ("sip:", "12125550143", "@10.0.0.1"),
        ("sip:", "+12125550143", "@example.com;user=phone"),
        ("<sip:", "+12125550143", "@10.0.0.1:5060>;tag=a6c85cf"),
        ("sip:", "%2B12125550143", "@example.com"),
        ("tel:", "+493055501042", ""),
        ("tel:", "+49-30-5550-1042", ";phone-context=example.com"),
        # international with 00, and national forms
        ("dialled ", "0049 30 5550 1042", ": busy"),
        ("dialled ", "004930555010", ": busy"),
        ("dialled ", "030 5550 1042", ": busy"),
        ("dialled ", "030/5550-1042", ": busy"),
        ("dialled ", "(212) 555-0143", ": busy"),
        ("dialled ", "212-555-0143", ": busy"),
        ("dialled ", "212.555.0143", ": busy"),
        ("dialled ", "0151 23456789", ": busy"),
        ("dialled ", "1-800-555-0199", ": busy"),
        ("dialled ", "555-0143", ": busy"),  # a local number: seven digits
        # glued to what is around it
        ('{"to": "', "+12125550143", '"}'),
        ("caller=", "12125550143", "&x=1"),
        ("caller_", "12125550143", ""),
        ("Call me on ", "12125550143", "."),
    ],
)
def test_numbers_in_any_spelling_are_masked_and_what_surrounds_them_kept(
    before: str, number: str, after: str
) -> None:
    redacted = redact(f"{before}{number}{after}")
    assert redacted == f"{before}{MASK}{after}"
    assert last_six_digits(number) not in redacted


def test_seven_digits_on_their_own_are_masked_even_when_they_were_a_count() -> None:
    # A local number has seven digits (5550143), and nothing tells it from a count of 1234567 ms: a missed
    # number is worse than a masked count, so the count is masked. Durations are logged as decimals.
    assert redact("took 1234567 ms") == f"took {MASK} ms"
    assert redact("took 1234567.5 ms") == "took 1234567.5 ms"
    # Likewise epoch seconds as a whole number (10 digits, as a US number has); with decimals they stay.
    assert redact("at 1764642321") == f"at {MASK}"


def test_several_numbers_in_one_line_are_all_masked() -> None:
    line = "Diversion: <sip:+4930555019@pbx>;counter=1, <tel:030 5550 1042>; 0151 23456789 to (212) 555-0143"
    redacted = redact(line)
    assert redacted.count(MASK) == 4
    for number in ("4930555019", "5550 1042", "23456789", "555-0143"):
        assert number not in redacted


def example_numbers() -> list[tuple[str, str]]:
    """libphonenumber's example numbers of every region, fixed and mobile, in each of its spellings."""
    formats = [
        PhoneNumberFormat.E164,
        PhoneNumberFormat.INTERNATIONAL,
        PhoneNumberFormat.RFC3966,
        PhoneNumberFormat.NATIONAL,
    ]
    spelled = []
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        for kind in (PhoneNumberType.FIXED_LINE, PhoneNumberType.MOBILE):
            example = phonenumbers.example_number_for_type(region, kind)
            if example is None:
                continue
            for form in formats:
                text = phonenumbers.format_number(example, form)
                if sum(char.isdigit() for char in text) >= 7:  # the few shorter ones: tiny territories
                    spelled.append((region, text))
    return spelled


def test_every_regions_example_numbers_are_masked_in_every_spelling() -> None:
    spelled = example_numbers()
    missed = [
        (region, text)
        for region, text in spelled
        if last_six_digits(text) in redact(f"call {text} now") or MASK not in redact(f"call {text} now")
    ]
    assert len(spelled) > 1_500
    assert missed == []


# -- what only looks like a number ------------------------------------------------------------------------

HEX_KEY_WITH_DIGITS_AT_BOTH_ENDS = "1234567" + "a" * 50 + "7654321"  # 64 hex digits


@pytest.mark.parametrize(
    "text",
    [
        POWERTOOLS_TIMESTAMP,
        "2026-11-28T16:05:21.085Z",
        "2026-11-28T16:05:21.085+01:00",
        "on 2026-11-28, or 28.11.2026, or 11/28/2026",
        f"caller_key {CALLER_KEY}",
        f"caller_key {HEX_KEY_WITH_DIGITS_AT_BOTH_ENDS}",
        f"call_id {CALL_ID}",
        f"call_id={CALL_ID.upper()}",
        "attempt 2 of 5",
        "took 12.5 ms",
        "budget_s 1.5",
        "at 1764642321.12",
        "at 1764642321.1234567",
        "from 10.0.0.1",
        "arn:aws:chime:us-east-1:123456789012:vc/abcdefghijklmnopqrstu1",
        "Root=1-5759e988-bd862e3fe1be46a994272793",
        "an id of twenty digits 12345678901234567890",
        "version 3.37.0, python3.11, 200 OK",
    ],
)
def test_timestamps_keys_ids_and_counts_are_left_alone(text: str) -> None:
    assert redact(text) == text


def test_a_line_keeps_its_timestamp_key_and_call_id_while_its_number_goes() -> None:
    line = f"{POWERTOOLS_TIMESTAMP} {CALL_ID} {CALLER_KEY} Chime: sip:12125550143@10.0.0.1 took 12.5 ms"
    assert (
        redact(line)
        == f"{POWERTOOLS_TIMESTAMP} {CALL_ID} {CALLER_KEY} Chime: sip:{MASK}@10.0.0.1 took 12.5 ms"
    )


PIECES = [
    *(POWERTOOLS_TIMESTAMP, "2026-11-28", "T", "Z", "16:05:21", ",085", "+0000", CALL_ID, "9abc", "x"),
    *("12125550143", "+1", "(212)", "555-0143", "0151", "(0)", "%2B", "1764642321.12", "28.11.2026"),
    *("arn:aws:chime:us-east-1:", "123456789012", "0", "12", *" ,;:-./()@='\"{}[]\n\t"),
]


@given(st.lists(st.sampled_from(PIECES), max_size=16).map("".join))
def test_searching_only_around_runs_of_digits_finds_what_searching_everywhere_finds(text: str) -> None:
    # redact() skips the words without seven digits close together; that must never change the outcome.
    assert redact(text) == log_privacy._CANDIDATES.sub(log_privacy._masked, text)


@pytest.mark.parametrize("ugly", ["1 " * 20_000, "12 " * 20_000, "(1" * 20_000, "1" * 50_000, "12-" * 20_000])
def test_long_runs_of_digits_and_separators_are_handled_whole(ugly: str) -> None:
    # Input built to make a careless pattern backtrack for ever: it must come back, with numbers masked.
    masked = redact(ugly)
    assert masked != ugly or (len(ugly) > 17 and ugly.isdigit())


# -- the formatter ------------------------------------------------------------------------------------------


def test_a_traceback_quoting_a_number_is_masked() -> None:
    formatter = RedactingFormatter()
    try:
        raise ValueError("Chime: sip:12125550143@10.0.0.1 did not answer, input_value='+493055501042'")
    except ValueError:
        record = logging.LogRecord("rapport", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
    line = formatter.format(record)
    logged = json.loads(line)
    assert "550143" not in line and "501042" not in line
    assert f"sip:{MASK}@10.0.0.1" in logged["exception"]
    assert f"sip:{MASK}@10.0.0.1" in logged["stack_trace"]["value"]


def test_only_the_safe_keys_are_left_as_they_are() -> None:
    xray = "1-5759e988-bd862e3fe1be46a994272793"
    request_id = str(uuid.UUID(int=12125550143))
    log = {
        "timestamp": POWERTOOLS_TIMESTAMP,
        "call_id": CALL_ID,
        "caller_key": CALLER_KEY,
        "function_request_id": request_id,
        "xray_trace_id": xray,
        "message": "to 12125550143",
        "dialled": 12125550143,
        "attempt": 2,
        "budget_s": 1.5,
        "answered": True,
    }
    logged = json.loads(RedactingFormatter().serialize(log))
    assert logged == {
        **log,
        "message": f"to {MASK}",
        "dialled": MASK,
    }


@pytest.fixture
def powertools_logger() -> Iterator[tuple[Logger, io.StringIO]]:
    """A Powertools Logger writing to a buffer, with the call's keys added as the router adds them."""
    out = io.StringIO()
    logger = Logger(
        service=f"test-log-privacy-{uuid.uuid4()}",
        logger_formatter=RedactingFormatter(),
        logger_handler=logging.StreamHandler(out),
    )
    logger.thread_safe_clear_keys()
    logger.thread_safe_append_keys(call_id=CALL_ID, caller_key=CALLER_KEY)
    yield logger, out
    logger.thread_safe_clear_keys()


def test_a_real_powertools_logger_masks_numbers_in_nested_extra_values(
    powertools_logger: tuple[Logger, io.StringIO],
) -> None:
    logger, out = powertools_logger
    extra: dict[str, Any] = {
        "detail": {
            "legs": [{"to": "sip:+12125550143@10.0.0.1", "from": "030 5550 1042"}],
            "dialled": 4930555019,
            "attempt": 2,
            "budget_s": 1.5,
        },
        "+442079460123": "a number as a key",
    }
    logger.info("bridge failed for 0151 98765432", extra=extra)
    line = out.getvalue()
    logged = json.loads(line)
    for digits in ("550143", "501042", "765432", "555019", "460123"):
        assert digits not in line
    assert logged["message"] == f"bridge failed for {MASK}"
    assert logged["detail"] == {
        "legs": [{"to": f"sip:{MASK}@10.0.0.1", "from": MASK}],
        "dialled": MASK,
        "attempt": 2,
        "budget_s": 1.5,
    }
    assert logged[MASK] == "a number as a key"
    assert (logged["call_id"], logged["caller_key"]) == (CALL_ID, CALLER_KEY)
    assert time.strptime(logged["timestamp"][:19], "%Y-%m-%d %H:%M:%S")


def test_a_real_powertools_logger_masks_an_exception_and_a_message_that_is_a_number(
    powertools_logger: tuple[Logger, io.StringIO],
) -> None:
    logger, out = powertools_logger
    try:
        raise RuntimeError("CallAndBridge to sip:12125550143@10.0.0.1 failed")
    except RuntimeError:
        logger.exception("handler failed")
    logger.info("12125550143")  # Powertools reads a JSON-looking message as JSON: here an integer
    line = out.getvalue()
    assert "550143" not in line
    failed, number = (json.loads(entry) for entry in line.splitlines())
    assert f"sip:{MASK}@10.0.0.1" in failed["exception"]
    assert number["message"] == MASK
