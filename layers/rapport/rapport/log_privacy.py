"""A last guard for 'no phone number in any log line': numbers in every spelling are masked before a line
is written.

rapport logs caller keys, never numbers, on purpose; this catches what slips in by accident: an exception
message or a traceback that quotes an event value, or the Amazon Chime SIP media application's own errors
and SIP URIs, which carry numbers as they were dialled (`sip:12125550143@10.0.0.1`, `tel:+4930…`,
`0049 30 5550 1042`, `030/5550-1042`, `(212) 555-0143`, `0151 23456789`). So any 7 or more digits standing
alone, or in groups joined the way numbers are written (space, dash, dot, slash, brackets), are masked,
with what surrounds them (`sip:`, `@host`) kept. Seven, because local numbers have seven digits: a missed
number is worse than a masked count.

What only looks like a number and keeps a line useful is left: dates and timestamps, UUIDs, hex keys and
ids (digits glued to a letter a-f), decimals (durations, epoch seconds) and the account id in an ARN.
`RedactingFormatter` masks the values of Powertools' log dict before it is serialised, so the timestamp
and the ids Powertools and rapport add are never touched.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter

if TYPE_CHECKING:
    from aws_lambda_powertools.logging.types import LogRecord

MASK = "<number>"
MAX_VALUE_CHARS = 2000
"""A string value in a log line is cut to this many characters: a field an event or a caller fills (an
SMA error message, a SIP header) cannot make one line, or the logs, grow without bound."""

# Tried first at each position, so a number is never cut out of the middle of one of these.
_KEEP = r"""
    (?:19|20)\d\d(?P<d>[-/])[01]\d(?P=d)[0-3]\d               # a date, 2026-11-28,
      (?:[T\ ]\d\d:\d\d(?::\d\d(?:[.,]\d+)?)?)?             #   its time, 16:05:21,085
      (?:Z|[+-]\d\d:?\d\d)?                                 #   and zone, +0000
  | [0-3]?\d(?P<e>[./])[0-3]?\d(?P=e)(?:19|20)\d\d(?![./]?\d)  # 28.11.2026, 11/28/2026
  | [0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}    # a UUID (call ids), digit-only groups too
  | (?:0|[1-9]\d*)\.\d{1,7}(?!\.?\d)                        # a decimal: 12.5 ms, 1764642321.12
  | arn:[\w-]+:[\w-]*:[\w-]*:\d{12}(?=:)                    # the account id in an ARN
"""

# 7+ digits in groups (the first may be one digit: +1, 1-800), after +, %2B (URL-encoded +) or a bracket.
_NUMBER = r"""
    (?:\+|%2[bB]|\(\+?)?                                    # +49, %2B49, (212), (+49)
    (?=\d(?:[\ \-./()]{0,2}\d){6})                          # 7 digits ahead, or not worth trying
    \d+(?:(?:[\ \-./]|\ ?\(0\)\ ?|\)[\ \-]?|\ ?\()\d{2,})*  # groups: '030/5550-1042', '+44 (0)20 7946'
    (?![0-9A-Fa-f])                                         # not the head of a hex key or id
"""

# Neither starts inside a hex key or id (nor right after a digit), and the gate skips, at little cost,
# the many other places where neither can start.
_CANDIDATES = re.compile(rf"(?<![0-9A-Fa-f])(?=[\d(+%a-fA-F])(?:{_KEEP}|(?P<number>{_NUMBER}))", re.VERBOSE)

# Seven digits close together: every number has them. Most lines have none, and are done after this.
_DIGITS = re.compile(r"\d(?:[ \-./()]{0,2}\d){6,}")

# Neither a number nor what is kept holds one of these, but for spaces inside a run of digits (a number's
# groups, a date and its hour), so a line is only searched in the words around its runs of digits. Not
# the comma: Powertools' timestamp has one (16:05:21,085).
_BETWEEN_WORDS = re.compile(r"[\s\"';<>=@\[\]{}]")
_LOOK_BACK = 128

_MOST_DIGITS = 17
"""E.164 allows 15, plus a 00 prefix; a longer run of bare digits is an id, not a number."""

SAFE_KEYS = frozenset(
    {
        "timestamp",
        "level",
        "location",
        "service",
        "call_id",
        "caller_key",
        "function_request_id",
        "function_arn",
        "function_name",
        "function_memory_size",
        "cold_start",
        "xray_trace_id",
        "sampling_rate",
    }
)
"""Top-level keys of a log line that Powertools and rapport fill with ids, times and settings: left as
they are, so they stay exact (and cost nothing)."""


def redact(text: str) -> str:
    """`text` with every phone number in it, in any spelling, replaced by `MASK`."""
    if _DIGITS.search(text) is None:
        return text  # most lines: no seven digits anywhere
    pieces: list[str] = []
    done = 0
    for start, end in _regions(text):
        pieces += (text[done:start], _CANDIDATES.sub(_masked, text[start:end]))
        done = end
    if not pieces:
        return text
    pieces.append(text[done:])
    return "".join(pieces)


def _regions(text: str) -> list[tuple[int, int]]:
    """The words around each run of seven digits, as (start, end), joined where they meet."""
    regions: list[tuple[int, int]] = []
    for run in _DIGITS.finditer(text):
        start = _word_start(text, run.start())
        after = _BETWEEN_WORDS.search(text, run.end())
        end = after.start() if after else len(text)
        if regions and start <= regions[-1][1]:
            regions[-1] = (regions[-1][0], max(end, regions[-1][1]))
        else:
            regions.append((start, end))
    return regions


def _word_start(text: str, at: int) -> int:
    """Where the word holding `at` starts: looked for backwards, in a reversed window of the text."""
    window = max(0, at - _LOOK_BACK)
    before = _BETWEEN_WORDS.search(text[window:at][::-1])
    if before:
        return at - before.start()
    if window == 0:
        return 0
    return max(text.rfind(" ", 0, window), text.rfind("\n", 0, window)) + 1  # a long word: from a space


def _masked(match: re.Match[str]) -> str:
    number = match.group("number")
    if number is None:
        return match.group()  # kept: a date, UUID, decimal or ARN
    if number.isdigit() and len(number) > _MOST_DIGITS:
        return number
    return MASK


def _redact_int(value: int) -> int | str:
    if -1_000_000 < value < 1_000_000:
        return value
    text = str(value)
    return value if redact(text) == text else MASK


def redact_value(value: object, default: Callable[[Any], Any] = str) -> Any:
    """`value` (a JSON-like value: dicts, lists, strings, numbers) with every number masked, in strings,
    in keys and in integers of 7 or more digits. Other objects are turned into JSON values by `default`
    first, as `json.dumps` would."""
    if isinstance(value, str):
        return redact(_bounded(value))
    if isinstance(value, bool) or value is None or isinstance(value, float):
        return value
    if isinstance(value, int):
        return _redact_int(value)
    if isinstance(value, Mapping):
        return {redact_value(key, default): redact_value(item, default) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [redact_value(item, default) for item in value]
    converted = default(value)
    if isinstance(converted, str | int | float | bool | Mapping | list | tuple) or converted is None:
        return redact_value(converted, default)
    return redact(str(converted))


def _bounded(text: str) -> str:
    if len(text) <= MAX_VALUE_CHARS:
        return text
    return f"{text[:MAX_VALUE_CHARS]}… ({len(text) - MAX_VALUE_CHARS} more characters)"


class RedactingFormatter(LambdaPowertoolsFormatter):
    """Powertools' JSON lines, with every phone number masked in every value but those of `SAFE_KEYS`:
    the message, the exception and its traceback, extra fields, nested or not; and every string value
    cut at `MAX_VALUE_CHARS`."""

    def serialize(self, log: LogRecord) -> str:
        redacted: dict[str, Any] = {}
        for key, value in log.items():
            if key in SAFE_KEYS:
                redacted[key] = value
            else:
                redacted[redact(key)] = redact_value(value, self.json_default)
        return super().serialize(redacted)
