"""The table's layout: keys, how items are encoded, how big they are, and how agents are packed into pools.

    CALLER#<caller-key> / PROFILE                         consents, objection, jurisdiction
    CALLER#<caller-key> / INTEREST#<product>              score, updated_at, sources, expires_at (TTL)
    CALLER#<caller-key> / DECISION#<ms, 13 digits>#<call> a compact decision record (+ its last-agent link)
    CALLER#<caller-key> / SIGNAL#<hash of the signal id>  a counted signal its interest had to forget
    CALLER#<caller-key> / RATE#<window number>             new calls in one rate-limit window (TTL)
    CALL#<call-id>      / DECISION                        the record of a call without a usable number
    POOL#<pool>         / AVAIL                           `seats`: availability of the pool's agents (≤ 1 KB)
    POOL#<pool>         / ROSTER                          `agents`: their endpoints, skills and record
    AGENT#<agent-id>    / PROFILE                         the whole agent, with the pool they are in
    DIRECTORY           / POOLS                           every pool, and the pools of each product
    CATALOG             / PRODUCT#<product>               names and keywords
    CONNECTUSER#<user>  / AGENT                           the agent whose endpoint is this Amazon Connect user
    OFFER#<agent-id>    / <call-id>                       a call offered to a browser agent (TTL: its end)

Sort keys in a caller's partition are chosen so that one descending Query from PROFILE returns the
profile, then the interests, then the newest decision records: the caller's whole context in one read.
What the call path must not read sorts after PROFILE (SIGNAL#); anything it must, before DECISION#.

Pool items are hot and size-bound (every reservation rewrites the availability item; a write costs one
unit per KB), so their maps use one-letter names, documented in docs/data-model.md.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from rapport.models import (
    LINE_MARK,
    Agent,
    AgentEndpoint,
    AgentState,
    DecisionRecord,
    EndpointKind,
    LastAgent,
    Presence,
    ProductStats,
    agent_of,
    line_key,
)
from rapport.pools import Member, Seat, line_seats, member_of

PROFILE_SK = "PROFILE"
INTEREST_PREFIX = "INTEREST#"
DECISION_PREFIX = "DECISION#"
SIGNAL_PREFIX = "SIGNAL#"
AVAIL_SK = "AVAIL"
ROSTER_SK = "ROSTER"
SEATS = "seats"
"""The availability item's map of seats: the one attribute of the pool the router may write."""
MEMBERS = "agents"
"""The roster item's map of members (endpoints): written only by the agents function."""
DIRECTORY_KEY = {"pk": "DIRECTORY", "sk": "POOLS"}
CATALOG_PK = "CATALOG"

MAX_INTERESTS = 10
"""Interests per caller that one context read returns (the signal side keeps no more)."""
RECENT_RECORDS = 3
"""Decision records one context read looks through for the last-agent link."""
CONTEXT_ITEMS = 1 + MAX_INTERESTS + RECENT_RECORDS

# Pools are packed so that a reservation costs one write unit and a pool read half a read unit.
POOL_WRITE_BYTES = 1024
POOL_READ_BYTES = 4096
POOL_MAX_AGENTS = 16

_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def caller_pk(caller_key: str) -> str:
    return f"CALLER#{caller_key}"


def pool_pk(pool_id: str) -> str:
    return f"POOL#{pool_id}"


def connect_user_key(user_id: str) -> dict[str, str]:
    return {"pk": f"CONNECTUSER#{user_id}", "sk": "AGENT"}


OFFER_PREFIX = "OFFER#"
RATE_PREFIX = "RATE#"


def rate_key(caller_key: str, window: int) -> dict[str, str]:
    """A caller's count of new calls in one rate-limit window (sorts after PROFILE: the context read
    never returns it)."""
    return {"pk": caller_pk(caller_key), "sk": f"{RATE_PREFIX}{window}"}


def offer_key(agent_id: str, call_id: str) -> dict[str, str]:
    """A call offered to a browser agent: in the agent's partition, one item per call."""
    return {"pk": f"{OFFER_PREFIX}{agent_id}", "sk": call_id}


def agent_key(agent_id: str) -> dict[str, str]:
    return {"pk": f"AGENT#{agent_id}", "sk": PROFILE_SK}


def record_key(caller_key: str | None, call_id: str, decided_at: float) -> dict[str, str]:
    if caller_key:
        return {
            "pk": caller_pk(caller_key),
            "sk": f"{DECISION_PREFIX}{int(decided_at * 1000):013d}#{call_id}",
        }
    return {"pk": f"CALL#{call_id}", "sk": "DECISION"}


# -- plain values <-> DynamoDB's typed attribute values -------------------------------------------------


def _to_decimal(value: Any) -> Any:
    if isinstance(value, float):
        return Decimal(repr(round(value, 4)))
    if isinstance(value, Mapping):
        return {key: _to_decimal(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_to_decimal(item) for item in value]
    return value


def _from_decimal(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {key: _from_decimal(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_from_decimal(item) for item in value]
    return value


def to_item(values: Mapping[str, Any]) -> dict[str, Any]:
    """Plain Python values to DynamoDB's typed attribute map (None values are left out)."""
    return {
        key: _serializer.serialize(_to_decimal(value)) for key, value in values.items() if value is not None
    }


def from_item(item: Mapping[str, Any]) -> dict[str, Any]:
    return {key: _from_decimal(_deserializer.deserialize(value)) for key, value in item.items()}


def number(value: float) -> dict[str, str]:
    """A time or count as a DynamoDB number, to the hundredth (fewer digits: a smaller item)."""
    text = f"{value:.2f}".rstrip("0").rstrip(".")
    return {"N": text or "0"}


# -- item sizes, by DynamoDB's published rules ----------------------------------------------------------


def value_size(value: Mapping[str, Any]) -> int:
    """Bytes DynamoDB counts for one typed attribute value (without its name)."""
    (kind, content), *_ = value.items()
    if kind == "S":
        return len(content.encode())
    if kind == "N":
        digits = content.lstrip("-").replace(".", "").strip("0") or "0"
        return math.ceil(len(digits) / 2) + 1
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "M":
        return 3 + sum(len(name.encode()) + value_size(item) + 1 for name, item in content.items())
    if kind == "L":
        return 3 + sum(value_size(item) + 1 for item in content)
    if kind == "SS":
        return sum(len(item.encode()) for item in content)
    raise ValueError(f"no size rule for {kind}")


def item_size(item: Mapping[str, Any]) -> int:
    """Bytes of a whole item: what write units (per 1 KB) and read units (per 4 KB) are counted on."""
    return sum(len(name.encode()) + value_size(value) for name, value in item.items())


# -- pool items -------------------------------------------------------------------------------------------
# Seat (AVAIL):   p presence, s state, u busy until, i idle since, c holding call's tag, n no-answers in a
#                 row, w wrap-up seconds. An agent who takes more calls at once has a seat per further line
#                 (`<agent>~2`, …) with s, u, i and c only: presence, no-answers and wrap-up are the agent's,
#                 kept on their first seat.
# Member (ROSTER): e endpoint {k kind: "v" Voice Connector / "p" PSTN / "c" Amazon Connect / "b" browser,
#                 a address}, f proficiency {product: 1-5}, x record {product: [calls, sales]}.

_KINDS = {
    EndpointKind.VOICE_CONNECTOR: "v",
    EndpointKind.PSTN: "p",
    EndpointKind.CONNECT: "c",
    EndpointKind.BROWSER: "b",
}
_KIND_OF = {code: kind for kind, code in _KINDS.items()}


def encode_seat(seat: Seat) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "p": {"S": seat.presence.value},
        "s": {"S": seat.state.value},
        "u": number(seat.busy_until),
        "i": number(seat.idle_since),
        "n": {"N": str(seat.no_answers)},
        "w": {"N": str(seat.wrap_up_seconds)},
    }
    if seat.held_by:
        fields["c"] = {"S": seat.held_by}
    return {"M": fields}


def encode_line(seat: Seat) -> dict[str, Any]:
    """A further line of an agent (see above): what the line itself holds."""
    fields: dict[str, Any] = {
        "s": {"S": seat.state.value},
        "u": number(seat.busy_until),
        "i": number(seat.idle_since),
    }
    if seat.held_by:
        fields["c"] = {"S": seat.held_by}
    return {"M": fields}


def encode_lines(seats: Mapping[str, Seat]) -> dict[str, Any]:
    """An agent's lines (`rapport.pools.line_seats`) as availability-map entries."""
    return {
        key: encode_seat(seat) if LINE_MARK not in key else encode_line(seat) for key, seat in seats.items()
    }


def decode_seat(value: Mapping[str, Any]) -> Seat:
    fields = value["M"]
    held = fields.get("c")
    return Seat(
        presence=Presence(fields["p"]["S"]) if "p" in fields else Presence.ONLINE,
        state=AgentState(fields["s"]["S"]),
        busy_until=float(fields["u"]["N"]),
        idle_since=float(fields["i"]["N"]),
        held_by=held["S"] if held else None,
        no_answers=int(fields.get("n", {"N": "0"})["N"]),
        wrap_up_seconds=int(fields.get("w", {"N": "30"})["N"]),
    )


def decode_seats(item: Mapping[str, Any]) -> dict[str, Seat]:
    seats = {key: decode_seat(value) for key, value in item.get(SEATS, {"M": {}})["M"].items()}
    for key, seat in seats.items():
        if LINE_MARK in key and (first := seats.get(agent_of(key))) is not None:
            # The agent's presence, no-answers and wrap-up, as their first seat holds them.
            seats[key] = replace(
                seat,
                presence=first.presence,
                no_answers=first.no_answers,
                wrap_up_seconds=first.wrap_up_seconds,
            )
    return seats


def encode_member(member: Member) -> dict[str, Any]:
    return {
        "M": {
            "e": {"M": {"k": {"S": _KINDS[member.endpoint.kind]}, "a": {"S": member.endpoint.address}}},
            "f": {"M": {product: {"N": str(level)} for product, level in member.proficiency.items()}},
            "x": {
                "M": {
                    product: {"L": [{"N": str(stats.calls)}, {"N": str(stats.sales)}]}
                    for product, stats in member.stats.items()
                }
            },
        }
    }


def decode_member(value: Mapping[str, Any]) -> Member:
    fields = value["M"]
    endpoint = fields["e"]["M"]
    return Member(
        endpoint=AgentEndpoint(kind=_KIND_OF[endpoint["k"]["S"]], address=endpoint["a"]["S"]),
        proficiency={product: int(level["N"]) for product, level in fields.get("f", {"M": {}})["M"].items()},
        stats={
            product: ProductStats(calls=int(pair["L"][0]["N"]), sales=int(pair["L"][1]["N"]))
            for product, pair in fields.get("x", {"M": {}})["M"].items()
        },
    )


def decode_members(item: Mapping[str, Any]) -> dict[str, Member]:
    return {agent_id: decode_member(value) for agent_id, value in item.get(MEMBERS, {"M": {}})["M"].items()}


def pool_items(pool_id: str, agents: Sequence[Agent]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The availability and roster items of a pool holding `agents`."""
    avail = {
        "pk": {"S": pool_pk(pool_id)},
        "sk": {"S": AVAIL_SK},
        SEATS: {
            "M": {key: value for agent in agents for key, value in encode_lines(line_seats(agent)).items()}
        },
    }
    roster = {
        "pk": {"S": pool_pk(pool_id)},
        "sk": {"S": ROSTER_SK},
        MEMBERS: {"M": {agent.agent_id: encode_member(member_of(agent)) for agent in agents}},
    }
    return avail, roster


# The largest a seat can become while the agent works (held, all numbers at full width): packing counts
# every seat at this size, so no reservation ever pushes the availability item over one write unit.
_WIDEST_SEAT = Seat(
    presence=Presence.OFFLINE,
    state=AgentState.WRAP_UP,
    busy_until=9_999_999_999.99,
    idle_since=9_999_999_999.99,
    held_by="f" * 12,
    no_answers=999,
    wrap_up_seconds=3600,
)


def pool_fits(agents: Sequence[Agent]) -> bool:
    """Whether one pool can hold these agents within its byte and head-count limits."""
    if len(agents) > POOL_MAX_AGENTS:
        return False
    widest, widest_line = encode_seat(_WIDEST_SEAT), encode_line(_WIDEST_SEAT)
    avail = {
        "pk": {"S": pool_pk("999999")},
        "sk": {"S": AVAIL_SK},
        SEATS: {
            "M": {
                key: widest if line == 1 else widest_line
                for agent in agents
                for line in range(1, agent.max_concurrent_calls + 1)
                for key in [line_key(agent.agent_id, line)]
            }
        },
    }
    _, roster = pool_items("999999", agents)
    avail_bytes = item_size(avail)
    return avail_bytes <= POOL_WRITE_BYTES and avail_bytes + item_size(roster) <= POOL_READ_BYTES


def pack(agents: Sequence[Agent]) -> list[list[Agent]]:
    """Agents in pools: sorted by the product they know best, so that a product's specialists share pools,
    and packed as tightly as `pool_fits` allows. A small team fits in one pool."""
    ordered = sorted(agents, key=lambda agent: (agent.primary_product() or "~", agent.agent_id))
    pools: list[list[Agent]] = []
    for agent in ordered:
        if pools and pool_fits([*pools[-1], agent]):
            pools[-1].append(agent)
        else:
            pools.append([agent])
    return pools


# What the key already says, and what only the call's own state needs, is not stored twice.
_NOT_STORED: Any = {
    "call_id": True,
    "caller_key": True,
    "candidates": {"__all__": {"pool"}},
    "attempts": {"__all__": {"pool"}},
    "link": {"call_id"},
}


def encode_record(record: DecisionRecord) -> dict[str, Any]:
    values = record.model_dump(
        mode="json", by_alias=True, exclude_none=True, exclude_defaults=True, exclude=_NOT_STORED
    )
    values["expires_at"] = record.expires_at
    return to_item({**record_key(record.caller_key, record.call_id, record.decided_at), **values})


def decided_at(sk: str) -> float:
    """When a caller's decision record was made, from its sort key."""
    return int(sk.removeprefix(DECISION_PREFIX).split("#", 1)[0]) / 1000


def call_of(key: Mapping[str, str]) -> tuple[str | None, str]:
    """The caller key and call id a decision record's key names."""
    pk, sk = key["pk"], key["sk"]
    if pk.startswith("CALL#"):
        return None, pk.removeprefix("CALL#")
    return pk.removeprefix("CALLER#"), sk.split("#", 2)[2]


def decode_link(link: Mapping[str, Any], key: Mapping[str, str]) -> LastAgent:
    return LastAgent.model_validate({**link, "c": call_of(key)[1]})


def decode_record(item: Mapping[str, Any]) -> DecisionRecord:
    values = from_item(item)
    caller, call_id = call_of(values)
    if "link" in values:
        values["link"] = {**values["link"], "c": call_id}
    return DecisionRecord.model_validate({**values, "call": call_id, "ck": caller})
