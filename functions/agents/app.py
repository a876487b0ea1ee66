"""AgentsFunction: the roster as people run it, on an IAM-authorised HTTP API.

    POST   /agents                      add an agent                         201, the agent
    GET    /agents?limit=&next=         a page of agents                     200, {"agents", "next"}
    GET    /agents/{agent_id}           one agent, and where they stand now  200
    PATCH  /agents/{agent_id}           change name, endpoint, products...   200, the agent
    DELETE /agents/{agent_id}           take an agent off the roster         200
    PUT    /agents/{agent_id}/status    available, away or offline           200, the agent
    POST   /outcomes                    what became of a call, per product   200, counted or duplicate
    GET    /agents/{agent_id}/offers    calls offered to a browser agent     200, {"offers"}
    POST   /agents/{agent_id}/offers/{call_id}/accept   join the call        200, meeting and attendee
    POST   /agents/{agent_id}/offers/{call_id}/decline  pass it on           200
    POST   /agents/{agent_id}/page-link     a browser agent's page token         200, token and socket

Outcomes also arrive as EventBridge events on the stack's bus (detail-type `rapport.outcome`, the detail
an outcome report); each call's outcome for a product counts once, however often it is sent.

The request and answer shapes are this file's pydantic models; `api/agents.openapi.json` is generated
from them (`rapport agents openapi`) and a test keeps the two the same. Bad input: 400 with the
problems; unknown agent: 404; a change that cannot be made: 409; the table unavailable: 503 (every
change is one transaction, so nothing is half-written and asking again is safe).
"""

from __future__ import annotations

import json
import os
import time
from functools import cache, cached_property
from typing import Annotated, Any, TypeVar

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.event_handler.openapi.exceptions import RequestValidationError
from aws_lambda_powertools.event_handler.openapi.params import Body, Path, Query
from pydantic import BaseModel, ValidationError
from rapport import SERVICE_NAME
from rapport.agents import (
    AgentAdmin,
    AgentChange,
    AgentPage,
    AgentView,
    Conflict,
    NewAgent,
    NotFound,
    OutcomeAnswer,
    OutcomeReport,
    Outcomes,
    Removal,
    StatusChange,
)
from rapport.http import json_response
from rapport.log_privacy import RedactingFormatter
from rapport.models import AgentEndpoint, AgentId
from rapport.offers import Acceptance, Declined, OfferDesk, OfferList, OfferStore, chime_client
from rapport.pages import PageLink, page_link
from rapport.secrets import PepperSource
from rapport.settings import Settings
from rapport.signals import problems
from rapport.store import StoreError
from rapport.store.agents import OutcomeStore
from rapport.telemetry import CallMetrics, Metric

logger = Logger(service=SERVICE_NAME, logger_formatter=RedactingFormatter())
app = APIGatewayHttpResolver(enable_validation=True)

AgentPath = Annotated[AgentId, Path(description="The agent's id")]
M = TypeVar("M", bound=BaseModel)


class Services:
    def __init__(self) -> None:
        self.settings = Settings()
        store = OutcomeStore.for_table(self.settings.table_name)
        self.admin = AgentAdmin(store, clock=lambda: now())
        self.outcomes = Outcomes(store, clock=lambda: now())
        self.page_key = PepperSource.page_tokens(self.settings)
        self.store = store
        self.desk = OfferDesk(
            OfferStore(store.client, self.settings.table_name),
            lambda: self.meetings,
            lambda: self.voice,
            self.settings.sip_media_application_id,
            os.environ.get("AWS_REGION", "us-east-1"),
            clock=lambda: now(),
        )

    @cached_property
    def meetings(self) -> Any:
        return chime_client("chime-sdk-meetings")

    @cached_property
    def voice(self) -> Any:
        return chime_client("chime-sdk-voice")


@cache
def services() -> Services:
    return Services()


def now() -> float:
    return time.time()


@app.post("/agents", summary="Add an agent", responses={201: {"description": "The agent, as added"}})
def add_agent(agent: Annotated[NewAgent, Body(embed=False)]) -> Response[AgentView]:
    _check_endpoint(agent.endpoint)
    return _answer(201, services().admin.add(agent))


@app.get("/agents", summary="A page of agents")
def list_agents(
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
    next: Annotated[str | None, Query(max_length=80, description="From the page before")] = None,
) -> Response[AgentPage]:
    return _answer(200, services().admin.list(limit, next))


@app.get("/agents/<agent_id>", summary="One agent, and where they stand right now")
def get_agent(agent_id: AgentPath) -> Response[AgentView]:
    return _answer(200, services().admin.get(agent_id))


@app.patch("/agents/<agent_id>", summary="Change an agent (fields left out stay as they are)")
def update_agent(
    agent_id: AgentPath, change: Annotated[AgentChange, Body(embed=False)]
) -> Response[AgentView]:
    _check_endpoint(change.endpoint)
    return _answer(200, services().admin.update(agent_id, change))


@app.delete("/agents/<agent_id>", summary="Take an agent off the roster (a call they are on goes on)")
def remove_agent(agent_id: AgentPath) -> Response[Removal]:
    return _answer(200, services().admin.remove(agent_id))


@app.put("/agents/<agent_id>/status", summary="Set an agent available, away or offline")
def set_status(
    agent_id: AgentPath, change: Annotated[StatusChange, Body(embed=False)]
) -> Response[AgentView]:
    return _answer(200, services().admin.set_status(agent_id, change))


@app.post("/outcomes", summary="What became of a call: a sale or not, per product (counted once per call)")
def report_outcome(report: Annotated[OutcomeReport, Body(embed=False)]) -> Response[OutcomeAnswer]:
    return _answer(200, services().outcomes.report(report))


CallPath = Annotated[
    str, Path(description="The offered call's id (the decision id)", pattern=r"^[A-Za-z0-9-]{1,64}$")
]


@app.get("/agents/<agent_id>/offers", summary="Calls offered to a browser agent right now")
def list_offers(agent_id: AgentPath) -> Response[OfferList]:
    return _answer(200, services().desk.offers(agent_id))


@app.post(
    "/agents/<agent_id>/offers/<call_id>/accept",
    summary="Accept an offered call: the caller is joined into a meeting with the agent",
)
def accept_offer(agent_id: AgentPath, call_id: CallPath) -> Response[Acceptance]:
    return _answer(200, services().desk.accept(agent_id, call_id))


@app.post("/agents/<agent_id>/offers/<call_id>/decline", summary="Decline an offered call: it moves on")
def decline_offer(agent_id: AgentPath, call_id: CallPath) -> Response[Declined]:
    return _answer(200, services().desk.decline(agent_id, call_id))


@app.post(
    "/agents/<agent_id>/page-link",
    summary="A token with which a browser agent's page connects (hand it to the agent as a link)",
)
def page_link_of(agent_id: AgentPath) -> Response[PageLink]:
    found = services()
    link = page_link(
        found.store,
        agent_id,
        found.page_key.get(),
        now(),
        found.settings.page_token_hours,
        found.settings.page_socket_url,
    )
    return _answer(200, link)


def _answer(code: int, body: M) -> Response[M]:
    return Response(status_code=code, content_type="application/json", body=body)


# -- the OpenAPI document ---------------------------------------------------------------------------------

ERRORS = {
    "400": "The request is not valid: `problems` names each field and what is wrong with it",
    "404": "No agent with that id",
    "409": "The change cannot be made as asked (the agent exists already, their pool has no room)",
    "503": "Not carried out for now; nothing was changed, ask again",
}


def openapi_document() -> str:
    """This API as OpenAPI 3: the routes and models above, as Powertools describes them, with the error
    answers this function gives (400 where Powertools would say 422)."""
    document = json.loads(
        app.get_openapi_json_schema(
            title="rapport agents",
            version="1",
            description="The roster as people run it (AgentsFunction). Requests are signed with SigV4 (IAM).",
        )
    )
    schemas = document["components"]["schemas"]
    for name in ("HTTPValidationError", "ValidationError", "ResponseValidationError"):
        schemas.pop(name, None)
    schemas["Error"] = {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {"type": "string"},
            "problems": {"type": "array", "items": {"type": "string"}},
            "retry": {"type": "boolean"},
        },
    }
    error = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            answers = {code: body for code, body in operation["responses"].items() if code != "422"}
            codes = ["400", "503"]
            if "{agent_id}" in path:
                codes.append("404")
            if method in ("post", "patch"):
                codes.append("409")
            answers |= {code: {"description": ERRORS[code], "content": error} for code in sorted(codes)}
            operation["responses"] = answers
    return json.dumps(document, indent=2, ensure_ascii=False)


# -- errors ---------------------------------------------------------------------------------------------


class EndpointRefused(ValueError):
    """A PSTN number outside the countries calls may go to: the router would never ring it."""


def _check_endpoint(endpoint: AgentEndpoint | None) -> None:
    settings = services().settings
    if endpoint is not None and not settings.allows(endpoint):
        codes = ", ".join(f"+{code}" for code in sorted(settings.allowed_calling_codes)) or "none"
        raise EndpointRefused(
            f"endpoint.address: a PSTN number in a country calls may not go to (allowed country codes:"
            f" {codes}; the PstnCountryCodes parameter sets them)"
        )


def endpoint_refused(error: EndpointRefused) -> Response[str]:
    _count(Metric.AGENT_REQUESTS_REFUSED)
    return json_response(400, {"error": "the request is not valid", "problems": [str(error)]})


def bad_request(error: RequestValidationError) -> Response[str]:
    problems = []
    for detail in error.errors():
        where = ".".join(str(part) for part in detail.get("loc", ()) if part != "body") or "request"
        problems.append(f"{where}: {str(detail.get('msg', 'invalid')).removeprefix('Value error, ')}")
    _count(Metric.AGENT_REQUESTS_REFUSED)
    return json_response(400, {"error": "the request is not valid", "problems": problems})


def not_found(error: NotFound) -> Response[str]:
    text = str(error)
    return json_response(404, {"error": text if " " in text else f"no agent {text}"})


def no_route(error: NotFoundError) -> Response[str]:
    return json_response(404, {"error": "no such route"})


def conflict(error: Conflict) -> Response[str]:
    return json_response(409, {"error": str(error)})


def unavailable(error: StoreError) -> Response[str]:
    logger.error("agents request not carried out", extra={"error": str(error)})
    return json_response(
        503, {"error": "not carried out for now; nothing was changed, ask again", "retry": True}
    )


# Powertools' decorator is untyped: the handlers are registered by calling it.
app.exception_handler(RequestValidationError)(bad_request)
app.exception_handler(EndpointRefused)(endpoint_refused)
app.exception_handler(NotFound)(not_found)
app.exception_handler(NotFoundError)(no_route)
app.exception_handler(Conflict)(conflict)
app.exception_handler(StoreError)(unavailable)


def _count(metric: Metric) -> None:
    metrics = app.context.get("metrics")
    if isinstance(metrics, CallMetrics):
        metrics.count(metric)


OUTCOME_DETAIL_TYPE = "rapport.outcome"


class OutcomeNotCounted(Exception):
    """Raised so that EventBridge delivers the event again (the table was unavailable)."""


def from_eventbridge(event: dict[str, Any], metrics: CallMetrics) -> dict[str, Any]:
    """An outcome report from the bus. Bad ones are logged and dropped (sending them again would not
    help); when the table is unavailable the invocation fails and EventBridge retries it."""
    try:
        report = OutcomeReport.model_validate(event.get("detail"))
    except ValidationError as error:
        logger.error("outcome rejected", extra={"problems": problems(error)})
        metrics.count(Metric.AGENT_REQUESTS_REFUSED)
        return {"rejected": problems(error)}
    try:
        answer = services().outcomes.report(report)
    except NotFound:
        logger.error("outcome for an unknown agent dropped", extra={"agent_id": report.agent_id})
        metrics.count(Metric.AGENT_REQUESTS_REFUSED)
        return {"rejected": [f"agent_id: no agent {report.agent_id}"]}
    except StoreError as error:
        raise OutcomeNotCounted(str(error)) from error
    metrics.count(Metric.AGENT_REQUESTS)
    return answer.model_dump(mode="json")


@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    metrics = CallMetrics()
    try:
        if isinstance(event, dict) and event.get("detail-type") == OUTCOME_DETAIL_TYPE:
            return from_eventbridge(event, metrics)
        if isinstance(event, dict) and "http" in (event.get("requestContext") or {}):
            app.context["metrics"] = metrics
            answer: dict[str, Any] = app.resolve(event, context)
            if answer.get("statusCode", 500) < 400:
                metrics.count(Metric.AGENT_REQUESTS)
            return answer
        logger.error("unknown event: not an HTTP API request")
        return {"statusCode": 400, "body": '{"error": "not an HTTP API request"}'}
    finally:
        metrics.flush()
