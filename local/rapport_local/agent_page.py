"""`rapport agent-page`: the agent page, served locally with everything behind it.

DynamoDB Local holds a scenario's roster (the demo's by default, whose browser agent is potsdam-13). The
page's files and the WebSocket API run on loopback (`rapport_local.page_gateway`), offers reach the page
from the table's stream, Chime is stood in for (`rapport_local.chime`), and a local SIP media application
plays the caller's side: press Enter in the terminal and a scenario caller rings, hears hold audio while
the page is offered the call, and is joined when the agent accepts. Meetings made locally carry no audio:
the page joins a stand-in session (`static/local-session.js`), served only here.
"""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from typing import Any

from rapport.models import EndpointKind
from rapport.page_tokens import issue
from rapport.settings import DEVELOPMENT_PAGE_TOKEN_KEY

from rapport_local import PROJECT_DIR
from rapport_local.chime import LocalChime
from rapport_local.engine import local_environment
from rapport_local.lambda_runner import LocalFunction
from rapport_local.page_gateway import INVOKE_LOCK, PageFunctions, PageGateway, StreamPusher
from rapport_local.scenario import ScenarioPlayer, mask
from rapport_local.sma_driver import SimulatedCall, actions_of

SITE = PROJECT_DIR / "agent-page"


class LocalDesk:
    """The page's backend and a local SIP media application, over a loaded scenario."""

    def __init__(
        self,
        player: ScenarioPlayer,
        endpoint: str,
        table: str,
        port: int = 0,
        grace_seconds: float = 10.0,
        say: Callable[[str], None] = print,
    ) -> None:
        self.player = player
        self.say = say
        self._lock = INVOKE_LOCK  # the SIP media application's events and the page's, one at a time

        def function(logical_id: str, **environment: str) -> LocalFunction:
            return LocalFunction(
                logical_id,
                parameters=player.scenario.parameters,
                resources={"Table": table, "CallerKeySecret": ""},
                environment={**local_environment(endpoint), "POWERTOOLS_LOG_LEVEL": "ERROR", **environment},
            )

        functions = PageFunctions(
            function("AgentPageAuthorizerFunction"),
            function("AgentPageFunction"),
            function("AgentPageGraceFunction"),
        )
        self.chime = LocalChime()
        with functions.routes.environment_applied():
            services = functions.routes.module.services()
            self.chime.attach(services.meetings, services.voice)
        with player.function.environment_applied():
            self.chime.attach(player.function.module.services().meetings)
        self.chime.on_call_update(lambda call_id, arguments: self._soon(self._updated, call_id, arguments))
        self.chime.on_meeting_ended(lambda meeting_id: self._soon(self._meeting_ended, meeting_id))
        self.gateway = PageGateway(
            functions,
            site=SITE,
            local_media=True,
            grace_seconds=grace_seconds,
            http_port=port,
            socket_port=port + 1 if port else 0,
        )
        self.gateway.__enter__()
        push = function("AgentPagePushFunction", RAPPORT_PAGE_SOCKET_CALLBACK_URL=self.gateway.http_url)
        self.pusher = StreamPusher(endpoint, table, push).__enter__()
        self.calls: dict[str, SimulatedCall] = {}
        self.on_hold: dict[str, dict[str, Any]] = {}
        self.in_meeting: dict[str, str] = {}
        self._callers = itertools.cycle([c.number for c in player.scenario.callers] or ["+12025550107"])
        self._names = {c.number: c.name for c in player.scenario.callers}
        self.ring_seconds = int(player.function.environment.get("RAPPORT_RING_TIMEOUT_SECONDS", "20"))

    def links(self, hours: float = 10) -> dict[str, str]:
        """A page link for each browser agent on the roster."""
        expires = int(time.time() + hours * 3600)
        return {
            agent.agent_id: (
                f"{self.gateway.http_url}/#socket={self.gateway.socket_url}"
                f"&token={issue(agent.agent_id, expires, DEVELOPMENT_PAGE_TOKEN_KEY)}"
            )
            for agent in self.player.store.agents()
            if agent.endpoint.kind is EndpointKind.BROWSER
        }

    def close(self) -> None:
        self.pusher.__exit__()
        self.gateway.stop()

    # -- the caller's side ----------------------------------------------------------------------------------

    def _invoke(self, event: dict[str, Any]) -> Any:
        self.player.clock = time.time()
        return self.player.invoke(event)

    def _soon(self, step: Callable[..., None], *args: Any) -> None:
        """As the SIP media application does: after the API call that asked for it has returned."""
        timer = threading.Timer(0.2, self._guarded, args=(step, *args))
        timer.daemon = True
        timer.start()

    def _guarded(self, step: Callable[..., None], *args: Any) -> None:
        with self._lock:
            try:
                step(*args)
            except Exception as error:  # noqa: BLE001 - a local stand-in reports and goes on
                self.say(f"  ! {type(error).__name__}: {error}")

    def ring(self, number: str | None = None) -> str:
        """A call from the next scenario caller (or `number`); its id."""
        number = number or next(self._callers)
        with self._lock:
            call = SimulatedCall(self._invoke, number)
            self.calls[call.transaction_id] = call
            who = self._names.get(number) or mask(number)
            self.say(f"call {call.transaction_id[:8]} from {who}")
            self._follow(call, call.new_inbound())
        return call.transaction_id

    def _follow(self, call: SimulatedCall, response: dict[str, Any]) -> None:
        call_id = call.transaction_id
        if hold := actions_of(response, "PlayAudio"):
            self.on_hold[call_id] = hold[0]
            self.say(f"  on hold: offered in the agent page ({self.ring_seconds} s to accept)")
            timer = threading.Timer(self.ring_seconds, self._guarded, args=(self._ran_out, call_id))
            timer.daemon = True
            timer.start()
        elif bridge := actions_of(response, "CallAndBridge"):
            target = bridge[0]["Endpoints"][0]["Uri"]
            self.say(f"  rings {target} (no browser agent took it); answered, and the caller hangs up")
            call.bridge_answered(bridge[0])
            call.hangup("LEG-A")
        elif actions_of(response, "Speak"):
            self.say("  nobody free: the caller hears the closing message")
            call.hangup("LEG-A")

    def _ran_out(self, call_id: str) -> None:
        hold = self.on_hold.pop(call_id, None)
        if hold is not None:
            self.say(f"call {call_id[:8]}: the offer ran out; the call moves on")
            self._follow(self.calls[call_id], self.calls[call_id].audio_played(hold))

    def _updated(self, call_id: str, arguments: dict[str, str]) -> None:
        call = self.calls.get(call_id)
        if call is None or self.on_hold.pop(call_id, None) is None:
            return
        response = call.call_update(arguments)
        if joins := actions_of(response, "JoinChimeMeeting"):
            call.meeting_joined(joins[0])
            self.in_meeting[joins[0]["MeetingId"]] = call_id
            self.say(f"call {call_id[:8]}: accepted; the caller joined meeting {joins[0]['MeetingId'][:8]}…")
            return
        self.say(f"call {call_id[:8]}: declined; the call moves on")
        self._follow(call, response)

    def _meeting_ended(self, meeting_id: str) -> None:
        call_id = self.in_meeting.pop(meeting_id, None)
        if call_id is not None:
            self.calls[call_id].hangup("LEG-B")
            self.say(f"call {call_id[:8]}: the agent hung up; so did the caller's leg")

    def caller_hangs_up(self) -> str | None:
        """The newest caller in a meeting hangs up (the router ends the meeting: the page sees it end)."""
        with self._lock:
            if not self.in_meeting:
                return None
            meeting_id, call_id = list(self.in_meeting.items())[-1]
            del self.in_meeting[meeting_id]
            self.calls[call_id].hangup("LEG-A")
            self.say(f"call {call_id[:8]}: the caller hung up; the meeting ended")
            return call_id
