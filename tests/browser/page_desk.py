"""What both browsers' tests of the agent page share: the stub meeting session the page is given (no Chime
media runs here), and the desk behind the page (table, router, page functions, the local stand-in for API
Gateway and the table's stream)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from botocore.stub import Stubber
from builders import agent, interest, profile
from rapport.models import AgentEndpoint, EndpointKind, Presence
from rapport.numbers import caller_key
from rapport.page_tokens import issue
from rapport.settings import DEVELOPMENT_PAGE_TOKEN_KEY, DEVELOPMENT_PEPPER
from rapport.store.dynamodb import DynamoStore
from rapport_local.engine import local_environment
from rapport_local.lambda_runner import LocalFunction
from rapport_local.page_gateway import PageFunctions, PageGateway, StreamPusher, locked
from rapport_local.sma_driver import SimulatedCall, actions_of

PROJECT_DIR = Path(__file__).resolve().parents[2]
SITE = PROJECT_DIR / "agent-page"
SCREENSHOTS = PROJECT_DIR / "build" / "screenshots"
CALLER = "+12025550107"
RING_SECONDS = 4

# The stub meeting session: records what the page asks of it; "starts" as soon as asked.
STUB_SESSION = """
window.stubbed = {calls: [], configuration: null};
window.rapportMeetingSession = (configuration, logger) => {
  window.stubbed.configuration = {
    meetingId: configuration.meetingId,
    attendeeId: configuration.credentials.attendeeId,
    externalUserId: configuration.credentials.externalUserId,
    joinToken: configuration.credentials.joinToken,
    signalingURL: configuration.urls.signalingURL,
  };
  const observers = [];
  const record = (name) => (...args) => { window.stubbed.calls.push(name); };
  return {
    configuration,
    audioVideo: {
      addObserver: (o) => observers.push(o),
      realtimeSubscribeToAttendeeIdPresence: record("presence"),
      listAudioInputDevices: async () => [{deviceId: "fake-microphone", label: "Fake microphone"}],
      startAudioInput: async (id) => { window.stubbed.calls.push("startAudioInput:" + id); },
      bindAudioElement: async () => { window.stubbed.calls.push("bindAudioElement"); },
      start: () => {
        window.stubbed.calls.push("start");
        setTimeout(() => observers.forEach((o) => o.audioVideoDidStart && o.audioVideoDidStart()), 50);
      },
      stop: () => {
        window.stubbed.calls.push("stop");
        observers.forEach((o) => o.audioVideoDidStop && o.audioVideoDidStop({}));
      },
      realtimeMuteLocalAudio: record("mute"),
      realtimeUnmuteLocalAudio: record("unmute"),
    },
  };
};
"""


class Desk:
    """Everything behind the page: table, router, page functions, gateway and stream."""

    def __init__(self, endpoint: str, table: str, store: DynamoStore, router: LocalFunction) -> None:
        now = time.time()
        browser_endpoint = AgentEndpoint(kind=EndpointKind.BROWSER, address="anna")
        store.put_agent(
            agent(
                "anna",
                now - 900,
                endpoint=browser_endpoint,
                presence=Presence.OFFLINE,
                proficiency={"x200-headphones": 5},
            )
        )
        store.put_agent(agent("desk-01", now - 300))
        # The caller agreed to interest routing and showed interest in the X200 headphones.
        store.put_caller(
            caller_key(CALLER, DEVELOPMENT_PEPPER),
            profile(consents={"interest_routing": True}, at=now - 86400),
            [interest("x200-headphones", 0.8, now - 3600)],
        )
        self.store = store
        self.router = router

        def function(logical_id: str, **environment: str) -> LocalFunction:
            return LocalFunction(
                logical_id,
                resources={"Table": table, "CallerKeySecret": ""},
                environment={**local_environment(endpoint), **environment},
            )

        self.functions = PageFunctions(
            function("AgentPageAuthorizerFunction"),
            function("AgentPageFunction"),
            function("AgentPageGraceFunction"),
        )
        self.gateway = PageGateway(self.functions, site=SITE).__enter__()
        push = function("AgentPagePushFunction", RAPPORT_PAGE_SOCKET_CALLBACK_URL=self.gateway.http_url)
        self.pusher = StreamPusher(endpoint, table, push, poll_seconds=0.1).__enter__()
        with self.functions.routes.environment_applied():
            services = self.functions.routes.module.services()
            self.meetings, self.voice = services.meetings, services.voice
        self._lock = threading.Lock()

    def link(self) -> str:
        token = issue("anna", int(time.time()) + 3600, DEVELOPMENT_PAGE_TOKEN_KEY)
        return f"{self.gateway.http_url}/index.html#socket={self.gateway.socket_url}&token={token}"

    def call(self) -> tuple[SimulatedCall, dict[str, Any]]:
        call = SimulatedCall(locked(self.router), CALLER)
        (hold,) = actions_of(call.new_inbound(), "PlayAudio")
        return call, hold

    def close(self) -> None:
        self.pusher.__exit__()
        self.gateway.stop()


def settled(stub: Stubber, seconds: float = 5.0) -> None:
    """Wait until the stub has answered everything queued (the page's message is handled on the
    gateway's thread)."""
    deadline = time.time() + seconds
    while True:
        try:
            stub.assert_no_pending_responses()
            return
        except AssertionError:
            if time.time() > deadline:
                raise
            time.sleep(0.05)
