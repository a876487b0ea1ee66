"""Signals: what a caller showed interest in (a post, a web visit, a CRM note), as they arrive.

A signal names its caller by phone number; the number is checked here, turned into the caller key and the
jurisdiction at once, and goes no further. Errors say which field is wrong and why, never what it held.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationError,
    model_validator,
)

from rapport.log_privacy import redact, redact_value
from rapport.models import Language, ProductId
from rapport.numbers import PhoneNumber, parse_number

MAX_TEXT_CHARS = 10_000
MAX_PRODUCTS = 20
MAX_BATCH = 100
"""Signals per HTTP request or EventBridge event."""

_E164_WORDS = "a valid number in E.164 form: a plus sign, the country code and the number, no spaces"


def _phone_number(value: object) -> PhoneNumber:
    # The messages never repeat the value: it is a phone number, or someone's attempt at one.
    if not isinstance(value, str):
        raise ValueError(f"must be a string holding {_E164_WORDS}")
    number = parse_number(value)
    if number is None or number.e164 != value.strip():
        raise ValueError(f"must be {_E164_WORDS}")
    return number


CallerNumber = Annotated[PhoneNumber, PlainValidator(_phone_number)]
"""A caller's number as requests send it (E.164), parsed once; errors never repeat the value."""

SignalId = Annotated[str, Field(pattern=r"^[A-Za-z0-9._:/@-]{1,128}$")]


class Source(StrEnum):
    SOCIAL = "social"
    WEB = "web"
    CRM = "crm"
    CALL = "call"


class ProductInterest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    product: ProductId
    strength: float = Field(ge=0.0, le=1.0)


class Signal(BaseModel):
    """One signal, as producers send it (documented in the README, "Signals")."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    signal_id: SignalId
    """The producer's id for this signal; the same id delivered again is not counted again."""
    caller: Annotated[PhoneNumber, PlainValidator(_phone_number)] = Field(repr=False)
    """The caller's number in E.164 (`+4930…`), parsed once into the number and its region."""
    source: Source
    observed_at: AwareDatetime
    """When the interest was shown (ISO 8601 with a time zone)."""
    products: list[ProductInterest] | None = Field(default=None, min_length=1, max_length=MAX_PRODUCTS)
    text: str | None = Field(default=None, min_length=1, max_length=MAX_TEXT_CHARS)
    language: Language | None = None
    """Of `text`; told from the text when left out."""

    @model_validator(mode="after")
    def _one_kind(self) -> Signal:
        if (self.products is None) == (self.text is None):
            raise ValueError("give either 'products' or 'text', not both and not neither")
        if self.language is not None and self.text is None:
            raise ValueError("'language' goes with 'text' only")
        return self

    @property
    def number(self) -> PhoneNumber:
        return self.caller

    @property
    def observed(self) -> float:
        return self.observed_at.timestamp()


class Rejection(StrEnum):
    INVALID = "invalid"
    UNKNOWN_PRODUCT = "unknown_product"


class SignalRejected(Exception):
    """A signal that can never be stored as it is: what is wrong, in words safe to log and return."""

    def __init__(self, kind: Rejection, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.kind = kind
        self.problems = problems


def parse_signal(raw: object) -> Signal:
    """A signal from its JSON value (a mapping, or a JSON string); `SignalRejected` naming every problem."""
    if isinstance(raw, str | bytes):
        try:
            raw = json.loads(raw)
        except ValueError:
            raise SignalRejected(Rejection.INVALID, ["the signal is not valid JSON"]) from None
    if not isinstance(raw, Mapping):
        raise SignalRejected(Rejection.INVALID, ["a signal must be a JSON object"])
    try:
        return Signal.model_validate(raw)
    except ValidationError as error:
        raise SignalRejected(Rejection.INVALID, problems(error)) from None


def problems(error: ValidationError) -> list[str]:
    """One line per problem: the field and the rule it breaks, without the value it held."""
    lines = []
    for detail in error.errors(include_input=False, include_url=False, include_context=False):
        where = ".".join(str(part) for part in detail["loc"]) or "signal"
        message = str(detail["msg"]).removeprefix("Value error, ")
        lines.append(redact(f"{where}: {message}"))
    return lines


def signals_in(body: object) -> list[object]:
    """The signals one message carries: one signal, or `{"signals": [...]}` with up to `MAX_BATCH`."""
    if isinstance(body, Mapping) and set(body) == {"signals"}:
        batch = body["signals"]
        if not isinstance(batch, list) or not batch:
            raise SignalRejected(Rejection.INVALID, ["'signals' must be a non-empty list"])
        if len(batch) > MAX_BATCH:
            raise SignalRejected(
                Rejection.INVALID, [f"at most {MAX_BATCH} signals at once, got {len(batch)}"]
            )
        return list(batch)
    return [body]


def redacted(raw: object, caller_key: str | None) -> dict[str, Any]:
    """A rejected signal as it may be kept for people to look at (the dead-letter queue): the number
    replaced by its caller key (or left out when it was not one), numbers in the text masked."""
    if isinstance(raw, str | bytes):
        text = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
        try:
            raw = json.loads(text)
        except ValueError:
            return {"unreadable": redact(text)[:2_000]}
    if not isinstance(raw, Mapping):
        return {"unreadable": redact(json.dumps(raw, default=str))[:2_000]}
    kept: dict[str, Any] = {}
    for name, value in raw.items():
        if name == "caller":
            if caller_key:
                kept["caller_key"] = caller_key
            continue
        kept[str(name)[:64]] = redact_value(value)
    return kept


__all__ = [
    "MAX_BATCH",
    "ProductInterest",
    "Rejection",
    "Signal",
    "SignalRejected",
    "Source",
    "parse_signal",
    "problems",
    "redacted",
    "signals_in",
]
