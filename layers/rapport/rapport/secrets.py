"""The pepper that keys caller hashes: from Secrets Manager in AWS, a fixed default in development.

One `PepperSource` per container: the secret is fetched once (and again after `REFRESH_SECONDS`), only by
the events that need a caller key, and inside their time budget. After a failed fetch it is not tried
again for `RETRY_AFTER_SECONDS`: until then new calls are routed without profile data at no extra cost,
and nothing else (hang-ups, failovers) ever waits on Secrets Manager.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.parameters import SecretsProvider
from botocore.config import Config

from rapport import SERVICE_NAME
from rapport.budget import BudgetSpent
from rapport.settings import Settings

logger = Logger(service=SERVICE_NAME, child=True)

REFRESH_SECONDS = 3600.0
RETRY_AFTER_SECONDS = 30.0
# One attempt with short timeouts: the call's budget is what really bounds the fetch.
_PROVIDER_CONFIG = Config(
    connect_timeout=0.25, read_timeout=0.5, retries={"total_max_attempts": 1, "mode": "standard"}
)


def secrets_manager_fetch(secret_arn: str) -> Callable[[], str]:
    """A fetch of the secret's value through one Powertools provider (its client built once)."""
    provider = SecretsProvider(boto_config=_PROVIDER_CONFIG)

    def fetch() -> str:
        value = provider.get(secret_arn, max_age=int(REFRESH_SECONDS))
        if not isinstance(value, str) or not value:
            raise ValueError("caller-key secret is empty or not a string")
        return value

    return fetch


class PepperSource:
    """The caller-key pepper for this container: cached, and not asked for again soon after a failure."""

    def __init__(self, fetch: Callable[[], str], clock: Callable[[], float] = time.monotonic) -> None:
        self._fetch = fetch
        self._clock = clock
        self._lock = threading.Lock()
        self._value: str | None = None
        self._fetched_at = 0.0
        self._failed_at: float | None = None

    @classmethod
    def for_settings(cls, settings: Settings) -> PepperSource:
        if not settings.caller_key_secret_arn:
            pepper = settings.caller_key_pepper
            return cls(lambda: pepper)
        return cls(secrets_manager_fetch(settings.caller_key_secret_arn))

    @classmethod
    def page_tokens(cls, settings: Settings) -> PepperSource:
        """The key page tokens are signed with (`rapport.page_tokens`), cached the same way."""
        if not settings.page_token_secret_arn:
            if os.environ.get("AWS_EXECUTION_ENV"):
                # Anyone could sign page tokens with the public development key: refuse to start.
                raise ValueError(
                    "RAPPORT_PAGE_TOKEN_SECRET_ARN is not set: refusing to start in AWS with the development"
                    " page-token key (the template sets it to the stack's PageTokenSecret)"
                )
            key = settings.page_token_key
            return cls(lambda: key)
        return cls(secrets_manager_fetch(settings.page_token_secret_arn))

    def cached(self) -> str | None:
        """The pepper if this container has it already; never fetches (for answers that must not wait)."""
        with self._lock:
            return self._value

    def get(self) -> str | None:
        """The pepper, or None while it cannot be had (the call then goes without profile data)."""
        now = self._clock()
        with self._lock:
            if self._value is not None and now - self._fetched_at < REFRESH_SECONDS:
                return self._value
            if self._failed_at is not None and now - self._failed_at < RETRY_AFTER_SECONDS:
                return self._value
            try:
                value = self._fetch()
            except BudgetSpent:
                # The fetch hung until the call's time ran out: do not let the next calls hang on it too.
                self._failed_at = now
                raise
            except Exception as error:  # noqa: BLE001 - any failure means: route without profile data
                self._failed_at = now
                logger.error(
                    "caller-key pepper unavailable: routing without profile data",
                    extra={"error": f"{type(error).__name__}: {error}", "retry_in_s": RETRY_AFTER_SECONDS},
                )
                return self._value
            self._value, self._fetched_at, self._failed_at = value, now, None
            return value
