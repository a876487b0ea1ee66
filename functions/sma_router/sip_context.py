"""What the inbound INVITE's SIP headers say about the call, read with sipmessage, in bounded work.

A header longer than `MAX_HEADER_CHARS` is not parsed at all, and each header yields at most one problem
line however many bad values it holds: a crafted header costs the call microseconds, not seconds, and
writes one log line, not thousands.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from rapport.numbers import normalise
from sipmessage import Address

# A web page's or social network's call button names the product the caller was looking at.
PRODUCT_HEADER = "x-rapport-product"
DIVERSION_HEADER = "diversion"
_PRODUCT = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
MAX_PRODUCTS = 3
# Chime passes SIP headers of up to 2,048 characters to a bridge; nothing rapport reads needs more.
MAX_HEADER_CHARS = 2048


@dataclass(frozen=True)
class SipContext:
    dialled: str | None = None
    """The originally dialled number, from the oldest `Diversion` entry (E.164), if any."""
    products: tuple[str, ...] = ()
    problems: list[str] = field(default_factory=list)


def _headers(headers: Mapping[str, str]) -> dict[str, str]:
    """The two headers rapport reads, found without regard to case."""
    wanted: dict[str, str] = {}
    for name, value in headers.items():
        lowered = name.lower()
        if lowered in (PRODUCT_HEADER, DIVERSION_HEADER) and lowered not in wanted:
            wanted[lowered] = value
    return wanted


def _dialled(diversion: str, problems: list[str]) -> str | None:
    if len(diversion) > MAX_HEADER_CHARS:
        problems.append(f"Diversion header of {len(diversion)} characters ignored (limit {MAX_HEADER_CHARS})")
        return None
    try:
        # Entries are newest first (RFC 5806): the last one names the number the caller dialled.
        addresses = Address.parse_many(diversion)
        dialled = normalise(addresses[-1].uri.user) if addresses else None
    # sipmessage raises TypeError on some odd parameters (one named `self`), ValueError on the rest.
    except (ValueError, TypeError, IndexError, AttributeError):
        problems.append("Diversion header unreadable")
        return None
    if dialled is None:
        problems.append("Diversion header names no phone number")
    return dialled


def _products(header: str, problems: list[str]) -> tuple[str, ...]:
    if len(header) > MAX_HEADER_CHARS:
        problems.append(f"{PRODUCT_HEADER} of {len(header)} characters ignored (limit {MAX_HEADER_CHARS})")
        return ()
    products: dict[str, None] = {}  # ordered, with constant-time lookups
    ignored = 0
    for value in header.split(","):
        product = value.strip().lower()
        if not product or product in products:
            continue
        if not _PRODUCT.match(product):
            ignored += 1
        elif len(products) < MAX_PRODUCTS:
            products[product] = None
    if ignored:
        problems.append(f"{PRODUCT_HEADER}: {ignored} value(s) ignored, not product ids")
    return tuple(products)


def read_sip_context(headers: Mapping[str, str]) -> SipContext:
    """Parse `Diversion` and the product header; malformed values are reported, never raised."""
    wanted = _headers(headers)
    problems: list[str] = []
    diversion = wanted.get(DIVERSION_HEADER)
    dialled = _dialled(diversion, problems) if diversion else None
    products = _products(wanted.get(PRODUCT_HEADER, ""), problems)
    return SipContext(dialled=dialled, products=products, problems=problems)
