"""Faults to put between rapport and DynamoDB Local: a slow network and a throttling table.

`DelayProxy` is a TCP proxy on loopback that delivers every chunk of data some seconds after it arrived,
like a link with that much latency, or byte by byte in a slow trickle; both can be changed while calls
run. `throttle` makes one boto3
client answer a share of its DynamoDB requests with a throttling error, without sending them, so that
botocore's own retries and the store's error handling are what is exercised. Used by the fault tests and
the benchmark. The proxy only listens on and forwards to loopback addresses, and bounds its delay, its
connections and the data it holds back; throttling never touches the network.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import random
import threading
from collections.abc import Callable, Iterator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, cast
from urllib.parse import urlsplit

from botocore.awsrequest import AWSResponse, HTTPHeaders

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

MAX_DELAY_SECONDS = 30.0
MAX_CONNECTIONS = 64
CHUNK_BYTES = 64 * 1024
# Chunks held back per direction of one connection before reading from the sender pauses.
MAX_QUEUED_CHUNKS = 64
UPSTREAM_CONNECT_SECONDS = 2.0
START_STOP_SECONDS = 10.0

Direction = Literal["response", "request", "both"]


def _loopback_address(endpoint: str) -> tuple[str, int]:
    """Host and port of an `http://host:port` endpoint, refusing anything but this machine."""
    parts = urlsplit(endpoint)
    if parts.hostname is None or parts.port is None:
        raise ValueError(f"expected http://host:port, got {endpoint!r}")
    if parts.hostname != "localhost" and not ipaddress.ip_address(parts.hostname).is_loopback:
        raise ValueError(f"only loopback targets are allowed, got {parts.hostname!r}")
    return parts.hostname, parts.port


class DelayProxy:
    """A TCP proxy on a free 127.0.0.1 port, forwarding to `upstream` with `delay` seconds of latency.

        with DelayProxy(engine.endpoint, delay=0.05) as proxy:
            router = make_router(endpoint=proxy.endpoint)
            ...
            proxy.delay = 2.0  # applies to data that arrives from now on

    Each chunk read from one side is written to the other `delay` seconds after it arrived (in order, so
    a response's chunks are not each delayed in turn), whole or, with `trickle`, a byte at a time
    `trickle` seconds apart. `direction` says which side's data is held back:
    the upstream's responses (default), the client's requests, or both. It runs an asyncio loop in a
    thread of its own; leaving the `with` block closes every connection and joins the thread.
    """

    def __init__(
        self,
        upstream: str,
        delay: float = 0.0,
        direction: Direction = "response",
        max_connections: int = MAX_CONNECTIONS,
        trickle: float = 0.0,
    ) -> None:
        self._upstream = _loopback_address(upstream)
        self.delay = delay
        self.trickle = trickle
        self._direction = direction
        self._max_connections = max_connections
        self._port: int | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self._startup_error: OSError | None = None

    @property
    def delay(self) -> float:
        return self._delay

    @delay.setter
    def delay(self, seconds: float) -> None:
        if not 0.0 <= seconds <= MAX_DELAY_SECONDS:
            raise ValueError(f"delay must be 0-{MAX_DELAY_SECONDS:.0f} s, got {seconds}")
        # A float attribute: the loop thread reads it as each chunk arrives.
        self._delay = float(seconds)

    @property
    def trickle(self) -> float:
        """Seconds between single bytes of the held-back direction (0: whole chunks). Each byte comes
        sooner than a per-read timeout would notice, so only a limit on the whole request stops it."""
        return self._trickle

    @trickle.setter
    def trickle(self, seconds: float) -> None:
        if not 0.0 <= seconds <= MAX_DELAY_SECONDS:
            raise ValueError(f"trickle must be 0-{MAX_DELAY_SECONDS:.0f} s, got {seconds}")
        self._trickle = float(seconds)

    @property
    def endpoint(self) -> str:
        """The proxy's URL, to use where the upstream's URL would go."""
        if self._port is None:
            raise RuntimeError("the proxy is not running")
        return f"http://127.0.0.1:{self._port}"

    def start(self) -> DelayProxy:
        if self._thread is not None:
            raise RuntimeError("the proxy is already running")
        ready = threading.Event()
        # A daemon, so that a proxy never stopped cannot keep the process alive; stop() joins it.
        self._thread = threading.Thread(
            target=self._run, args=(ready,), name="rapport-delay-proxy", daemon=True
        )
        self._thread.start()
        if not ready.wait(START_STOP_SECONDS) or self._port is None:
            self.stop()
            raise RuntimeError("the delay proxy did not start") from self._startup_error
        return self

    def stop(self) -> None:
        """Close the listening socket and every connection, then join the proxy's thread."""
        if self._thread is None:
            return
        if self._loop is not None and self._stopping is not None:
            with contextlib.suppress(RuntimeError):  # the loop has already ended
                self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(START_STOP_SECONDS)
        if self._thread.is_alive():
            raise RuntimeError("the delay proxy's thread did not stop")
        self._thread = None
        self._loop = None
        self._stopping = None
        self._port = None

    def __enter__(self) -> DelayProxy:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.stop()

    # -- the loop thread ------------------------------------------------------------------------------

    def _run(self, ready: threading.Event) -> None:
        try:
            # asyncio.run cancels whatever is left when _serve returns and closes the loop.
            asyncio.run(self._serve(ready))
        except OSError as error:  # no port to listen on: reported by start()
            self._startup_error = error
        finally:
            ready.set()

    async def _serve(self, ready: threading.Event) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        server = await asyncio.start_server(self._relay, "127.0.0.1", 0)
        self._port = int(server.sockets[0].getsockname()[1])
        ready.set()
        try:
            await self._stopping.wait()
        finally:
            server.close()
            await server.wait_closed()
            for connection in list(self._connections):
                connection.cancel()
            await asyncio.gather(*self._connections, return_exceptions=True)

    async def _relay(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        stopping = self._stopping is None or self._stopping.is_set()
        if task is None or stopping or len(self._connections) >= self._max_connections:
            await _close(client_writer)
            return
        self._connections.add(task)
        upstream_writer: asyncio.StreamWriter | None = None
        try:
            upstream_reader, upstream = await asyncio.wait_for(
                asyncio.open_connection(*self._upstream), UPSTREAM_CONNECT_SECONDS
            )
            upstream_writer = upstream
            directions = [
                asyncio.create_task(
                    self._pipe(client_reader, upstream, self._direction in ("request", "both"))
                ),
                asyncio.create_task(
                    self._pipe(upstream_reader, client_writer, self._direction in ("response", "both"))
                ),
            ]
            try:
                # HTTP needs no half-closed connections: when one side is done, the connection is.
                await asyncio.wait(directions, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for direction in directions:
                    direction.cancel()
                await asyncio.gather(*directions, return_exceptions=True)
        except (OSError, TimeoutError):
            pass  # upstream down or gone: the client sees its connection closed
        except asyncio.CancelledError:
            # The proxy is stopping. Ending normally matters: Python 3.11's stream server logs an
            # error for a connection task that ends cancelled.
            pass
        finally:
            await _close(client_writer)
            if upstream_writer is not None:
                await _close(upstream_writer)
            self._connections.discard(task)

    async def _pipe(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter, delayed: bool) -> None:
        """Copy `source` to `sink`, each chunk written `delay` seconds after it was read."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(MAX_QUEUED_CHUNKS)

        async def receive() -> None:
            with contextlib.suppress(OSError):
                while chunk := await source.read(CHUNK_BYTES):
                    await queue.put((loop.time() + (self._delay if delayed else 0.0), chunk))
            await queue.put((loop.time(), b""))  # end of stream, after what is already queued

        receiving = asyncio.create_task(receive())
        try:
            while True:
                due, chunk = await queue.get()
                if (wait := due - loop.time()) > 0:
                    await asyncio.sleep(wait)
                if not chunk:
                    return
                if delayed and self._trickle > 0:
                    for index in range(len(chunk)):
                        sink.write(chunk[index : index + 1])
                        await sink.drain()
                        await asyncio.sleep(self._trickle)
                    continue
                sink.write(chunk)
                await sink.drain()
        except OSError:
            return
        finally:
            receiving.cancel()
            await asyncio.gather(receiving, return_exceptions=True)


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


# -- throttling at the client -------------------------------------------------------------------------

ThrottleCode = Literal["ThrottlingException", "ProvisionedThroughputExceededException"]
_MESSAGES: dict[ThrottleCode, str] = {
    "ThrottlingException": "Rate exceeded",
    "ProvisionedThroughputExceededException": (
        "The level of configured provisioned throughput for the table was exceeded."
    ),
}


class _Body:
    """The raw stream an `AWSResponse` reads its content from."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    def stream(self, **_: Any) -> Iterator[bytes]:
        yield self._data


class Throttling:
    """A throttling fault on one client, made by `throttle`; `remove()` (or leaving its `with` block)
    takes it away.

    `requests` counts the requests the client tried to send (retries included) while it was installed,
    `throttled` those answered with the error.
    """

    def __init__(
        self, client: DynamoDBClient, *, every: int | None, share: float | None, seed: int, code: ThrottleCode
    ) -> None:
        self._client = client
        self._every = every
        self._share = share
        self._random = random.Random(seed)  # noqa: S311 - a reproducible fault pattern, not a secret
        self._code = code
        self._lock = threading.Lock()
        self._unique_id = f"rapport-throttle-{id(self)}"
        self.requests = 0
        self.throttled = 0

    def _install(self) -> Throttling:
        # botocore's stubs say handlers return None; a before-send handler may return the response.
        handler = cast(Callable[..., None], self._before_send)
        self._client.meta.events.register("before-send.dynamodb", handler, unique_id=self._unique_id)
        return self

    def remove(self) -> None:
        """Let the client's requests through again. Harmless if already removed."""
        self._client.meta.events.unregister("before-send.dynamodb", unique_id=self._unique_id)

    def _chosen(self) -> bool:
        with self._lock:
            self.requests += 1
            if self._every is not None:
                hit = self.requests % self._every == 0
            else:
                hit = self._random.random() < (self._share or 0.0)
            self.throttled += hit
            return hit

    def _before_send(self, request: Any, **_: Any) -> AWSResponse | None:
        """botocore's last hook before the network: a response returned here is used instead."""
        if not self._chosen():
            return None
        body = json.dumps(
            {"__type": f"com.amazonaws.dynamodb.v20120810#{self._code}", "message": _MESSAGES[self._code]}
        ).encode()
        headers = HTTPHeaders()
        headers["Content-Type"] = "application/x-amz-json-1.0"
        headers["Content-Length"] = str(len(body))
        headers["x-amzn-RequestId"] = f"rapport-throttled-{self.throttled}"
        return AWSResponse(request.url, 400, headers, _Body(body))

    def __enter__(self) -> Throttling:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.remove()


def throttle(
    client: DynamoDBClient,
    *,
    every: int | None = None,
    share: float | None = None,
    seed: int = 0,
    code: ThrottleCode = "ThrottlingException",
) -> Throttling:
    """Answer a share of `client`'s DynamoDB requests with HTTP 400 `code`, as DynamoDB does when it
    throttles, instead of sending them. Give `every` (every Nth request; 1 for all) or `share` (0-1, drawn
    from a random generator seeded with `seed`). Retries are requests too: with `every=3`, the retry of a
    throttled request goes through. botocore's standard retry mode keeps a retry quota per client, spent
    by throttled retries and refilled by successes: after a long run of throttling the client stops
    retrying for a while, as it would against DynamoDB. Returns the installed fault; `remove()` it when
    done.
    """
    if (every is None) == (share is None):
        raise ValueError("give exactly one of `every` and `share`")
    if every is not None and every < 1:
        raise ValueError("`every` must be at least 1")
    if share is not None and not 0.0 < share <= 1.0:
        raise ValueError("`share` must be in (0, 1]")
    return Throttling(client, every=every, share=share, seed=seed, code=code)._install()
