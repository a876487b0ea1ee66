"""Free text (a post, a web search, a CRM note) to interest in catalog products, in German and English.

Deterministic and explained: every interest found names the words that decided it. In short:

1. The text is cut into words, clauses (at `,;:` and words such as "aber", "but") and sentences.
2. Words are folded (case, accents and umlauts: "Kopfhörer", "Kopfhoerer" and "kopfhorer" are one word)
   and reduced to their Snowball stems, so inflected forms meet ("Kopfhörern", "routers").
3. Catalog terms (names and synonyms, in both languages) are found as word sequences, as the same words
   run together or hyphenated ("E-Bike", "E Bike", "ebike"), as the head of a compound
   ("Bluetooth-Kopfhörer", "Funkkopfhörer") and with a typo or two in longer words ("Kopfhöhrer").
4. Cues in the same clause decide what a mention means (`CUES`): negation or a complaint ("nie wieder",
   "kein Interesse", "returned it", "kaputt") means no rise; purchase intent ("will … kaufen",
   "überlege", "looking for") a strong one; a plain mention a small one. A clause with cues and no
   product lends its cues to the nearest clause with one, in its sentence or else the sentence before
   ("Kennt jemand die X200? Will sie mir kaufen."), unless that clause has cues of its own.
5. Per product, intent anywhere wins; otherwise a negative clause cancels plain mentions.

Only products whose interest rises are returned, strongest first.
"""

from __future__ import annotations

import itertools
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from functools import lru_cache

import snowballstemmer
from rapidfuzz import process
from rapidfuzz.distance import Levenshtein

from rapport.models import Language, Product

INTENT_STRENGTH = 0.6
"""How much purchase intent raises an interest (before fading and diminishing returns)."""
MENTION_STRENGTH = 0.1
"""How much a plain mention raises it."""
MAX_TEXT_CHARS = 2_000
"""Longer texts are cut here: a post's first 2,000 characters say what it is about."""

LANGUAGES: tuple[Language, ...] = ("de", "en")
_LONGEST_TERM = 6
_HEAD_MIN_LENGTH = 5
"""Shortest term found as the head of a compound."""
_TYPO_MIN_LENGTH = 7
"""Shortest word read with a typo (shorter ones are too often other words: "routes" is no "router")."""


class Cue(StrEnum):
    INTENT = "intent"
    NEGATION = "negation"
    COMPLAINT = "complaint"


CUES: dict[Cue, dict[Language, tuple[str, ...]]] = {
    Cue.NEGATION: {
        "de": (
            "nie wieder",
            "nie",
            "niemals",
            "kein interesse",
            "keine lust",
            "nicht interessiert",
            "nicht kaufen",
            "nicht bestellen",
            "brauche keine",
            "will keine",
            "finger weg",
            "zurückgeschickt",
            "zurückgegeben",
            "zurück geschickt",
            "storniert",
            "gekündigt",
            "umgetauscht",
            "reklamiert",
            "geld zurück",
            "als ob",
            "je wieder",
        ),
        "en": (
            "never again",
            "never",
            "not interested",
            "no interest",
            "not buy",
            "not need",
            "not want",
            "returned",
            "sent it back",
            "send it back",
            "refund",
            "cancelled my order",
            "cancelled the order",
            "canceled my order",
            "stay away",
            "waste of money",
            "regret",
            "yeah right",
            "like i ever",
        ),
    },
    Cue.COMPLAINT: {
        "de": (
            "kaputt",
            "defekt",
            "reklamation",
            "beschwerde",
            "schrott",
            "enttäuscht",
            "enttäuschend",
            "funktioniert nicht",
            "geht nicht",
            "mangelhaft",
            "ärgerlich",
            "abzocke",
            "katastrophe",
            "fehlerhaft",
            "rauscht",
        ),
        "en": (
            "broken",
            "not work",
            "stopped working",
            "complaint",
            "disappointed",
            "disappointing",
            "garbage",
            "useless",
            "worst",
            "faulty",
            "defective",
            "rip off",
            "ripoff",
        ),
    },
    Cue.INTENT: {
        "de": (
            "will kaufen",
            "möchte kaufen",
            "kaufen",
            "kaufe",
            "überlege",
            "überlegen",
            "bestellen",
            "bestelle",
            "vorbestellt",
            "suche",
            "brauche",
            "interessiere mich",
            "hätte gern",
            "hätte gerne",
            "haben will",
            "zulegen",
            "anschaffen",
            "wunschliste",
            "angebot",
            "was kostet",
            "preis",
            "gönne mir",
            "hole mir",
            "gesucht",
        ),
        "en": (
            "looking for",
            "thinking about",
            "thinking of",
            "want to buy",
            "wanna buy",
            "buy",
            "order",
            "preorder",
            "pre order",
            "considering",
            "interested in",
            "shopping for",
            "need a",
            "need new",
            "wishlist",
            "wish list",
            "how much",
            "price",
            "quote",
            "upgrade to",
            "treat myself",
        ),
    },
}
"""Cue phrases by kind and language. A phrase's words must all appear in one clause, in any order."""

# Which cue wins in one clause: a negation or complaint outweighs intent ("will die X200 nicht kaufen").
_PRECEDENCE = (Cue.NEGATION, Cue.COMPLAINT, Cue.INTENT)


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_STOPWORDS: dict[Language, frozenset[str]] = {
    "de": _words(
        "der die das und ich ist nicht ein eine einen mit auf für den dem zu sie es wir mir mich hat habe"
        " auch noch schon aber wie was wer wo oder sehr mal jetzt unser meine mein"
    ),
    "en": _words(
        "the and i is not a an with on for to it we me my you of in this that have has be just but how"
        " what who where or very now our was are"
    ),
}
_CLAUSE_WORDS = _words("aber doch jedoch sondern obwohl trotzdem but however although though yet")
_WORD = re.compile(r"[^\W_]+")
_SENTENCE_END = re.compile(r"[.!?\n]")
_CLAUSE_END = re.compile("[,;:()\\[\\]\u2014\u2013]| - ")  # also em and en dashes
_NOT = re.compile("n['\u2019]t\\b", re.IGNORECASE)  # "don't", with either apostrophe
_TRANSLITERATION = str.maketrans({"ä": "ae", "ö": "oe", "ü": "ue"})

_STEMMERS = {"de": snowballstemmer.stemmer("german"), "en": snowballstemmer.stemmer("english")}


def fold(word: str) -> str:
    """Lower case without accents: "Kopfhörer" → "kopfhorer", "Straße" → "strasse"."""
    decomposed = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", word).casefold())
    return "".join(char for char in decomposed if not unicodedata.combining(char))


def spellings(word: str) -> set[str]:
    """A catalog or cue word as people type it: with umlauts dropped or written out ("kopfhoerer")."""
    lowered = unicodedata.normalize("NFKC", word).casefold()
    return {fold(lowered), fold(lowered.translate(_TRANSLITERATION))}


@lru_cache(maxsize=8192)
def stem(word: str, language: Language) -> str:
    return str(_STEMMERS[language].stemWord(word))


@dataclass(frozen=True)
class Word:
    text: str
    """As written."""
    folded: str
    start: int
    end: int


@dataclass
class Clause:
    words: list[Word]
    sentence: int
    products: dict[str, list[Word]] = field(default_factory=dict)
    """Products named in the clause, with the words that named them."""
    cues: dict[Cue, list[Word]] = field(default_factory=dict)


@dataclass(frozen=True)
class Found:
    """One product whose interest the text raises, by how much, and the words that decided."""

    product: str
    strength: float
    evidence: str
    cue: Cue | None


@dataclass(frozen=True)
class TextMatch:
    text: str
    language: Language
    interests: tuple[Found, ...]

    def as_json(self) -> dict[str, object]:
        return {
            "text": self.text,
            "language": self.language,
            "interests": [
                {"product": found.product, "strength": found.strength, "evidence": found.evidence}
                for found in self.interests
            ],
        }


def words_of(text: str) -> list[Word]:
    return [Word(m.group(), fold(m.group()), m.start(), m.end()) for m in _WORD.finditer(text)]


def clauses_of(text: str, words: Sequence[Word]) -> list[Clause]:
    clauses: list[Clause] = []
    sentence = 0
    previous_end = 0
    for word in words:
        gap = text[previous_end : word.start]
        if clauses and _SENTENCE_END.search(gap):
            sentence += 1
        if (
            not clauses
            or _SENTENCE_END.search(gap)
            or _CLAUSE_END.search(gap)
            or word.folded in _CLAUSE_WORDS
        ):
            clauses.append(Clause(words=[], sentence=sentence))
        clauses[-1].words.append(word)
        previous_end = word.end
    return clauses


def detect_language(words: Sequence[Word]) -> Language:
    """German or English, by which language's common words the text uses more (German on a tie when the
    text has umlauts or ß, else English)."""
    german = sum(word.folded in _STOPWORDS["de"] for word in words)
    english = sum(word.folded in _STOPWORDS["en"] for word in words)
    if german != english:
        return "de" if german > english else "en"
    written = "".join(word.text for word in words)
    return "de" if any(char in written for char in "äöüÄÖÜß") else "en"


@dataclass(frozen=True)
class _Term:
    product: str
    stems: tuple[str, ...]


class Matcher:
    """A catalog, indexed once for matching many texts."""

    def __init__(self, products: Iterable[Product]) -> None:
        self.products = {product.product_id: product for product in products}
        # (language, stems of the words) → product; run-together spelling → product; one-word terms for
        # compounds and typos.
        self._by_stems: dict[tuple[Language, tuple[str, ...]], str] = {}
        self._by_joined: dict[str, str] = {}
        self._heads: dict[str, str] = {}
        self._cues: dict[Language, list[tuple[Cue, frozenset[str]]]] = {"de": [], "en": []}
        self._intent_words: dict[Language, list[tuple[str, frozenset[str]]]] = {"de": [], "en": []}
        for product in self.products.values():
            terms = [*product.names.values()]
            for synonyms in product.synonyms.values():
                terms += list(synonyms)
            for term in terms:
                self._index_term(product.product_id, term)
            for phrases in product.intent.values():
                for phrase in phrases:
                    for language in LANGUAGES:
                        for variant in self._variants(phrase):
                            stems = frozenset(stem(word, language) for word in variant)
                            self._intent_words[language].append((product.product_id, stems))
        for cue, by_language in CUES.items():
            for cue_phrases in by_language.values():
                for phrase in cue_phrases:
                    for language in LANGUAGES:
                        for variant in self._variants(phrase):
                            stems = frozenset(stem(word, language) for word in variant)
                            self._cues[language].append((cue, stems))
        self._typo_choices = sorted(head for head in self._heads if len(head) >= _TYPO_MIN_LENGTH)
        # Each phrase filed under one of its stems: a clause looks up only the phrases its words can start.
        self._cues_by_stem: dict[Language, dict[str, list[tuple[Cue, frozenset[str]]]]] = {}
        self._intent_by_stem: dict[Language, dict[str, list[tuple[str, frozenset[str]]]]] = {}
        for language in LANGUAGES:
            cues: dict[str, list[tuple[Cue, frozenset[str]]]] = {}
            for cue, needed in dict.fromkeys(self._cues[language]):
                cues.setdefault(min(needed), []).append((cue, needed))
            self._cues_by_stem[language] = cues
            intents: dict[str, list[tuple[str, frozenset[str]]]] = {}
            for product_id, needed in dict.fromkeys(self._intent_words[language]):
                intents.setdefault(min(needed), []).append((product_id, needed))
            self._intent_by_stem[language] = intents

    @staticmethod
    def _variants(term: str) -> list[list[str]]:
        """A term's words, once with umlauts dropped and once with them written out."""
        lowered = unicodedata.normalize("NFKC", term).casefold()
        variants = {lowered, lowered.translate(_TRANSLITERATION)}
        return [[fold(m.group()) for m in _WORD.finditer(variant)] for variant in sorted(variants)]

    def _index_term(self, product_id: str, term: str) -> None:
        for words in self._variants(term):
            if not words or len(words) > _LONGEST_TERM:
                continue
            for language in LANGUAGES:
                self._by_stems.setdefault((language, tuple(stem(w, language) for w in words)), product_id)
            joined = "".join(words)
            self._by_joined.setdefault(joined, product_id)
            if len(joined) >= _HEAD_MIN_LENGTH and joined.isalpha():
                self._heads.setdefault(joined, product_id)

    # -- matching ---------------------------------------------------------------------------------------

    def match(self, text: str, language: Language | None = None) -> TextMatch:
        cut = text[:MAX_TEXT_CHARS]
        prepared = _NOT.sub(" not", cut)  # "don't" → "do not": one way to write a negation
        words = words_of(prepared)
        lang = language or detect_language(words)
        clauses = clauses_of(prepared, words)
        for clause in clauses:
            self._find_products(clause, lang)
            self._find_cues(clause, lang)
        self._lend_cues(clauses)
        return TextMatch(text=text, language=lang, interests=self._verdicts(prepared, clauses))

    def _find_products(self, clause: Clause, language: Language) -> None:
        words = clause.words
        stems = [stem(word.folded, language) for word in words]
        index = 0
        while index < len(words):
            found = self._term_at(words, stems, index, language)
            if found is None:
                index += 1
                continue
            product, length = found
            clause.products.setdefault(product, []).extend(words[index : index + length])
            index += length

    def _term_at(
        self, words: Sequence[Word], stems: Sequence[str], index: int, language: Language
    ) -> tuple[str, int] | None:
        for length in range(min(_LONGEST_TERM, len(words) - index), 0, -1):
            span = words[index : index + length]
            product = self._by_stems.get((language, tuple(stems[index : index + length])))
            if product is None:
                product = self._by_joined.get("".join(word.folded for word in span))
            if product is not None:
                return product, length
        word = words[index].folded
        if len(word) <= _HEAD_MIN_LENGTH or not word.isalpha():
            return None
        # The head of a compound: "bluetoothkopfhorer", "funkkopfhorern".
        for size in range(len(word) - 1, _HEAD_MIN_LENGTH - 1, -1):
            for tail in (word[-size:], stem(word, language)[-size:]):
                if tail in self._heads:
                    return self._heads[tail], 1
        if len(word) < _TYPO_MIN_LENGTH:
            return None
        # A typo: one letter off in a word of 7 to 9 letters, two in a longer one.
        allowed = 1 if len(word) < 10 else 2
        best = process.extractOne(word, self._typo_choices, scorer=Levenshtein.distance, score_cutoff=allowed)
        if best is not None and abs(len(best[0]) - len(word)) <= allowed:
            return self._heads[best[0]], 1
        return None

    def _find_cues(self, clause: Clause, language: Language) -> None:
        stems = {stem(word.folded, language): word for word in clause.words}
        cues, intents = self._cues_by_stem[language], self._intent_by_stem[language]
        for word_stem in list(stems):
            for cue, needed in cues.get(word_stem, ()):
                if needed <= stems.keys():
                    clause.cues.setdefault(cue, []).extend(stems[s] for s in needed)
            for product, needed in intents.get(word_stem, ()):
                if needed <= stems.keys():
                    clause.cues.setdefault(Cue.INTENT, []).extend(stems[s] for s in needed)
                    clause.products.setdefault(product, [])

    @staticmethod
    def _lend_cues(clauses: Sequence[Clause]) -> None:
        """A clause with cues but no product lends them to the nearest clause with a product and no cues
        of its own: in its sentence the one before it (the one after it, if it opens with "aber"/"but"
        or has none before), else the last one of the sentence before."""
        for position, clause in enumerate(clauses):
            if clause.products or not clause.cues:
                continue
            earlier = [c for c in clauses[:position] if c.sentence == clause.sentence and c.products]
            later = [c for c in clauses[position + 1 :] if c.sentence == clause.sentence and c.products]
            before = [c for c in clauses[:position] if c.sentence == clause.sentence - 1 and c.products]
            if clause.words[0].folded in _CLAUSE_WORDS:
                earlier = []
            if earlier:
                targets = earlier[-1:]
            elif later:
                # Forward, through a list: "Wunschliste: X200, Q9".
                targets = list(itertools.takewhile(lambda c: not c.cues, later))
            else:
                targets = before[-1:]
            for target in targets:
                if target.cues:
                    continue  # a clause's own cues are not overruled by a neighbour's
                for cue, words in clause.cues.items():
                    target.cues[cue] = [*target.cues.get(cue, []), *words]

    def _verdicts(self, text: str, clauses: Sequence[Clause]) -> tuple[Found, ...]:
        best: dict[str, Found] = {}
        negative: set[str] = set()
        for clause in clauses:
            cue = next((kind for kind in _PRECEDENCE if kind in clause.cues), None)
            for product, named in clause.products.items():
                if cue in (Cue.NEGATION, Cue.COMPLAINT):
                    negative.add(product)
                    continue
                strength = INTENT_STRENGTH if cue is Cue.INTENT else MENTION_STRENGTH
                deciding = named + (clause.cues.get(Cue.INTENT, []) if cue is Cue.INTENT else [])
                found = Found(product, strength, _evidence(text, deciding), cue)
                if product not in best or found.strength > best[product].strength:
                    best[product] = found
        kept = [
            found for product, found in best.items() if found.cue is Cue.INTENT or product not in negative
        ]
        return tuple(sorted(kept, key=lambda found: (-found.strength, found.product)))


def _evidence(text: str, words: Iterable[Word]) -> str:
    """The deciding words in the order they were written; "…" where others stand between them.
    Words joined by a hyphen or nothing but spaces stay one phrase ("Mesh-Router")."""
    ordered = sorted({(word.start, word.end) for word in words})
    parts: list[str] = []
    previous_end: int | None = None
    for start, end in ordered:
        if previous_end is not None:
            gap = text[previous_end:start]
            parts.append(gap if gap.strip(" -") == "" and len(gap) <= 2 else " … ")
        parts.append(text[start:end])
        previous_end = end
    return "".join(parts)
