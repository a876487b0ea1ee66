"""The sentences a caller (or an operator) reads about a decision, rendered from its stored facts. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime

from rapport.models import (
    Attempt,
    AttemptOutcome,
    Candidate,
    Decision,
    DecisionRecord,
    Grounds,
    InterestFact,
    Note,
    NoteCode,
    PrivacyFacts,
    RoutingMode,
)

GROUNDS = {
    Grounds.NOT_PERMITTED: "not permitted here",
    Grounds.OBJECTED: "the caller objected",
    Grounds.LEGITIMATE_INTEREST: "legitimate interest, no objection on record",
    Grounds.CONSENTED: "the caller consented",
    Grounds.NEEDS_CONSENT: "needs consent, none on record",
    Grounds.PROFILE_UNREADABLE: "the caller's choices could not be read, so the strictest rules apply",
}

NOTES = {
    NoteCode.NO_CALLER_KEY: "no usable caller number (or no caller key): routed without profile data",
    NoteCode.PROFILE_UNAVAILABLE: (
        "caller profile unavailable ({detail}): no profile data, no live interest and no new last-agent link"
    ),
    NoteCode.LAST_AGENT_BUSY: "the caller's last agent `{detail}` is not available",
    NoteCode.NO_AGENT_KNOWS_PRODUCTS: "no available agent knows the products the caller is interested in",
    NoteCode.NO_CURRENT_INTEREST: "no current interest on record",
    NoteCode.NO_VOICE_CONNECTOR: "{detail} agent(s) on a Voice Connector skipped: none is configured",
    NoteCode.NO_AGENT_AVAILABLE: "no agent is available",
    NoteCode.ALL_TAKEN: "every candidate was taken by other calls",
    NoteCode.AGENTS_UNREADABLE: "agents unavailable ({detail})",
    NoteCode.RESERVATION_FAILED: "could not reserve an agent ({detail})",
    NoteCode.NO_CANDIDATE_ANSWERED: "no candidate answered (last: {detail})",
    NoteCode.NO_CALLER_ID: "no caller ID to bridge with",
    NoteCode.REJECTED: "the SMA rejected a response",
    NoteCode.BUDGET_SPENT: "the time budget ran out before routing finished ({detail})",
}


def day(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%d %b").lstrip("0")


def idle_for(idle_since: float | None, now: float) -> str:
    if not idle_since or idle_since <= 0:
        return "no call taken yet"
    minutes = int(max(0.0, now - idle_since) // 60)
    return f"idle for {minutes // 60} h {minutes % 60} min" if minutes >= 60 else f"idle for {minutes} min"


def privacy_reasons(facts: PrivacyFacts) -> list[str]:
    where = f"{facts.label} [policy {facts.policy_version}]"
    return [
        f"{where}: interest data {'used' if facts.interests else 'not used'}"
        f" ({GROUNDS[facts.interests_grounds]})",
        f"{where}: last-agent link {'used' if facts.known_agent else 'not used'}"
        f" ({GROUNDS[facts.known_agent_grounds]})",
    ]


def note(item: Note) -> str:
    return NOTES[item.code].format(detail=item.detail)


_SIGNAL_KINDS = {"social", "web", "crm", "call"}


def _sources(sources: list[str]) -> str:
    """ "a social signal", "social and web signals", "this call"."""
    kinds = [source for source in sources if source in _SIGNAL_KINDS]
    others = [source for source in sources if source not in _SIGNAL_KINDS]
    parts = []
    if len(kinds) == 1:
        parts.append(f"a {kinds[0]} signal")
    elif kinds:
        parts.append(f"{', '.join(kinds[:-1])} and {kinds[-1]} signals")
    parts += others
    return " and ".join(parts) or "an unknown source"


def candidate_reasons(candidate: Candidate, interests: Mapping[str, InterestFact], now: float) -> list[str]:
    """Why this agent is on the list: the last call, each matching interest, or how long they waited."""
    if candidate.mode is RoutingMode.KNOWN_AGENT:
        when = day(candidate.known_since) if candidate.known_since else "an earlier call"
        return [f"the caller spoke with `{candidate.agent_id}` on {when}; available now"]
    if candidate.mode is RoutingMode.INTEREST:
        reasons = []
        for product, skill in candidate.skills.items():
            fact = interests.get(product)
            if fact is None:
                continue
            sources = _sources(fact.sources)
            words = f' ("{fact.evidence}")' if fact.evidence else ""
            reasons.append(
                f"interest in `{product}` {fact.score:.2f} from {sources} of {day(fact.at)}{words}"
                f" → agent `{candidate.agent_id}`, proficiency {skill.proficiency},"
                f" conversion {skill.conversion:.0%}"
            )
        return reasons
    return [f"agent `{candidate.agent_id}` available, {idle_for(candidate.idle_since, now)}"]


def decision_reasons(decision: Decision) -> list[str]:
    """What a decision says beyond its candidates: what the privacy rules allowed, and its notes."""
    return [*privacy_reasons(decision.privacy), *(note(item) for item in decision.notes)]


def attempt_reason(attempt: Attempt) -> str | None:
    if attempt.outcome is AttemptOutcome.NO_ANSWER:
        return f"`{attempt.agent_id}` did not answer ({attempt.error})"
    return None


def record_reasons(record: DecisionRecord) -> list[str]:
    """Everything a record says, in the order a caller would ask: who took the call and why, who did not
    answer, what the privacy rules allowed, and anything else worth knowing."""
    chosen = next((c for c in record.candidates if c.agent_id == record.agent_id), None)
    reasons = candidate_reasons(chosen, record.interests, record.decided_at) if chosen else []
    reasons += [reason for attempt in record.attempts if (reason := attempt_reason(attempt))]
    reasons += privacy_reasons(record.privacy)
    reasons += [note(item) for item in record.notes]
    return reasons
