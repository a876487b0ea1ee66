"""Signed, short-lived tokens with which an agent's page opens its WebSocket (README, "Browser agents").

The agents API (IAM-authorised) issues a token for one browser agent; the page presents it once, when it
connects, and the connection is that agent's from then on. A token is

    <payload>.<signature>    payload = base64url(JSON {"a": agent id, "e": expiry (epoch s), "v": 1})

signed with HMAC-SHA256 under a key derived from the stack's page-token secret (a secret of its own:
the functions that hand out and check page links never hold the caller-key pepper).

Why not IAM or Cognito: a browser cannot sign a WebSocket upgrade with SigV4 without holding AWS
credentials, and a Cognito user pool is one more thing for a small team to run; the people who may add
agents (IAM on the agents API) are the ones who hand out page links. The token names one agent, runs out
(the template's `PageTokenHours`, a shift by default) and cannot be altered.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass

from pydantic import TypeAdapter, ValidationError

from rapport.models import AgentId

KEY_LABEL = b"rapport agent page token v1"
MAX_TOKEN_LENGTH = 512
_AGENT_ID = TypeAdapter(AgentId)


class BadToken(Exception):
    """The token is malformed, altered, for nobody, or has run out; the message says which."""


@dataclass(frozen=True)
class PageToken:
    agent_id: str
    expires_at: int


def _key(secret: str) -> bytes:
    return hmac.new(secret.encode(), KEY_LABEL, hashlib.sha256).digest()


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def issue(agent_id: str, expires_at: int, secret: str) -> str:
    payload = _b64(json.dumps({"a": agent_id, "e": int(expires_at), "v": 1}, separators=(",", ":")).encode())
    signature = _b64(hmac.new(_key(secret), payload.encode(), hashlib.sha256).digest())
    return f"{payload}.{signature}"


def verify(token: str, secret: str, now: float) -> PageToken:
    if not token or len(token) > MAX_TOKEN_LENGTH or token.count(".") != 1:
        raise BadToken("not a page token")
    payload, signature = token.split(".")
    expected = _b64(hmac.new(_key(secret), payload.encode(), hashlib.sha256).digest())
    if not hmac.compare_digest(signature, expected):
        raise BadToken("the token's signature does not match")
    try:
        claims = json.loads(_unb64(payload))
        agent_id = _AGENT_ID.validate_python(claims["a"])
        expires_at = int(claims["e"])
    except (ValueError, KeyError, TypeError, ValidationError) as error:
        raise BadToken("the token's contents are not readable") from error
    if expires_at <= now:
        raise BadToken("the token has run out: ask for a new page link")
    return PageToken(agent_id=agent_id, expires_at=expires_at)
