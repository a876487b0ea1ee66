"""PrivacyFunction: a caller's rights, on an IAM-authorised HTTP API.

    POST /privacy/consent      {"number", "purposes", "granted", "source", "at"?}  give or withdraw
    POST /privacy/objection    {"number", "source", "objected"?: true, "at"?}     object (Art. 21)
    POST /privacy/access       {"number"}                                         all held (Art. 15)
    POST /privacy/erasure      {"number"}                                         erase (Art. 17)
    POST /privacy/explanation  {"number"?, "call_id"?, "language"?}               a decision's reasons

Numbers travel in the body, never in the path or query string (API Gateway's access logs keep those).
Every request may carry a `request_id` of the requester's own. Answers: 200 with the result, 400 with
the problems (never the values sent), 503 when DynamoDB or the caller-key secret is unavailable (asking
again is safe: every operation is idempotent). The same operations are the `rapport privacy` commands.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from functools import cache
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from pydantic import BaseModel
from rapport import SERVICE_NAME
from rapport.http import json_response
from rapport.log_privacy import RedactingFormatter
from rapport.privacy import deployed_rules
from rapport.rights import (
    BadRequest,
    ConsentRequest,
    ExplainRequest,
    ObjectionRequest,
    PrivacyRights,
    SubjectRequest,
    Unavailable,
    parse,
)
from rapport.secrets import PepperSource
from rapport.settings import Settings
from rapport.store.privacy import PrivacyStore
from rapport.telemetry import CallMetrics, Metric

logger = Logger(service=SERVICE_NAME, logger_formatter=RedactingFormatter())
app = APIGatewayHttpResolver()


class Services:
    def __init__(self) -> None:
        self.settings = Settings()
        self.pepper = PepperSource.for_settings(self.settings)
        self.rights = PrivacyRights(
            PrivacyStore.for_table(self.settings.table_name),
            deployed_rules(),
            self.pepper.get,
            self.settings.interest_half_life_days,
            clock=lambda: now(),
        )


def now() -> float:
    """The time of a request (the local scenario player replaces it with the scenario's clock)."""
    return time.time()


@cache
def services() -> Services:
    return Services()


def _actor() -> str:
    """Who asked: the IAM principal API Gateway authorised."""
    iam = app.current_event.request_context.authorizer.iam if app.current_event.request_context else None
    return (iam.user_arn if iam else None) or "unknown"


def _answer(
    operation: str, model: type[BaseModel], run: Callable[[Any, str], dict[str, Any]]
) -> Response[str]:
    metrics: CallMetrics = app.context["metrics"]
    try:
        body = json.loads(app.current_event.decoded_body or "")
    except ValueError:
        return json_response(400, {"error": "the body must be a JSON object"})
    try:
        result = run(parse(model, body), _actor())
    except BadRequest as bad:
        logger.warning("privacy request refused", extra={"operation": operation, "problems": bad.problems})
        metrics.count(Metric.PRIVACY_REFUSED)
        return json_response(
            400, {"error": f"{operation}: the request is not valid", "problems": bad.problems}
        )
    except Unavailable as error:
        logger.error("privacy request not carried out", extra={"operation": operation, "error": str(error)})
        metrics.count(Metric.PRIVACY_FAILED)
        return json_response(
            503, {"error": f"{operation}: not carried out for now, ask again", "retry": True}
        )
    logger.info("privacy request", extra={"operation": operation, "outcome": result.get("outcome")})
    metrics.count(Metric.PRIVACY_REQUESTS)
    return json_response(200, result)


@app.post("/privacy/consent")
def consent() -> Response[str]:
    return _answer("consent", ConsentRequest, lambda r, actor: services().rights.consent(r, actor))


@app.post("/privacy/objection")
def objection() -> Response[str]:
    return _answer("objection", ObjectionRequest, lambda r, actor: services().rights.object(r, actor))


@app.post("/privacy/access")
def access() -> Response[str]:
    return _answer("access", SubjectRequest, lambda r, actor: services().rights.access(r, actor))


@app.post("/privacy/erasure")
def erasure() -> Response[str]:
    return _answer("erasure", SubjectRequest, lambda r, actor: services().rights.erase(r, actor))


@app.post("/privacy/explanation")
def explanation() -> Response[str]:
    return _answer("explanation", ExplainRequest, lambda r, actor: services().rights.explain(r, actor))


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    metrics = CallMetrics()
    try:
        if isinstance(event, dict) and "http" in (event.get("requestContext") or {}):
            app.context["metrics"] = metrics
            return app.resolve(event, context)
        logger.error("unknown event: not an HTTP API request")
        return {"statusCode": 400, "body": json.dumps({"error": "not an HTTP API request"})}
    finally:
        metrics.flush()


if os.environ.get("AWS_EXECUTION_ENV"):
    # Lambda's init phase: settings checked and the pepper fetched once, before the first request.
    services().pepper.get()
