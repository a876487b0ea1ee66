"""Whatever Amazon Connect sends, ConnectRouterFunction answers in the mode the flow asked for and never
raises, so the flow never takes its Error branch because of rapport.

Property-based (hypothesis): contact-flow events shaped like the documented one, with random channels,
endpoints, numbers, ids and parameters; the same with fields deleted or given the wrong type; and
arbitrary JSON. Each runs through the real handler against a table with Connect agents and a caller with
an interest, and the answer is checked as Connect would check it.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

import pytest
from builders import agent, interest, profile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rapport.models import AgentEndpoint, EndpointKind, RoutingMode
from rapport.numbers import caller_key
from rapport.settings import DEVELOPMENT_PEPPER
from rapport.store.dynamodb import DynamoStore
from rapport_local.engine import local_environment
from rapport_local.lambda_runner import LocalFunction

FLAT = re.compile(r"^[A-Za-z0-9_-]*$")
KEYS = {
    "rapport_mode",
    "rapport_agent",
    "rapport_queue",
    "rapport_reason",
    "rapport_decision",
    "rapport_explanation",
}
KNOWN_CALLER = "+12025550107"
FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

texts = st.text(max_size=40)
numbers = st.one_of(
    st.just(KNOWN_CALLER),
    st.from_regex(r"\+[1-9][0-9]{6,14}", fullmatch=True),
    st.sampled_from(["anonymous", "", "+", "sip:alice@example.com", "0049 30 555"]),
    texts,
)
endpoints = st.one_of(
    st.none(),
    st.fixed_dictionaries(
        {"Address": numbers, "Type": st.sampled_from(["TELEPHONE_NUMBER", "EMAIL", "OTHER", ""])}
    ),
    texts,
    st.integers(),
)
ids = st.one_of(st.uuids().map(str), texts, st.none(), st.integers())
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | texts,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(texts, children, max_size=3),
    max_leaves=10,
)


@st.composite
def contact_events(draw: st.DrawFn) -> Any:
    data: dict[str, Any] = {
        "Attributes": draw(st.one_of(st.dictionaries(texts, texts, max_size=3), json_values)),
        "Channel": draw(st.sampled_from(["VOICE", "CHAT", "TASK", "EMAIL", "", 7])),
        "ContactId": draw(ids),
        "CustomerEndpoint": draw(endpoints),
        "InitialContactId": draw(ids),
        "InitiationMethod": draw(
            st.sampled_from(["INBOUND", "OUTBOUND", "TRANSFER", "CALLBACK", "API", "?"])
        ),
        "InstanceARN": draw(texts),
        "Queue": draw(
            st.one_of(st.none(), st.fixed_dictionaries({"ARN": texts, "Name": texts}), json_values)
        ),
        "SystemEndpoint": draw(endpoints),
    }
    for field in draw(st.lists(st.sampled_from(sorted(data)), max_size=3)):
        data.pop(field, None)
    parameters = draw(
        st.one_of(
            st.fixed_dictionaries({"response": st.sampled_from(["STRING_MAP", "JSON", "json", "", "XML"])}),
            st.dictionaries(texts, texts, max_size=2),
            json_values,
        )
    )
    event: dict[str, Any] = {
        "Name": "ContactFlowEvent",
        "Details": {"ContactData": data, "Parameters": parameters},
    }
    return draw(st.one_of(st.just(event), json_values)) if draw(st.integers(0, 9)) == 0 else event


@pytest.fixture
def connect(dynamodb_endpoint: str, table: str, store: DynamoStore) -> LocalFunction:
    now = time.time()
    for index, product in enumerate(["x200-headphones", "soundbar-s5", "smart-tv-q9"]):
        user = f"00000000-0000-4000-8000-{index:012d}"
        store.put_agent(
            agent(
                f"connect-{index}",
                now - 100 * index,
                endpoint=AgentEndpoint(kind=EndpointKind.CONNECT, address=user),
                proficiency={product: 5},
            )
        )
    store.put_caller(
        caller_key(KNOWN_CALLER, DEVELOPMENT_PEPPER), profile(), [interest("soundbar-s5", 0.9, now)]
    )
    return LocalFunction(
        "ConnectRouterFunction",
        resources={"Table": table, "CallerKeySecret": ""},
        environment={**local_environment(dynamodb_endpoint), "POWERTOOLS_LOG_LEVEL": "ERROR"},
    )


def asked_for_json(event: Any) -> bool:
    try:
        return str(event["Details"]["Parameters"]["response"]).strip().upper() == "JSON"
    except (KeyError, TypeError, AttributeError):
        return False


@FUZZ
@given(event=contact_events())
def test_any_contact_event_gets_an_answer_connect_accepts(connect: LocalFunction, event: Any) -> None:
    started = time.perf_counter()
    answer = connect.invoke(json.loads(json.dumps(event)))
    assert time.perf_counter() - started < 1.5
    assert answer["rapport_mode"] in {mode.value for mode in RoutingMode}
    if asked_for_json(event):
        assert set(answer) == {*KEYS, "rapport_routing_criteria"}
        json.dumps(answer)  # serialisable as it is
        for step in answer["rapport_routing_criteria"]["Steps"]:
            assert 1 <= step["Expiry"]["DurationInSeconds"] <= 600
    else:
        assert set(answer) == KEYS
        for value in answer.values():
            assert isinstance(value, str) and FLAT.match(value) and len(value) <= 256
    if answer["rapport_agent"]:
        assert answer["rapport_mode"] in ("known_agent", "interest")
        assert answer["rapport_agent"].startswith("00000000-0000-4000-8000-")
