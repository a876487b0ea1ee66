"""Scenario files are the acceptance tests: each is played call by call through the real handler."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from rapport_local.cli import main
from rapport_local.scenario import Scenario, ScenarioPlayer

PROJECT_DIR = Path(__file__).resolve().parents[2]
SCENARIOS = [
    PROJECT_DIR / "examples" / "demo.json",
    *sorted((PROJECT_DIR / "tests" / "scenarios").glob("*.json")),
]


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda path: path.stem)
def test_scenario_routes_every_call_as_expected(dynamodb_endpoint: str, table: str, path: Path) -> None:
    scenario = Scenario.load(path)
    player = ScenarioPlayer(scenario, dynamodb_endpoint, table_name=table)
    player.load()
    played = player.play()
    assert [(r.name, r.failures) for r in played if not r.ok] == []
    assert all(r.reasons for r in played)
    results = [r for r in played if r.route not in ("privacy", "agent status")]
    # The router's own metrics tell the same story as the calls.
    published = player.metrics.counts
    assert published["NewCalls"] == len(results)
    # A Connect contact for which rapport names no agent is the queue's to place, a fallback only when
    # rapport had no candidate at all.
    fallbacks = sum(
        r.route in ("fallback_number", "message") or (r.route == "queue" and r.mode is None) for r in results
    )
    assert published["Fallbacks"] == fallbacks
    # Every agent who rang and did not answer is one failover (to the next agent or the fallback).
    agents_missed = sum(sum(rung != "fallback" for rung in r.rang) - (r.agent is not None) for r in results)
    assert published["Failovers"] == agents_missed
    assert published["HandlerErrors"] == published["RejectedResponses"] == 0


def test_demo_shows_interest_failover_known_agent_and_no_consent(dynamodb_endpoint: str, table: str) -> None:
    player = ScenarioPlayer(Scenario.load(SCENARIOS[0]), dynamodb_endpoint, table_name=table)
    player.load()
    modes = [(r.mode, r.attempts) for r in player.play()]
    assert ("interest", 1) in modes
    assert ("interest", 2) in modes  # a no-answer failed over
    assert ("known_agent", 1) in modes
    assert ("any_available", 1) in modes  # the German caller without consent


def test_a_social_post_sent_through_signals_function_routes_the_demo_call(
    dynamodb_endpoint: str, table: str
) -> None:
    player = ScenarioPlayer(Scenario.load(SCENARIOS[0]), dynamodb_endpoint, table_name=table)
    player.load()
    # Sophie's post is kept (she consented); Jonas's is not (Germany, no consent on record).
    assert player.signal_outcomes == {"Stored": 1, "WithoutConsent": 1}
    results = {r.name: r for r in player.play()}
    sophie = results["A social post routes a call: Sophie wants the X200"]
    assert (sophie.agent, sophie.mode) == ("berlin-07", "interest")
    assert any('("will … X200 kaufen")' in reason for reason in sophie.reasons)
    jonas = results["A German caller without consent: no profile data used"]
    assert jonas.mode == "any_available"


def test_demo_ends_with_the_metrics_a_deployment_would_publish(
    dynamodb_endpoint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["demo", "--endpoint", dynamodb_endpoint]) == 0
    printed = capsys.readouterr()
    assert '"_aws"' not in printed.out and '"_aws"' not in printed.err
    assert "Metrics the functions published" in printed.out
    assert "NewCalls 12" in printed.out
    assert "fallback rate 8 %" in printed.out  # 1 of the demo's 12 calls reaches the fallback number
    assert "PrivacyRequests 2" in printed.out  # the objection and the erasure
    assert "2 of 2 privacy requests carried out" in printed.out
    assert (
        "2 signals sent through SignalsFunction: stored 1, not kept (no consent on record) 1." in printed.out
    )


def test_simulate_prints_one_result_per_call_and_exits_zero(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The command starts (and stops) its own DynamoDB Local, as it does for a user.
    assert main(["simulate", str(SCENARIOS[1])]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == len(Scenario.load(SCENARIOS[1]).calls)
    assert all(line["ok"] for line in lines)


def test_simulate_exits_non_zero_when_an_expectation_fails(
    tmp_path: Path, dynamodb_endpoint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario = json.loads(SCENARIOS[1].read_text())
    scenario["calls"] = scenario["calls"][:1]
    scenario["calls"][0]["expect"] = {"agent": "generalist"}  # it goes to tv-expert
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps(scenario))
    assert main(["simulate", str(wrong)]) == 1
    result = json.loads(capsys.readouterr().out.splitlines()[0])
    assert result["ok"] is False
    assert result["failures"] == ["expected agent 'generalist', got 'tv-expert'"]


def test_simulate_rejects_an_invalid_scenario_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps({"calls": [{"name": "x", "from": "not a number", "expect": {"agnet": "typo"}}]})
    )
    assert main(["simulate", str(bad)]) == 2
    assert "rapport:" in capsys.readouterr().err
