"""The sentences a caller (or an operator) reads about a decision, rendered from its stored facts. Pure.

Every sentence exists in English and in German (`Language`, English by default, so that a call site that
names no language reads what it always did). Both speak of the caller in the third person ("the caller",
"der Anrufer"). Dates, percentages and decimals follow the language ("30 Nov", "33%", 0.82 in English;
"30. Nov.", "33 %", 0,82 in German) from fixed tables, never from the process locale. What a record stores
as text is shown as stored: agent ids, product ids, error codes in notes, the words of a signal. The facts
hold no phone number, so no sentence can contain one.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from rapport.models import (
    Attempt,
    AttemptOutcome,
    Candidate,
    Decision,
    DecisionRecord,
    Grounds,
    InterestFact,
    Language,
    Note,
    NoteCode,
    PrivacyFacts,
    RoutingMode,
    Skill,
)

GERMAN_SPEAKING = frozenset({"DE", "AT", "CH", "LI"})
"""Jurisdictions whose callers read German reasons (`language_for`)."""

LIVE_INTEREST = "this call"
"""The source stored for an interest the call itself carried (`rapport.new_call.LIVE_INTEREST_SOURCE`)."""

GROUNDS: Mapping[Language, Mapping[Grounds, str]] = {
    "en": {
        Grounds.NOT_PERMITTED: "not permitted here",
        Grounds.OBJECTED: "the caller objected",
        Grounds.LEGITIMATE_INTEREST: "legitimate interest, no objection on record",
        Grounds.CONSENTED: "the caller consented",
        Grounds.NEEDS_CONSENT: "needs consent, none on record",
        Grounds.PROFILE_UNREADABLE: "the caller's choices could not be read, so the strictest rules apply",
        Grounds.CAPPED: "allowed, but the policy's cap was reached",
    },
    "de": {
        Grounds.NOT_PERMITTED: "hier nicht erlaubt",
        Grounds.OBJECTED: "der Anrufer hat widersprochen",
        Grounds.LEGITIMATE_INTEREST: "berechtigtes Interesse, kein Widerspruch vermerkt",
        Grounds.CONSENTED: "der Anrufer hat eingewilligt",
        Grounds.NEEDS_CONSENT: "Einwilligung nötig, keine vermerkt",
        Grounds.PROFILE_UNREADABLE: (
            "die Einwilligungen und Widersprüche des Anrufers konnten nicht gelesen werden,"
            " daher gelten die strengsten Regeln"
        ),
        Grounds.CAPPED: "erlaubt, aber die Obergrenze der Richtlinie war erreicht",
    },
}

NOTES: Mapping[Language, Mapping[NoteCode, str]] = {
    "en": {
        NoteCode.NO_CALLER_KEY: "no usable caller number (or no caller key): routed without profile data",
        NoteCode.PROFILE_UNAVAILABLE: (
            "caller profile unavailable ({detail}): no profile data, no live interest and no new last-agent"
            " link"
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
        NoteCode.INTEREST_CAP: (
            "interest data not used: the caller was already routed on it {times} {days} (the policy's cap)"
        ),
        NoteCode.ASKED_IN_CALL: "asked in this call: {answer}",
        NoteCode.DIALLED_LINE: "the caller dialled the `{detail}` line",
    },
    "de": {
        NoteCode.NO_CALLER_KEY: (
            "keine verwendbare Rufnummer des Anrufers (oder kein Anruferschlüssel):"
            " ohne Profildaten vermittelt"
        ),
        NoteCode.PROFILE_UNAVAILABLE: (
            "Anruferprofil nicht verfügbar ({detail}): keine Profildaten, kein Interesse aus diesem Anruf und"
            " keine neue Verknüpfung mit dem letzten Mitarbeiter"
        ),
        NoteCode.LAST_AGENT_BUSY: "der letzte Mitarbeiter des Anrufers, `{detail}`, ist nicht verfügbar",
        NoteCode.NO_AGENT_KNOWS_PRODUCTS: (
            "kein verfügbarer Mitarbeiter kennt die Produkte, für die sich der Anrufer interessiert"
        ),
        NoteCode.NO_CURRENT_INTEREST: "kein aktuelles Interesse vermerkt",
        NoteCode.NO_VOICE_CONNECTOR: (
            "{detail} Mitarbeiter über einen Voice Connector übersprungen: keiner ist eingerichtet"
        ),
        NoteCode.NO_AGENT_AVAILABLE: "kein Mitarbeiter ist verfügbar",
        NoteCode.ALL_TAKEN: "alle infrage kommenden Mitarbeiter waren durch andere Anrufe belegt",
        NoteCode.AGENTS_UNREADABLE: "Mitarbeiter nicht abrufbar ({detail})",
        NoteCode.RESERVATION_FAILED: "es konnte kein Mitarbeiter reserviert werden ({detail})",
        NoteCode.NO_CANDIDATE_ANSWERED: "kein angerufener Mitarbeiter hat abgenommen (zuletzt: {detail})",
        NoteCode.NO_CALLER_ID: "keine Anruferkennung zum Weiterverbinden",
        NoteCode.REJECTED: "die SMA hat eine Antwort abgelehnt",
        NoteCode.BUDGET_SPENT: (
            "das Zeitbudget war aufgebraucht, bevor die Vermittlung abgeschlossen war ({detail})"
        ),
        NoteCode.INTEREST_CAP: (
            "Interessendaten nicht genutzt: der Anrufer wurde {days} bereits {times} auf dieser Grundlage"
            " vermittelt (Obergrenze der Richtlinie)"
        ),
        NoteCode.ASKED_IN_CALL: "in diesem Anruf gefragt: {answer}",
        NoteCode.DIALLED_LINE: "der Anrufer hat die Rufnummer `{detail}` gewählt",
    },
}

RULE_LABELS_DE: Mapping[str, str] = {
    "default": "strengste Regeln (Land unbekannt oder nicht gelistet)",
    "DE": "Deutschland (DSGVO, TDDDG)",
    "AT": "Österreich (DSGVO, TKG)",
    "FR": "Frankreich (DSGVO)",
    "GB": "Vereinigtes Königreich (UK GDPR, PECR)",
    "US": "Vereinigte Staaten",
    "CA": "Kanada (PIPEDA)",
}
"""German names of the rule sets of `policy/jurisdictions.json`, by rule set; records store the English."""


@dataclass(frozen=True)
class Words:
    """The words of one language that are not a whole ground or note: templates, units, dates, numbers."""

    where: str
    interests_use: str
    known_agent_use: str
    used: str
    not_used: str
    spoke_with: str
    on_day: str
    earlier_call: str
    interest: str
    converts: str
    """An agent's learned conversion for the product, and the calls it rests on."""
    one_call: str
    calls: str
    no_calls: str
    evidence: str
    available: str
    available_for_line: str
    no_call_yet: str
    idle_minutes: str
    idle_hours: str
    no_answer: str
    one_signal: str
    many_signals: str
    kind_before_last: str
    kinds: Mapping[str, str]
    sources: Mapping[str, str]
    conjunction: str
    unknown_source: str
    once: str
    times: str
    last_day: str
    last_days: str
    cap_unknown: str
    answers: Mapping[str, str]
    unknown_answer: str
    date: str
    months: tuple[str, ...]
    decimal_point: str
    percent: str


WORDS: Mapping[Language, Words] = {
    "en": Words(
        where="{label} [policy {version}]",
        interests_use="{where}: interest data {used} ({grounds})",
        known_agent_use="{where}: last-agent link {used} ({grounds})",
        used="used",
        not_used="not used",
        spoke_with="the caller spoke with `{agent}` {when}; available now",
        on_day="on {day}",
        earlier_call="on an earlier call",
        interest=(
            "interest in `{product}` {score} from {sources} of {day}{evidence} → agent `{agent}`,"
            " proficiency {proficiency}, {conversion}"
        ),
        converts="converts {percent}{calls}",
        one_call="1 call",
        calls="{count} calls",
        no_calls="no calls of it yet",
        evidence=' ("{words}")',
        available="agent `{agent}` available, {idle}",
        available_for_line="agent `{agent}` knows the products of the line dialled, available, {idle}",
        no_call_yet="no call taken yet",
        idle_minutes="idle for {minutes} min",
        idle_hours="idle for {hours} h {minutes} min",
        no_answer="`{agent}` did not answer ({error})",
        one_signal="a {kind} signal",
        many_signals="{kinds} and {last} signals",
        kind_before_last="{kind}",
        kinds={"social": "social", "web": "web", "crm": "crm", "call": "call"},
        sources={LIVE_INTEREST: "this call"},
        conjunction=" and ",
        unknown_source="an unknown source",
        once="once",
        times="{count} times",
        last_day="in the last day",
        last_days="in the last {count} days",
        cap_unknown=(
            "interest data not used: the caller was already routed on it as often as the policy allows"
        ),
        answers={
            "yes": "the caller agreed to the use of their data",
            "no": "the caller declined the use of their data",
            "no_answer": "the caller did not answer (counted as no)",
        },
        unknown_answer="the answer is not known",
        date="{day} {month}",
        months=("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"),
        decimal_point=".",
        percent="{number}%",
    ),
    "de": Words(
        where="{label} [Richtlinie {version}]",
        interests_use="{where}: Interessendaten {used} ({grounds})",
        known_agent_use="{where}: Verknüpfung mit dem letzten Mitarbeiter {used} ({grounds})",
        used="genutzt",
        not_used="nicht genutzt",
        spoke_with="der Anrufer hat {when} mit `{agent}` gesprochen; jetzt verfügbar",
        on_day="am {day}",
        earlier_call="bei einem früheren Anruf",
        interest=(
            "Interesse an `{product}` {score} aus {sources} vom {day}{evidence} → Mitarbeiter `{agent}`,"
            " Kenntnisstufe {proficiency}, {conversion}"
        ),
        converts="Abschlussquote {percent}{calls}",
        one_call="1 Anruf",
        calls="{count} Anrufe",
        no_calls="noch keine Anrufe dazu",
        evidence=" („{words}“)",
        available="Mitarbeiter `{agent}` verfügbar, {idle}",
        available_for_line=(
            "Mitarbeiter `{agent}` kennt die Produkte der gewählten Rufnummer, verfügbar, {idle}"
        ),
        no_call_yet="noch kein Anruf angenommen",
        idle_minutes="seit {minutes} Min. frei",
        idle_hours="seit {hours} Std. {minutes} Min. frei",
        no_answer="`{agent}` hat nicht abgenommen ({error})",
        one_signal="einem {kind}-Signal",
        many_signals="{kinds} und {last}-Signalen",
        kind_before_last="{kind}-",
        kinds={"social": "Social-Media", "web": "Web", "crm": "CRM", "call": "Anruf"},
        sources={LIVE_INTEREST: "diesem Anruf"},
        conjunction=" und ",
        unknown_source="einer unbekannten Quelle",
        once="einmal",
        times="{count}-mal",
        last_day="innerhalb des letzten Tages",
        last_days="in den letzten {count} Tagen",
        cap_unknown=(
            "Interessendaten nicht genutzt: der Anrufer wurde bereits so oft auf dieser Grundlage vermittelt,"
            " wie die Richtlinie erlaubt"
        ),
        answers={
            "yes": "der Anrufer hat der Nutzung seiner Daten zugestimmt",
            "no": "der Anrufer hat die Nutzung seiner Daten abgelehnt",
            "no_answer": "der Anrufer hat nicht geantwortet (gilt als Nein)",
        },
        unknown_answer="die Antwort ist nicht bekannt",
        date="{day}. {month}",
        months=(
            "Jan.",
            "Feb.",
            "März",
            "Apr.",
            "Mai",
            "Juni",
            "Juli",
            "Aug.",
            "Sept.",
            "Okt.",
            "Nov.",
            "Dez.",
        ),
        decimal_point=",",
        percent="{number} %",
    ),
}

_CAP = re.compile(r"(\d+)/(\d+)", re.ASCII)
"""The detail of an `INTEREST_CAP` note: "<times>/<days>"."""


def language_for(jurisdiction: str | None) -> Language:
    """The language of a caller's reasons, by the jurisdiction of their number: German where it is spoken
    (DE, AT, CH, LI), English everywhere else and when the country is not known."""
    return "de" if jurisdiction and jurisdiction.strip().upper() in GERMAN_SPEAKING else "en"


# -- numbers, dates, times -----------------------------------------------------------------------------


def day(epoch: float, *, language: Language = "en") -> str:
    """The day of `epoch` (UTC): "30 Nov", "30. Nov."."""
    moment = datetime.fromtimestamp(epoch, UTC)
    words = WORDS[language]
    return words.date.format(day=moment.day, month=words.months[moment.month - 1])


def _decimal(value: float, language: Language) -> str:
    """Two decimals: 0.82, 0,82."""
    return f"{value:.2f}".replace(".", WORDS[language].decimal_point)


def _percent(value: float, language: Language) -> str:
    """A whole percentage: 33%, 33 %."""
    return WORDS[language].percent.format(number=f"{value:.0%}".removesuffix("%"))


def idle_for(idle_since: float | None, now: float, *, language: Language = "en") -> str:
    words = WORDS[language]
    if not idle_since or idle_since <= 0:
        return words.no_call_yet
    minutes = int(max(0.0, now - idle_since) // 60)
    if minutes >= 60:
        return words.idle_hours.format(hours=minutes // 60, minutes=minutes % 60)
    return words.idle_minutes.format(minutes=minutes)


# -- privacy and notes ---------------------------------------------------------------------------------


def rule_label(facts: PrivacyFacts, *, language: Language = "en") -> str:
    """The name of the rule set that applied: as stored (English), or its German name when one is known."""
    if language == "de" and facts.label:
        return RULE_LABELS_DE.get(facts.rule_set, facts.label)
    return facts.label


def privacy_reasons(facts: PrivacyFacts, *, language: Language = "en") -> list[str]:
    words, grounds = WORDS[language], GROUNDS[language]
    where = words.where.format(label=rule_label(facts, language=language), version=facts.policy_version)
    return [
        words.interests_use.format(
            where=where,
            used=words.used if facts.interests else words.not_used,
            grounds=grounds[facts.interests_grounds],
        ),
        words.known_agent_use.format(
            where=where,
            used=words.used if facts.known_agent else words.not_used,
            grounds=grounds[facts.known_agent_grounds],
        ),
    ]


def _count(count: int, one: str, many: str) -> str:
    return one if count == 1 else many.format(count=count)


def _interest_cap(detail: str, language: Language) -> str:
    words = WORDS[language]
    match = _CAP.fullmatch(detail)
    if match is None:
        return words.cap_unknown
    times, days = int(match[1]), int(match[2])
    return NOTES[language][NoteCode.INTEREST_CAP].format(
        times=_count(times, words.once, words.times), days=_count(days, words.last_day, words.last_days)
    )


def note(item: Note, *, language: Language = "en") -> str:
    if item.code is NoteCode.INTEREST_CAP:
        return _interest_cap(item.detail, language)
    if item.code is NoteCode.ASKED_IN_CALL:
        words = WORDS[language]
        answer = words.answers.get(item.detail, words.unknown_answer)
        return NOTES[language][item.code].format(answer=answer)
    return NOTES[language][item.code].format(detail=item.detail)


# -- candidates ----------------------------------------------------------------------------------------


def _sources(sources: list[str], *, language: Language = "en") -> str:
    """ "a social signal", "social and web signals", "this call" (or "einem Social-Media-Signal",
    "Social-Media- und Web-Signalen", "diesem Anruf"): the kinds of signal first, then any other source."""
    words = WORDS[language]
    kinds = [words.kinds[source] for source in sources if source in words.kinds]
    others = [words.sources.get(source, source) for source in sources if source not in words.kinds]
    parts = []
    if len(kinds) == 1:
        parts.append(words.one_signal.format(kind=kinds[0]))
    elif kinds:
        before = ", ".join(words.kind_before_last.format(kind=kind) for kind in kinds[:-1])
        parts.append(words.many_signals.format(kinds=before, last=kinds[-1]))
    parts += others
    return words.conjunction.join(parts) or words.unknown_source


def _interest_reason(
    candidate: Candidate, product: str, skill: Skill, fact: InterestFact, language: Language
) -> str:
    words = WORDS[language]
    return words.interest.format(
        product=product,
        score=_decimal(fact.score, language),
        sources=_sources(fact.sources, language=language),
        day=day(fact.at, language=language),
        evidence=words.evidence.format(words=fact.evidence) if fact.evidence else "",
        agent=candidate.agent_id,
        proficiency=skill.proficiency,
        conversion=_converts(skill, language),
    )


def _converts(skill: Skill, language: Language) -> str:
    """The figure ranking used: the agent's conversion for the product, learned from the calls counted."""
    words = WORDS[language]
    if skill.calls == 0:
        return words.no_calls
    calls = ""
    if skill.calls is not None:
        calls = f" ({words.one_call if skill.calls == 1 else words.calls.format(count=skill.calls)})"
    return words.converts.format(percent=_percent(skill.conversion, language), calls=calls)


def candidate_reasons(
    candidate: Candidate, interests: Mapping[str, InterestFact], now: float, *, language: Language = "en"
) -> list[str]:
    """Why this agent is on the list: the last call, each matching interest, or how long they waited."""
    words = WORDS[language]
    if candidate.mode is RoutingMode.KNOWN_AGENT:
        known = candidate.known_since
        when = words.on_day.format(day=day(known, language=language)) if known else words.earlier_call
        return [words.spoke_with.format(agent=candidate.agent_id, when=when)]
    if candidate.mode is RoutingMode.INTEREST:
        return [
            _interest_reason(candidate, product, skill, fact, language)
            for product, skill in candidate.skills.items()
            if (fact := interests.get(product)) is not None
        ]
    idle = idle_for(candidate.idle_since, now, language=language)
    template = words.available_for_line if candidate.for_line else words.available
    return [template.format(agent=candidate.agent_id, idle=idle)]


# -- decisions and records -----------------------------------------------------------------------------


def decision_reasons(decision: Decision, *, language: Language = "en") -> list[str]:
    """What a decision says beyond its candidates: what the privacy rules allowed, and its notes."""
    return [
        *privacy_reasons(decision.privacy, language=language),
        *(note(item, language=language) for item in decision.notes),
    ]


def attempt_reason(attempt: Attempt, *, language: Language = "en") -> str | None:
    if attempt.outcome is AttemptOutcome.NO_ANSWER:
        return WORDS[language].no_answer.format(agent=attempt.agent_id, error=attempt.error)
    return None


def record_reasons(record: DecisionRecord, *, language: Language = "en") -> list[str]:
    """Everything a record says, in the order a caller would ask: who took the call and why, who did not
    answer, what the privacy rules allowed, and anything else worth knowing."""
    chosen = next((c for c in record.candidates if c.agent_id == record.agent_id), None)
    reasons = (
        candidate_reasons(chosen, record.interests, record.decided_at, language=language) if chosen else []
    )
    reasons += [
        reason for attempt in record.attempts if (reason := attempt_reason(attempt, language=language))
    ]
    reasons += privacy_reasons(record.privacy, language=language)
    reasons += [note(item, language=language) for item in record.notes]
    return reasons
