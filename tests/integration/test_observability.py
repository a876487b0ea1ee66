"""The router's metrics, as CloudWatch would extract them from its log lines (embedded metric format).

Each invocation prints one EMF document. These tests read what the real handler printed while calls ran
against the real engine, and check what an operator would see on a dashboard or in an alarm: one new
call, one fallback per call that missed every agent, the failovers, the errors, and no phone number.
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import time
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
from builders import RouterFactory, agent, routed_lines
from rapport import SERVICE_NAME
from rapport.numbers import caller_key
from rapport.settings import DEVELOPMENT_PEPPER
from rapport.store.dynamodb import DynamoStore
from rapport.telemetry import Metric
from rapport_local.emf import MetricSink
from rapport_local.faults import DelayProxy, throttle
from rapport_local.lambda_runner import LocalFunction
from rapport_local.sma_contract import response_problems
from rapport_local.sma_driver import SimulatedCall, actions_of, bridge_target

CALLER = "+493055501042"
FALLBACK_NUMBER = "+18005550199"
KNOWN_METRICS = {metric.value for metric in Metric}


@contextlib.contextmanager
def published() -> Iterator[MetricSink]:
    """Everything the handler prints to stdout while the block runs, read as CloudWatch reads it."""
    sink = MetricSink()
    with contextlib.redirect_stdout(sink):
        yield sink


def checked_call(router: LocalFunction, caller: str = CALLER) -> SimulatedCall:
    def invoke(event: dict[str, Any]) -> Any:
        response = router.invoke(event)
        assert response_problems(response) == [], event["InvocationEventType"]
        return response

    return SimulatedCall(invoke, caller)


def counts(sink: MetricSink) -> dict[str, int]:
    return {name: value for name, value in sink.totals.counts.items() if value}


@pytest.fixture
def three_agents(store: DynamoStore) -> None:
    now = time.time()
    for index, name in enumerate(["berlin-07", "berlin-03", "hamburg-02"]):
        store.put_agent(agent(name, now - 3000 + index * 1000))


def test_every_invocation_prints_one_valid_emf_document_under_the_deployments_dimensions(
    router: LocalFunction, three_agents: None
) -> None:
    with published() as sink:
        lena = checked_call(router)
        response = lena.new_inbound()
        lena.bridge_answered(actions_of(response, "CallAndBridge")[0])
        lena.hangup("LEG-A")
    assert len(sink.documents) == 3
    for line in sink.documents:
        document = json.loads(line)
        (directive,) = document["_aws"]["CloudWatchMetrics"]
        assert directive["Namespace"] == "Rapport"
        assert directive["Dimensions"] == [["stack", "service"]]
        assert document["service"] == SERVICE_NAME
        assert document["stack"] == "rapport-local"  # the stack name, as template.yaml passes it
        for metric in directive["Metrics"]:
            assert metric["Name"] in KNOWN_METRICS
            assert metric["Unit"] in ("Count", "Milliseconds")
            assert all(isinstance(value, float) for value in document[metric["Name"]])
        # CloudWatch takes the timestamp from the document; it must be this invocation's.
        assert abs(document["_aws"]["Timestamp"] / 1000 - time.time()) < 60
    assert counts(sink) == {
        "NewCalls": 1,
        "RoutedAnyAvailable": 1,
        "Connected": 1,
        "AgentRinging": 1,
        "AgentOnCall": 1,
        "AgentWrapUp": 1,
    }
    assert len(sink.totals.durations_ms["HandlerLatency"]) == 3
    assert len(sink.totals.durations_ms["NewCallLatency"]) == 1


def test_metrics_carry_no_phone_number_caller_key_or_agent(router: LocalFunction, three_agents: None) -> None:
    with published() as sink:
        lena = checked_call(router)
        response = lena.new_inbound()
        lena.bridge_failed(actions_of(response, "CallAndBridge")[0])
        lena.hangup("LEG-A")
    printed = "\n".join(sink.documents)
    assert sink.documents
    for secret in [CALLER, CALLER.lstrip("+"), caller_key(CALLER, DEVELOPMENT_PEPPER), lena.transaction_id]:
        assert secret not in printed
    for name in ["berlin-07", "berlin-03", "hamburg-02"]:
        assert name not in printed


def test_a_failover_is_counted_and_the_answered_agent_connects(
    router: LocalFunction, three_agents: None
) -> None:
    with published() as sink:
        lena = checked_call(router)
        first = lena.new_inbound()
        second = lena.bridge_failed(actions_of(first, "CallAndBridge")[0])
        assert bridge_target(second) != bridge_target(first)
        lena.bridge_answered(actions_of(second, "CallAndBridge")[0])
        lena.hangup("LEG-A")
    # The agents' transitions: two rung, the first freed unanswered, the second talked and wrapped up.
    assert counts(sink) == {
        "NewCalls": 1,
        "RoutedAnyAvailable": 2,
        "Failovers": 1,
        "Connected": 1,
        "AgentRinging": 2,
        "AgentFreed": 1,
        "AgentOnCall": 1,
        "AgentWrapUp": 1,
    }


def test_a_call_that_misses_every_agent_counts_one_fallback_however_far_it_went(
    make_router: RouterFactory, three_agents: None
) -> None:
    router = make_router(parameters={"FallbackRoute": FALLBACK_NUMBER})
    with published() as sink:
        lena = checked_call(router)
        response = lena.new_inbound()
        rang = []
        while actions_of(response, "CallAndBridge"):
            rang.append(bridge_target(response))
            response = lena.bridge_failed(actions_of(response, "CallAndBridge")[0])
        lena.hangup("LEG-A")
    # Three agents, then the fallback number, then the closing message: one call, one fallback.
    assert rang[-1] == FALLBACK_NUMBER and len(rang) == 4
    assert actions_of(response, "Speak")
    assert counts(sink) == {
        "NewCalls": 1,
        "RoutedAnyAvailable": 3,
        "Failovers": 3,
        "Fallbacks": 1,
        "AgentRinging": 3,
        "AgentFreed": 3,
    }


def test_no_agent_free_is_a_fallback_at_once(router: LocalFunction) -> None:
    with published() as sink:
        response = checked_call(router).new_inbound()
    assert actions_of(response, "Speak")
    assert counts(sink) == {"NewCalls": 1, "Fallbacks": 1}


def test_an_unreachable_table_shows_as_fallbacks_not_errors(make_router: RouterFactory) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    router = make_router(endpoint=f"http://127.0.0.1:{closed_port}")
    with published() as sink:
        for _ in range(2):
            assert actions_of(checked_call(router).new_inbound(), "Speak")
    # Each call tried two reads (the caller, the pool directory) and its rate-limit count: all three
    # failed, and are counted as such.
    assert counts(sink) == {"NewCalls": 2, "Fallbacks": 2, "StoreErrors": 6}


def test_an_exception_is_a_handler_error_and_the_caller_still_hears_a_message(
    make_router: RouterFactory, log_lines: list[str]
) -> None:
    router = make_router(parameters={"CallerIdNumber": "not-a-number"})  # settings cannot load
    with published() as sink:
        response = checked_call(router).new_inbound()
    assert [action["Type"] for action in response["Actions"]] == ["Speak", "Hangup"]
    assert counts(sink) == {"NewCalls": 1, "HandlerErrors": 1, "Fallbacks": 1}


def test_rejected_responses_unknown_and_malformed_events_are_counted(
    router: LocalFunction, three_agents: None
) -> None:
    with published() as sink:
        lena = checked_call(router)
        lena.new_inbound()
        rejected = lena.event("INVALID_LAMBDA_RESPONSE", [lena.leg_a])
        rejected.update(ErrorType="InvalidActionParameter", ErrorMessage="Parameter is not valid")
        lena.send(rejected)
        router.invoke({"SchemaVersion": "1.0", "InvocationEventType": "SOMETHING_NEW", "CallDetails": {}})
        router.invoke({"InvocationEventType": "RINGING", "Sequence": "one", "CallDetails": []})
    assert counts(sink) == {
        "NewCalls": 1,
        "RoutedAnyAvailable": 1,
        "RejectedResponses": 1,
        "Fallbacks": 1,
        "UnknownEvents": 1,
        "MalformedEvents": 1,
        "AgentRinging": 1,
        "AgentFreed": 1,
    }


def test_a_failing_metrics_flush_never_costs_the_caller_the_route(
    router: LocalFunction, three_agents: None, log_lines: list[str]
) -> None:
    broken = mock.patch(
        "aws_lambda_powertools.metrics.provider.cloudwatch_emf.cloudwatch."
        "AmazonCloudWatchEMFProvider.flush_metrics",
        side_effect=RuntimeError("stdout closed"),
    )
    with broken, published() as sink:
        response = checked_call(router).new_inbound()
    assert bridge_target(response) in {"berlin-07", "berlin-03", "hamburg-02"}
    assert sink.documents == []
    assert any("metrics not written" in line for line in log_lines)


def test_concurrent_invocations_keep_their_own_metrics_and_log_keys(
    router: LocalFunction, store: DynamoStore, log_lines: list[str]
) -> None:
    """Several containers' worth of calls at once: every call is counted once, none twice, and each
    log line names its own call and caller."""
    now = time.time()
    for index in range(12):
        store.put_agent(agent(f"agent-{index:02d}", now - index))
    calls = [SimulatedCall(lambda event: event, f"+4930555{index:05d}") for index in range(24)]
    events = [call.event("NEW_INBOUND_CALL", [call.leg_a]) for call in calls]
    with published() as sink:
        responses = router.invoke_concurrently(events, workers=8)
    routed = sum(bool(actions_of(response, "CallAndBridge")) for response in responses)
    assert all(response_problems(response) == [] for response in responses)
    assert len(sink.documents) == 24
    assert sink.totals.counts["NewCalls"] == 24
    assert routed > 0
    assert sink.totals.counts["RoutedAnyAvailable"] == routed
    assert sink.totals.counts["Fallbacks"] == 24 - routed
    expected_key = {call.transaction_id: caller_key(call.leg_a["From"], DEVELOPMENT_PEPPER) for call in calls}
    logged = routed_lines(log_lines)
    assert len(logged) == 24
    assert {line["call_id"] for line in logged} == set(expected_key)
    assert all(line["caller_key"] == expected_key[line["call_id"]] for line in logged)


# -- each DynamoDB request, timed -------------------------------------------------------------------------


def routed_line(log_lines: list[str], call: SimulatedCall) -> dict[str, Any]:
    (line,) = routed_lines(log_lines, call.transaction_id)
    return line


def test_each_dynamodb_request_is_timed_in_the_routed_line_and_the_metrics(
    router: LocalFunction, three_agents: None, log_lines: list[str]
) -> None:
    with published() as sink:
        lena = checked_call(router)
        lena.new_inbound()
    logged = routed_line(log_lines, lena)["store_requests"]
    # A fresh container: the directory, the caller and their rate-limit count together, then a pool,
    # then the reservation.
    assert sorted(entry.split()[0] for entry in logged) == [
        "GetItem",
        "Query",
        "Query",
        "UpdateItem",
        "UpdateItem",
    ]
    assert all(re.fullmatch(r"\w+ \d+\.\d ms", entry) for entry in logged)
    latencies = sink.totals.durations_ms["StoreLatency"]
    # The same requests, the same times: the log line shows them to 0.1 ms, the metric to 0.001 ms (so a
    # time such as 3.4500 may read 3.5 in one and 3.4 in the other).
    shown = [float(entry.split()[1]) for entry in logged]
    assert len(latencies) == len(shown)
    assert all(abs(ms - line) <= 0.051 for ms, line in zip(latencies, shown, strict=True))
    assert max(latencies) <= sink.totals.durations_ms["NewCallLatency"][0]


def test_a_slow_link_shows_in_every_requests_latency(
    make_router: RouterFactory, dynamodb_endpoint: str, three_agents: None
) -> None:
    with DelayProxy(dynamodb_endpoint, delay=0.12) as slow:
        router = make_router(endpoint=slow.endpoint)
        with published() as sink:
            assert actions_of(checked_call(router).new_inbound(), "CallAndBridge")
    latencies = sink.totals.durations_ms["StoreLatency"]
    assert len(latencies) == 5  # directory, caller, rate-limit count, pool, reservation
    assert min(latencies) >= 120


def test_a_throttled_table_shows_as_store_errors_naming_the_error(
    make_router: RouterFactory, three_agents: None, log_lines: list[str]
) -> None:
    router = make_router(parameters={"FallbackRoute": FALLBACK_NUMBER})
    router.invoke({"InvocationEventType": "RINGING"})  # build the container's client
    with throttle(router.module.services().store.client, every=1), published() as sink:
        lena = checked_call(router)
        assert bridge_target(lena.new_inbound()) == FALLBACK_NUMBER
    failed = [entry for entry in routed_line(log_lines, lena)["store_requests"] if "Throttling" in entry]
    assert failed and all(entry.endswith("(ThrottlingException)") for entry in failed)
    assert sink.totals.counts["StoreErrors"] == len(failed)
    assert sink.totals.counts["Fallbacks"] == 1
