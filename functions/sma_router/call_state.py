"""The call's state in the SMA's TransactionAttributes: a few string values, read back on every event.

The SMA keeps at most 10 attributes (string values, 20 KB in all) for the life of a call and hands them
to every invocation. rapport's decision record travels there until the call ends, so that the record is
written once, when it is complete.

Whoever can invoke the router can put anything in those attributes, and the state decides what is written
under a caller's key (the decision record, the last-agent link). So the state is sealed: `rp_sig` is an
HMAC-SHA256, under a key derived from the caller-key pepper, of every other `rp_` attribute together with
the call's transaction id and SIP media application id. State that fails the check is not used (`check`).
State without a caller key and without a link may go unsealed: it is what a call routed while the pepper
could not be had carries, and it can write nothing under anyone's key.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from pydantic import ValidationError
from rapport.call import CallState, Stage
from rapport.models import DecisionRecord

_CALLER_KEY = re.compile(r"^[0-9a-f]{64}$")
_WORDS = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}(,[a-z0-9][a-z0-9._-]{0,63}){0,4}$")
_MEETING = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
MAX_RECORD_CHARS = 16_000
SIGNATURE = "rp_sig"
_KEY_LABEL = b"rapport call state v1"
_SIGNATURE_FORM = re.compile(r"^[0-9a-f]{64}$")


class Seal(StrEnum):
    """What `check` found."""

    VALID = "valid"  # signed with this deployment's key, for this call
    UNSIGNED = "unsigned"  # no signature, and nothing in it that could write under a caller's key
    FORGED = "forged"  # a signature that does not match, or a caller key or link without one
    UNVERIFIABLE = "unverifiable"  # signed, but the key cannot be had right now


def state_key(pepper: str) -> bytes:
    """The key call state is sealed with: derived from the pepper, so it is as secret, and never equal to
    a caller key (which is the pepper's HMAC of an E.164 number)."""
    return hmac.new(pepper.encode(), _KEY_LABEL, hashlib.sha256).digest()


def _signature(attributes: Mapping[str, str], key: bytes, call_id: str, sma_id: str) -> str:
    # Length-prefixed, so that no two different sets of attributes read as the same message.
    parts = [f"{len(call_id)}:{call_id}{len(sma_id)}:{sma_id}"]
    for name in sorted(attributes):
        if name.startswith("rp_") and name != SIGNATURE:
            value = str(attributes[name])
            parts.append(f"{len(name)}:{name}{len(value)}:{value}")
    return hmac.new(key, "".join(parts).encode(), hashlib.sha256).hexdigest()


def seal(attributes: dict[str, str], key: bytes | None, call_id: str, sma_id: str) -> dict[str, str]:
    """The attributes with their signature; unsealed when there is no key (nothing in them may then name
    a caller, which `to_attributes` makes sure of before)."""
    if key is None:
        return attributes
    return {**attributes, SIGNATURE: _signature(attributes, key, call_id, sma_id)}


def check(attributes: Mapping[str, Any] | None, key: bytes | None, call_id: str, sma_id: str) -> Seal:
    """Whether stored attributes are this deployment's state of this call."""
    if not attributes:
        return Seal.UNSIGNED
    signature = str(attributes.get(SIGNATURE, ""))
    if not signature:
        harmless = not attributes.get("rp_caller") and str(attributes.get("rp_link", "0")) == "0"
        return Seal.UNSIGNED if harmless else Seal.FORGED
    if not _SIGNATURE_FORM.match(signature):
        return Seal.FORGED
    if key is None:
        return Seal.UNVERIFIABLE
    expected = _signature({k: str(v) for k, v in attributes.items()}, key, call_id, sma_id)
    return Seal.VALID if hmac.compare_digest(signature, expected) else Seal.FORGED


def to_attributes(state: CallState) -> dict[str, str]:
    asking = (
        {"rp_ask": ",".join(state.asking), "rp_live": ",".join(state.live_products)} if state.asking else {}
    )
    meeting = {"rp_meet": state.meeting_id} if state.meeting_id else {}
    offered = {"rp_offered": "1"} if state.offered else {}
    return {
        **asking,
        **meeting,
        **offered,
        "rp_stage": state.stage.value,
        "rp_caller": state.caller_key or "",
        "rp_link": str(state.link_days),
        "rp_record": state.record.model_dump_json(by_alias=True, exclude_none=True, exclude_defaults=True)
        if state.record
        else "",
    }


def from_attributes(attributes: Mapping[str, Any] | None, call_id: str) -> CallState | None:
    """The state a previous response stored for this call, or None when there is none, it is unreadable,
    or it belongs to another call."""
    if not attributes or "rp_stage" not in attributes:
        return None
    try:
        caller = str(attributes.get("rp_caller", ""))
        if caller and not _CALLER_KEY.match(caller):
            return None
        stored = str(attributes.get("rp_record", ""))
        record = None
        if stored:
            if len(stored) > MAX_RECORD_CHARS:
                return None
            record = DecisionRecord.model_validate_json(stored)
            if record.call_id != call_id or record.caller_key != (caller or None):
                return None
        return CallState(
            stage=Stage(str(attributes["rp_stage"])),
            caller_key=caller or None,
            link_days=int(str(attributes.get("rp_link", "0"))),
            record=record,
            asking=_words(attributes.get("rp_ask")),
            live_products=_words(attributes.get("rp_live")),
            meeting_id=_meeting(attributes.get("rp_meet")),
            offered=attributes.get("rp_offered") == "1",
        )
    except (ValueError, ValidationError):
        return None


def _meeting(value: object) -> str | None:
    """A Chime SDK meeting id (a UUID), or None."""
    text = str(value or "")
    return text if _MEETING.match(text) else None


def _words(value: object) -> tuple[str, ...]:
    """A short comma-separated list of ids (purposes, products); nothing if it is not one."""
    text = str(value or "")
    return tuple(text.split(",")) if _WORDS.match(text) else ()
