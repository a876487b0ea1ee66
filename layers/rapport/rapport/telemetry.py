"""Call metrics as CloudWatch embedded metric format (EMF) lines, written with Powertools.

Each invocation collects its own metric set and prints it as one log line when it ends; CloudWatch turns
that line into metrics, so nothing waits on a network call. A metric carries counts and durations only:
never a phone number, caller key or agent ID. Dimensions are the service and the stack, so two
deployments in one account keep their own figures and the template's alarms can name them exactly.
"""

from __future__ import annotations

import os
import threading
from enum import StrEnum

from aws_lambda_powertools import Logger
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch import AmazonCloudWatchEMFProvider

from rapport import SERVICE_NAME
from rapport.call import CallState, Route, RouteKind, Stage
from rapport.models import RoutingMode
from rapport.store.timing import RequestTiming

logger = Logger(service=SERVICE_NAME, child=True)

DEFAULT_NAMESPACE = "Rapport"
LOCAL_STACK_NAME = "local"
STACK_DIMENSION = "stack"


class Metric(StrEnum):
    NEW_CALLS = "NewCalls"
    """Every NEW_INBOUND_CALL answered: the denominator of the fallback rate."""
    ROUTED_KNOWN_AGENT = "RoutedKnownAgent"
    ROUTED_INTEREST = "RoutedInterest"
    ROUTED_ANY_AVAILABLE = "RoutedAnyAvailable"
    FAILOVERS = "Failovers"
    """A ringing agent did not answer and the call moved on."""
    FALLBACKS = "Fallbacks"
    """A call reached the fallback number or closing message; counted once per call."""
    CONNECTED = "Connected"
    """A bridge was answered (an agent or the fallback number)."""
    HANDLER_ERRORS = "HandlerErrors"
    """The normal path raised and the emergency answer went out."""
    REJECTED_RESPONSES = "RejectedResponses"
    """The SMA refused one of our responses (INVALID_LAMBDA_RESPONSE)."""
    MALFORMED_EVENTS = "MalformedEvents"
    UNKNOWN_EVENTS = "UnknownEvents"
    HANDLER_LATENCY = "HandlerLatency"
    NEW_CALL_LATENCY = "NewCallLatency"
    STORE_LATENCY = "StoreLatency"
    """Each DynamoDB request, as the router waited for it (botocore's retries included)."""
    STORE_ERRORS = "StoreErrors"
    """DynamoDB requests that failed (throttled, timed out, refused); lost races are not errors."""
    SIGNALS_STORED = "SignalsStored"
    SIGNALS_DUPLICATE = "SignalsDuplicate"
    """Delivered again and recognised: not counted twice."""
    SIGNALS_WITHOUT_INTEREST = "SignalsWithoutInterest"
    SIGNALS_WITHOUT_CONSENT = "SignalsWithoutConsent"
    """Not kept: interest routing needs consent in the caller's jurisdiction and none is on record."""
    SIGNALS_OBJECTED = "SignalsObjected"
    """Dropped: the caller objected."""
    SIGNALS_EXPIRED = "SignalsExpired"
    SIGNALS_REJECTED = "SignalsRejected"
    SIGNALS_FAILED = "SignalsFailed"
    """Not stored for now; delivered again."""
    CONNECT_AGENT_EVENTS = "ConnectAgentEvents"
    """Amazon Connect agent events that set an agent's presence."""
    CONNECT_AGENT_EVENTS_SKIPPED = "ConnectAgentEventsSkipped"
    """Agent events that changed nothing: a duplicate, one older than the last applied, a heartbeat of
    an agent rapport does not know, or one that could not be read."""
    PRIVACY_REQUESTS = "PrivacyRequests"
    """Consent, objection, access, erasure and explanation requests carried out."""
    PRIVACY_REFUSED = "PrivacyRefused"
    """Privacy requests answered 400 (bad input)."""
    PRIVACY_FAILED = "PrivacyFailed"
    """Privacy requests not carried out for now (503)."""
    CONSENT_ASKED = "ConsentAsked"
    """Callers asked in the call whether their data may be used."""
    CONSENT_GIVEN_IN_CALL = "ConsentGivenInCall"
    AGENT_RINGING = "AgentRinging"
    """An agent was reserved for a call and their phone rings (the first transition of a call)."""
    AGENT_ON_CALL = "AgentOnCall"
    AGENT_WRAP_UP = "AgentWrapUp"
    """A call an agent talked on ended: wrap-up, then available."""
    AGENT_FREED = "AgentFreed"
    """An agent held for a call is free again without having talked (no answer, caller gone)."""
    AGENT_SET_AWAY = "AgentSetAway"
    """An agent was set away for not answering too many calls in a row."""
    AGENT_REQUESTS = "AgentRequests"
    """Roster requests carried out (add, change, remove, status, reads)."""
    AGENT_REQUESTS_REFUSED = "AgentRequestsRefused"
    FORGED_STATE = "ForgedState"
    """Call state (TransactionAttributes) that is not this deployment's state of the call: not used."""
    UNVERIFIED_STATE = "UnverifiedState"
    """Signed call state read while the pepper could not be had: used without its caller key."""
    RATE_LIMITED = "RateLimited"
    """New calls from a number over its rate limit: the closing message, and no agent rung."""
    ENDPOINT_REFUSED = "EndpointRefused"
    """An agent's endpoint that failed validation at bridge time (not E.164, a country not allowed, not a
    SIP user): not rung."""


ROUTED_BY_MODE = {
    RoutingMode.KNOWN_AGENT: Metric.ROUTED_KNOWN_AGENT,
    RoutingMode.INTEREST: Metric.ROUTED_INTEREST,
    RoutingMode.ANY_AVAILABLE: Metric.ROUTED_ANY_AVAILABLE,
}
FALLBACK_KINDS = (RouteKind.FALLBACK_NUMBER, RouteKind.MESSAGE)
# Stages from which reaching the fallback is news; from FALLBACK or MESSAGE the call had already got there.
BEFORE_FALLBACK = (Stage.AGENT, Stage.CONNECTED)


# One Powertools provider per thread, reused from invocation to invocation (flushing empties it): building
# one costs more than the rest of the metrics work, and a Lambda container runs one invocation at a time.
_providers = threading.local()


def _provider(namespace: str) -> AmazonCloudWatchEMFProvider:
    provider: AmazonCloudWatchEMFProvider | None = getattr(_providers, namespace, None)
    if provider is None:
        provider = AmazonCloudWatchEMFProvider(namespace=namespace, service=SERVICE_NAME)
        setattr(_providers, namespace, provider)
    provider.clear_metrics()
    return provider


class CallMetrics:
    """One invocation's metrics. Recording never raises; `flush` prints them and never raises either."""

    def __init__(self, namespace: str | None = None, stack: str | None = None) -> None:
        self._emf = _provider(
            namespace or os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or DEFAULT_NAMESPACE
        )
        self._stack = stack or os.environ.get("RAPPORT_STACK_NAME") or LOCAL_STACK_NAME

    def count(self, metric: Metric, value: int = 1) -> None:
        self._add(metric, MetricUnit.Count, value)

    def milliseconds(self, metric: Metric, value: float) -> None:
        self._add(metric, MetricUnit.Milliseconds, round(value, 3))

    def route(self, route: Route, before: CallState | None) -> None:
        """Count where a call was sent; `before` is its state until now (None for a new call)."""
        if route.kind is RouteKind.AGENT:
            metric = ROUTED_BY_MODE.get(route.state.mode)
            if metric is not None:
                self.count(metric)
        elif route.kind in FALLBACK_KINDS:
            self.fallback(before)

    def fallback(self, before: CallState | None) -> None:
        """Count a call reaching the fallback, unless it had already got there (`before` None: new call)."""
        if before is None or before.stage in BEFORE_FALLBACK:
            self.count(Metric.FALLBACKS)

    def store_requests(self, requests: list[RequestTiming]) -> None:
        for request in requests:
            self.milliseconds(Metric.STORE_LATENCY, request.ms)
        failed = sum(request.failed for request in requests)
        if failed:
            self.count(Metric.STORE_ERRORS, failed)

    def flush(self) -> None:
        try:
            if self._emf.metric_set:
                self._emf.add_dimension(name=STACK_DIMENSION, value=self._stack)
                self._emf.flush_metrics()
        except Exception:
            logger.exception("metrics not written")

    def _add(self, metric: Metric, unit: MetricUnit, value: float) -> None:
        try:
            self._emf.add_metric(name=metric.value, unit=unit, value=value)
        except Exception:
            logger.exception("metric not recorded", extra={"metric": metric.value})
