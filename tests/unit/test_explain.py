"""The reasons a caller reads, in English and German: every ground and note in both, a whole record rendered
in each, dates and numbers as each language writes them, and the language a caller's country gets."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import pytest
from rapport.explain import (
    GROUNDS,
    NOTES,
    RULE_LABELS_DE,
    WORDS,
    _sources,
    attempt_reason,
    candidate_reasons,
    day,
    idle_for,
    language_for,
    note,
    privacy_reasons,
    record_reasons,
)
from rapport.models import (
    Attempt,
    AttemptOutcome,
    Candidate,
    DecisionRecord,
    Grounds,
    InterestFact,
    Language,
    Note,
    NoteCode,
    Outcome,
    PrivacyFacts,
    RoutingMode,
    Skill,
)
from rapport.privacy import RULES_FILE

NOW = datetime(2026, 11, 30, 14, 5, tzinfo=UTC).timestamp()
DAY = 86_400.0
LANGUAGES: tuple[Language, ...] = ("en", "de")

DETAILS = {NoteCode.INTEREST_CAP: "3/7", NoteCode.ASKED_IN_CALL: "yes"}
"""A realistic detail for the notes that read theirs; the others show any detail as it is."""

ENGLISH_WORDS = frozenset(
    {
        *("the", "caller", "agent", "interest", "data", "used", "not", "from", "of", "and", "this", "call"),
        *("signal", "signals", "policy", "available", "answer", "answered", "did", "proficiency", "idle"),
        *("conversion", "link", "last", "consented", "objected", "routed", "times", "days", "cap", "asked"),
    }
)
"""Words of the fixed English phrases that must not be left in a German reason."""


# -- builders -----------------------------------------------------------------------------------------


def german_facts(**update: object) -> PrivacyFacts:
    facts = PrivacyFacts(
        jurisdiction="DE",
        rule_set="DE",
        label="Germany (GDPR, TDDDG)",
        policy_version="2026-12-02",
        interests=True,
        interests_grounds=Grounds.CONSENTED,
        known_agent=False,
        known_agent_grounds=Grounds.OBJECTED,
    )
    return facts.model_copy(update=update)


def sample_record() -> DecisionRecord:
    """Routed on interest to `berlin-07` after `muc-02` did not answer; the notes include the cap's (a
    rendering test: the facts need not be ones a single call would combine)."""
    return DecisionRecord(
        call_id="call-1",
        caller_key="k" * 43,
        decided_at=NOW,
        mode=RoutingMode.INTEREST,
        outcome=Outcome.CONNECTED,
        agent_id="berlin-07",
        candidates=[
            Candidate(agent_id="muc-02", mode=RoutingMode.INTEREST, skills={"x200": skill(4, 0.25)}),
            Candidate(
                agent_id="berlin-07",
                mode=RoutingMode.INTEREST,
                skills={"x200": skill(5, 1 / 3, calls=48), "helm": skill(3, 0.5, calls=0)},
            ),
        ],
        interests={
            "x200": InterestFact(
                score=0.8234, sources=["social", "web"], at=NOW - 3 * DAY, evidence="will … X200 kaufen"
            ),
            "helm": InterestFact(score=1.0, sources=["this call"], at=NOW),
        },
        privacy=german_facts(),
        notes=[
            Note(code=NoteCode.LAST_AGENT_BUSY, detail="ham-11"),
            Note(code=NoteCode.INTEREST_CAP, detail="3/7"),
            Note(code=NoteCode.ASKED_IN_CALL, detail="no_answer"),
        ],
        attempts=[
            attempt("muc-02", AttemptOutcome.NO_ANSWER, "CallNotAnswered"),
            attempt("berlin-07", AttemptOutcome.CONNECTED),
        ],
        expires_at=NOW + 180 * DAY,
    )


def skill(proficiency: int, conversion: float, calls: int | None = None) -> Skill:
    return Skill(proficiency=proficiency, conversion=conversion, calls=calls)


def attempt(agent_id: str, outcome: AttemptOutcome, error: str | None = None) -> Attempt:
    return Attempt(agent_id=agent_id, mode=RoutingMode.INTEREST, at=NOW, outcome=outcome, error=error)


def english_leftovers(reasons: list[str]) -> set[str]:
    """Fixed English words in `reasons`, leaving out what a record stores as text (ids, quoted words)."""
    stored = re.compile(r"`[^`]*`|„[^“]*“|\([A-Za-z]+\)")
    words = {word.lower() for reason in reasons for word in re.findall(r"[A-Za-z]+", stored.sub("", reason))}
    return words & ENGLISH_WORDS


# -- every ground and every note, in both languages ----------------------------------------------------


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_tables_cover_every_ground_and_every_note_code(language: Language) -> None:
    assert set(GROUNDS[language]) == set(Grounds)
    assert set(NOTES[language]) == set(NoteCode)


@pytest.mark.parametrize("grounds", list(Grounds))
def test_every_ground_reads_in_english_and_in_german(grounds: Grounds) -> None:
    facts = german_facts(interests_grounds=grounds, known_agent_grounds=grounds)
    english, german = (privacy_reasons(facts, language=language) for language in LANGUAGES)
    assert all(f"({GROUNDS['en'][grounds]})" in reason for reason in english)
    assert all(f"({GROUNDS['de'][grounds]})" in reason for reason in german)
    assert GROUNDS["de"][grounds] != GROUNDS["en"][grounds]
    assert not english_leftovers(german)


@pytest.mark.parametrize("code", list(NoteCode))
def test_every_note_reads_in_english_and_in_german(code: NoteCode) -> None:
    item = Note(code=code, detail=DETAILS.get(code, "x-1"))
    english, german = note(item), note(item, language="de")
    assert english and german and english != german
    assert note(item, language="en") == english
    assert "{" not in english + german
    assert not english_leftovers([german])


# -- the new notes ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("detail", "language", "expected"),
    [
        (
            "3/7",
            "en",
            "interest data not used: the caller was already routed on it 3 times in the last 7 days"
            " (the policy's cap)",
        ),
        (
            "3/7",
            "de",
            "Interessendaten nicht genutzt: der Anrufer wurde in den letzten 7 Tagen bereits 3-mal auf dieser"
            " Grundlage vermittelt (Obergrenze der Richtlinie)",
        ),
        (
            "1/1",
            "en",
            "interest data not used: the caller was already routed on it once in the last day"
            " (the policy's cap)",
        ),
        (
            "1/1",
            "de",
            "Interessendaten nicht genutzt: der Anrufer wurde innerhalb des letzten Tages bereits einmal auf"
            " dieser Grundlage vermittelt (Obergrenze der Richtlinie)",
        ),
        (
            "",
            "en",
            "interest data not used: the caller was already routed on it as often as the policy allows",
        ),
        (
            "3/x",
            "de",
            "Interessendaten nicht genutzt: der Anrufer wurde bereits so oft auf dieser Grundlage vermittelt,"
            " wie die Richtlinie erlaubt",
        ),
    ],
)
def test_the_interest_cap_note_names_times_and_days(detail: str, language: Language, expected: str) -> None:
    assert note(Note(code=NoteCode.INTEREST_CAP, detail=detail), language=language) == expected


@pytest.mark.parametrize(
    ("detail", "english", "german"),
    [
        (
            "yes",
            "asked in this call: the caller agreed to the use of their data",
            "in diesem Anruf gefragt: der Anrufer hat der Nutzung seiner Daten zugestimmt",
        ),
        (
            "no",
            "asked in this call: the caller declined the use of their data",
            "in diesem Anruf gefragt: der Anrufer hat die Nutzung seiner Daten abgelehnt",
        ),
        (
            "no_answer",
            "asked in this call: the caller did not answer (counted as no)",
            "in diesem Anruf gefragt: der Anrufer hat nicht geantwortet (gilt als Nein)",
        ),
        (
            "",
            "asked in this call: the answer is not known",
            "in diesem Anruf gefragt: die Antwort ist nicht bekannt",
        ),
    ],
)
def test_the_asked_in_call_note_says_what_the_caller_answered(detail: str, english: str, german: str) -> None:
    item = Note(code=NoteCode.ASKED_IN_CALL, detail=detail)
    assert (note(item), note(item, language="de")) == (english, german)


# -- a whole record -----------------------------------------------------------------------------------

ENGLISH_RECORD = [
    'interest in `x200` 0.82 from social and web signals of 27 Nov ("will … X200 kaufen")'
    " → agent `berlin-07`, proficiency 5, converts 33% (48 calls)",
    "interest in `helm` 1.00 from this call of 30 Nov → agent `berlin-07`, proficiency 3, no calls of it yet",
    "`muc-02` did not answer (CallNotAnswered)",
    "Germany (GDPR, TDDDG) [policy 2026-12-02]: interest data used (the caller consented)",
    "Germany (GDPR, TDDDG) [policy 2026-12-02]: last-agent link not used (the caller objected)",
    "the caller's last agent `ham-11` is not available",
    "interest data not used: the caller was already routed on it 3 times in the last 7 days"
    " (the policy's cap)",
    "asked in this call: the caller did not answer (counted as no)",
]

GERMAN_RECORD = [
    "Interesse an `x200` 0,82 aus Social-Media- und Web-Signalen vom 27. Nov. („will … X200 kaufen“)"
    " → Mitarbeiter `berlin-07`, Kenntnisstufe 5, Abschlussquote 33 % (48 Anrufe)",
    "Interesse an `helm` 1,00 aus diesem Anruf vom 30. Nov. → Mitarbeiter `berlin-07`, Kenntnisstufe 3,"
    " noch keine Anrufe dazu",
    "`muc-02` hat nicht abgenommen (CallNotAnswered)",
    "Deutschland (DSGVO, TDDDG) [Richtlinie 2026-12-02]: Interessendaten genutzt"
    " (der Anrufer hat eingewilligt)",
    "Deutschland (DSGVO, TDDDG) [Richtlinie 2026-12-02]: Verknüpfung mit dem letzten Mitarbeiter"
    " nicht genutzt (der Anrufer hat widersprochen)",
    "der letzte Mitarbeiter des Anrufers, `ham-11`, ist nicht verfügbar",
    "Interessendaten nicht genutzt: der Anrufer wurde in den letzten 7 Tagen bereits 3-mal"
    " auf dieser Grundlage vermittelt (Obergrenze der Richtlinie)",
    "in diesem Anruf gefragt: der Anrufer hat nicht geantwortet (gilt als Nein)",
]


def test_a_record_reads_in_english() -> None:
    record = sample_record()
    assert record_reasons(record) == ENGLISH_RECORD
    assert record_reasons(record, language="en") == record_reasons(record)


def test_a_record_reads_in_german_with_german_dates_and_numbers() -> None:
    reasons = record_reasons(sample_record(), language="de")
    assert reasons == GERMAN_RECORD
    text = "\n".join(reasons)
    for german in ("27. Nov.", "0,82", "33 %", "diesem Anruf", "Deutschland (DSGVO, TDDDG)", "Richtlinie"):
        assert german in text
    assert not english_leftovers(reasons)
    assert english_leftovers(record_reasons(sample_record())), "the check finds English where there is some"
    assert "this call" not in text and "Germany" not in text and "%," not in text


@pytest.mark.parametrize("language", LANGUAGES)
def test_reasons_never_carry_a_phone_number_or_the_caller_key(language: Language) -> None:
    record = sample_record()
    text = "\n".join(record_reasons(record, language=language))
    assert record.caller_key is not None and record.caller_key not in text
    assert not re.search(r"\+?\d(?:[ ()/]?\d){6,}", text), "seven digits or more, as in a number"


# -- the parts ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sources", "english", "german"),
    [
        (["social"], "a social signal", "einem Social-Media-Signal"),
        (["social", "web"], "social and web signals", "Social-Media- und Web-Signalen"),
        (["social", "web", "crm"], "social, web and crm signals", "Social-Media-, Web- und CRM-Signalen"),
        (["this call"], "this call", "diesem Anruf"),
        (["call", "this call"], "a call signal and this call", "einem Anruf-Signal und diesem Anruf"),
        ([], "an unknown source", "einer unbekannten Quelle"),
    ],
)
def test_sources_read_in_each_language(sources: list[str], english: str, german: str) -> None:
    assert (_sources(sources), _sources(sources, language="de")) == (english, german)


@pytest.mark.parametrize(
    ("moment", "english", "german"),
    [
        (datetime(2026, 11, 30, 23, 59, tzinfo=UTC), "30 Nov", "30. Nov."),
        (datetime(2026, 3, 3, tzinfo=UTC), "3 Mar", "3. März"),
        (datetime(2026, 5, 1, tzinfo=UTC), "1 May", "1. Mai"),
        (datetime(2026, 9, 9, tzinfo=UTC), "9 Sep", "9. Sept."),
        (datetime(2026, 12, 24, tzinfo=UTC), "24 Dec", "24. Dez."),
    ],
)
def test_days_use_fixed_month_names(moment: datetime, english: str, german: str) -> None:
    epoch = moment.timestamp()
    assert (day(epoch), day(epoch, language="de")) == (english, german)


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_language_names_twelve_months(language: Language) -> None:
    assert len(WORDS[language].months) == 12


def test_idle_times_read_in_each_language() -> None:
    assert idle_for(NOW - 4_000, NOW) == "idle for 1 h 6 min"
    assert idle_for(NOW - 4_000, NOW, language="de") == "seit 1 Std. 6 Min. frei"
    assert idle_for(NOW - 300, NOW, language="de") == "seit 5 Min. frei"
    assert idle_for(None, NOW, language="de") == "noch kein Anruf angenommen"


def test_other_candidates_read_in_each_language() -> None:
    known = Candidate(agent_id="berlin-07", mode=RoutingMode.KNOWN_AGENT, known_since=NOW - 10 * DAY)
    unknown_day = known.model_copy(update={"known_since": None})
    waiting = Candidate(agent_id="a2", mode=RoutingMode.ANY_AVAILABLE, idle_since=NOW - 120)
    assert candidate_reasons(known, {}, NOW) == ["the caller spoke with `berlin-07` on 20 Nov; available now"]
    assert candidate_reasons(known, {}, NOW, language="de") == [
        "der Anrufer hat am 20. Nov. mit `berlin-07` gesprochen; jetzt verfügbar"
    ]
    assert candidate_reasons(unknown_day, {}, NOW, language="de") == [
        "der Anrufer hat bei einem früheren Anruf mit `berlin-07` gesprochen; jetzt verfügbar"
    ]
    assert candidate_reasons(waiting, {}, NOW) == ["agent `a2` available, idle for 2 min"]
    assert candidate_reasons(waiting, {}, NOW, language="de") == [
        "Mitarbeiter `a2` verfügbar, seit 2 Min. frei"
    ]


def test_only_an_unanswered_attempt_has_a_reason() -> None:
    assert attempt_reason(attempt("a1", AttemptOutcome.CONNECTED), language="de") is None
    missed = attempt("a1", AttemptOutcome.NO_ANSWER, "CallNotAnswered")
    assert attempt_reason(missed) == "`a1` did not answer (CallNotAnswered)"
    assert attempt_reason(missed, language="de") == "`a1` hat nicht abgenommen (CallNotAnswered)"


# -- rule-set names -----------------------------------------------------------------------------------


def test_every_rule_set_of_the_policy_has_a_german_name() -> None:
    policy = json.loads(RULES_FILE.read_text(encoding="utf-8"))
    assert {"default", *policy["jurisdictions"]} <= set(RULE_LABELS_DE)


@pytest.mark.parametrize(
    ("facts", "label"),
    [
        (german_facts(), "Deutschland (DSGVO, TDDDG)"),
        (
            german_facts(jurisdiction="CH", rule_set="default", label="strictest rules (country unknown...)"),
            "strengste Regeln (Land unbekannt oder nicht gelistet)",
        ),
        (german_facts(jurisdiction="XX", rule_set="XX", label="Nowhere (rules)"), "Nowhere (rules)"),
        (german_facts(label=""), ""),
    ],
)
def test_german_reasons_name_the_rule_set_in_german_where_known(facts: PrivacyFacts, label: str) -> None:
    [interests, known_agent] = privacy_reasons(facts, language="de")
    assert interests.startswith(f"{label} [Richtlinie 2026-12-02]: Interessendaten")
    assert known_agent.startswith(f"{label} [Richtlinie 2026-12-02]: Verknüpfung mit dem letzten Mitarbeiter")
    assert privacy_reasons(facts)[0].startswith(f"{facts.label} [policy 2026-12-02]: interest data")


# -- the caller's language ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("jurisdiction", "language"),
    [
        ("DE", "de"),
        ("AT", "de"),
        ("CH", "de"),
        ("LI", "de"),
        ("de", "de"),
        (" at ", "de"),
        ("LU", "en"),
        ("FR", "en"),
        ("GB", "en"),
        ("US", "en"),
        ("default", "en"),
        ("", "en"),
        (None, "en"),
    ],
)
def test_language_for_a_jurisdiction(jurisdiction: str | None, language: Language) -> None:
    assert language_for(jurisdiction) == language
