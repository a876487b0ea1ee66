"""The call's state in the SMA's TransactionAttributes: four string values, read back on every event.

The SMA keeps at most 10 attributes (string values, 20 KB in all) for the life of a call and hands them
to every invocation. rapport's decision record travels there until the call ends, so that the record is
written once, when it is complete.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError
from rapport.call import CallState, Stage
from rapport.models import DecisionRecord

_CALLER_KEY = re.compile(r"^[0-9a-f]{64}$")
_WORDS = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}(,[a-z0-9][a-z0-9._-]{0,63}){0,4}$")
_MEETING = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
MAX_RECORD_CHARS = 16_000


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
