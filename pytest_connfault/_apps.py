"""Serving a WSGI or ASGI application directly: ``FaultServer(app=...)``.

The app becomes the server's handler, so every fault, command and the ledger work in front of it.

- ASGI (``async def app(scope, receive, send)``, ASGI 3) runs on the server's own event loop, in
  the connection's task; an app tied to asyncio needs ``backend="asyncio"`` (the default).
- WSGI (``def app(environ, start_response)``, PEP 3333) runs in a small pool of worker threads,
  so a blocking app never holds up the loop; ``server.stop()`` joins the workers.

The app's answer is collected whole, then sent (so the server still decides every byte on the
wire): an answer without ``Content-Length`` goes out chunked, one chunk per piece the app gave
(each iterated WSGI item, each ASGI ``http.response.body`` message). Not supported: answers
that never end (server-sent events, long polls), WebSockets.

ASGI lifespan: the ``lifespan.startup`` event is sent before the first request is served (a
failed startup answers every request with a 500 that says why), and ``lifespan.shutdown`` when the
server stops; the lifespan ``state`` is copied into each request's scope (ASGI 2.3). An app that
does not speak lifespan (it raises on that scope) is served without it, as uvicorn does.
"""

from __future__ import annotations

import concurrent.futures
import inspect
import io
import sys
import threading
from typing import TYPE_CHECKING, Any, Callable
from urllib.parse import unquote_to_bytes

import anyio

from ._errors import ConnfaultError
from ._responses import Response
from ._waiting import callback_for_current_loop

if TYPE_CHECKING:
    from ._ledger import Request
    from ._server import FaultServer

#: WSGI worker threads per server: enough for a few concurrent clients, few enough to join fast.
WSGI_THREADS = 4

#: How long ``stop()`` waits for an ASGI app's ``lifespan.shutdown`` to complete.
LIFESPAN_TIMEOUT = 5.0

#: Statuses whose answers have no body (RFC 9110 section 6.4.1): never sent chunked.
_NO_BODY = (204, 304)


def is_asgi(app: object) -> bool:
    """Whether ``app`` is an ASGI 3 application (an ``async`` callable), rather than WSGI."""
    return inspect.iscoroutinefunction(app) or inspect.iscoroutinefunction(type(app).__call__)


def _answer(status: int, headers: list[tuple[str, str]], pieces: list[bytes]) -> Response:
    framed = any(name.lower() in ("content-length", "transfer-encoding") for name, _ in headers)
    headers = [(n, v) for n, v in headers if n.lower() != "transfer-encoding"]
    if framed or status < 200 or status in _NO_BODY:
        return Response(status, b"".join(pieces), headers=headers, content_type="")
    return Response(status, [p for p in pieces if p], headers=headers, chunked=True, content_type="")


class AppBridge:
    """The handler that serves an app. This type has no public constructor: pass ``app=`` to a server."""

    def __init__(self, app: Callable[..., Any], server: FaultServer, threads: int = WSGI_THREADS) -> None:
        if not callable(app):
            raise ConnfaultError(f"app= takes a WSGI or ASGI callable, not {app!r}")
        self.app = app
        self.server = server
        self.asgi = is_asgi(app)
        self._threads = threads
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._closed = False
        # ASGI lifespan (loop thread only, except the threading.Event)
        self._started: anyio.Event | None = None
        self._shutdown: anyio.Event | None = None
        self._lifespan_done = threading.Event()
        self._startup_error: str | None = None
        self._state: dict[str, Any] = {}

    def __repr__(self) -> str:
        return f"<AppBridge {'ASGI' if self.asgi else 'WSGI'} {self.app!r}>"

    async def __call__(self, request: Request) -> Response:
        if self.asgi:
            return await self._asgi(request)
        return await self._wsgi(request)

    def close(self) -> None:
        """Send an ASGI app ``lifespan.shutdown`` (bounded wait); join the WSGI worker threads."""
        with self._lock:
            self._closed = True
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=True)
        loop = self.server._loop
        if self._started is not None and self._shutdown is not None and loop is not None:
            loop.call_soon(self._shutdown.set)
            self._lifespan_done.wait(LIFESPAN_TIMEOUT)

    # -- WSGI ------------------------------------------------------------------------------

    def _environ(self, request: Request) -> dict[str, Any]:
        path, _, query = request.target.partition("?")
        server = self.server
        environ: dict[str, Any] = {
            "REQUEST_METHOD": request.method,
            "SCRIPT_NAME": "",
            # PEP 3333: the path undecoded from %XX, as bytes carried in a latin-1 str
            "PATH_INFO": unquote_to_bytes(path).decode("latin-1"),
            "QUERY_STRING": query,
            "SERVER_NAME": server.host,
            "SERVER_PORT": str(server.port),
            "SERVER_PROTOCOL": f"HTTP/{request.http_version}",
            "REMOTE_ADDR": server.host,
            "CONTENT_LENGTH": str(len(request.body)) if request.body else "",
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": server.scheme,
            "wsgi.input": io.BytesIO(request.body),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        for name, value in request.headers:
            key = name.upper().replace("-", "_")
            if key in ("CONTENT_LENGTH", "TRANSFER_ENCODING"):
                continue
            if key != "CONTENT_TYPE":
                key = "HTTP_" + key
            environ[key] = f"{environ[key]},{value}" if key in environ else value
        return environ

    def _call_wsgi(self, environ: dict[str, Any]) -> Response:
        """In a worker thread: call the app and collect its whole answer."""
        started: list[Any] = []
        pieces: list[bytes] = []

        def start_response(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Callable[[bytes], None]:
            if started and exc_info is None:
                raise AssertionError("start_response was called twice without exc_info (PEP 3333)")
            started[:] = [status, list(headers)]
            return lambda data: pieces.append(bytes(data))

        result = self.app(environ, start_response)
        try:
            for piece in result:
                pieces.append(bytes(piece))
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        if not started:
            raise ConnfaultError("the WSGI app returned without calling start_response")
        status, headers = started
        return _answer(int(status.split(None, 1)[0]), headers, pieces)

    async def _wsgi(self, request: Request) -> Response:
        environ = self._environ(request)
        with self._lock:
            if self._closed:
                raise ConnfaultError("the server is stopping")
            if self._pool is None:
                self._pool = concurrent.futures.ThreadPoolExecutor(
                    self._threads, thread_name_prefix="connfault-wsgi"
                )
            future = self._pool.submit(self._call_wsgi, environ)
        notify, wait = callback_for_current_loop()
        future.add_done_callback(lambda _: notify())
        while not future.done():
            await wait(3600.0, future.done)
        return future.result()

    # -- ASGI ------------------------------------------------------------------------------

    def _scope(self, request: Request) -> dict[str, Any]:
        path, _, query = request.target.partition("?")
        server = self.server
        client_port = server.connection(request.connection_id).client_port
        return {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": request.http_version,
            "method": request.method,
            "scheme": server.scheme,
            "path": unquote_to_bytes(path).decode("utf-8", "replace"),
            "raw_path": path.encode("latin-1"),
            "query_string": query.encode("latin-1"),
            "root_path": "",
            "headers": [(n.lower().encode("latin-1"), v.encode("latin-1")) for n, v in request.headers],
            "client": (server.host, client_port),
            "server": (server.host, server.port),
            "state": dict(self._state),
        }

    async def _lifespan(self) -> None:
        """The app's lifespan, as a task on the loop thread's own task group (it outlives requests)."""
        assert self._started is not None
        assert self._shutdown is not None
        started, shutdown = self._started, self._shutdown
        step = 0

        async def receive() -> dict[str, Any]:
            nonlocal step
            step += 1
            if step == 1:
                return {"type": "lifespan.startup"}
            await shutdown.wait()
            return {"type": "lifespan.shutdown"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "lifespan.startup.failed":
                self._startup_error = str(message.get("message", ""))
            if message["type"].startswith("lifespan.startup."):
                started.set()

        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.3"}, "state": self._state}
        try:
            await self.app(scope, receive, send)
        except Exception as exc:  # noqa: BLE001 - an app without lifespan raises here: serve it without
            if started.is_set():
                with self.server._core.lock:
                    self.server._core.handler_errors.append(f"the ASGI app's lifespan raised {exc!r}")
        finally:
            started.set()
            self._lifespan_done.set()

    async def _ensure_started(self) -> None:
        """Before the first request: run the app's ``lifespan.startup`` (once) and wait for it."""
        if self._started is None:
            loop = self.server._loop
            assert loop is not None
            self._started, self._shutdown = anyio.Event(), anyio.Event()
            loop.spawn(self._lifespan)
        await self._started.wait()
        if self._startup_error is not None:
            raise ConnfaultError(f"the ASGI app's lifespan startup failed: {self._startup_error}")

    async def _asgi(self, request: Request) -> Response:
        await self._ensure_started()
        answered = anyio.Event()
        start: dict[str, Any] = {}
        pieces: list[bytes] = []
        body_given = False

        async def receive() -> dict[str, Any]:
            nonlocal body_given
            if not body_given:
                body_given = True
                return {"type": "http.request", "body": request.body, "more_body": False}
            await answered.wait()  # the client "leaves" once it has its whole answer
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            kind = message["type"]
            if kind == "http.response.start":
                if start:
                    raise ConnfaultError("the ASGI app sent http.response.start twice")
                start.update(message)
            elif kind == "http.response.body":
                if not start:
                    raise ConnfaultError("the ASGI app sent a body before http.response.start")
                pieces.append(bytes(message.get("body", b"")))
                if not message.get("more_body", False):
                    answered.set()

        try:
            await self.app(self._scope(request), receive, send)
        finally:
            answered.set()
        if not start:
            raise ConnfaultError("the ASGI app returned without sending http.response.start")
        headers = [
            (bytes(n).decode("latin-1"), bytes(v).decode("latin-1")) for n, v in start.get("headers", ())
        ]
        return _answer(int(start["status"]), headers, pieces)
