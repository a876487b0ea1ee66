"""The store's promises, held against both implementations: DynamoStore on DynamoDB Local and the
MemoryStore the unit tests and the compute benchmark use. If one drifts from the other, these fail."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from builders import DAY, agent, interest, profile
from rapport.budget import Deadline
from rapport.models import (
    MAX_CONCURRENT_CALLS,
    AgentState,
    Attempt,
    AttemptOutcome,
    DecisionRecord,
    LastAgent,
    Outcome,
    Presence,
    RoutingMode,
    line_key,
)
from rapport.pools import call_tag, free_line, lines_of
from rapport.store import AgentTaken, ConditionFailed, LetGo, Store
from rapport.store.dynamodb import DynamoStore
from rapport.store.layout import POOL_MAX_AGENTS, encode_record, item_size
from rapport.store.memory import MemoryStore
from rapport_local.engine import local_client

NOW = float(int(time.time()))  # whole seconds: the table keeps times to 1e-4 s
KEY = "ab" * 32
CALL = "6428e0d8-362e-46f6-8651-ecd25f4f6789"
TAG = call_tag(CALL)
OTHER = call_tag("another call")


@pytest.fixture(params=["dynamodb", "memory"])
def any_store(request: pytest.FixtureRequest) -> Iterator[Store]:
    if request.param == "memory":
        yield MemoryStore()
    else:
        yield DynamoStore(
            local_client(request.getfixturevalue("dynamodb_endpoint")), request.getfixturevalue("table")
        )


def deadline() -> Deadline:
    return Deadline(5)


def pool_of(store: Store, agent_id: str) -> str:
    found = store.agent(agent_id)
    assert found is not None
    return found.pool


def record(call_id: str, at: float, *, link_to: str | None = None, link_days: float = 30) -> DecisionRecord:
    link = None
    if link_to is not None:
        link = LastAgent(agent_id=link_to, pool="0", call_id=call_id, at=at, expires_at=at + link_days * DAY)
    return DecisionRecord(
        call_id=call_id,
        caller_key=KEY,
        decided_at=at,
        mode=RoutingMode.ANY_AVAILABLE,
        outcome=Outcome.ENDED if link_to else Outcome.FALLBACK,
        agent_id=link_to,
        link=link,
        expires_at=at + 90 * DAY,
    )


# -- the caller's context -------------------------------------------------------------------------------


def test_the_context_holds_profile_interests_and_the_latest_link(any_store: Store) -> None:
    any_store.put_caller(
        KEY,
        profile(consents={"interest_routing": True}),
        [interest("x200-headphones", 0.9, NOW), interest("soundbar-s5", 0.4, NOW)],
        [
            record("older", NOW - 5 * DAY, link_to="hamburg-02"),
            record("newer", NOW - 2 * DAY, link_to="berlin-07"),
            record("newest", NOW - DAY),  # went to the fallback: no link
        ],
    )
    context = any_store.caller_context(KEY, NOW, deadline())
    assert context.profile is not None and context.profile.consented_to("interest_routing")
    assert {i.product for i in context.interests} == {"x200-headphones", "soundbar-s5"}
    assert context.last_agent is not None
    assert (context.last_agent.agent_id, context.last_agent.call_id) == ("berlin-07", "newer")


def test_expired_items_are_left_out_even_before_ttl_deletes_them(any_store: Store) -> None:
    stale = interest("x200-headphones", 0.9, NOW - 100 * DAY).model_copy(update={"expires_at": NOW - DAY})
    any_store.put_caller(
        KEY, None, [stale], [record("old", NOW - 40 * DAY, link_to="berlin-07", link_days=30)]
    )
    context = any_store.caller_context(KEY, NOW, deadline())
    assert context.interests == [] and context.last_agent is None and context.profile is None


def test_a_caller_never_seen_has_an_empty_context(any_store: Store) -> None:
    context = any_store.caller_context("cd" * 32, NOW, deadline())
    assert (context.profile, context.interests, context.last_agent) == (None, [], None)


def test_a_stored_record_is_found_by_its_call_and_gives_its_link(any_store: Store) -> None:
    stored = record(CALL, NOW, link_to="berlin-07")
    any_store.put_record(stored, deadline())
    assert any_store.decision(KEY, CALL) == stored
    link = any_store.caller_context(KEY, NOW, deadline()).last_agent
    assert link is not None and link.call_id == CALL


def test_the_record_of_a_call_without_a_caller_key_is_found_by_its_call(any_store: Store) -> None:
    anonymous = record(CALL, NOW).model_copy(update={"caller_key": None})
    any_store.put_record(anonymous, deadline())
    assert any_store.decision(None, CALL) == anonymous


# -- pools ------------------------------------------------------------------------------------------------


def test_a_roster_is_packed_into_pools_the_directory_lists(any_store: Store) -> None:
    roster = [
        agent(f"agent-{i:03d}", NOW - i, proficiency={"tv": 5} if i % 2 else {"radio": 3}) for i in range(40)
    ]
    any_store.load_roster(roster)
    directory = any_store.directory(deadline())
    assert len(directory.pools) >= 40 // POOL_MAX_AGENTS
    seen = {
        a.agent_id for pool_id in directory.pools for a in any_store.pool(pool_id, NOW, deadline()).agents
    }
    assert seen == {a.agent_id for a in roster}
    tv_pools = set(directory.by_product["tv"])
    assert all(any_store.agent(a.agent_id).pool in tv_pools for a in roster if "tv" in a.proficiency)  # type: ignore[union-attr]


def test_an_added_agent_joins_a_pool_and_an_update_keeps_it_there(any_store: Store) -> None:
    any_store.put_agent(agent("berlin-07", NOW - 60, proficiency={"tv": 5}))
    pool = pool_of(any_store, "berlin-07")
    any_store.put_agent(agent("berlin-07", NOW - 10, presence=Presence.OFFLINE))
    updated = any_store.agent("berlin-07")
    assert updated is not None and updated.pool == pool and updated.presence is Presence.OFFLINE
    assert pool in any_store.directory(deadline()).pools


# -- reservations -----------------------------------------------------------------------------------------


@pytest.fixture
def two_free(any_store: Store) -> str:
    any_store.put_agent(agent("berlin-07", NOW - 600, wrap_up_seconds=45))
    any_store.put_agent(agent("hamburg-02", NOW - 300))
    return pool_of(any_store, "berlin-07")


def test_a_free_agent_is_held_and_a_repeat_for_the_same_call_is_harmless(
    any_store: Store, two_free: str
) -> None:
    any_store.reserve(two_free, "berlin-07", TAG, NOW, NOW + 35, deadline())
    any_store.reserve(two_free, "berlin-07", TAG, NOW, NOW + 35, deadline())
    held = any_store.agent("berlin-07")
    assert held is not None and held.reserved_by == TAG and held.state is AgentState.RINGING


def test_an_agent_held_by_another_call_is_taken_and_the_answer_shows_the_pool(
    any_store: Store, two_free: str
) -> None:
    any_store.reserve(two_free, "berlin-07", OTHER, NOW, NOW + 35, deadline())
    with pytest.raises(AgentTaken) as taken:
        any_store.reserve(two_free, "berlin-07", TAG, NOW, NOW + 35, deadline())
    assert taken.value.seats["berlin-07"].held_by == OTHER
    assert taken.value.seats["hamburg-02"].free_for(TAG, NOW)


@pytest.mark.parametrize("who", ["offline-01", "nobody-99"])
def test_an_offline_or_unknown_agent_cannot_be_held(any_store: Store, two_free: str, who: str) -> None:
    any_store.put_agent(agent("offline-01", NOW - 900, presence=Presence.OFFLINE))
    with pytest.raises(AgentTaken):
        any_store.reserve(two_free, who, TAG, NOW, NOW + 35, deadline())


def test_a_hold_lapses_by_itself(any_store: Store, two_free: str) -> None:
    any_store.reserve(two_free, "berlin-07", OTHER, NOW, NOW + 35, deadline())
    any_store.reserve(two_free, "berlin-07", TAG, NOW + 36, NOW + 71, deadline())
    held = any_store.agent("berlin-07")
    assert held is not None and held.reserved_by == TAG


def test_failing_over_frees_and_counts_the_missed_agent_in_the_same_write(
    any_store: Store, two_free: str
) -> None:
    any_store.reserve(two_free, "berlin-07", TAG, NOW, NOW + 35, deadline())
    any_store.reserve(
        two_free, "hamburg-02", TAG, NOW + 20, NOW + 55, deadline(), LetGo("berlin-07", missed=True)
    )
    missed, next_one = any_store.agent("berlin-07"), any_store.agent("hamburg-02")
    assert missed is not None and missed.reserved_by is None and missed.no_answers == 1
    assert missed.idle_since == pytest.approx(NOW + 20)  # to the back of the queue
    assert next_one is not None and next_one.reserved_by == TAG


def test_a_repeated_failover_counts_the_missed_agent_once(any_store: Store, two_free: str) -> None:
    any_store.reserve(two_free, "berlin-07", TAG, NOW, NOW + 35, deadline())
    for _ in range(2):
        any_store.reserve(
            two_free, "hamburg-02", TAG, NOW + 20, NOW + 55, deadline(), LetGo("berlin-07", True)
        )
    missed = any_store.agent("berlin-07")
    assert missed is not None and missed.no_answers == 1


def test_a_failover_to_a_taken_agent_changes_nothing(any_store: Store, two_free: str) -> None:
    any_store.reserve(two_free, "berlin-07", TAG, NOW, NOW + 35, deadline())
    any_store.reserve(two_free, "hamburg-02", OTHER, NOW, NOW + 35, deadline())
    with pytest.raises(AgentTaken):
        any_store.reserve(
            two_free, "hamburg-02", TAG, NOW + 20, NOW + 55, deadline(), LetGo("berlin-07", True)
        )
    still = any_store.agent("berlin-07")
    assert still is not None and still.reserved_by == TAG and still.no_answers == 0


def test_letting_go_of_an_unused_reservation_leaves_the_agent_as_it_was(
    any_store: Store, two_free: str
) -> None:
    before = any_store.agent("berlin-07")
    any_store.reserve(two_free, "berlin-07", TAG, NOW, NOW + 35, deadline())
    any_store.let_go(two_free, LetGo("berlin-07", missed=False), TAG, NOW + 1, deadline())
    after = any_store.agent("berlin-07")
    assert before is not None and after is not None
    assert after.reserved_by is None and after.no_answers == 0 and after.idle_since == before.idle_since
    any_store.let_go(two_free, LetGo("hamburg-02", missed=False), TAG, NOW + 1, deadline())  # not held: no-op


def test_a_connected_agent_is_held_for_the_call_and_then_wraps_up(any_store: Store, two_free: str) -> None:
    any_store.reserve(two_free, "berlin-07", TAG, NOW, NOW + 35, deadline())
    any_store.connect(two_free, "berlin-07", TAG, NOW + 10, deadline())
    talking = any_store.agent("berlin-07")
    assert talking is not None and talking.state is AgentState.ON_CALL and talking.busy_until > NOW + 3600
    any_store.release(two_free, "berlin-07", TAG, NOW + 100, True, deadline())
    wrapping = any_store.agent("berlin-07")
    assert wrapping is not None and wrapping.state is AgentState.WRAP_UP and wrapping.reserved_by is None
    assert wrapping.busy_until == pytest.approx(NOW + 145) and wrapping.idle_since == pytest.approx(NOW + 145)


def test_an_agent_whose_phone_only_rang_is_free_at_once(any_store: Store, two_free: str) -> None:
    any_store.reserve(two_free, "berlin-07", TAG, NOW, NOW + 35, deadline())
    any_store.release(two_free, "berlin-07", TAG, NOW + 5, False, deadline())
    freed = any_store.agent("berlin-07")
    assert freed is not None and freed.state is AgentState.IDLE and freed.busy_until == pytest.approx(NOW + 5)


def test_only_the_call_holding_an_agent_connects_or_releases_them(any_store: Store, two_free: str) -> None:
    any_store.reserve(two_free, "berlin-07", OTHER, NOW, NOW + 35, deadline())
    with pytest.raises(ConditionFailed):
        any_store.connect(two_free, "berlin-07", TAG, NOW, deadline())
    with pytest.raises(ConditionFailed):
        any_store.release(two_free, "berlin-07", TAG, NOW, True, deadline())


def test_answers_from_writes_and_reads_agree(any_store: Store, two_free: str) -> None:
    any_store.reserve(two_free, "berlin-07", TAG, NOW, NOW + 35, deadline())
    view = any_store.pool(two_free, NOW, deadline())
    assert view.seats["berlin-07"].held_by == TAG
    assert {a.agent_id for a in view.agents if a.is_available(NOW)} == {"hamburg-02"}


# -- agents who take more than one call at once ------------------------------------------------------------


@pytest.fixture
def two_lines(any_store: Store) -> str:
    any_store.put_agent(agent("berlin-07", NOW - 600, wrap_up_seconds=45, max_concurrent_calls=2))
    return pool_of(any_store, "berlin-07")


def test_each_line_is_held_by_one_call_and_a_third_call_finds_both_taken(
    any_store: Store, two_lines: str
) -> None:
    any_store.reserve(two_lines, "berlin-07", OTHER, NOW, NOW + 35, deadline())
    with pytest.raises(AgentTaken) as taken:
        any_store.reserve(two_lines, "berlin-07", TAG, NOW, NOW + 35, deadline())
    assert free_line(taken.value.seats, "berlin-07", TAG, NOW) == 2
    any_store.reserve(two_lines, "berlin-07~2", TAG, NOW, NOW + 35, deadline())
    with pytest.raises(AgentTaken):
        any_store.reserve(two_lines, "berlin-07~2", call_tag("a third call"), NOW, NOW + 35, deadline())
    view = any_store.pool(two_lines, NOW, deadline())
    (seen,) = view.agents
    assert not seen.is_available(NOW) and seen.line_for(NOW, TAG) == 2
    assert [seat.held_by for _, seat in lines_of(view.seats, "berlin-07")] == [OTHER, TAG]


def test_the_agents_presence_decides_for_every_line(any_store: Store, two_lines: str) -> None:
    any_store.set_away(two_lines, "berlin-07", "lunch", NOW, deadline())
    for line in ("berlin-07", "berlin-07~2"):
        with pytest.raises(AgentTaken):
            any_store.reserve(two_lines, line, TAG, NOW, NOW + 35, deadline())
    assert not any(a.is_available(NOW) for a in any_store.pool(two_lines, NOW, deadline()).agents)


def test_a_miss_on_any_line_counts_for_the_agent_and_wrap_up_is_the_agents(
    any_store: Store, two_lines: str
) -> None:
    any_store.reserve(two_lines, "berlin-07~2", TAG, NOW, NOW + 35, deadline())
    in_a_row = any_store.let_go(two_lines, LetGo("berlin-07~2", missed=True), TAG, NOW + 20, deadline())
    assert in_a_row == 1
    any_store.reserve(two_lines, "berlin-07~2", OTHER, NOW + 21, NOW + 56, deadline())
    any_store.connect(two_lines, "berlin-07~2", OTHER, NOW + 25, deadline())
    first = any_store.agent("berlin-07")
    assert first is not None and first.no_answers == 0  # answered: the count starts afresh
    any_store.release(two_lines, "berlin-07~2", OTHER, NOW + 100, True, deadline())
    seat = any_store.pool(two_lines, NOW + 100, deadline()).seats["berlin-07~2"]
    assert seat.state is AgentState.WRAP_UP and seat.busy_until == pytest.approx(NOW + 145)


def test_a_free_agent_comes_before_one_on_a_call_on_another_line(any_store: Store) -> None:
    any_store.put_agent(agent("berlin-07", NOW - 900, max_concurrent_calls=2))
    any_store.put_agent(agent("hamburg-02", NOW - 300))
    pool = pool_of(any_store, "berlin-07")
    any_store.reserve(pool, "berlin-07", OTHER, NOW, NOW + 35, deadline())
    agents = {a.agent_id: a for a in any_store.pool(pool, NOW, deadline()).agents}
    assert agents["berlin-07"].is_available(NOW) and agents["hamburg-02"].is_available(NOW)
    assert agents["hamburg-02"].idle_since < agents["berlin-07"].idle_since


# -- what DynamoDB bills: the sizes the design counts on ----------------------------------------------------


def test_a_full_pool_costs_one_write_unit_per_reservation(dynamodb_endpoint: str, table: str) -> None:
    store = DynamoStore(local_client(dynamodb_endpoint), table)
    long_names = [agent(f"{'x' * 20}-{i:02d}", NOW - i, wrap_up_seconds=3600) for i in range(POOL_MAX_AGENTS)]
    store.load_roster(long_names)
    pool = pool_of(store, long_names[0].agent_id)
    members = [a for a in long_names if pool_of(store, a.agent_id) == pool]
    consumed: list[float] = []
    store.client.meta.events.register(
        "provide-client-params.dynamodb.UpdateItem",
        lambda params, **_: params.update(ReturnConsumedCapacity="TOTAL"),
    )
    store.client.meta.events.register(
        "after-call.dynamodb.UpdateItem",
        lambda parsed, **_: consumed.append(parsed.get("ConsumedCapacity", {}).get("CapacityUnits", 0.0)),
    )
    for index, member in enumerate(members):  # every seat held, at its widest
        store.reserve(pool, member.agent_id, call_tag(f"call-{index}"), NOW, NOW + 9999, deadline())
    assert consumed and set(consumed) == {1.0}


def test_a_pool_of_agents_with_every_line_taken_still_costs_one_write_unit(
    dynamodb_endpoint: str, table: str
) -> None:
    store = DynamoStore(local_client(dynamodb_endpoint), table)
    lines = MAX_CONCURRENT_CALLS
    roster = [
        agent(f"{'y' * 20}-{i:02d}", NOW - i, wrap_up_seconds=3600, max_concurrent_calls=lines)
        for i in range(POOL_MAX_AGENTS)
    ]
    store.load_roster(roster)
    pool = pool_of(store, roster[0].agent_id)
    members = [a for a in roster if pool_of(store, a.agent_id) == pool]
    assert 1 < len(members) < POOL_MAX_AGENTS  # lines take room: fewer agents per pool
    consumed: list[float] = []
    store.client.meta.events.register(
        "provide-client-params.dynamodb.UpdateItem",
        lambda params, **_: params.update(ReturnConsumedCapacity="TOTAL"),
    )
    store.client.meta.events.register(
        "after-call.dynamodb.UpdateItem",
        lambda parsed, **_: consumed.append(parsed.get("ConsumedCapacity", {}).get("CapacityUnits", 0.0)),
    )
    for index, member in enumerate(members):
        for line in range(1, lines + 1):
            key = line_key(member.agent_id, line)
            store.reserve(pool, key, call_tag(f"call-{index}-{line}"), NOW, NOW + 9999, deadline())
    assert len(consumed) == len(members) * lines and set(consumed) == {1.0}


def test_a_typical_decision_record_fits_one_write_unit() -> None:
    calls = [
        Attempt(
            agent_id="agent-00021",
            mode=RoutingMode.ANY_AVAILABLE,
            at=NOW,
            outcome=AttemptOutcome.NO_ANSWER,
            error="CallNotAnswered",
        ),
        Attempt(
            agent_id="agent-00020",
            mode=RoutingMode.ANY_AVAILABLE,
            at=NOW + 20,
            outcome=AttemptOutcome.CONNECTED,
        ),
    ]
    typical = record(CALL, NOW, link_to="agent-00020").model_copy(update={"attempts": calls})
    assert item_size(encode_record(typical)) <= 1024
