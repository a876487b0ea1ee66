"""What the inbound INVITE's SIP headers say about the call, read with sipmessage."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from rapport.numbers import normalise
from sipmessage import Address

# A web page's or social network's call button names the product the caller was looking at.
PRODUCT_HEADER = "x-rapport-product"
_PRODUCT = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
MAX_PRODUCTS = 3


@dataclass(frozen=True)
class SipContext:
    dialled: str | None = None
    """The originally dialled number, from the oldest `Diversion` entry (E.164), if any."""
    products: tuple[str, ...] = ()
    problems: list[str] = field(default_factory=list)


def read_sip_context(headers: dict[str, str]) -> SipContext:
    """Parse `Diversion` and the product header; malformed values are reported, never raised."""
    lowered = {name.lower(): value for name, value in headers.items()}
    problems: list[str] = []
    dialled = None
    if diversion := lowered.get("diversion"):
        try:
            # Entries are newest first (RFC 5806): the last one names the number the caller dialled.
            addresses = Address.parse_many(diversion)
            dialled = normalise(addresses[-1].uri.user) if addresses else None
        # sipmessage raises TypeError on some odd parameters (one named `self`), ValueError on the rest.
        except (ValueError, TypeError, IndexError, AttributeError):
            problems.append("Diversion header unreadable")
        if dialled is None and not problems:
            problems.append("Diversion header names no phone number")
    products: list[str] = []
    for value in lowered.get(PRODUCT_HEADER, "").split(","):
        product = value.strip().lower()
        if not product:
            continue
        if _PRODUCT.match(product) and product not in products:
            products.append(product)
        else:
            problems.append(f"{PRODUCT_HEADER} value ignored: not a product id")
    return SipContext(dialled=dialled, products=tuple(products[:MAX_PRODUCTS]), problems=problems)
