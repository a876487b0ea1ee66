"""CallMetrics writes EMF documents that the local reader (and so CloudWatch's schema) understands."""

from __future__ import annotations

import contextlib
import io
import json

from rapport.call import CallState, Route, RouteKind, Stage
from rapport.models import Attempt, DecisionRecord, RoutingMode
from rapport.telemetry import CallMetrics, Metric
from rapport_local.emf import MetricTotals, metric_data


def printed(metrics: CallMetrics) -> list[str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        metrics.flush()
    return out.getvalue().splitlines()


def test_one_document_per_flush_with_namespace_dimensions_and_values() -> None:
    metrics = CallMetrics(namespace="RapportTest", stack="prod-eu")
    metrics.count(Metric.NEW_CALLS)
    metrics.milliseconds(Metric.NEW_CALL_LATENCY, 12.3456)
    (line,) = printed(metrics)
    data = {datum.name: datum for datum in metric_data(line)}
    assert set(data) == {"NewCalls", "NewCallLatency"}
    assert data["NewCalls"].namespace == "RapportTest"
    assert data["NewCalls"].dimensions == {"service": "rapport", "stack": "prod-eu"}
    assert (data["NewCalls"].unit, data["NewCalls"].value) == ("Count", 1.0)
    assert (data["NewCallLatency"].unit, data["NewCallLatency"].value) == ("Milliseconds", 12.346)


def test_nothing_recorded_prints_nothing() -> None:
    assert printed(CallMetrics(stack="s")) == []


def test_fallback_is_counted_only_on_the_way_in() -> None:
    metrics = CallMetrics(stack="s")
    message = Route(RouteKind.MESSAGE, CallState(stage=Stage.MESSAGE))
    metrics.route(message, before=None)  # a new call straight to the message
    metrics.route(message, before=CallState(stage=Stage.AGENT))  # after the last agent
    metrics.route(message, before=CallState(stage=Stage.FALLBACK))  # the fallback number did not answer
    record = DecisionRecord(
        call_id="c",
        decided_at=0,
        mode=RoutingMode.KNOWN_AGENT,
        attempts=[Attempt(agent_id="berlin-07", mode=RoutingMode.KNOWN_AGENT, at=0)],
        expires_at=1,
    )
    metrics.route(Route(RouteKind.AGENT, CallState(stage=Stage.AGENT, record=record)), before=None)
    totals = MetricTotals()
    totals.add_lines(printed(metrics))
    assert dict(totals.counts) == {"Fallbacks": 2, "RoutedKnownAgent": 1}


def test_lines_that_are_not_emf_are_passed_back() -> None:
    totals = MetricTotals()
    log_line = json.dumps({"level": "INFO", "message": "routed"})
    assert totals.add_lines([log_line, "plain text", "{"]) == [log_line, "plain text", "{"]
    assert not totals.counts
