"""Page tokens: a browser agent's page connects with one; an altered, foreign or old one gets nowhere."""

from __future__ import annotations

import pytest
from rapport.page_tokens import BadToken, issue, verify
from rapport.secrets import PepperSource
from rapport.settings import Settings

KEY = "a-page-token-key-of-sixty-four-characters-or-so-0123456789abcdef"
NOW = 1_800_000_000


def test_a_token_names_its_agent_until_it_runs_out() -> None:
    token = issue("anna.m", NOW + 3600, KEY)
    checked = verify(token, KEY, NOW)
    assert (checked.agent_id, checked.expires_at) == ("anna.m", NOW + 3600)
    with pytest.raises(BadToken, match="run out"):
        verify(token, KEY, NOW + 3600)


def test_an_altered_token_is_refused() -> None:
    token = issue("anna", NOW + 3600, KEY)
    payload, signature = token.split(".")
    other_payload = issue("boris", NOW + 3600, KEY).split(".")[0]
    for forged in (
        f"{other_payload}.{signature}",  # someone else's name under Anna's signature
        f"{payload}.{signature[:-2]}AA",
        f"{payload}.",
    ):
        with pytest.raises(BadToken, match="signature"):
            verify(forged, KEY, NOW)


def test_a_token_signed_with_another_key_is_refused() -> None:
    with pytest.raises(BadToken, match="signature"):
        verify(issue("anna", NOW + 3600, "another key"), KEY, NOW)


@pytest.mark.parametrize("junk", ["", "x", "a.b.c", "." * 3, "é" * 600, "abc.def"])
def test_junk_is_refused_without_an_error_of_its_own(junk: str) -> None:
    with pytest.raises(BadToken):
        verify(junk, KEY, NOW)


def test_in_aws_a_page_function_refuses_to_start_with_the_development_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("TABLE_NAME", "rapport")
    monkeypatch.setenv(
        "RAPPORT_CALLER_KEY_SECRET_ARN", "arn:aws:secretsmanager:us-east-1:123456789012:secret:c"
    )
    monkeypatch.setenv("AWS_EXECUTION_ENV", "AWS_Lambda_python3.13")
    monkeypatch.delenv("RAPPORT_PAGE_TOKEN_SECRET_ARN", raising=False)
    with pytest.raises(ValueError, match="development page-token key"):
        PepperSource.page_tokens(Settings())
    monkeypatch.delenv("AWS_EXECUTION_ENV")
    assert PepperSource.page_tokens(Settings()).get()  # locally, the development key is fine
