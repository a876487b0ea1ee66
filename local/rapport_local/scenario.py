"""Scenario files: agents, callers and calls, played through the real SMA handler against DynamoDB Local.

The player takes the SIP media application's part: it sends each call's events (NEW_INBOUND_CALL, then
ACTION_FAILED or ACTION_SUCCESSFUL for every bridge, then HANGUP) in the order Chime would, checks every
response against the SMA's contract and compares the outcome with the call's expectations.
The format is documented in the README ("Scenario files").
"""

from __future__ import annotations

import contextlib
import io
import json
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal
from unittest import mock

from pydantic import BaseModel, ConfigDict, Field, field_validator
from rapport.catalog import CatalogFile
from rapport.explain import record_reasons
from rapport.models import (
    Agent,
    AttemptOutcome,
    CallerProfile,
    Consent,
    DecisionRecord,
    EndpointKind,
    Interest,
    Language,
    LastAgent,
    Outcome,
    Presence,
    PrivacyFacts,
    Product,
    RoutingMode,
)
from rapport.numbers import caller_key, is_e164
from rapport.page_tokens import issue
from rapport.rights import Purpose
from rapport.scoring import DAY
from rapport.settings import DEVELOPMENT_PAGE_TOKEN_KEY, DEVELOPMENT_PEPPER
from rapport.signals import ProductInterest, Source
from rapport.store.agents import AgentStore
from rapport.store.dynamodb import DynamoStore

from rapport_local import PROJECT_DIR
from rapport_local.chime import LocalChime
from rapport_local.emf import MetricTotals
from rapport_local.engine import local_client, local_environment
from rapport_local.http_api import http_request
from rapport_local.lambda_runner import LocalFunction
from rapport_local.page_gateway import PageFunctions, PageSession
from rapport_local.sma_contract import response_problems
from rapport_local.sma_driver import LOCAL_SMA_ID, SimulatedCall, actions_of
from rapport_local.sqs import sqs_record

TABLE_NAME = "rapport-local"
HOLD_AUDIO_BUCKET = "rapport-local-hold-audio"
"""The hold audio's bucket, as the router names it to the local SIP media application (no S3 here)."""
CONNECT_SAMPLE = PROJECT_DIR / "events" / "connect" / "inbound_voice.json"
RING_SECONDS = 6.0
MAX_STEPS = 12


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class ScenarioAgent(Agent):
    """An agent as the scenario describes it: the stored fields, with idle time in minutes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    idle_minutes: float = 0.0

    def agent(self, start: float) -> Agent:
        idle_since = start - self.idle_minutes * 60 if self.idle_minutes else self.idle_since
        return Agent.model_validate({**self.model_dump(exclude={"idle_minutes"}), "idle_since": idle_since})


class ScenarioInterest(_Strict):
    product: str
    score: float = Field(ge=0, le=1)
    source: str = "social"
    days_ago: float = Field(default=0.0, ge=0)


class ScenarioCaller(_Strict):
    name: str = ""
    number: str
    consents: dict[str, bool] = Field(default_factory=dict)
    objected: bool = False
    interests: list[ScenarioInterest] = Field(default_factory=list)
    last_agent: str | None = None
    last_call_days_ago: float = Field(default=7.0, ge=0)

    @field_validator("number")
    @classmethod
    def _e164(cls, value: str) -> str:
        if not is_e164(value):
            raise ValueError("caller numbers must be E.164, such as +4930555010")
        return value


class ScenarioSignal(_Strict):
    """A signal about one of the callers, ingested through SignalsFunction before the calls are played."""

    from_: str = Field(alias="from")
    source: Source = Source.SOCIAL
    text: str | None = None
    language: Language | None = None
    products: list[ProductInterest] | None = None
    days_ago: float = Field(default=0.0, ge=0)

    def as_sent(self, signal_id: str, start: float) -> dict[str, Any]:
        """The signal as a producer would send it."""
        observed = datetime.fromtimestamp(start - self.days_ago * DAY, tz=UTC).isoformat()
        sent: dict[str, Any] = {
            "signal_id": signal_id,
            "caller": self.from_,
            "source": self.source.value,
            "observed_at": observed,
        }
        if self.text is not None:
            sent["text"] = self.text
        if self.language is not None:
            sent["language"] = self.language
        if self.products is not None:
            sent["products"] = [product.model_dump() for product in self.products]
        return sent


class Expectation(_Strict):
    agent: str | None = None
    mode: RoutingMode | None = None
    attempts: int | None = None
    route: Literal["agent", "fallback_number", "message", "queue"] | None = None
    """`queue`: an Amazon Connect contact for which rapport named no agent (the queue picks one)."""
    asked: bool | None = None
    """Whether the caller was asked in the call if their data may be used."""


class CallOutcome(_Strict):
    product: str
    sale: bool
    value: float | None = None


class ScenarioCall(_Strict):
    name: str
    from_: str = Field(alias="from")
    to: str = "+18005550100"
    channel: Literal["sma", "connect"] = "sma"
    """`connect`: played as an Amazon Connect contact through ConnectRouterFunction (nobody is reserved,
    nobody rings: the answer names the agent, or leaves the choice to the queue)."""
    sip_headers: dict[str, str] = Field(default_factory=dict)
    after_minutes: float = Field(default=0.0, ge=0)
    unanswered: list[str] = Field(default_factory=list)
    hangup: Literal["caller", "agent"] = "caller"
    talk_seconds: float = Field(default=180.0, ge=0)
    press: str | None = None
    """The key the caller presses if asked whether their data may be used (none: no answer)."""
    outcome: CallOutcome | None = None
    """What the call ended in, posted through AgentsFunction (as a CRM would) for the agent who took it."""
    expect: Expectation | None = None


class PrivacyStep(_Strict):
    """A caller's privacy request between two calls, sent through PrivacyFunction's HTTP API."""

    name: str
    privacy: Literal["consent", "withdraw", "object", "erase"]
    number: str
    purposes: list[Purpose] = Field(default_factory=lambda: [Purpose.INTEREST_ROUTING, Purpose.KNOWN_AGENT])
    source: str = "scenario"
    after_minutes: float = Field(default=0.0, ge=0)

    def request(self) -> tuple[str, dict[str, Any]]:
        """The path and body the step sends."""
        if self.privacy in ("consent", "withdraw"):
            granted = self.privacy == "consent"
            body = {
                "number": self.number,
                "purposes": self.purposes,
                "granted": granted,
                "source": self.source,
            }
            return "/privacy/consent", body
        if self.privacy == "object":
            return "/privacy/objection", {"number": self.number, "source": self.source}
        return "/privacy/erasure", {"number": self.number}

    def summary(self, answer: dict[str, Any]) -> list[str]:
        """What the step did, in a line or two a person reads."""
        if self.privacy == "erase":
            deleted = ", ".join(f"{kind.replace('_', ' ')} {n}" for kind, n in answer["deleted"].items() if n)
            return [f"erased: {deleted or 'nothing was held'} (receipt {answer['receipt_id'][:8]}…)"]
        if self.privacy == "object":
            dropped = sum(answer.get("deleted", {}).values())
            return [f"objection recorded ({answer['outcome']}); {dropped} derived item(s) deleted at once"]
        verb = "given" if self.privacy == "consent" else "withdrawn"
        return [f"consent {verb} for {', '.join(p.value for p in self.purposes)} ({answer['outcome']})"]


class AgentStep(_Strict):
    """An agent's status changed between two calls, through AgentsFunction's HTTP API."""

    name: str
    agent: str
    status: Literal["available", "away", "offline"]
    reason: str = ""
    after_minutes: float = Field(default=0.0, ge=0)


class Scenario(_Strict):
    description: str = ""
    parameters: dict[str, str] = Field(default_factory=dict)
    catalog: list[Product] = Field(default_factory=list)
    """The products, or (in the file) the name of a catalog file beside it."""
    agents: list[ScenarioAgent] = Field(default_factory=list)
    callers: list[ScenarioCaller] = Field(default_factory=list)
    signals: list[ScenarioSignal] = Field(default_factory=list)
    calls: list[ScenarioCall | PrivacyStep | AgentStep] = Field(default_factory=list)
    """Calls, and the privacy and agent steps between them, in order."""

    @classmethod
    def load(cls, path: Path) -> Scenario:
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict) and isinstance(data.get("catalog"), str):
            data["catalog"] = CatalogFile.load(path.parent / data["catalog"]).products
        return cls.model_validate(data)


def connected_mode(attributes: dict[str, str]) -> str | None:
    """How the agent a call is connected to was chosen, from the state the call carries."""
    stored = attributes.get("rp_record")
    if not stored:
        return None
    record = DecisionRecord.model_validate_json(stored)
    connected = [a for a in record.attempts if a.outcome is AttemptOutcome.CONNECTED]
    return connected[-1].mode.value if connected else None


def mask(number: str) -> str:
    """A number as it may be shown on screen: country code and last two digits only."""
    return f"{number[:3]}…{number[-2:]}" if len(number) > 6 else "…"


@dataclass
class CallResult:
    name: str
    caller: str
    route: str = "none"
    agent: str | None = None
    mode: str | None = None
    rang: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    handler_ms: list[float] = field(default_factory=list)
    asked: bool = False
    steps: list[str] = field(default_factory=list)
    """What happened in a browser agent's page (offered, accepted, joined, hung up)."""

    @property
    def attempts(self) -> int:
        return len(self.rang)

    @property
    def ok(self) -> bool:
        return not self.failures

    def as_json(self) -> dict[str, Any]:
        return {
            "call": self.name,
            "caller": self.caller,
            "ok": self.ok,
            "route": self.route,
            "agent": self.agent,
            "mode": self.mode,
            "attempts": self.attempts,
            "asked": self.asked,
            "rang": self.rang,
            "reasons": self.reasons,
            "steps": self.steps,
            "failures": self.failures,
        }


class ScenarioPlayer:
    """Loads a scenario into the table at `endpoint` and plays its calls through SmaRouterFunction."""

    def __init__(
        self,
        scenario: Scenario,
        endpoint: str,
        table_name: str = TABLE_NAME,
        environment: dict[str, str] | None = None,
    ) -> None:
        self.scenario = scenario
        self.store = DynamoStore(local_client(endpoint), table_name)
        self.function = LocalFunction(
            "SmaRouterFunction",
            parameters=scenario.parameters,
            resources={"Table": table_name, "CallerKeySecret": "", "HoldAudioBucket": HOLD_AUDIO_BUCKET},
            environment={**local_environment(endpoint), **(environment or {})},
        )
        self.signals_function = LocalFunction(
            "SignalsFunction",
            parameters=scenario.parameters,
            resources={"Table": table_name, "CallerKeySecret": "", "SignalsDeadLetterQueue": ""},
            environment={**local_environment(endpoint), **(environment or {})},
        )
        self.privacy_function = LocalFunction(
            "PrivacyFunction",
            parameters=scenario.parameters,
            resources={"Table": table_name, "CallerKeySecret": ""},
            environment={**local_environment(endpoint), **(environment or {})},
        )
        self.agents_function = LocalFunction(
            "AgentsFunction",
            parameters=scenario.parameters,
            resources={
                "Table": table_name,
                "CallerKeySecret": "",
                "SipMediaApplication.SipMediaApplicationId": LOCAL_SMA_ID,
            },
            environment={**local_environment(endpoint), **(environment or {})},
        )
        self.connect_function = LocalFunction(
            "ConnectRouterFunction",
            parameters=scenario.parameters,
            resources={"Table": table_name, "CallerKeySecret": ""},
            environment={**local_environment(endpoint), **(environment or {})},
        )
        # Browser agents: their pages, through the WebSocket API's functions; Chime stood in for locally.
        self.chime = LocalChime()
        authorizer, routes, grace = (
            LocalFunction(
                logical_id,
                parameters=scenario.parameters,
                resources={"Table": table_name, "CallerKeySecret": ""},
                environment={**local_environment(endpoint), **(environment or {})},
            )
            for logical_id in ("AgentPageAuthorizerFunction", "AgentPageFunction", "AgentPageGraceFunction")
        )
        self.pages = PageFunctions(authorizer, routes, grace, clock=lambda: self.clock)
        with self.pages.routes.environment_applied():
            page_services = self.pages.routes.module.services()
            self.chime.attach(page_services.meetings, page_services.voice)
        with self.function.environment_applied():
            self.chime.attach(self.function.module.services().meetings)
        self.open_pages: dict[str, PageSession] = {}
        self.signal_outcomes: Counter[str] = Counter()
        """What became of the scenario's signals, by outcome (from the metrics SignalsFunction published)."""
        self.pepper = self.function.environment.get("RAPPORT_CALLER_KEY_PEPPER", DEVELOPMENT_PEPPER)
        self.fallback_number = self.function.environment.get("RAPPORT_FALLBACK_ROUTE", "")
        self.clock = time.time()
        self._addresses = {agent.endpoint.address: agent.agent_id for agent in scenario.agents}
        self._names = {caller.number: caller.name for caller in scenario.callers}
        self.metrics = MetricTotals()
        """The metrics the handler published (as EMF lines on stdout) over every call played."""

    def invoke(self, event: dict[str, Any], function: LocalFunction | None = None) -> Any:
        # The handler reads the time once per invocation; here it reads the scenario's clock.
        function = function or self.function
        printed = io.StringIO()
        try:
            with (
                mock.patch.object(function.module, "now", return_value=self.clock),
                contextlib.redirect_stdout(printed),
            ):
                return function.invoke(event)
        finally:
            for line in self.metrics.add_lines(printed.getvalue().splitlines()):
                print(line, file=sys.stderr)

    def send_signals(self) -> None:
        """The scenario's signals as one SQS batch through SignalsFunction, as the queue would deliver it."""
        if not self.scenario.signals:
            return
        before = Counter(self.metrics.counts)
        records = [
            sqs_record(json.dumps(signal.as_sent(f"scenario-signal-{index}", self.clock), ensure_ascii=False))
            for index, signal in enumerate(self.scenario.signals)
        ]
        answer = self.invoke({"Records": records}, self.signals_function)
        if answer.get("batchItemFailures"):
            raise RuntimeError(f"SignalsFunction could not store {len(answer['batchItemFailures'])} signals")
        for name, count in self.metrics.counts.items():
            if name.startswith("Signals") and count > before.get(name, 0):
                self.signal_outcomes[name.removeprefix("Signals")] = count - before.get(name, 0)

    def load(self, open_pages: bool = True) -> None:
        """Write the scenario's catalog, agents and callers (with their consents and interests); with
        `open_pages`, each browser agent's page is opened (in-process) and they are available."""
        start = self.clock
        for product in self.scenario.catalog:
            self.store.put_product(product)
        if self.scenario.agents:  # without agents of its own, a scenario routes to the table's roster
            self.store.load_roster([agent.agent(start) for agent in self.scenario.agents])
        roster = self.store.agents()
        pools = {agent.agent_id: agent.pool for agent in roster}
        # Agents the table held already (added with `rapport agents`) answer like the scenario's own.
        self._addresses = {agent.endpoint.address: agent.agent_id for agent in roster}
        for caller in self.scenario.callers:
            key = caller_key(caller.number, self.pepper)
            profile = CallerProfile(
                consents={
                    purpose: Consent(granted=granted, at=start - DAY, source="scenario")
                    for purpose, granted in caller.consents.items()
                },
                objected=caller.objected,
                objected_at=start - DAY if caller.objected else None,
                created_at=start - 30 * DAY,
            )
            interests = [
                Interest(
                    product=interest.product,
                    score=interest.score,
                    updated_at=start - interest.days_ago * DAY,
                    sources=[interest.source],
                    expires_at=start + 90 * DAY,
                )
                for interest in caller.interests
            ]
            records = []
            if caller.last_agent:
                records.append(self._earlier_call(key, caller, pools.get(caller.last_agent, ""), start))
            self.store.put_caller(key, profile, interests, records)
        self.send_signals()
        if open_pages:
            self.open_agent_pages(roster)
        else:
            # Browser agents are available once their own page connects (`rapport agent-page`).
            admin = AgentStore(self.store.client, self.store.table_name)
            for agent in roster:
                if agent.endpoint.kind is EndpointKind.BROWSER:
                    admin.set_presence(agent, Presence.OFFLINE, "no agent page open", self.clock)

    def open_agent_pages(self, roster: list[Agent]) -> None:
        """Each browser agent opens the agent page (signed in with a page token): they are available."""
        for agent in roster:
            if agent.endpoint.kind is EndpointKind.BROWSER and agent.presence is Presence.ONLINE:
                token = issue(agent.agent_id, int(time.time()) + 3600, DEVELOPMENT_PAGE_TOKEN_KEY)
                self.open_pages[agent.agent_id] = PageSession(self.pages, token)

    @staticmethod
    def _earlier_call(key: str, caller: ScenarioCaller, pool: str, start: float) -> DecisionRecord:
        """The record of the caller's last call, which carries the link to the agent they spoke with."""
        at = start - caller.last_call_days_ago * DAY
        agent_id = str(caller.last_agent)
        return DecisionRecord(
            call_id=f"earlier-call-{key[:8]}",
            caller_key=key,
            decided_at=at,
            mode=RoutingMode.ANY_AVAILABLE,
            outcome=Outcome.ENDED,
            agent_id=agent_id,
            privacy=PrivacyFacts(),
            connected_at=at,
            ended_at=at,
            link=LastAgent(
                agent_id=agent_id,
                pool=pool,
                call_id=f"earlier-call-{key[:8]}",
                at=at,
                expires_at=at + 180 * DAY,
            ),
            expires_at=at + 180 * DAY,
        )

    def play(self) -> list[CallResult]:
        return [self.play_call(call) for call in self.scenario.calls]

    def play_step(self, step: PrivacyStep) -> CallResult:
        """Send one privacy step through PrivacyFunction, as API Gateway would."""
        self.clock += step.after_minutes * 60
        result = CallResult(
            name=step.name, caller=self._names.get(step.number) or mask(step.number), route="privacy"
        )
        path, body = step.request()
        answer = self.invoke(http_request(path, body), self.privacy_function)
        if answer.get("statusCode") != 200:
            result.failures.append(f"{path} answered {answer.get('statusCode')}: {answer.get('body')}")
            return result
        result.reasons = step.summary(json.loads(answer["body"]))
        return result

    def play_agent_step(self, step: AgentStep) -> CallResult:
        """Set an agent's status through AgentsFunction, as API Gateway would send it."""
        self.clock += step.after_minutes * 60
        result = CallResult(name=step.name, caller=step.agent, route="agent status")
        path = f"/agents/{step.agent}/status"
        event = http_request(path, {"status": step.status, "reason": step.reason})
        event["requestContext"]["http"]["method"] = "PUT"
        event["routeKey"] = f"PUT {path}"
        answer = self.invoke(event, self.agents_function)
        if answer.get("statusCode") != 200:
            result.failures.append(f"{path} answered {answer.get('statusCode')}: {answer.get('body')}")
            return result
        agent = json.loads(answer["body"])
        reason = f" ({agent['status_reason']})" if agent.get("status_reason") else ""
        result.reasons = [f"{agent['agent_id']} is {agent['status']}{reason}"]
        return result

    def play_call(self, spec: ScenarioCall | PrivacyStep | AgentStep) -> CallResult:
        if isinstance(spec, PrivacyStep):
            return self.play_step(spec)
        if isinstance(spec, AgentStep):
            return self.play_agent_step(spec)
        self.clock += spec.after_minutes * 60
        result = CallResult(name=spec.name, caller=self._names.get(spec.from_) or mask(spec.from_))
        if spec.channel == "connect":
            return self.play_contact(spec, result)

        def invoke(event: dict[str, Any]) -> Any:
            started = time.perf_counter()
            response = self.invoke(event)
            result.handler_ms.append((time.perf_counter() - started) * 1000)
            for problem in response_problems(response):
                result.failures.append(f"{event['InvocationEventType']}: invalid response: {problem}")
            return response

        call = SimulatedCall(invoke, spec.from_, spec.to, spec.sip_headers, clock=lambda: self.clock)
        response = call.new_inbound()
        for _ in range(MAX_STEPS):
            question = actions_of(response, "SpeakAndGetDigits")
            if question:
                result.asked = True
                self.clock += RING_SECONDS
                response = call.digits(question[0], spec.press)
                continue
            hold = actions_of(response, "PlayAudio")
            if hold:
                next_response = self._offer(call, spec, result, hold[0])
                if next_response is None:
                    break
                response = next_response
                continue
            bridge = actions_of(response, "CallAndBridge")
            if bridge:
                next_response = self._bridge(call, spec, result, bridge[0])
                if next_response is None:
                    break
                response = next_response
                continue
            if actions_of(response, "Speak") or actions_of(response, "Hangup"):
                if actions_of(response, "Speak"):
                    result.route = "message"
                call.hangup("LEG-A")
                break
            result.failures.append("the caller was left in silence: no action to take")
            break
        self._explain(spec, call.transaction_id, result)
        if spec.outcome is not None:
            self._post_outcome(spec.outcome, call.transaction_id, result)
        self._compare(spec, result)
        return result

    def play_contact(self, spec: ScenarioCall, result: CallResult) -> CallResult:
        """The call as an Amazon Connect contact: one invocation of ConnectRouterFunction, in the JSON mode
        (which carries everything the string map does, and the routing criteria)."""
        event = json.loads(CONNECT_SAMPLE.read_text())
        data = event["Details"]["ContactData"]
        data["ContactId"] = data["InitialContactId"] = data["PreviousContactId"] = str(uuid.uuid4())
        data["CustomerEndpoint"] = {"Address": spec.from_, "Type": "TELEPHONE_NUMBER"}
        data["SystemEndpoint"] = {"Address": spec.to, "Type": "TELEPHONE_NUMBER"}
        event["Details"]["Parameters"]["response"] = "JSON"
        started = time.perf_counter()
        answer = self.invoke(event, self.connect_function)
        result.handler_ms.append((time.perf_counter() - started) * 1000)
        if not isinstance(answer, dict) or "rapport_mode" not in answer:
            result.failures.append(f"Connect got no answer it can read: {answer!r}")
            return result
        user_id = answer.get("rapport_agent") or ""
        result.mode = answer["rapport_mode"] if answer["rapport_mode"] != "fallback" else None
        if user_id:
            result.agent = self._addresses.get(user_id, user_id)
            result.route = "agent"
            result.rang.append(result.agent)
        else:
            result.route = "queue"
        self.clock += spec.talk_seconds
        self._explain(spec, answer["rapport_decision"], result)
        if spec.outcome is not None:
            self._post_outcome(spec.outcome, answer["rapport_decision"], result)
        self._compare(spec, result)
        return result

    def _bridge(
        self, call: SimulatedCall, spec: ScenarioCall, result: CallResult, bridge: dict[str, Any]
    ) -> dict[str, Any] | None:
        """Ring the bridge target; return the handler's next response, or None when the call ended."""
        target = str((bridge.get("Endpoints") or [{}])[0].get("Uri", ""))
        agent_id = self._addresses.get(target)
        is_fallback = agent_id is None and target == self.fallback_number
        result.rang.append(agent_id or ("fallback" if is_fallback else target))
        self.clock += RING_SECONDS
        # A target the scenario does not know (neither an agent nor the fallback) cannot answer.
        if (agent_id or "fallback") in spec.unanswered or (agent_id is None and not is_fallback):
            return call.bridge_failed(bridge)
        call.bridge_answered(bridge)
        result.route = "agent" if agent_id else "fallback_number"
        result.agent = agent_id
        result.mode = connected_mode(call.attributes)
        self.clock += spec.talk_seconds
        gone, stays = ("LEG-A", call.leg_b) if spec.hangup == "caller" else ("LEG-B", call.leg_a)
        response = call.hangup(gone)
        if stays is None or not any(
            h.get("CallId") == stays["CallId"] for h in actions_of(response, "Hangup")
        ):
            result.failures.append(f"after {gone} hung up, the other leg was not hung up")
        return None

    def _offer(
        self, call: SimulatedCall, spec: ScenarioCall, result: CallResult, hold: dict[str, Any]
    ) -> dict[str, Any] | None:
        """The caller hears hold audio while a browser agent's page is offered the call. The page sees the
        offer and accepts it (through the WebSocket API, as the real page does), or lets it run out."""
        offered = [
            (agent_id, page)
            for agent_id, page in self.open_pages.items()
            if any(o["call_id"] == call.transaction_id for o in page.send("offers").get("offers", []))
        ]
        if not offered:
            result.failures.append("the caller is on hold, but no open agent page was offered the call")
            return None
        agent_id, page = offered[0]
        result.rang.append(agent_id)
        result.steps.append(f"offered to {agent_id} in the agent page while the caller hears hold audio")
        self.clock += RING_SECONDS
        if agent_id in spec.unanswered:
            result.steps.append("the offer ran out unanswered")
            return call.audio_played(hold)
        accepted = page.send("accept", call.transaction_id)
        if accepted.get("type") != "accepted":
            result.failures.append(f"the page's accept was answered {accepted}")
            return None
        meeting_id = accepted["meeting"]["MeetingId"]
        result.steps.append(
            f"{agent_id} accepted: meeting {meeting_id[:8]}…, the page joins as attendee "
            f"{accepted['attendee']['AttendeeId'][:8]}…"
        )
        # The SIP media application acts on what the accept asked of it (UpdateSipMediaApplicationCall).
        updates = [args for tid, args in self.chime.updates if tid == call.transaction_id]
        if not updates:
            result.failures.append("accepting did not ask the SIP media application to join the caller")
            return None
        joins = actions_of(call.call_update(updates[-1]), "JoinChimeMeeting")
        if not joins or joins[0].get("MeetingId") != meeting_id:
            result.failures.append(f"the caller was not joined into meeting {meeting_id}")
            return None
        call.meeting_joined(joins[0])
        result.steps.append("the caller joined the meeting (JoinChimeMeeting)")
        result.route, result.agent = "agent", agent_id
        result.mode = connected_mode(call.attributes)
        self.clock += spec.talk_seconds
        stays: dict[str, Any] | None
        if spec.hangup == "agent":
            ended = page.send("hangup", call.transaction_id)
            gone, stays = "LEG-B", call.leg_a  # the meeting ended, so the meeting leg dropped
            result.steps.append(f"{agent_id} hung up in the page: the meeting ended ({ended.get('type')})")
        else:
            gone, stays = "LEG-A", call.leg_b
        response = call.hangup(gone)
        if stays is None or not any(
            h.get("CallId") == stays["CallId"] for h in actions_of(response, "Hangup")
        ):
            result.failures.append(f"after {gone} hung up, the other leg was not hung up")
        if meeting_id in self.chime.meetings:
            result.failures.append(f"meeting {meeting_id} was not ended when the call was")
        else:
            result.steps.append("the other side was hung up and the meeting is gone")
        return None

    def _post_outcome(self, outcome: CallOutcome, call_id: str, result: CallResult) -> None:
        """Report what the call ended in, as a CRM would, for the agent who took it."""
        if result.agent is None:
            result.failures.append("an outcome was given, but no agent took the call")
            return
        body = {
            "call_id": call_id,
            "agent_id": result.agent,
            "outcomes": [outcome.model_dump(exclude_none=True)],
        }
        answer = self.invoke(http_request("/outcomes", body), self.agents_function)
        if answer.get("statusCode") != 200:
            result.failures.append(f"/outcomes answered {answer.get('statusCode')}: {answer.get('body')}")
            return
        status = json.loads(answer["body"])["results"][0]["status"]
        what = "a sale" if outcome.sale else "no sale"
        result.reasons.append(f"outcome: {what} of `{outcome.product}`, {status} for `{result.agent}`")

    def _explain(self, spec: ScenarioCall, transaction_id: str, result: CallResult) -> None:
        record = self.store.decision(caller_key(spec.from_, self.pepper), transaction_id)
        if record is None:
            record = self.store.decision(None, transaction_id)
        if record is None:
            result.reasons = ["no decision record was stored"]
            return
        result.reasons = record_reasons(record)

    @staticmethod
    def _compare(spec: ScenarioCall, result: CallResult) -> None:
        expect = spec.expect
        if expect is None:
            return
        checks = [
            ("agent", expect.agent, result.agent, "agent" in expect.model_fields_set),
            ("mode", expect.mode.value if expect.mode else None, result.mode, expect.mode is not None),
            ("attempts", expect.attempts, result.attempts, expect.attempts is not None),
            ("route", expect.route, result.route, expect.route is not None),
            ("asked", expect.asked, result.asked, expect.asked is not None),
        ]
        for name, wanted, got, asked in checks:
            if asked and wanted != got:
                result.failures.append(f"expected {name} {wanted!r}, got {got!r}")
