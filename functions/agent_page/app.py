"""The agent page's WebSocket API (API Gateway), and what keeps pages up to date.

Four handlers, one code base (README, "Browser agents"):

- `authorize`: the `$connect` route's Lambda authoriser. The page connects with `?token=` (a page token
  from the agents API, `rapport.page_tokens`); a good token allows the connection and names its agent in
  the authoriser context, which API Gateway hands to every later event of that connection.
- `handler`: the routes. `$connect` (a browser agent's page: they are available), `$disconnect` (their
  last page closed: offline after the grace period), and the page's messages, selected by
  `$request.body.action`: `accept`, `decline`, `hangup`, `offers`, `ping`. Each is answered on the same
  connection (the route's response).
- `push`: the table's stream, filtered in the template to offers (`OFFER#…` inserts and removals): each
  new offer, and the end of each (`{"type": "withdrawn"}`), is sent to the agent's open pages through
  the `@connections` API.
- `grace`: the delayed check after a page closed (an SQS queue with a delivery delay).

No caller number is ever on these paths: offers carry the decision id, mode, top interest and reasons.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from functools import cache, cached_property
from typing import Any

import boto3
from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import (
    DynamoDBRecord,
    DynamoDBRecordEventName,
    DynamoDBStreamEvent,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import ValidationError
from rapport import SERVICE_NAME
from rapport.agents import NotFound
from rapport.log_privacy import RedactingFormatter
from rapport.models import Offer
from rapport.offers import OfferDesk, OfferStore, chime_client
from rapport.page_tokens import BadToken, verify
from rapport.pages import AgentPages, PageStore
from rapport.secrets import PepperSource
from rapport.settings import Settings
from rapport.store import StoreError
from rapport.store.layout import OFFER_PREFIX

logger = Logger(service=SERVICE_NAME, logger_formatter=RedactingFormatter())

_PUSH_CONFIG = Config(
    connect_timeout=1.0, read_timeout=2.0, retries={"total_max_attempts": 2, "mode": "standard"}
)


class Services:
    def __init__(self) -> None:
        self.settings = Settings()
        self.page_key = PepperSource.page_tokens(self.settings)
        store = PageStore.for_table(self.settings.table_name)
        self.desk = OfferDesk(
            OfferStore(store.client, self.settings.table_name),
            lambda: self.meetings,
            lambda: self.voice,
            self.settings.sip_media_application_id,
            os.environ.get("AWS_REGION", "us-east-1"),
            clock=lambda: now(),
        )
        self.pages = AgentPages(store, self.desk, lambda: self.meetings, self.post, clock=lambda: now())

    @cached_property
    def meetings(self) -> Any:
        return chime_client("chime-sdk-meetings")

    @cached_property
    def voice(self) -> Any:
        return chime_client("chime-sdk-voice")

    @cached_property
    def connections(self) -> Any:
        return boto3.session.Session().client(
            "apigatewaymanagementapi",
            endpoint_url=self.settings.page_socket_callback_url,
            config=_PUSH_CONFIG,
        )

    @cached_property
    def queue(self) -> Any:
        return boto3.session.Session().client("sqs", config=_PUSH_CONFIG)

    def post(self, connection_id: str, message: Mapping[str, Any]) -> bool:
        """Send to one page; False when it is gone (API Gateway answers 410)."""
        try:
            self.connections.post_to_connection(ConnectionId=connection_id, Data=json.dumps(message).encode())
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "GoneException":
                return False
            logger.warning("page not reached", extra={"connection_id": connection_id, "error": str(error)})
        except BotoCoreError as error:
            logger.warning("page not reached", extra={"connection_id": connection_id, "error": str(error)})
        return True


def now() -> float:
    """The time of an event (the local scenario player replaces it with the scenario's clock)."""
    return time.time()


@cache
def services() -> Services:
    return Services()


# -- $connect's authoriser ------------------------------------------------------------------------------


def authorize(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    """A REQUEST authoriser: allow the connection of a page with a good token, naming its agent."""
    token = (event.get("queryStringParameters") or {}).get("token", "")
    method_arn = str(event.get("methodArn", "*"))
    secret = services().page_key.get()
    try:
        if secret is None:
            raise BadToken("page tokens cannot be checked for now")
        checked = verify(str(token), secret, now())
    except BadToken as error:
        logger.info("page refused", extra={"reason": str(error)})
        return _policy("refused", "Deny", method_arn, {})
    return _policy(checked.agent_id, "Allow", method_arn, {"agent_id": checked.agent_id})


def _policy(principal: str, effect: str, resource: str, context: Mapping[str, str]) -> dict[str, Any]:
    return {
        "principalId": principal,
        "policyDocument": {
            "Version": "2012-10-17",
            "Statement": [{"Action": "execute-api:Invoke", "Effect": effect, "Resource": resource}],
        },
        "context": dict(context),
    }


# -- the routes -----------------------------------------------------------------------------------------


@logger.inject_lambda_context(clear_state=True)
def handler(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    request = event.get("requestContext") or {}
    route = str(request.get("routeKey", ""))
    connection_id = str(request.get("connectionId", ""))
    agent_id = str((request.get("authorizer") or {}).get("agent_id", ""))
    logger.append_keys(route=route, connection_id=connection_id, agent_id=agent_id or None)
    if not agent_id or not connection_id:
        # Only an authorised connection gets here; anything else is not ours to answer.
        return {"statusCode": 403, "body": json.dumps({"type": "error", "error": "not signed in"})}
    pages = services().pages
    try:
        if route == "$connect":
            pages.connect(agent_id, connection_id)
            return {"statusCode": 200}
        if route == "$disconnect":
            pages.disconnect(agent_id, connection_id)
            _check_later(agent_id)
            return {"statusCode": 200}
        answer = pages.message(agent_id, event.get("body"))
    except NotFound as error:
        return {"statusCode": 403, "body": json.dumps({"type": "error", "error": str(error)})}
    except StoreError as error:
        logger.error("page request not carried out", extra={"error": str(error)})
        answer = {"type": "error", "error": "not carried out for now: try again", "retry": True}
        if route in ("$connect", "$disconnect"):
            return {"statusCode": 503 if route == "$connect" else 200}
    logger.info("page message answered", extra={"answer": answer.get("type")})
    return {"statusCode": 200, "body": json.dumps(answer)}


def _check_later(agent_id: str) -> None:
    """Queue the check that sets the agent offline, if no page is open again by then."""
    found = services()
    if not found.settings.page_grace_queue_url:
        # Not deployed (locally, `rapport agent-page` plays the queue's part).
        return
    try:
        found.queue.send_message(
            QueueUrl=found.settings.page_grace_queue_url,
            MessageBody=json.dumps({"agent_id": agent_id}),
            DelaySeconds=found.settings.page_grace_seconds,
        )
    except (ClientError, BotoCoreError) as error:
        # Not queued: the agent stays available with no page. Their calls are offered, run out unanswered
        # and move on, and after `away_after_no_answers` of them the agent is set away.
        logger.error("grace check not queued", extra={"error": str(error)})


# -- offers pushed from the table's stream ---------------------------------------------------------------


def push(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    """New offers, and offers that ended (the template's filter passes only `OFFER#` inserts and
    removals; anything else is skipped here too)."""
    offers: list[Offer] = []
    ended: list[tuple[str, str]] = []
    for record in DynamoDBStreamEvent(dict(event)).records:
        offer = _offer_of(record)
        if offer is not None:
            offers.append(offer)
        elif (gone := _ended_offer(record)) is not None:
            ended.append(gone)
    pages = services().pages
    sent = pages.push_offers(offers) if offers else 0
    sent += pages.push_ended(ended) if ended else 0
    logger.info("offers pushed", extra={"offers": len(offers), "ended": len(ended), "messages": sent})
    return {"batchItemFailures": []}


def _ended_offer(record: DynamoDBRecord) -> tuple[str, str] | None:
    """An offer taken away (claimed by a page, withdrawn as the caller hung up, or run out): its agent
    and call, from the keys (a removal carries no image here)."""
    if record.event_name is not DynamoDBRecordEventName.REMOVE or record.dynamodb is None:
        return None
    keys = record.dynamodb.keys
    pk, call_id = str(keys.get("pk", "")), str(keys.get("sk", ""))
    if not pk.startswith(OFFER_PREFIX) or not call_id:
        return None
    return pk.removeprefix(OFFER_PREFIX), call_id


def _offer_of(record: DynamoDBRecord) -> Offer | None:
    if record.event_name is not DynamoDBRecordEventName.INSERT or record.dynamodb is None:
        return None
    image = record.dynamodb.new_image
    if not str(image.get("pk", "")).startswith(OFFER_PREFIX):
        return None
    try:
        return Offer.model_validate({key: value for key, value in image.items() if key not in ("pk", "sk")})
    except ValidationError as error:
        logger.error("offer not readable", extra={"error": str(error)})
        return None


# -- the grace period's end ------------------------------------------------------------------------------

_grace = BatchProcessor(event_type=EventType.SQS)


def _after_grace(record: SQSRecord) -> None:
    agent_id = str(json.loads(record.body)["agent_id"])
    if services().pages.after_grace(agent_id):
        logger.info("agent offline: their page closed", extra={"agent_id": agent_id})


def grace(event: Mapping[str, Any], context: Any) -> dict[str, Any]:
    answer = process_partial_response(
        event=dict(event), record_handler=_after_grace, processor=_grace, context=context
    )
    return dict(answer)
