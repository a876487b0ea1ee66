"""A caller's rights over their data: consent, objection (GDPR Art. 21), access (Art. 15), erasure
(Art. 17) and the explanation of a routing decision. Shared by PrivacyFunction, the `rapport privacy`
commands and the router's in-call question.

Every operation names the caller by number; the number is checked and turned into the caller key on
arrival and goes no further (only the caller's own access export repeats it). Every operation is
idempotent (asking twice leaves the same state) and leaves one entry in the audit trail, which names the
caller by a random subject id, never by number or caller key.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Any, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, model_validator

from rapport.budget import Deadline
from rapport.explain import record_reasons
from rapport.models import CallerProfile, Consent, DecisionRecord, Interest, Language, LastAgent
from rapport.numbers import PhoneNumber, caller_key
from rapport.privacy import INTEREST_ROUTING, KNOWN_AGENT, Rules, permissions
from rapport.scoring import DAY, faded_score
from rapport.signals import CallerNumber, problems
from rapport.store import ConditionFailed, StoreError
from rapport.store.layout import decode_record, from_item
from rapport.store.privacy import KINDS, Change, Erasure, PrivacyStore, kind_of

PROFILE_WRITE_ROUNDS = 4
OBJECTION = "objection"


class Purpose(StrEnum):
    INTEREST_ROUTING = INTEREST_ROUTING
    KNOWN_AGENT = KNOWN_AGENT


SourceName = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,31}$")]
RequestId = Annotated[str, Field(pattern=r"^[A-Za-z0-9._:-]{1,64}$")]
CallId = Annotated[str, Field(pattern=r"^[A-Za-z0-9-]{1,64}$")]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    number: CallerNumber = Field(repr=False)
    """The caller's number in E.164; turned into the caller key at once."""
    request_id: RequestId | None = None
    """The requester's own id for this request, kept in the audit trail and the consent history."""


class ConsentRequest(_Request):
    purposes: list[Purpose] = Field(min_length=1, max_length=2)
    granted: bool
    source: SourceName
    """Where the choice was made: `web`, `crm`, `ivr`, `agent`, `letter`…"""
    at: AwareDatetime | None = None
    """When the caller made the choice (default: now)."""


class ObjectionRequest(_Request):
    objected: bool = True
    """False lifts an earlier objection."""
    source: SourceName
    at: AwareDatetime | None = None


class SubjectRequest(_Request):
    """Access and erasure: the number is all they need."""


class ExplainRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    number: CallerNumber | None = Field(default=None, repr=False)
    call_id: CallId | None = None
    """A call's id: that call's record (the only way to one of a call without a usable number)."""
    language: Language | None = None
    request_id: RequestId | None = None

    @model_validator(mode="after")
    def _names_something(self) -> ExplainRequest:
        if self.number is None and self.call_id is None:
            raise ValueError("give the caller's number, a call id, or both")
        return self


class BadRequest(Exception):
    """The request cannot be carried out as sent; `problems` say why, without the values sent."""

    def __init__(self, problems: Sequence[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = list(problems)


class Unavailable(Exception):
    """The request could not be carried out for now (DynamoDB, the caller-key secret); ask again."""


M = TypeVar("M", bound=BaseModel)


def parse(model: type[M], body: object) -> M:
    """A request from its JSON value; `BadRequest` naming every problem (never a value)."""
    if not isinstance(body, Mapping):
        raise BadRequest(["the body must be a JSON object"])
    try:
        return model.model_validate(body)
    except ValidationError as error:
        raise BadRequest(problems(error)) from None


def iso(epoch: float | None) -> str | None:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds") if epoch else None


class PrivacyRights:
    """The operations, bound to one table, one policy and one pepper."""

    def __init__(
        self,
        store: PrivacyStore,
        rules: Rules,
        pepper: Callable[[], str | None],
        half_life_days: float = 14.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._rules = rules
        self._pepper = pepper
        self._half_life = half_life_days
        self._clock = clock

    def key(self, number: PhoneNumber) -> str:
        pepper = self._pepper()
        if pepper is None:
            raise Unavailable("the caller-key secret is unavailable")
        return caller_key(number.e164, pepper)

    # -- consent and objection ----------------------------------------------------------------------------

    def consent(self, request: ConsentRequest, actor: str) -> dict[str, Any]:
        now = self._clock()
        at = request.at.timestamp() if request.at else now
        if at > now + 300:
            raise BadRequest(["at: must not be in the future"])
        key = self.key(request.number)
        choice = Consent(granted=request.granted, at=at, source=request.source)

        def change(profile: CallerProfile) -> CallerProfile:
            consents = dict(profile.consents)
            for purpose in request.purposes:
                held = consents.get(purpose.value)
                if held is None or (held.granted, held.source) != (choice.granted, choice.source):
                    consents[purpose.value] = choice
            return profile.model_copy(update={"consents": consents})

        changes = [(purpose.value, request.granted) for purpose in request.purposes]
        profile, changed = self._change(
            key, request.number, change, changes, request.source, at, request.request_id
        )
        outcome = "changed" if changed else "unchanged"
        self._audit("consent", actor, profile.subject, outcome, request.request_id, now)
        return {
            "outcome": outcome,
            "consents": {p: self._consent_json(c) for p, c in sorted(profile.consents.items())},
            "objected": profile.objected,
        }

    def record_choice(
        self,
        number: PhoneNumber,
        purposes: Sequence[str],
        granted: bool,
        source: str,
        at: float,
        deadline: Deadline | None = None,
    ) -> CallerProfile:
        """The in-call answer, recorded as consent (or its refusal) for `purposes`, within the call's
        budget. Raises `StoreError` or `Unavailable` when it could not be recorded."""
        key = self.key(number)
        choice = Consent(granted=granted, at=at, source=source)

        def change(profile: CallerProfile) -> CallerProfile:
            return profile.model_copy(
                update={"consents": {**profile.consents, **dict.fromkeys(purposes, choice)}}
            )

        profile, _ = self._change(
            key, number, change, [(p, granted) for p in purposes], source, at, None, deadline
        )
        self._audit("consent", "ivr", profile.subject, "changed", None, at)
        return profile

    def object(self, request: ObjectionRequest, actor: str) -> dict[str, Any]:
        now = self._clock()
        at = request.at.timestamp() if request.at else now
        key = self.key(request.number)

        def change(profile: CallerProfile) -> CallerProfile:
            if profile.objected == request.objected:
                return profile
            return profile.model_copy(
                update={
                    "objected": request.objected,
                    "objected_at": at if request.objected else None,
                    "objection_source": request.source if request.objected else "",
                }
            )

        profile, changed = self._change(
            key,
            request.number,
            change,
            [(OBJECTION, request.objected)],
            request.source,
            at,
            request.request_id,
        )
        dropped: Counter[str] = Counter()
        if request.objected:
            # Nothing may be derived from the caller's data any more: what was derived goes now.
            try:
                dropped = self._store.drop(key, ["interests", "counted_signals"])
            except StoreError as error:
                raise Unavailable(str(error)) from error
        outcome = "changed" if changed else "unchanged"
        self._audit("objection", actor, profile.subject, outcome, request.request_id, now, dict(dropped))
        return {
            "outcome": outcome,
            "objected": profile.objected,
            "objected_at": iso(profile.objected_at),
            "deleted": {kind: dropped.get(kind, 0) for kind in ("interests", "counted_signals")},
        }

    def _change(
        self,
        key: str,
        number: PhoneNumber,
        change: Callable[[CallerProfile], CallerProfile],
        changes: Sequence[tuple[str, bool]],
        source: str,
        at: float,
        request_id: str | None,
        deadline: Deadline | None = None,
    ) -> tuple[CallerProfile, bool]:
        """Apply `change` to the caller's profile (created if missing) and keep the change as proof; the
        profile as it is now, and whether it changed. Retried when a concurrent change got there first."""
        _, rule_set = self._rules.for_jurisdiction(number.region)
        proof_days = rule_set.retention_days.consent_proof
        for _ in range(PROFILE_WRITE_ROUNDS):
            try:
                profile, version = self._store.profile(key, deadline, now=self._clock())
            except StoreError as error:
                raise Unavailable(str(error)) from error
            current = profile or CallerProfile(jurisdiction=number.region, created_at=at)
            if not current.subject:  # a profile loaded from elsewhere gets its audit subject now
                current = current.model_copy(update={"subject": uuid.uuid4().hex})
            updated = change(current)
            if profile is not None and updated == current:
                return current, False
            # Kept as proof for `consent_proof` days after its last change; an objection until erased.
            expires_at = None if updated.objected else at + proof_days * DAY
            updated = updated.model_copy(update={"expires_at": expires_at})
            proofs = [
                Change(what, value, source, at, request_id or "", at + proof_days * DAY)
                for what, value in changes
            ]
            try:
                self._store.put_profile(key, updated, version, proofs, expires_at, deadline)
            except ConditionFailed:
                continue
            except StoreError as error:
                raise Unavailable(str(error)) from error
            return updated, True
        raise Unavailable("the caller's profile kept changing meanwhile; ask again")

    # -- access -------------------------------------------------------------------------------------------

    def access(self, request: SubjectRequest, actor: str) -> dict[str, Any]:
        """Everything held about the number, as one JSON document (GDPR Art. 15)."""
        now = self._clock()
        key = self.key(request.number)
        try:
            items = self._store.held(key)
        except StoreError as error:
            raise Unavailable(str(error)) from error
        by_kind: dict[str, list[dict[str, Any]]] = {kind: [] for kind in KINDS}
        records = []
        for item in items:
            expires_at = item.get("expires_at", {}).get("N")
            if expires_at is not None and float(expires_at) <= now:
                continue  # gone by policy; DynamoDB's TTL deletes it within days
            kind = kind_of(item["sk"]["S"])
            if kind == "decision_records":
                records.append(decode_record(item))
            else:
                by_kind[kind].append(from_item(item))
        profile = CallerProfile.model_validate(by_kind["profile"][0]) if by_kind["profile"] else None
        region = request.number.region
        records = sorted(
            (record for record in records if record.expires_at > now), key=lambda record: -record.decided_at
        )
        interests = [
            Interest.model_validate(item)
            for item in by_kind["interests"]
            if not item.get("expires_at") or float(item["expires_at"]) > now
        ]
        allowed = permissions(self._rules, region or (profile.jurisdiction if profile else None), profile)
        language = self._rules.language(region)
        self._audit("access", actor, profile.subject if profile else "", "answered", request.request_id, now)
        return {
            "number": request.number.e164,
            "generated_at": iso(now),
            "policy": {
                "version": self._rules.version,
                "rule_set": allowed.rule_set,
                "label": allowed.facts.label,
                "retention_days": allowed.retention_days.model_dump(),
            },
            "routing_now": {
                "interest_routing": allowed.use_interests,
                "known_agent": allowed.use_known_agent,
                "reasons": allowed.reasons,
            },
            "profile": self._profile_json(profile),
            "consent_history": [
                {
                    "what": item["what"],
                    "value": item["value"],
                    "source": item["source"],
                    "at": iso(float(item["at"])),
                    "request_id": item.get("request_id") or None,
                    "kept_until": iso(item.get("expires_at")),
                }
                for item in sorted(by_kind["consent_history"], key=lambda item: str(item["sk"]))
            ],
            "interests": [self._interest_json(interest, now) for interest in interests],
            "last_agent": self._last_agent_json(records, now),
            "decisions": [self._record_json(record, language) for record in records],
            "counted_signals": [
                {"signal_hash": str(item["sk"]).split("#", 1)[1], "kept_until": iso(item.get("expires_at"))}
                for item in by_kind["counted_signals"]
            ],
        }

    @staticmethod
    def _consent_json(consent: Consent) -> dict[str, Any]:
        return {"granted": consent.granted, "at": iso(consent.at), "source": consent.source}

    def _profile_json(self, profile: CallerProfile | None) -> dict[str, Any] | None:
        if profile is None:
            return None
        return {
            "jurisdiction": profile.jurisdiction,
            "consents": {p: self._consent_json(c) for p, c in sorted(profile.consents.items())},
            "objected": profile.objected,
            "objected_at": iso(profile.objected_at),
            "objection_source": profile.objection_source or None,
            "created_at": iso(profile.created_at),
            "kept_until": iso(profile.expires_at),
        }

    def _interest_json(self, interest: Interest, now: float) -> dict[str, Any]:
        return {
            "product": interest.product,
            "score_now": round(faded_score(interest, now, self._half_life), 3),
            "score": round(interest.score, 3),
            "updated_at": iso(interest.updated_at),
            "kept_until": iso(interest.expires_at),
            "sources": interest.sources,
            "evidence": interest.evidence or None,
            "signals": [
                {
                    "source": part.source,
                    "at": iso(part.at),
                    "strength": part.strength,
                    "evidence": part.evidence or None,
                }
                for part in interest.recent
            ],
        }

    @staticmethod
    def _last_agent_json(records: Sequence[DecisionRecord], now: float) -> dict[str, Any] | None:
        link: LastAgent | None = next(
            (r.link for r in records if r.link is not None and r.link.expires_at > now), None
        )
        if link is None:
            return None
        return {
            "agent_id": link.agent_id,
            "call_id": link.call_id,
            "at": iso(link.at),
            "kept_until": iso(link.expires_at),
        }

    def _record_json(self, record: DecisionRecord, language: Language) -> dict[str, Any]:
        return {
            "call_id": record.call_id,
            "decided_at": iso(record.decided_at),
            "mode": record.mode.value,
            "outcome": record.outcome.value,
            "agent_id": record.agent_id,
            "attempts": [
                {"agent_id": a.agent_id, "mode": a.mode.value, "at": iso(a.at), "outcome": a.outcome.value}
                for a in record.attempts
            ],
            "interests_used": {
                product: {
                    "score": fact.score,
                    "sources": fact.sources,
                    "at": iso(fact.at),
                    "evidence": fact.evidence or None,
                }
                for product, fact in record.interests.items()
            },
            "privacy": {
                "rule_set": record.privacy.rule_set,
                "policy_version": record.privacy.policy_version,
                "interest_routing": record.privacy.interests,
                "known_agent": record.privacy.known_agent,
            },
            "language": language,
            "reasons": record_reasons(record, language=language),
            "kept_until": iso(record.expires_at),
        }

    # -- explanation --------------------------------------------------------------------------------------

    def explain(self, request: ExplainRequest, actor: str) -> dict[str, Any]:
        """The latest decision record of the number (or the record of one call), with its reasons in the
        caller's language."""
        now = self._clock()
        key = self.key(request.number) if request.number is not None else None
        try:
            if request.call_id is not None:
                record = self._store.decision(key, request.call_id)
            else:
                found = self._store.records(key, limit=1)
                record = found[0] if found else None
        except StoreError as error:
            raise Unavailable(str(error)) from error
        if record is not None and record.expires_at <= now:
            record = None
        self._audit("explain", actor, "", "answered" if record else "nothing held", request.request_id, now)
        if record is None:
            return {"decision": None}
        language = request.language or self._rules.language(record.privacy.jurisdiction)
        return {"decision": self._record_json(record, language)}

    # -- erasure ------------------------------------------------------------------------------------------

    def erase(self, request: SubjectRequest, actor: str) -> dict[str, Any]:
        """Delete everything held about the number (GDPR Art. 17); a receipt that holds no number."""
        now = self._clock()
        key = self.key(request.number)
        receipt_id = str(uuid.uuid4())
        try:
            profile, _ = self._store.profile(key)
            deleted = self._store.erase(key, Erasure(key, now, receipt_id))
        except StoreError as error:
            raise Unavailable(str(error)) from error
        counts = {kind: deleted.get(kind, 0) for kind in KINDS}
        self._audit(
            "erasure",
            actor,
            profile.subject if profile else "",
            "erased",
            request.request_id,
            now,
            counts,
            receipt_id=receipt_id,
        )
        return {
            "receipt_id": receipt_id,
            "erased_at": iso(now),
            "deleted": counts,
            "total": sum(counts.values()),
            "kept": (
                "the caller key (a keyed hash, not the number) in the erasure log, so that a restored backup"
                " is erased again; the audit trail, which names no caller"
            ),
        }

    def replay_erasures(self, log: PrivacyStore, since: float, actor: str) -> dict[str, Any]:
        """Erase again, in this table, every caller erased (per `log`'s erasure log) after `since`: for a
        table restored from a backup or point-in-time recovery taken at `since`."""
        now = self._clock()
        replayed = 0
        deleted: Counter[str] = Counter()
        for erasure in log.erasures(since):
            deleted += self._store.erase(erasure.caller_key, erasure)
            replayed += 1
        counts = {kind: deleted.get(kind, 0) for kind in KINDS}
        self._audit("replay-erasures", actor, "", f"{replayed} replayed", None, now, counts)
        return {"replayed": replayed, "since": iso(since), "deleted": counts, "total": sum(counts.values())}

    # -- audit --------------------------------------------------------------------------------------------

    def _audit(
        self,
        operation: str,
        actor: str,
        subject: str,
        outcome: str,
        request_id: str | None,
        at: float,
        counts: Mapping[str, int] | None = None,
        receipt_id: str | None = None,
    ) -> None:
        entry: dict[str, Any] = {
            "operation": operation,
            "actor": actor,
            "subject": subject,
            "outcome": outcome,
        }
        if request_id:
            entry["request_id"] = request_id
        if counts:
            entry["counts"] = dict(counts)
        if receipt_id:
            entry["receipt_id"] = receipt_id
        keep = self._rules.default.retention_days.consent_proof * DAY
        try:
            self._store.audit(entry, at, request_id or uuid.uuid4().hex, at + keep)
        except StoreError as error:
            raise Unavailable(f"audit trail: {error}") from error


__all__ = [
    "BadRequest",
    "ConsentRequest",
    "ExplainRequest",
    "ObjectionRequest",
    "PrivacyRights",
    "Purpose",
    "SubjectRequest",
    "Unavailable",
    "parse",
]
