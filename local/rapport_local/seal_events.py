"""Seal the call state of sample SMA events under the development pepper, as the router would have.

    python -m rapport_local.seal_events events/sma/*.json

A sample's `TransactionAttributes` are what a previous response stored, so they name the caller key of
the sample's own caller (LEG-A `From`) and carry `rp_sig` (see `functions/sma_router/call_state.py`).
After changing a sample's attributes, run this to key and sign them again; files without call state are
left as they are.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from rapport.numbers import caller_key, normalise
from rapport.settings import DEVELOPMENT_PEPPER

ROUTER_CODE = Path(__file__).resolve().parents[2] / "functions" / "sma_router"


def main(paths: list[str]) -> int:
    sys.path.insert(0, str(ROUTER_CODE))
    from call_state import SIGNATURE, seal, state_key

    key = state_key(DEVELOPMENT_PEPPER)
    for name in paths:
        path = Path(name)
        event = json.loads(path.read_text(encoding="utf-8"))
        details = event.get("CallDetails", {})
        attributes = details.get("TransactionAttributes")
        if not isinstance(attributes, dict) or "rp_stage" not in attributes:
            continue
        unsealed = {k: v for k, v in attributes.items() if k != SIGNATURE}
        stored_key = unsealed.get("rp_caller")
        number = _caller_number(details)
        if stored_key and number:
            # The caller key of the event's own caller, as the router computes it.
            own = caller_key(number, DEVELOPMENT_PEPPER)
            unsealed = {k: str(v).replace(stored_key, own) for k, v in unsealed.items()}
        details["TransactionAttributes"] = seal(
            unsealed, key, details.get("TransactionId", ""), details.get("SipMediaApplicationId", "")
        )
        path.write_text(json.dumps(event, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        print(f"sealed {path}")
    return 0


def _caller_number(details: dict[str, object]) -> str | None:
    participants = details.get("Participants")
    for participant in participants if isinstance(participants, list) else []:
        if isinstance(participant, dict) and str(participant.get("ParticipantTag", "")).upper() == "LEG-A":
            return normalise(str(participant.get("From", "")))
    return None


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
