"""The privacy side's door to DynamoDB: a caller's choices and their history, everything held about a
caller (to hand it over or erase it), the erasure log and the audit trail.

    CALLER#<caller-key> / PROFILE                      consents, objection, subject id, version
    CALLER#<caller-key> / PROFILE#<ms, 13 digits>#<what> one change of a consent or the objection (proof)
    ERASURES            / <caller-key>                 the latest erasure of a caller (replayed on restore)
    AUDIT#<yyyy-mm-dd>  / <ISO time>#<request id>      one privacy operation: what, who asked, outcome

History items sort after PROFILE, so the call path's context read (descending from PROFILE) never reads
them. The profile is written on the condition that it is still the version that was read.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from rapport.budget import Deadline
from rapport.models import CallerProfile, DecisionRecord
from rapport.store import ConditionFailed, StoreUnavailable
from rapport.store.dynamodb import DynamoStore
from rapport.store.layout import (
    DECISION_PREFIX,
    INTEREST_PREFIX,
    PROFILE_SK,
    SIGNAL_PREFIX,
    caller_pk,
    decode_record,
    from_item,
    to_item,
)

HISTORY_PREFIX = f"{PROFILE_SK}#"
ERASURES_PK = "ERASURES"
AUDIT_PREFIX = "AUDIT#"

PRIVACY_CONFIG = Config(
    connect_timeout=1.0, read_timeout=3.0, retries={"total_max_attempts": 3, "mode": "standard"}
)

KINDS = ("profile", "consent_history", "interests", "decision_records", "counted_signals", "other")


def kind_of(sk: str) -> str:
    """What an item of a caller's partition is, by its sort key (the receipt counts by these names)."""
    if sk == PROFILE_SK:
        return "profile"
    if sk.startswith(HISTORY_PREFIX):
        return "consent_history"
    if sk.startswith(INTEREST_PREFIX):
        return "interests"
    if sk.startswith(DECISION_PREFIX):
        return "decision_records"
    if sk.startswith(SIGNAL_PREFIX):
        return "counted_signals"
    return "other"


@dataclass(frozen=True)
class Change:
    """One change to a caller's choices, kept as proof: a consent given or withdrawn, an objection made
    or lifted."""

    what: str
    """A purpose (`interest_routing`, `known_agent`) or `objection`."""
    value: bool
    source: str
    at: float
    request_id: str
    expires_at: float


@dataclass(frozen=True)
class Erasure:
    caller_key: str
    erased_at: float
    receipt_id: str


class PrivacyStore(DynamoStore):
    """rapport's table, as the privacy operations use it (off the call path, except the in-call choice)."""

    @classmethod
    def for_table(cls, table_name: str, config: Config = PRIVACY_CONFIG) -> PrivacyStore:
        return cls(boto3.session.Session().client("dynamodb", config=config), table_name)

    # -- reading ------------------------------------------------------------------------------------------

    def held(self, caller_key: str) -> list[dict[str, Any]]:
        """Every item of a caller's partition, as DynamoDB's typed maps (a consistent read, page by page)."""
        return list(
            self._raw_pages(
                KeyConditionExpression="pk = :pk",
                ExpressionAttributeValues={":pk": {"S": caller_pk(caller_key)}},
                ConsistentRead=True,
            )
        )

    def profile(
        self, caller_key: str, deadline: Deadline | None = None, now: float | None = None
    ) -> tuple[CallerProfile | None, int | None]:
        """The caller's profile and its version (None, None: there is none; version 0: one loaded with
        data, never changed here). A profile expired at `now` (its TTL deletion may lag) is no profile,
        but its version still guards the next write."""
        response = self._call(
            "get_item",
            deadline,
            TableName=self.table_name,
            Key={"pk": {"S": caller_pk(caller_key)}, "sk": {"S": PROFILE_SK}},
            ConsistentRead=True,
        )
        item = response.get("Item")
        if not item:
            return None, None
        values = from_item(item)
        version = int(values.get("version", 0))
        expires_at = values.get("expires_at")
        if now is not None and expires_at is not None and float(expires_at) <= now:
            return None, version
        return CallerProfile.model_validate(values), version

    def records(self, caller_key: str | None, limit: int | None = None) -> list[DecisionRecord]:
        """A caller's decision records, newest first (`caller_key` None: none)."""
        if not caller_key:
            return []
        params: dict[str, Any] = {
            "KeyConditionExpression": "pk = :pk AND begins_with(sk, :prefix)",
            "ExpressionAttributeValues": {
                ":pk": {"S": caller_pk(caller_key)},
                ":prefix": {"S": DECISION_PREFIX},
            },
            "ScanIndexForward": False,
            "ConsistentRead": True,
        }
        found = []
        for item in self._raw_pages(**params):
            found.append(decode_record(item))
            if limit is not None and len(found) >= limit:
                break
        return found

    # -- the caller's choices -----------------------------------------------------------------------------

    def put_profile(
        self,
        caller_key: str,
        profile: CallerProfile,
        version: int | None,
        changes: Sequence[Change],
        expires_at: float | None,
        deadline: Deadline | None = None,
    ) -> None:
        """Write the profile (if it is still at `version`) and the changes behind it, in one transaction.
        Raises `ConditionFailed` when someone changed the profile meanwhile."""
        pk = caller_pk(caller_key)
        values = {
            "pk": pk,
            "sk": PROFILE_SK,
            **profile.model_dump(mode="json", exclude_none=True),
            "version": (version or 0) + 1,
            "expires_at": expires_at,
        }
        history = [
            {
                "pk": pk,
                "sk": f"{HISTORY_PREFIX}{int(change.at * 1000):013d}#{change.what}",
                "what": change.what,
                "value": change.value,
                "source": change.source,
                "at": change.at,
                "request_id": change.request_id or None,
                "expires_at": change.expires_at,
            }
            for change in changes
        ]
        if version is None:
            condition = "attribute_not_exists(pk)"
        elif version == 0:
            condition = "attribute_exists(pk) AND attribute_not_exists(version)"
        else:
            condition = "version = :version"
        put_profile: dict[str, Any] = {
            "TableName": self.table_name,
            "Item": to_item(values),
            "ConditionExpression": condition,
        }
        if version:
            put_profile["ExpressionAttributeValues"] = {":version": {"N": str(version)}}
        try:
            self._call(
                "transact_write_items",
                deadline,
                TransactItems=[
                    {"Put": put_profile},
                    *({"Put": {"TableName": self.table_name, "Item": to_item(item)}} for item in history),
                ],
            )
        except StoreUnavailable as error:
            cause = error.__cause__
            reasons = cause.response.get("CancellationReasons", []) if isinstance(cause, ClientError) else []
            if any(reason.get("Code") == "ConditionalCheckFailed" for reason in reasons):
                raise ConditionFailed("the profile changed meanwhile") from error
            raise

    def drop(self, caller_key: str, kinds: Sequence[str]) -> Counter[str]:
        """Delete the caller's items of these kinds; how many of each were deleted."""
        keys = [
            item
            for item in self._raw_pages(
                KeyConditionExpression="pk = :pk",
                ExpressionAttributeValues={":pk": {"S": caller_pk(caller_key)}},
                ProjectionExpression="pk, sk",
                ConsistentRead=True,
            )
            if kind_of(item["sk"]["S"]) in kinds
        ]
        self._batch_delete(keys)
        return Counter(kind_of(key["sk"]["S"]) for key in keys)

    def _batch_delete(self, keys: Sequence[Mapping[str, Any]]) -> None:
        self._batch([{"DeleteRequest": {"Key": dict(key)}} for key in keys])

    # -- erasure ------------------------------------------------------------------------------------------

    def erase(self, caller_key: str, erasure: Erasure) -> Counter[str]:
        """Delete everything in the caller's partition and log the erasure (by caller key), so that a
        restored backup can have it replayed. How many items of each kind were deleted."""
        deleted = self.drop(caller_key, KINDS)
        self.log_erasure(erasure)
        return deleted

    def log_erasure(self, erasure: Erasure) -> None:
        item = {
            "pk": ERASURES_PK,
            "sk": erasure.caller_key,
            "erased_at": erasure.erased_at,
            "receipt_id": erasure.receipt_id,
        }
        self._call("put_item", None, TableName=self.table_name, Item=to_item(item))

    def erasures(self, since: float = 0.0) -> Iterator[Erasure]:
        """The erasure log: the latest erasure of each caller erased after `since`."""
        for item in self._raw_pages(
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": {"S": ERASURES_PK}},
            ConsistentRead=True,
        ):
            values = from_item(item)
            if float(values["erased_at"]) > since:
                yield Erasure(str(values["sk"]), float(values["erased_at"]), str(values["receipt_id"]))

    # -- audit trail --------------------------------------------------------------------------------------

    def audit(self, entry: Mapping[str, Any], at: float, request_id: str, expires_at: float) -> None:
        """Append one entry to the audit trail (it holds no number and no caller key)."""
        when = datetime.fromtimestamp(at, UTC)
        item = {
            "pk": f"{AUDIT_PREFIX}{when:%Y-%m-%d}",
            "sk": f"{when.isoformat(timespec='milliseconds')}#{request_id}",
            **entry,
            "at": at,
            "expires_at": expires_at,
        }
        self._call("put_item", None, TableName=self.table_name, Item=to_item(item))

    def audit_trail(self, day: str) -> list[dict[str, Any]]:
        """The audit entries of one UTC day (`yyyy-mm-dd`), oldest first."""
        return [
            from_item(item)
            for item in self._raw_pages(
                KeyConditionExpression="pk = :pk",
                ExpressionAttributeValues={":pk": {"S": f"{AUDIT_PREFIX}{day}"}},
                ConsistentRead=True,
            )
        ]
