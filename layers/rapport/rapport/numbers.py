"""Phone numbers: normalisation, jurisdiction and the keyed hash that stands in for them everywhere."""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass

import phonenumbers

_E164 = re.compile(r"^\+[1-9]\d{6,14}$")


def is_e164(value: str) -> bool:
    """True for a syntactically valid E.164 string (`+` and 7 to 15 digits)."""
    return bool(_E164.match(value))


@dataclass(frozen=True, slots=True)
class PhoneNumber:
    e164: str
    region: str | None
    """ISO 3166 region (`DE`, `US`), or None when it cannot be told (including non-geographic numbers
    such as satellite and international freephone, region `001`)."""


def parse_number(value: str | None) -> PhoneNumber | None:
    """A dialable number in E.164 with its region, from one parse; None when it is not one (anonymous,
    SIP user, garbage). Accepts what Chime puts in `From`/`To` and what a SIP URI user part carries
    (`+49 30 …`, `tel:`)."""
    if not value or len(value) > 64:
        return None
    candidate = value.strip().removeprefix("tel:")
    try:
        parsed = phonenumbers.parse(candidate, None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(parsed):
        return None
    formatted = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    if not is_e164(formatted):
        return None
    region = phonenumbers.region_code_for_number(parsed)
    usable = region if region and len(region) == 2 and region.isalpha() and region != "ZZ" else None
    return PhoneNumber(formatted, usable)


def normalise(value: str | None) -> str | None:
    """The E.164 form of a dialable number, or None when it is not one."""
    number = parse_number(value)
    return number.e164 if number else None


def jurisdiction(e164: str | None) -> str | None:
    """The region of a number (see `PhoneNumber.region`), or None when it cannot be told."""
    number = parse_number(e164)
    return number.region if number else None


def calling_code(value: str | None) -> int | None:
    """The country calling code of a dialable number (49 for +4930…), or None when it is not one."""
    try:
        number = phonenumbers.parse(value or "", None)
    except phonenumbers.NumberParseException:
        return None
    return number.country_code if phonenumbers.is_possible_number(number) else None


def caller_key(e164: str, pepper: str) -> str:
    """HMAC-SHA256 of the E.164 number: the only form in which a caller's number is stored or logged."""
    return hmac.new(pepper.encode(), e164.encode(), hashlib.sha256).hexdigest()
