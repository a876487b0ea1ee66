"""The call flow over the in-memory store: round trips, lost races, failover, outages, the
privacy gate when the profile cannot be read, and the caller-key secret when it cannot be had. The same
store promises are held against DynamoDB Local in tests/integration/test_store_contract.py."""

from __future__ import annotations

import random
from collections.abc import Callable

import pytest
from builders import DAY, agent, interest, profile
from rapport.budget import Deadline
from rapport.call import CallState, InboundCall, RouteKind, Stage
from rapport.calls import CallFlow
from rapport.models import (
    AttemptOutcome,
    DecisionRecord,
    Grounds,
    LastAgent,
    NoteCode,
    Outcome,
    RoutingMode,
)
from rapport.numbers import caller_key
from rapport.pools import ROSTER_MAX_AGE, PoolViews, call_tag
from rapport.privacy import load_rules
from rapport.secrets import RETRY_AFTER_SECONDS, PepperSource
from rapport.settings import Settings
from rapport.store import StoreUnavailable
from rapport.store.memory import MemoryStore

NOW = 1_790_000_000.0
PEPPER = "unit-test-pepper"
US = "+12025550107"
DE = "+493055501042"
VOICE_CONNECTOR = "arn:aws:chime:us-east-1:123456789012:vc/abcdefghijklmnopqrstu1"


def settings(**values: str) -> Settings:
    return Settings.model_validate({"TABLE_NAME": "unit", "voice_connector_arn": VOICE_CONNECTOR, **values})


def flow(store: MemoryStore, pepper: Callable[[], str] = lambda: PEPPER, **values: str) -> CallFlow:
    return CallFlow(
        store, settings(**values), load_rules(), PoolViews(random.Random(7)), PepperSource(pepper)
    )


def key(number: str) -> str:
    return caller_key(number, PEPPER)


def new_call(number: str | None, call_id: str = "call-1", region: str | None = "US") -> InboundCall:
    return InboundCall(call_id=call_id, caller=number, region=region if number else None)


def deadline() -> Deadline:
    return Deadline(1.5)


@pytest.fixture
def store() -> MemoryStore:
    """Two pools: one of headphone specialists, one of router specialists (so a call can span pools)."""
    memory = MemoryStore()
    headphones = [agent(f"hp-{i:02d}", NOW - 1000 - i, proficiency={"x200": 5 - i % 3}) for i in range(16)]
    routers = [agent(f"rt-{i:02d}", NOW - 500 - i, proficiency={"m3": 5}) for i in range(6)]
    memory.load_roster([*headphones, *routers])
    return memory


@pytest.fixture
def one_pool() -> MemoryStore:
    """A small team: everyone in one pool."""
    memory = MemoryStore()
    memory.load_roster([agent(f"team-{i:02d}", NOW - 1000 - i, proficiency={"x200": 3}) for i in range(10)])
    return memory


def warm(routing: CallFlow, store: MemoryStore) -> None:
    """A container that has routed a call already: it knows the directory and a pool."""
    routing.start(new_call(US, "warm-up"), NOW, deadline())
    store.requests.clear()
    store.rounds.clear()


def held_by(store: MemoryStore, call_id: str) -> list[str]:
    return sorted(a.agent_id for a in store.agents() if a.reserved_by == call_tag(call_id))


# -- round trips ---------------------------------------------------------------------------------------


def test_a_new_caller_is_routed_in_two_round_trips_by_a_warm_container(store: MemoryStore) -> None:
    routing = flow(store)
    warm(routing, store)
    route = routing.start(new_call("+12025550111"), NOW, deadline())
    assert route.kind is RouteKind.AGENT and route.state.mode is RoutingMode.ANY_AVAILABLE
    # The caller's context and their rate-limit count, then the reservation of the longest-idle agent
    # the container knows free.
    assert store.rounds == [["Query", "UpdateItem"], ["UpdateItem"]]
    assert held_by(store, "call-1") == [route.state.agent_id]


def test_a_fresh_container_reads_the_directory_and_a_pool_first(store: MemoryStore) -> None:
    routing = flow(store)
    routing.start(new_call(US), NOW, deadline())
    # The directory and the caller's context together, then the pool, then the reservation.
    assert store.rounds == [["Query", "GetItem", "UpdateItem"], ["Query"], ["UpdateItem"]]


def test_a_container_whose_directory_is_old_rereads_it_without_an_extra_round_trip(
    store: MemoryStore,
) -> None:
    routing = flow(store)
    warm(routing, store)
    later = NOW + ROSTER_MAX_AGE + 1
    route = routing.start(new_call("+12025550111"), later, Deadline(1.5))
    assert route.kind is RouteKind.AGENT
    # The old directory still says which pool to read: it is read with the new directory and the context.
    assert store.rounds == [["Query", "GetItem", "Query", "UpdateItem"], ["UpdateItem"]]


def test_a_caller_with_no_number_needs_no_context_read(store: MemoryStore) -> None:
    routing = flow(store)
    warm(routing, store)
    route = routing.start(new_call(None), NOW, deadline())
    assert route.kind is RouteKind.AGENT and store.rounds == [["UpdateItem"]]
    assert route.state.record is not None
    assert NoteCode.NO_CALLER_KEY in {note.code for note in route.state.record.notes}


def _returning_caller(routing: CallFlow, store: MemoryStore, same_pool: bool) -> tuple[LastAgent, str, str]:
    """A warm container, and a caller whose last agent is in the pool it knows (or in the other pool) and
    who is interested in the other pool's product. Returns the link, the known pool and the other pool."""
    first = routing.start(new_call("+12025550111", "warm-up"), NOW, deadline())
    assert first.state.ringing is not None
    known_pool = first.state.ringing.pool
    other_pool = next(p for p in store.directory(deadline()).pools if p != known_pool)
    team = [a for a in store.agents() if a.pool == (known_pool if same_pool else other_pool)]
    agent_id = next(a.agent_id for a in team if a.agent_id != first.state.agent_id)
    ours = next(a for a in store.agents() if a.pool == known_pool)
    product = "m3" if ours.agent_id.startswith("hp-") else "x200"
    link = LastAgent(
        agent_id=agent_id, pool=team[0].pool, call_id="earlier", at=NOW - DAY, expires_at=NOW + DAY
    )
    store.put_caller(key(US), None, [interest(product, 0.9, NOW)], [_earlier(link)])
    store.rounds.clear()
    return link, known_pool, other_pool


def test_a_returning_caller_is_reserved_their_agent_while_the_pools_of_their_interests_are_read(
    store: MemoryStore,
) -> None:
    routing = flow(store)
    link, _, other_pool = _returning_caller(routing, store, same_pool=True)
    route = routing.start(new_call(US), NOW, deadline())
    assert route.state.agent_id == link.agent_id and route.state.mode is RoutingMode.KNOWN_AGENT
    # Round 2: the known agent's reservation and, for the failover candidates, a read of the pool of
    # the caller's interest, together.
    assert store.rounds == [["Query", "UpdateItem"], ["UpdateItem", "Query"]]
    record = route.state.record
    assert record is not None
    assert [(c.mode, c.pool) for c in record.candidates[1:3]] == [(RoutingMode.INTEREST, other_pool)] * 2
    assert held_by(store, "call-1") == [link.agent_id]


def test_a_returning_caller_whose_agent_is_in_a_pool_the_container_does_not_know_still_needs_two_trips(
    store: MemoryStore,
) -> None:
    routing = flow(store)
    link, _, _ = _returning_caller(routing, store, same_pool=False)
    route = routing.start(new_call(US), NOW, deadline())
    assert route.state.agent_id == link.agent_id and route.state.mode is RoutingMode.KNOWN_AGENT
    # The agent's pool (their interest's too) is read with the reservation, to learn where they ring.
    assert store.rounds == [["Query", "UpdateItem"], ["UpdateItem", "Query"]]
    assert route.endpoint is not None and route.endpoint.address == link.agent_id
    assert held_by(store, "call-1") == [link.agent_id]


def test_when_the_known_agent_is_taken_elsewhere_the_best_interest_match_gets_the_call(
    store: MemoryStore,
) -> None:
    routing = flow(store)
    link, _, other_pool = _returning_caller(routing, store, same_pool=True)
    store.reserve(link.pool, link.agent_id, call_tag("elsewhere"), NOW, NOW + 35, deadline())
    store.rounds.clear()
    route = routing.start(new_call(US), NOW, deadline())
    assert route.state.mode is RoutingMode.INTEREST and route.state.ringing is not None
    assert route.state.ringing.pool == other_pool
    # The race lost in round 2 brought the interest's pool; round 3 reserves the best match there.
    assert store.rounds == [["Query", "UpdateItem"], ["UpdateItem", "Query"], ["UpdateItem"]]
    assert held_by(store, "call-1") == [route.state.agent_id]


def test_interests_pick_the_best_skilled_agent(store: MemoryStore) -> None:
    store.put_caller(key(US), None, [interest("m3", 0.9, NOW)])
    route = flow(store).start(new_call(US), NOW, deadline())
    assert route.state.mode is RoutingMode.INTEREST and str(route.state.agent_id).startswith("rt-")
    assert route.state.record is not None and "m3" in route.state.record.interests


# -- contention ----------------------------------------------------------------------------------------


def test_a_call_that_loses_the_race_moves_on_to_another_free_agent(one_pool: MemoryStore) -> None:
    store = one_pool
    routing = flow(store)
    warm(routing, store)
    # Another container holds every agent this container still believes free but one.
    free = sorted((a for a in store.agents() if a.is_available(NOW)), key=lambda a: a.idle_since)
    for taken in free[:-1]:
        store.reserve(taken.pool, taken.agent_id, call_tag("elsewhere"), NOW, NOW + 35, deadline())
    route = routing.start(new_call(None), NOW, deadline())
    assert route.kind is RouteKind.AGENT and route.state.agent_id == free[-1].agent_id
    assert store.requests.count("UpdateItem") >= 2  # at least one race lost on the way


def test_when_every_agent_is_taken_the_call_gets_the_fallback_and_says_why(store: MemoryStore) -> None:
    routing = flow(store, fallback_route="+18005550199")
    warm(routing, store)
    for a in store.agents():
        if a.is_available(NOW):
            store.reserve(a.pool, a.agent_id, call_tag("elsewhere"), NOW, NOW + 35, deadline())
    route = routing.start(new_call(US), NOW, deadline())
    assert route.kind is RouteKind.FALLBACK_NUMBER and route.number == "+18005550199"
    assert route.reason in ("every candidate was taken by other calls", "no agent is available")
    assert held_by(store, "call-1") == []


# -- failover ------------------------------------------------------------------------------------------


def test_failover_in_the_same_pool_is_one_write_that_frees_and_counts_the_missed_agent(
    store: MemoryStore,
) -> None:
    routing = flow(store)
    warm(routing, store)
    first = routing.start(new_call(None), NOW, deadline())
    store.requests.clear()
    second = routing.no_answer(first.state, "call-1", "CallNotAnswered", NOW + 20, deadline())
    assert second.kind is RouteKind.AGENT and second.state.agent_id != first.state.agent_id
    assert store.requests == ["UpdateItem"]
    missed = store.agent(str(first.state.agent_id))
    assert missed is not None and missed.no_answers == 1 and missed.reserved_by is None
    assert second.state.record is not None
    assert [a.outcome for a in second.state.record.attempts] == [
        AttemptOutcome.NO_ANSWER,
        AttemptOutcome.RINGING,
    ]


def test_after_a_failover_the_container_still_offers_the_agent_who_missed_to_its_next_call() -> None:
    pair = MemoryStore()
    pair.load_roster([agent("berlin-07", NOW - 600), agent("hamburg-02", NOW - 300, wrap_up_seconds=30)])
    routing = flow(pair)
    first = routing.start(new_call(None, "call-1"), NOW, deadline())
    assert first.state.agent_id == "berlin-07"
    second = routing.no_answer(first.state, "call-1", "CallNotAnswered", NOW + 1, deadline())
    assert second.state.agent_id == "hamburg-02"
    talking = routing.connected(second.state, "call-1", NOW + 2, deadline())
    routing.ended(talking, "call-1", NOW + 3, deadline())  # hamburg-02 wraps up for 30 s
    # Within the container's view's lifetime, without reading the pool again: berlin-07 is free.
    pair.rounds.clear()
    third = routing.start(new_call(None, "call-2"), NOW + 4, deadline())
    assert third.kind is RouteKind.AGENT and third.state.agent_id == "berlin-07"
    assert pair.rounds == [["UpdateItem"]]


def test_when_no_candidate_is_left_the_missed_agent_is_freed_and_the_fallback_takes_the_call(
    store: MemoryStore,
) -> None:
    routing = flow(store)
    route = routing.start(new_call(US), NOW, deadline())
    rang = []
    while route.kind is RouteKind.AGENT:
        rang.append(route.state.agent_id)
        route = routing.no_answer(route.state, "call-1", "CallNotAnswered", NOW + 20 * len(rang), deadline())
    assert len(rang) == settings().max_candidates
    assert route.kind is RouteKind.MESSAGE and held_by(store, "call-1") == []
    assert route.reason == "no candidate answered (last: CallNotAnswered)"


def test_a_whole_call_leaves_one_record_and_frees_the_agent_into_wrap_up(store: MemoryStore) -> None:
    routing = flow(store)
    route = routing.start(new_call(US), NOW, deadline())
    talking = routing.connected(route.state, "call-1", NOW + 9, deadline())
    ended = routing.ended(talking, "call-1", NOW + 200, deadline())
    assert ended.stage is Stage.DONE
    record = store.decision(key(US), "call-1")
    assert record is not None and record.outcome is Outcome.ENDED and record.agent_id == route.state.agent_id
    assert record.link is not None and record.link.expires_at == pytest.approx(NOW + 9 + 365 * DAY)
    freed = store.agent(str(route.state.agent_id))
    assert freed is not None and freed.state.value == "wrap_up"


# -- outages -------------------------------------------------------------------------------------------


def test_a_failing_table_gives_the_fallback_with_the_error_as_the_reason(store: MemoryStore) -> None:
    def failing(operation: str) -> None:
        raise StoreUnavailable(f"{operation} failed: ThrottlingException")

    store.before_request = failing
    route = flow(store, fallback_route="+18005550199").start(new_call(US), NOW, deadline())
    assert route.kind is RouteKind.FALLBACK_NUMBER
    assert "ThrottlingException" in route.reason


def test_a_failing_reservation_gives_the_fallback_and_holds_nobody(store: MemoryStore) -> None:
    routing = flow(store)
    warm(routing, store)

    def writes_fail(operation: str) -> None:
        if operation == "UpdateItem":
            raise StoreUnavailable("UpdateItem failed: InternalServerError")

    store.before_request = writes_fail
    route = routing.start(new_call(US), NOW, deadline())
    assert route.kind is RouteKind.MESSAGE and "InternalServerError" in route.reason
    store.before_request = None
    assert held_by(store, "call-1") == []


# -- the privacy gate when the profile cannot be read --------------------------------------------------


def test_an_unreadable_profile_gets_the_strictest_rules_even_for_a_caller_who_objected(
    store: MemoryStore,
) -> None:
    """A US caller who objected, with an interest on record: if the profile cannot be read, nothing
    about them may be used or kept, live interest included, and the record says why."""
    store.put_caller(key(US), profile(objected=True), [interest("m3", 0.9, NOW)])

    def context_fails(operation: str) -> None:
        if operation == "Query" and not store.requests[:-1]:
            raise StoreUnavailable("Query failed: ReadTimeoutError")

    store.before_request = context_fails
    call = InboundCall(call_id="call-1", caller=US, region="US", live_products=("m3",))
    route = flow(store).start(call, NOW, deadline())
    assert route.kind is RouteKind.AGENT
    assert route.state.mode is RoutingMode.ANY_AVAILABLE
    assert route.state.link_days == 0
    record = route.state.record
    assert record is not None and record.interests == {}
    assert (record.privacy.interests, record.privacy.known_agent) == (False, False)
    assert record.privacy.interests_grounds is Grounds.PROFILE_UNREADABLE
    assert any(note.code is NoteCode.PROFILE_UNAVAILABLE for note in record.notes)
    assert "strictest rules" in " ".join(routing_reasons(record))


def routing_reasons(record: DecisionRecord) -> list[str]:
    from rapport.explain import record_reasons

    return record_reasons(record)


# -- the caller-key secret -----------------------------------------------------------------------------


def test_without_the_secret_calls_are_routed_without_profile_data_and_it_is_not_asked_for_again(
    store: MemoryStore,
) -> None:
    fetches: list[float] = []
    clock = [0.0]

    def unavailable() -> str:
        fetches.append(clock[0])
        raise TimeoutError("Secrets Manager did not answer")

    source = PepperSource(unavailable, clock=lambda: clock[0])
    routing = CallFlow(store, settings(), load_rules(), PoolViews(random.Random(1)), source)
    store.put_caller(key(US), None, [interest("m3", 0.9, NOW)])
    first = routing.start(new_call(US, "call-1"), NOW, deadline())
    clock[0] = RETRY_AFTER_SECONDS / 2
    second = routing.start(new_call(US, "call-2"), NOW, deadline())
    assert fetches == [0.0]  # once, not per call
    for route in (first, second):
        assert route.kind is RouteKind.AGENT and route.state.caller_key is None
        assert route.state.mode is RoutingMode.ANY_AVAILABLE
    # Later events of the call never ask for it: their state carries what they need.
    routing.ended(
        routing.connected(first.state, "call-1", NOW + 5, deadline()), "call-1", NOW + 60, deadline()
    )
    assert fetches == [0.0]
    clock[0] = RETRY_AFTER_SECONDS + 1
    routing.start(new_call(US, "call-3"), NOW, deadline())
    assert fetches == [0.0, RETRY_AFTER_SECONDS + 1]


def test_the_secret_is_fetched_once_per_container(store: MemoryStore) -> None:
    fetches = []

    def fetch() -> str:
        fetches.append(1)
        return PEPPER

    routing = CallFlow(store, settings(), load_rules(), PoolViews(), PepperSource(fetch))
    for index in range(3):
        routing.start(new_call(US, f"call-{index}"), NOW, deadline())
    assert fetches == [1]


def _pool_of(store: MemoryStore, agent_id: str) -> str:
    found = store.agent(agent_id)
    assert found is not None
    return found.pool


def _earlier(link: LastAgent) -> DecisionRecord:
    return DecisionRecord(
        call_id=link.call_id,
        caller_key=key(US),
        decided_at=link.at,
        mode=RoutingMode.ANY_AVAILABLE,
        outcome=Outcome.ENDED,
        agent_id=link.agent_id,
        link=link,
        expires_at=link.expires_at,
    )


def test_state_of_a_new_call_carries_what_later_events_need(store: MemoryStore) -> None:
    route = flow(store).start(new_call(DE, region="DE"), NOW, deadline())
    state = route.state
    assert isinstance(state, CallState) and state.stage is Stage.AGENT
    assert state.caller_key == key(DE) and state.link_days == 180  # Germany keeps the link 180 days
    assert state.record is not None and state.record.expires_at == pytest.approx(NOW + 180 * DAY)
