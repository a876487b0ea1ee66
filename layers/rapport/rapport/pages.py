"""Browser agents' pages, as the WebSocket API sees them (README, "Browser agents").

An agent's page opens a WebSocket with a page token (`rapport.page_tokens`). While it is open:

- the agent is available (`$connect`); when the last page closes, they go offline after a grace period
  (`$disconnect` queues a check that runs later: a page that reconnects within it keeps them available);
- each call offered to them is pushed to every page they have open (from the table's stream, so the
  router's hot path writes one item and nothing more);
- the page accepts, declines and hangs up through its messages, answered on the same connection.

The table keeps, per agent, one item per open page and one per meeting they are in:

    PAGE#<agent-id> / CONN#<connection-id>   connected_at               TTL: 3 h (API Gateway closes at 2)
    PAGE#<agent-id> / MEETING#<call-id>      meeting_id                 TTL: 4 h

A meeting the agent hangs up is looked up here, so a page can end only its own agent's meetings.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel, Field, ValidationError

from rapport import SERVICE_NAME
from rapport.agents import Conflict, NotFound
from rapport.models import EndpointKind, Offer, Presence
from rapport.offers import OfferDesk
from rapport.page_tokens import issue
from rapport.signals import problems
from rapport.store import ConditionFailed
from rapport.store.agents import AgentStore
from rapport.store.layout import to_item

logger = Logger(service=SERVICE_NAME, child=True)

PAGE_PREFIX = "PAGE#"
CONN_PREFIX = "CONN#"
MEETING_PREFIX = "MEETING#"
CONNECTION_TTL_SECONDS = 3 * 3600
MEETING_TTL_SECONDS = 4 * 3600


def page_pk(agent_id: str) -> str:
    return f"{PAGE_PREFIX}{agent_id}"


class PageMessage(BaseModel):
    """What a page sends: `{"action": "accept" | "decline" | "hangup", "call_id": …}` or
    `{"action": "offers" | "ping"}`."""

    action: str = Field(max_length=20)
    call_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9-]{1,64}$")


class PageStore(AgentStore):
    def connected(self, agent_id: str, connection_id: str, now: float) -> None:
        self._call(
            "put_item",
            None,
            TableName=self.table_name,
            Item=to_item(
                {
                    "pk": page_pk(agent_id),
                    "sk": f"{CONN_PREFIX}{connection_id}",
                    "connected_at": now,
                    "expires_at": int(now) + CONNECTION_TTL_SECONDS,
                }
            ),
        )

    def disconnected(self, agent_id: str, connection_id: str) -> None:
        self._call(
            "delete_item",
            None,
            TableName=self.table_name,
            Key=to_item({"pk": page_pk(agent_id), "sk": f"{CONN_PREFIX}{connection_id}"}),
        )

    def connections(self, agent_id: str, now: float) -> list[str]:
        response = self._call(
            "query",
            None,
            TableName=self.table_name,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :conn)",
            FilterExpression="expires_at > :now",
            ExpressionAttributeValues=to_item(
                {":pk": page_pk(agent_id), ":conn": CONN_PREFIX, ":now": int(now)}
            ),
            ConsistentRead=True,
        )
        return [item["sk"]["S"].removeprefix(CONN_PREFIX) for item in response.get("Items", [])]

    def joined(self, agent_id: str, call_id: str, meeting_id: str, now: float) -> None:
        self._call(
            "put_item",
            None,
            TableName=self.table_name,
            Item=to_item(
                {
                    "pk": page_pk(agent_id),
                    "sk": f"{MEETING_PREFIX}{call_id}",
                    "meeting_id": meeting_id,
                    "expires_at": int(now) + MEETING_TTL_SECONDS,
                }
            ),
        )

    def left(self, agent_id: str, call_id: str) -> str:
        """Forget the agent's meeting of this call; its id, or `ConditionFailed` if they are in none."""
        response = self._call(
            "delete_item",
            None,
            TableName=self.table_name,
            Key=to_item({"pk": page_pk(agent_id), "sk": f"{MEETING_PREFIX}{call_id}"}),
            ConditionExpression="attribute_exists(pk)",
            ReturnValues="ALL_OLD",
        )
        return str(response["Attributes"]["meeting_id"]["S"])


class PageLink(BaseModel):
    """What an agent's page connects with: its token (until `expires_at`), and where."""

    agent_id: str
    token: str
    expires_at: float
    socket_url: str
    """The WebSocket to open, `?token=` appended by the page."""


def page_link(
    store: AgentStore, agent_id: str, secret: str | None, now: float, hours: float, socket_url: str
) -> PageLink:
    """A page token for a browser agent (raises `NotFound` for anyone else, `Conflict` without a key)."""
    agent = store.stored(agent_id)
    if agent is None:
        raise NotFound(agent_id)
    if agent.endpoint.kind is not EndpointKind.BROWSER:
        raise Conflict(f"{agent_id} takes calls on {agent.endpoint.kind.value}, not in the agent page")
    if secret is None:
        raise Conflict("no page links for now: the page-token secret cannot be read (ask again)")
    expires_at = int(now + hours * 3600)
    return PageLink(
        agent_id=agent_id,
        token=issue(agent_id, expires_at, secret),
        expires_at=expires_at,
        socket_url=socket_url,
    )


Push = Callable[[str, Mapping[str, Any]], bool]
"""Send a message to one connection; False when the connection is gone."""


class AgentPages:
    """The WebSocket API's operations, bound to the table, the offer desk and a way to push."""

    def __init__(
        self,
        store: PageStore,
        desk: OfferDesk,
        meetings: Callable[[], Any],
        push: Push,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._desk = desk
        self._meetings = meetings
        self._push = push
        self._clock = clock

    # -- the connection ---------------------------------------------------------------------------------

    def connect(self, agent_id: str, connection_id: str) -> None:
        """A page opened: only a browser agent's, and it makes them available. Raises `NotFound`."""
        agent = self._store.stored(agent_id)
        if agent is None or agent.endpoint.kind is not EndpointKind.BROWSER:
            raise NotFound(f"no browser agent {agent_id}")
        now = self._clock()
        self._store.connected(agent_id, connection_id, now)
        try:
            self._store.set_presence(agent, Presence.ONLINE, "agent page connected", now)
        except ConditionFailed as gone:
            raise NotFound(f"no browser agent {agent_id}") from gone

    def disconnect(self, agent_id: str, connection_id: str) -> None:
        self._store.disconnected(agent_id, connection_id)

    def after_grace(self, agent_id: str) -> bool:
        """The grace period after a page closed is over: offline, unless a page is open again. Whether
        the agent was set offline."""
        if self._store.connections(agent_id, self._clock()):
            return False
        agent = self._store.stored(agent_id)
        if agent is None or agent.presence is Presence.OFFLINE:
            return False
        try:
            self._store.set_presence(agent, Presence.OFFLINE, "agent page closed", self._clock())
        except ConditionFailed:
            return False
        return True

    # -- messages from the page -------------------------------------------------------------------------

    def message(self, agent_id: str, body: str | None) -> dict[str, Any]:
        """Answer one message; the answer goes back on the same connection. Never raises for the page's
        mistakes: they are answered with `{"type": "error", "error": …}`."""
        try:
            message = PageMessage.model_validate_json(body or "{}")
        except ValidationError as error:
            return {"type": "error", "error": f"not a page message ({'; '.join(problems(error))})"}
        call_id = message.call_id
        try:
            if message.action == "ping":
                return {"type": "pong"}
            if message.action == "offers":
                listed = self._desk.offers(agent_id).offers
                return {"type": "offers", "offers": [offer_message(o)["offer"] for o in listed]}
            if message.action not in ("accept", "decline", "hangup"):
                return {"type": "error", "error": f"unknown action {message.action[:20]!r}"}
            if call_id is None:
                return {"type": "error", "error": f"{message.action} needs a call_id"}
            if message.action == "accept":
                accepted = self._desk.accept(agent_id, call_id)
                self._store.joined(agent_id, call_id, str(accepted.meeting["MeetingId"]), self._clock())
                return {"type": "accepted", **accepted.model_dump(mode="json")}
            if message.action == "decline":
                self._desk.decline(agent_id, call_id)
                return {"type": "declined", "call_id": call_id}
            if message.action == "hangup":
                self.hang_up(agent_id, call_id)
                return {"type": "ended", "call_id": call_id}
        except (NotFound, Conflict) as error:
            return {"type": "error", "call_id": call_id, "error": str(error)}
        return {"type": "error", "error": f"unknown action {message.action[:20]!r}"}

    def hang_up(self, agent_id: str, call_id: str) -> None:
        """The agent hangs up: their meeting ends, and with it the caller's leg (the SIP media application
        hears the meeting leg drop and hangs up the caller)."""
        try:
            meeting_id = self._store.left(agent_id, call_id)
        except ConditionFailed as none:
            raise NotFound(f"{agent_id} is in no meeting of call {call_id}") from none
        with contextlib.suppress(ClientError, BotoCoreError):
            # Already gone (the caller hung up first): the same end.
            self._meetings().delete_meeting(MeetingId=meeting_id)

    # -- offers pushed ----------------------------------------------------------------------------------

    def push_offers(self, offers: Iterable[Offer]) -> int:
        """Push each offer to every page its agent has open; pages found gone are forgotten. How many
        messages were sent."""
        sent = 0
        for offer in offers:
            for connection_id in self._store.connections(offer.agent_id, self._clock()):
                if self._push(connection_id, offer_message(offer)):
                    sent += 1
                else:
                    self._store.disconnected(offer.agent_id, connection_id)
        return sent

    def push_ended(self, ended: Iterable[tuple[str, str]]) -> int:
        """Tell each page of the agent that an offer is no longer open (`(agent id, call id)` pairs)."""
        sent = 0
        for agent_id, call_id in ended:
            for connection_id in self._store.connections(agent_id, self._clock()):
                if self._push(connection_id, {"type": "withdrawn", "call_id": call_id}):
                    sent += 1
                else:
                    self._store.disconnected(agent_id, connection_id)
        return sent


def offer_message(offer: Offer) -> dict[str, Any]:
    """What a page is shown of an offer: never the caller's number (the offer holds none)."""
    return {"type": "offer", "offer": json.loads(offer.model_dump_json())}
