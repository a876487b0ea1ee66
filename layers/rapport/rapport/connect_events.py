"""Amazon Connect's agent event stream, read for what rapport needs: who the agent is (their Connect user
id, the last part of `AgentARN`), when the event happened, and the presence it means.

The documented record (Connect admin guide, "Agent event streams"): `EventType` (`LOGIN`, `LOGOUT`,
`STATE_CHANGE`, `HEART_BEAT`, `CONNECTED_TO_AGENT` …), `EventTimestamp` (ISO 8601), `AgentARN`
(`…:instance/<instance id>/agent/<user id>`), and `CurrentAgentSnapshot.AgentStatus.Type`: `ROUTABLE`
(can take contacts), `CUSTOM` (a status such as a break) or `OFFLINE`.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from rapport.models import Presence

PRESENCE_OF_STATUS = {"ROUTABLE": Presence.ONLINE, "CUSTOM": Presence.AWAY, "OFFLINE": Presence.OFFLINE}
USER_ID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class AgentStatus(_Lenient):
    name: str = Field(default="", alias="Name", max_length=200)
    type: str = Field(alias="Type")


class AgentSnapshot(_Lenient):
    status: AgentStatus | None = Field(default=None, alias="AgentStatus")


class AgentEvent(_Lenient):
    event_type: str = Field(alias="EventType")
    at: datetime = Field(alias="EventTimestamp")
    agent_arn: str = Field(alias="AgentARN", pattern=rf"^arn:aws[a-z-]*:connect:.+/agent/{USER_ID}$")
    current: AgentSnapshot | None = Field(default=None, alias="CurrentAgentSnapshot")

    @property
    def user_id(self) -> str:
        return self.agent_arn.rsplit("/agent/", 1)[1]

    @property
    def presence(self) -> Presence | None:
        """The presence the event means; None when it says nothing about it."""
        if self.event_type == "LOGOUT":
            return Presence.OFFLINE
        status = self.current.status if self.current is not None else None
        return PRESENCE_OF_STATUS.get(status.type) if status is not None else None

    @property
    def reason(self) -> str:
        status = self.current.status if self.current is not None else None
        name = status.name if status is not None and status.name else self.event_type.lower()
        return f"Amazon Connect: {name}"
