"""The pepper that keys caller hashes: from Secrets Manager in AWS, a fixed default in development."""

from __future__ import annotations

from aws_lambda_powertools.utilities.parameters import SecretsProvider
from botocore.config import Config

from rapport.settings import Settings

# Fetched once per container (and again after an hour): one round trip at cold start.
_PROVIDER_CONFIG = Config(
    connect_timeout=0.5, read_timeout=1.0, retries={"total_max_attempts": 2, "mode": "standard"}
)


def caller_key_pepper(settings: Settings) -> str:
    """The configured secret's value, or the development pepper when no secret is configured.

    Raises whatever Secrets Manager raises; callers route without profile data when it fails.
    """
    if not settings.caller_key_secret_arn:
        return settings.caller_key_pepper
    provider = SecretsProvider(boto_config=_PROVIDER_CONFIG)
    value = provider.get(settings.caller_key_secret_arn, max_age=3600)
    if not isinstance(value, str) or not value:
        raise ValueError("caller-key secret is empty or not a string")
    return value
