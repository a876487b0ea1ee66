"""API Gateway's WebSocket API for the agent page, stood in for on loopback.

The page (agent-page/) talks to the real AgentPageFunction handlers through this, as it would through
API Gateway in AWS:

- `page_events`: the events API Gateway sends the functions (the `$connect` authoriser's REQUEST event,
  then CONNECT, MESSAGE and DISCONNECT events carrying the authoriser's context), as documented;
- `PageSession`: one page's connection played in-process (the demo's browser agent);
- `PageGateway`: a real WebSocket server (the `websockets` package) for browsers, with an HTTP server
  beside it that serves the page's files and the `@connections` API the push function posts to;
- `StreamPusher`: DynamoDB Local's stream of the table, read as Lambda's poller reads DynamoDB streams,
  filtered by the template's pattern, handed to the push function;
- the grace queue: a timer per closed page, then the grace function with an SQS event.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import json
import mimetypes
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from unittest import mock
from urllib.parse import parse_qs, unquote, urlparse

from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.sync.server import Server, ServerConnection, serve

from rapport_local.engine import local_client
from rapport_local.lambda_runner import LocalFunction
from rapport_local.sqs import sqs_record
from rapport_local.template import load_template

STAGE = "live"
STATIC = Path(__file__).parent / "static"
LOCAL_MARK = b"<!-- rapport-local -->"
API_ID = "localpage"
MESSAGE_ROUTES = ("accept", "decline", "hangup", "offers", "ping")


# -- the events API Gateway sends ----------------------------------------------------------------------


def connection_id() -> str:
    """An id shaped like API Gateway's (12 random bytes, base64)."""
    return base64.b64encode(secrets.token_bytes(12)).decode()


def _context(
    route: str, event_type: str, connection: str, authorizer: Mapping[str, Any] | None
) -> dict[str, Any]:
    now_ms = int(time.time() * 1000)
    context: dict[str, Any] = {
        "routeKey": route,
        "eventType": event_type,
        "extendedRequestId": uuid.uuid4().hex[:16],
        "requestTime": dt.datetime.now(dt.UTC).strftime("%d/%b/%Y:%H:%M:%S +0000"),
        "messageDirection": "IN",
        "stage": STAGE,
        "connectedAt": now_ms,
        "requestTimeEpoch": now_ms,
        "identity": {"sourceIp": "127.0.0.1", "userAgent": "rapport-local"},
        "requestId": uuid.uuid4().hex[:16],
        "domainName": "127.0.0.1",
        "connectionId": connection,
        "apiId": API_ID,
    }
    if event_type == "MESSAGE":
        context["messageId"] = base64.b64encode(secrets.token_bytes(8)).decode()
    if authorizer is not None:
        context["authorizer"] = dict(authorizer)
    return context


def authorizer_event(token: str | None, connection: str) -> dict[str, Any]:
    """The REQUEST authoriser's event for a `$connect` with `?token=`."""
    query = {"token": token} if token is not None else {}
    return {
        "type": "REQUEST",
        "methodArn": f"arn:aws:execute-api:us-east-1:123456789012:{API_ID}/{STAGE}/$connect",
        "headers": {"Host": "127.0.0.1", "Sec-WebSocket-Version": "13"},
        "queryStringParameters": query,
        "stageVariables": {},
        "requestContext": _context("$connect", "CONNECT", connection, None),
    }


def route_event(
    route: str, connection: str, authorizer: Mapping[str, Any], body: str | None = None
) -> dict[str, Any]:
    event_type = {"$connect": "CONNECT", "$disconnect": "DISCONNECT"}.get(route, "MESSAGE")
    event: dict[str, Any] = {
        "requestContext": _context(route, event_type, connection, authorizer),
        "isBase64Encoded": False,
    }
    if event_type == "MESSAGE":
        event["body"] = body or ""
    if event_type == "DISCONNECT":
        event["requestContext"] |= {"disconnectStatusCode": 1001, "disconnectReason": "Going away"}
    return event


def selected_route(body: str) -> str:
    """The route `$request.body.action` selects, `$default` when none matches."""
    try:
        action = json.loads(body).get("action")
    except (ValueError, AttributeError):
        return "$default"
    return action if action in MESSAGE_ROUTES else "$default"


INVOKE_LOCK = threading.RLock()
"""Held around each invocation from the gateway's threads (WebSocket connections, the stream, timers).
A function's environment is laid on the process (`os.environ`) for the invocation and taken off after;
two threads doing that at once could leave one's environment behind for good."""


def locked(function: LocalFunction) -> Callable[[dict[str, Any]], Any]:
    """`function.invoke`, one at a time with the gateway's own invocations (for a test's calls)."""

    def invoke(event: dict[str, Any]) -> Any:
        with INVOKE_LOCK:
            return function.invoke(event)

    return invoke


class Refused(Exception):
    """The page may not connect: the authoriser denied it (403), or `$connect` did."""


class PageFunctions:
    """The three handlers a page's connection goes through (on `clock`'s time, if one is given: the
    scenario player's)."""

    def __init__(
        self,
        authorizer: LocalFunction,
        routes: LocalFunction,
        grace: LocalFunction | None = None,
        clock: Callable[[], float] | None = None,
    ):
        self.authorizer = authorizer
        self.routes = routes
        self.grace = grace
        self.clock = clock

    @contextlib.contextmanager
    def _applied(self, function: LocalFunction) -> Iterator[None]:
        with INVOKE_LOCK, contextlib.ExitStack() as stack:
            stack.enter_context(function.environment_applied())
            if self.clock is not None:
                stack.enter_context(mock.patch.object(function.module, "now", return_value=self.clock()))
            yield

    def open(self, token: str | None, connection: str) -> dict[str, Any]:
        """Authorise and connect; the authoriser's context for the connection's later events."""
        with self._applied(self.authorizer):
            policy = self.authorizer.handle(authorizer_event(token, connection))
        statement = policy["policyDocument"]["Statement"][0]
        if statement["Effect"] != "Allow":
            raise Refused("Forbidden")
        authorizer = {**policy.get("context", {}), "principalId": policy["principalId"]}
        with self._applied(self.routes):
            answer = self.routes.handle(route_event("$connect", connection, authorizer))
        if answer.get("statusCode") != 200:
            raise Refused(answer.get("body") or "Forbidden")
        return authorizer

    def send(self, connection: str, authorizer: Mapping[str, Any], body: str) -> str | None:
        """A message from the page; the route's response, sent back on the connection."""
        with self._applied(self.routes):
            answer = self.routes.handle(route_event(selected_route(body), connection, authorizer, body))
        return answer.get("body") if answer.get("statusCode") == 200 else None

    def close(self, connection: str, authorizer: Mapping[str, Any]) -> None:
        with self._applied(self.routes):
            self.routes.handle(route_event("$disconnect", connection, authorizer))

    def after_grace(self, agent_id: str) -> None:
        if self.grace is None:
            return
        event = {"Records": [sqs_record(json.dumps({"agent_id": agent_id}))]}
        with self._applied(self.grace):
            self.grace.handle(event)


class PageSession:
    """One agent page's connection, played in-process: what the page sends and what it is answered."""

    def __init__(self, functions: PageFunctions, token: str) -> None:
        self._functions = functions
        self.connection = connection_id()
        self._authorizer = functions.open(token, self.connection)

    def send(self, action: str, call_id: str | None = None) -> dict[str, Any]:
        body = json.dumps({"action": action, **({"call_id": call_id} if call_id else {})})
        answer = self._functions.send(self.connection, self._authorizer, body)
        return json.loads(answer) if answer else {}

    def close(self) -> None:
        self._functions.close(self.connection, self._authorizer)


# -- the WebSocket and HTTP servers -------------------------------------------------------------------------


class PageGateway:
    """The WebSocket API on `ws://127.0.0.1:<port>/`, and beside it `http://127.0.0.1:<port>/`: the page's
    files (from `site`) and `POST /@connections/<id>` (what `apigatewaymanagementapi` posts)."""

    def __init__(
        self,
        functions: PageFunctions,
        site: Path | None = None,
        local_media: bool = False,
        grace_seconds: float = 0.0,
        host: str = "127.0.0.1",
        socket_port: int = 0,
        http_port: int = 0,
    ) -> None:
        self.functions = functions
        self.site = site
        self.local_media = local_media
        """Serve the page with the local stand-in meeting session (`rapport agent-page`: no Chime media)."""
        self.grace_seconds = grace_seconds
        self._open: dict[str, ServerConnection] = {}
        self._lock = threading.Lock()
        self.sent: list[tuple[str, dict[str, Any]]] = []
        """Every message pushed through `@connections`, for tests."""
        self._socket: Server = serve(self._serve, host, socket_port, process_request=self._authorise)
        self._http = ThreadingHTTPServer((host, http_port), self._http_handler())
        self._http.daemon_threads = True
        self._threads = [
            threading.Thread(target=self._socket.serve_forever, name="page-socket", daemon=True),
            threading.Thread(target=self._http.serve_forever, name="page-http", daemon=True),
        ]
        self._timers: list[threading.Timer] = []
        self._stopped = threading.Event()

    @property
    def socket_url(self) -> str:
        host, port = self._socket.socket.getsockname()[:2]
        return f"ws://{host}:{port}"

    @property
    def http_url(self) -> str:
        host, port = self._http.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> PageGateway:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop serving; pages still open are dropped without their `$disconnect` (the table may be gone)."""
        self._stopped.set()
        for timer in self._timers:
            timer.cancel()
        self._socket.shutdown()
        self._http.shutdown()
        self._http.server_close()

    # -- WebSocket ----------------------------------------------------------------------------------------

    def _authorise(self, connection: ServerConnection, request: Request) -> Response | None:
        token = parse_qs(urlparse(request.path).query).get("token", [None])[0]
        connection_id_ = connection_id()
        try:
            authorizer = self.functions.open(token, connection_id_)
        except Refused as refused:
            return connection.respond(HTTPStatus.FORBIDDEN, f"{refused}\n")
        connection.rapport = (connection_id_, authorizer)  # type: ignore[attr-defined]
        return None

    def _serve(self, connection: ServerConnection) -> None:
        connection_id_, authorizer = connection.rapport  # type: ignore[attr-defined]
        with self._lock:
            self._open[connection_id_] = connection
        try:
            for message in connection:
                answer = self.functions.send(connection_id_, authorizer, str(message))
                if answer:
                    connection.send(answer)
        except ConnectionClosed:
            pass
        finally:
            with self._lock:
                self._open.pop(connection_id_, None)
            if not self._stopped.is_set():
                self.functions.close(connection_id_, authorizer)
                self._grace_later(str(authorizer.get("agent_id", "")))

    def _grace_later(self, agent_id: str) -> None:
        if self._stopped.is_set():
            return
        timer = threading.Timer(self.grace_seconds, self.functions.after_grace, args=(agent_id,))
        timer.daemon = True
        self._timers.append(timer)
        timer.start()

    def post(self, connection: str, data: bytes) -> bool:
        with self._lock:
            target = self._open.get(connection)
        if target is None:
            return False
        try:
            target.send(data.decode())
        except ConnectionClosed:
            return False
        with contextlib.suppress(ValueError):
            self.sent.append((connection, json.loads(data)))
        return True

    # -- HTTP: the page's files and @connections -----------------------------------------------------------

    def _http_handler(self) -> type[BaseHTTPRequestHandler]:
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                path = urlparse(self.path).path
                prefix = f"/{STAGE}/@connections/" if path.startswith(f"/{STAGE}/") else "/@connections/"
                if not path.startswith(prefix):
                    self._reply(HTTPStatus.NOT_FOUND, b'{"message":"Not Found"}')
                    return
                target = unquote(path[len(prefix) :])
                data = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                if gateway.post(target, data):
                    self._reply(HTTPStatus.OK, b"")
                else:
                    self._reply(HTTPStatus.GONE, b'{"message":"Gone"}', {"x-amzn-ErrorType": "GoneException"})

            def do_GET(self) -> None:
                if gateway.site is None:
                    self._reply(HTTPStatus.NOT_FOUND, b"")
                    return
                name = urlparse(self.path).path.lstrip("/") or "index.html"
                if gateway.local_media and name == "local-session.js":
                    script = (STATIC / name).read_bytes()
                    self._reply(HTTPStatus.OK, script, {"Content-Type": "text/javascript"})
                    return
                root = gateway.site.resolve()
                file = (root / name).resolve()
                if root not in file.parents or not file.is_file():
                    self._reply(HTTPStatus.NOT_FOUND, b"not found\n")
                    return
                body = file.read_bytes()
                if gateway.local_media and file.name == "index.html":
                    body = body.replace(LOCAL_MARK, b'<script src="local-session.js"></script>')
                kind = mimetypes.guess_type(file.name)[0] or "application/octet-stream"
                self._reply(HTTPStatus.OK, body, {"Content-Type": kind, "Cache-Control": "no-store"})

            def _reply(
                self, status: HTTPStatus, body: bytes, headers: Mapping[str, str] | None = None
            ) -> None:
                self.send_response(status)
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                if status is HTTPStatus.GONE:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                return

        return Handler


# -- the table's stream -------------------------------------------------------------------------------


def stream_filter(template: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """The push function's event filter patterns, as the template gives them."""
    template = template or load_template()
    events = template["Resources"]["AgentPagePushFunction"]["Properties"]["Events"]
    return [json.loads(f["Pattern"]) for f in events["Offers"]["Properties"]["FilterCriteria"]["Filters"]]


def matches(pattern: Any, value: Any) -> bool:
    """Lambda's event filtering for the forms the template uses: nested keys, lists of values, prefix."""
    if isinstance(pattern, dict):
        return isinstance(value, dict) and all(
            k in value and matches(p, value[k]) for k, p in pattern.items()
        )
    if isinstance(pattern, list):
        for option in pattern:
            if isinstance(option, dict) and "prefix" in option:
                if isinstance(value, str) and value.startswith(option["prefix"]):
                    return True
            elif option == value:
                return True
        return False
    return bool(pattern == value)


def lambda_record(record: Mapping[str, Any], stream_arn: str) -> dict[str, Any]:
    """A `GetRecords` record as Lambda hands it to a function (times as epoch seconds)."""
    change = dict(record["dynamodb"])
    created = change.get("ApproximateCreationDateTime")
    if isinstance(created, dt.datetime):
        change["ApproximateCreationDateTime"] = int(created.timestamp())
    return {
        "eventID": record["eventID"],
        "eventName": record["eventName"],
        "eventVersion": record.get("eventVersion", "1.1"),
        "eventSource": "aws:dynamodb",
        "awsRegion": record.get("awsRegion", "us-east-1"),
        "dynamodb": change,
        "eventSourceARN": stream_arn,
    }


class StreamPusher:
    """Reads the table's stream from now on and hands matching records to the push function."""

    def __init__(self, endpoint: str, table: str, push: LocalFunction, poll_seconds: float = 0.2):
        self._client = local_client(endpoint)
        self._streams = local_client(endpoint, "dynamodbstreams")
        self._push = push
        self._poll = poll_seconds
        self._patterns = stream_filter()
        self._stop = threading.Event()
        self.stream_arn = self._client.describe_table(TableName=table)["Table"]["LatestStreamArn"]
        self._iterators: dict[str, str | None] = {}
        self._discover(at="LATEST")
        self._thread = threading.Thread(target=self._run, name="stream-pusher", daemon=True)
        self.handed: list[dict[str, Any]] = []

    def _discover(self, at: str) -> None:
        shards = self._streams.describe_stream(StreamArn=self.stream_arn)["StreamDescription"]["Shards"]
        for shard in shards:
            if shard["ShardId"] in self._iterators:
                continue
            self._iterators[shard["ShardId"]] = self._streams.get_shard_iterator(
                StreamArn=self.stream_arn, ShardId=shard["ShardId"], ShardIteratorType=at
            )["ShardIterator"]

    def __enter__(self) -> StreamPusher:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def poll_once(self) -> int:
        records: list[dict[str, Any]] = []
        for shard, iterator in list(self._iterators.items()):
            if iterator is None:
                continue
            answer = self._streams.get_records(ShardIterator=iterator, Limit=100)
            self._iterators[shard] = answer.get("NextShardIterator")
            records += [lambda_record(r, self.stream_arn) for r in answer.get("Records", [])]
        self._discover(at="TRIM_HORIZON")
        wanted = [r for r in records if any(matches(p, r) for p in self._patterns)]
        if wanted:
            self.handed += wanted
            with INVOKE_LOCK, self._push.environment_applied():
                self._push.handle({"Records": wanted})
        return len(wanted)

    def _run(self) -> None:
        while not self._stop.wait(self._poll):
            try:
                self.poll_once()
            except Exception as error:  # noqa: BLE001 - a local poller keeps going, as Lambda's would
                print(f"stream pusher: {type(error).__name__}: {error}")
