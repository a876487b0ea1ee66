"""What the agent's phone, PBX or CRM is told about a call as it rings: `x-` SIP headers on the bridge.

    x-rapport-decision   the call's decision id (the SMA's TransactionId): what the CRM posts outcomes with
    x-rapport-agent      the agent the call was routed to
    x-rapport-mode       known_agent, interest or any_available
    x-rapport-interest   the caller's top interest, a product id (only where interest data was used)

Never the caller's number, nor anything else about them. Each header is at most 80 characters and all of
them together well under the 2,048 Chime passes on a bridge; names and values are RFC 3261 tokens,
checked with sipmessage's grammar, so no value can break out of its header. Voice Connector bridges only:
the phone network does not carry them to a PSTN number.
"""

from __future__ import annotations

import re

from rapport.models import DecisionRecord, RoutingMode
from sipmessage.grammar import TOKEN

DECISION = "x-rapport-decision"
AGENT = "x-rapport-agent"
MODE = "x-rapport-mode"
INTEREST = "x-rapport-interest"
MAX_VALUE_CHARS = 80
_TOKEN = re.compile(f"^{TOKEN}$")


def screen_pop(record: DecisionRecord | None, agent_id: str | None, mode: RoutingMode) -> dict[str, str]:
    """The headers for a bridge to `agent_id`, chosen by `mode`; only those whose value is a token."""
    if record is None or agent_id is None:
        return {}
    headers = {DECISION: record.call_id, AGENT: agent_id, MODE: mode.value}
    if record.privacy.interests and record.interests:
        headers[INTEREST] = max(record.interests, key=lambda product: record.interests[product].score)
    return {
        name: value
        for name, value in headers.items()
        if len(value) <= MAX_VALUE_CHARS and _TOKEN.match(name) and _TOKEN.match(value)
    }
