"""Handler latency and DynamoDB requests per call, against DynamoDB Local on loopback.

Plays CALLS calls from distinct callers through SmaRouterFunction (as `sam local invoke` would run it):
NEW_INBOUND_CALL, the agent answers, the caller hangs up. Agents have no wrap-up so every call finds
the whole roster free. Prints a Markdown table; figures are from this machine and this run only.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import Counter

from rapport.models import AgentEndpoint, EndpointKind
from rapport.store import Store
from rapport_local.engine import DynamoDBLocal, create_table, local_client, local_environment
from rapport_local.lambda_runner import LocalFunction
from rapport_local.scenario import ScenarioAgent
from rapport_local.sma_driver import SimulatedCall, actions_of

TABLE = "rapport-bench"
PRODUCTS = ["x200-headphones", "soundbar-s5", "smart-tv-q9", "mesh-router-m3", "warranty-plus"]


def percentile(samples: list[float], share: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def main() -> None:
    arguments = argparse.ArgumentParser(description=__doc__)
    arguments.add_argument("--calls", type=int, default=500)
    arguments.add_argument("--agents", type=int, default=12)
    options = arguments.parse_args()

    with DynamoDBLocal() as engine:
        create_table(engine.endpoint, TABLE)
        store = Store(local_client(engine.endpoint), TABLE)
        now = time.time()
        for index in range(options.agents):
            spec = ScenarioAgent(
                agent_id=f"agent-{index:03d}",
                endpoint=AgentEndpoint(kind=EndpointKind.VOICE_CONNECTOR, address=f"agent-{index:03d}"),
                proficiency={PRODUCTS[index % len(PRODUCTS)]: 1 + index % 5},
                idle_minutes=index,
                wrap_up_seconds=0,
            )
            store.put_agent(spec.agent(now))
        router = LocalFunction(
            "SmaRouterFunction",
            parameters={
                "AgentVoiceConnectorArn": "arn:aws:chime:us-east-1:123456789012:vc/abcdefghijklmnopqrstu1"
            },
            resources={"Table": TABLE, "CallerKeySecret": ""},
            environment={**local_environment(engine.endpoint), "POWERTOOLS_LOG_LEVEL": "ERROR"},
        )
        requests: Counter[str] = Counter()
        router.invoke({"InvocationEventType": "RINGING"})  # a warm container, as in steady traffic
        router.module.services().store.client.meta.events.register(
            "before-call.dynamodb", lambda model, **_: requests.update([model.name])
        )
        inbound_ms: list[float] = []
        per_event_ms: list[float] = []
        inbound_requests: list[int] = []
        for index in range(options.calls):
            call = SimulatedCall(router.invoke, f"+1202555{index % 10000:04d}")
            before = sum(requests.values())
            started = time.perf_counter()
            response = call.new_inbound()
            inbound_ms.append((time.perf_counter() - started) * 1000)
            inbound_requests.append(sum(requests.values()) - before)
            bridge = actions_of(response, "CallAndBridge")
            if not bridge:
                raise SystemExit(f"call {index} was not bridged: {response}")
            started = time.perf_counter()
            call.bridge_answered(bridge[0])
            per_event_ms.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            call.hangup("LEG-A")
            per_event_ms.append((time.perf_counter() - started) * 1000)

    print(f"{options.calls} calls, {options.agents} agents, DynamoDB Local on loopback\n")
    print("| path | median ms | p95 ms | p99 ms |")
    print("|---|---:|---:|---:|")
    for name, samples in (("NEW_INBOUND_CALL", inbound_ms), ("ACTION_SUCCESSFUL / HANGUP", per_event_ms)):
        print(
            f"| {name} | {statistics.median(samples):.2f} | {percentile(samples, 0.95):.2f}"
            f" | {percentile(samples, 0.99):.2f} |"
        )
    counts = Counter(inbound_requests)
    print(f"\nDynamoDB requests per NEW_INBOUND_CALL: {dict(sorted(counts.items()))} (requests: calls)")
    print(f"All requests by operation: {dict(requests.most_common())}")


if __name__ == "__main__":
    main()
