"""Answers of the HTTP APIs (API Gateway, payload format 2.0): JSON bodies, as the functions send them."""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.event_handler import Response


def json_response(code: int, body: dict[str, Any]) -> Response[str]:
    return Response(
        status_code=code, content_type="application/json", body=json.dumps(body, ensure_ascii=False)
    )
