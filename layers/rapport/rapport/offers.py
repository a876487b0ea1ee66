"""Calls offered to browser agents, and the agent's answer (README, "Browser agents").

The SIP media application holds the caller and writes the offer (`rapport.calls.CallFlow`). The agent's
page accepts or declines it here:

- accept claims the offer (a conditional delete: only one answer counts), creates a Chime SDK meeting
  with two audio-only attendees, the caller's and the agent's, in this Region, and asks the SIP media
  application to join the caller into it (`UpdateSipMediaApplicationCall`, which the router answers with
  `JoinChimeMeeting`). The page gets the meeting and its own attendee, to join with amazon-chime-sdk-js.
- decline claims the offer and tells the SIP media application, which moves on to the next candidate.

If the call is gone by then (the caller hung up), the meeting is deleted again and the answer says so.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import BaseModel

from rapport.agents import Conflict, NotFound
from rapport.models import Offer
from rapport.store import ConditionFailed
from rapport.store.agents import AgentStore
from rapport.store.layout import OFFER_PREFIX, from_item, offer_key, to_item

AUDIO_ONLY = {"Audio": "SendReceive", "Video": "None", "Content": "None"}

# The page waits on these answers: short timeouts, one retry.
CHIME_CONFIG = Config(
    connect_timeout=1.0, read_timeout=3.0, retries={"total_max_attempts": 2, "mode": "standard"}
)


def chime_client(service: str) -> Any:
    """A `chime-sdk-meetings` or `chime-sdk-voice` client for offers, in this Region."""
    return boto3.session.Session().client(service, config=CHIME_CONFIG)  # type: ignore[call-overload]


class OfferList(BaseModel):
    offers: list[Offer]


class Acceptance(BaseModel):
    """What the page joins the call with: the meeting and its own attendee (the CreateMeetingWithAttendees
    shapes, as amazon-chime-sdk-js's MeetingSessionConfiguration takes them)."""

    call_id: str
    meeting: dict[str, Any]
    attendee: dict[str, Any]


class Declined(BaseModel):
    call_id: str
    declined: bool = True


class OfferStore(AgentStore):
    def offers(self, agent_id: str) -> list[Offer]:
        response = self._call(
            "query",
            None,
            TableName=self.table_name,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": f"{OFFER_PREFIX}{agent_id}"}},
            ConsistentRead=True,
        )
        return [Offer.model_validate(from_item(item)) for item in response.get("Items", [])]

    def claim(self, agent_id: str, call_id: str, now: float) -> Offer:
        """Take the offer away, if it is still there and has not run out; raises `ConditionFailed` else."""
        response = self._call(
            "delete_item",
            None,
            TableName=self.table_name,
            Key=to_item(offer_key(agent_id, call_id)),
            ConditionExpression="attribute_exists(pk) AND expires_at > :now",
            ExpressionAttributeValues={":now": {"N": str(now)}},
            ReturnValues="ALL_OLD",
        )
        return Offer.model_validate(from_item(response["Attributes"]))


class OfferDesk:
    """Offers as a browser agent's page sees and answers them."""

    def __init__(
        self,
        store: OfferStore,
        meetings: Callable[[], Any],
        voice: Callable[[], Any],
        sip_media_application_id: str,
        region: str,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._meetings = meetings
        self._voice = voice
        self._sma = sip_media_application_id
        self._region = region
        self._clock = clock

    def offers(self, agent_id: str) -> OfferList:
        now = self._clock()
        return OfferList(offers=[o for o in self._store.offers(agent_id) if o.expires_at > now])

    def _claim(self, agent_id: str, call_id: str) -> Offer:
        if not self._sma:
            raise Conflict("browser calls are not set up here (no SIP media application is named)")
        try:
            return self._store.claim(agent_id, call_id, self._clock())
        except ConditionFailed as gone:
            raise NotFound(f"no offer of call {call_id} to {agent_id} (answered, or run out)") from gone

    def accept(self, agent_id: str, call_id: str) -> Acceptance:
        offer = self._claim(agent_id, call_id)
        meetings = self._meetings()
        try:
            made = meetings.create_meeting_with_attendees(
                ClientRequestToken=call_id,
                MediaRegion=self._region,
                ExternalMeetingId=call_id,
                Attendees=[
                    {"ExternalUserId": f"caller-{call_id}"[:64], "Capabilities": AUDIO_ONLY},
                    {"ExternalUserId": f"agent-{offer.agent_id}", "Capabilities": AUDIO_ONLY},
                ],
            )
        except (ClientError, BotoCoreError) as error:
            raise Conflict(f"the meeting could not be made: {error}") from error
        meeting = made["Meeting"]
        caller, agent = made["Attendees"][0], made["Attendees"][1]
        try:
            self._voice().update_sip_media_application_call(
                SipMediaApplicationId=self._sma,
                TransactionId=call_id,
                Arguments={
                    "rp_offer": "accept",
                    "rp_agent": offer.agent_id,
                    "JoinToken": caller["JoinToken"],
                    "MeetingId": meeting["MeetingId"],
                },
            )
        except (ClientError, BotoCoreError) as error:
            # With nobody in it, the meeting would end by itself after five minutes anyway.
            with contextlib.suppress(ClientError, BotoCoreError):
                meetings.delete_meeting(MeetingId=meeting["MeetingId"])
            raise Conflict(f"the call could not be joined (the caller may have hung up): {error}") from error
        return Acceptance(call_id=call_id, meeting=meeting, attendee=agent)

    def decline(self, agent_id: str, call_id: str) -> Declined:
        offer = self._claim(agent_id, call_id)
        try:
            self._voice().update_sip_media_application_call(
                SipMediaApplicationId=self._sma,
                TransactionId=call_id,
                Arguments={"rp_offer": "decline", "rp_agent": offer.agent_id},
            )
        except (ClientError, BotoCoreError) as error:
            # The hold audio runs out on its own and the call moves on then: the decline only hurries it.
            raise Conflict(
                f"the call could not be told (it moves on when the offer runs out): {error}"
            ) from error
        return Declined(call_id=call_id)
