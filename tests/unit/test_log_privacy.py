"""Phone numbers never reach a log line, even by accident."""

from __future__ import annotations

import logging
import sys

import pytest
from rapport.log_privacy import MASK, RedactingFormatter, redact


@pytest.mark.parametrize(
    "number", ["+493055501042", "+49 30 5550 1042", "+1-202-555-0107", "+1 (202) 555-0107", "+442079460123"]
)
def test_numbers_in_any_usual_spelling_are_masked(number: str) -> None:
    assert redact(f"caller {number} said hello") == f"caller {MASK} said hello"


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-28 16:05:21,085+0000",
        "caller_key dcc7a4d46bc6bf6110917874fb8ecf428efbddaf298efeecfd696c8ba6a777ec",
        "took 1234567 ms",
        "attempt 2 of 5",
    ],
)
def test_timestamps_keys_and_counts_are_left_alone(text: str) -> None:
    assert redact(text) == text


def test_a_traceback_quoting_a_number_is_masked() -> None:
    formatter = RedactingFormatter()
    try:
        raise ValueError("bad input_value='+493055501042'")
    except ValueError:
        record = logging.LogRecord("rapport", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
    line = formatter.format(record)
    assert "3055501042" not in line
    assert MASK in line
