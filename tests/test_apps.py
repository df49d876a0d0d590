"""FaultServer(app=...): a WSGI or ASGI application served directly, with faults in front of it."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any, Callable

import anyio
import anyio.lowlevel
import httpx
import pytest
import requests
from rawclient import FIN, RawClient

from pytest_connfault import ConnfaultError, FaultServer, assert_new_connection, assert_pool
from pytest_connfault._apps import is_asgi

Factory = Callable[..., FaultServer]


def wsgi_echo(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """Answers the body it read, and what it saw in the environ as headers."""
    body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
    start_response("201 Created", [
        ("Content-Type", "application/octet-stream"),
        ("Content-Length", str(len(body))),
        ("X-Path", environ["PATH_INFO"]),
        ("X-Query", environ["QUERY_STRING"]),
        ("X-Token", environ.get("HTTP_X_TOKEN", "")),
        ("X-Thread", threading.current_thread().name),
    ])
    return [body]


def wsgi_pieces(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """No Content-Length: the server sends each piece as a chunk."""
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"alpha-", b"", b"beta-", b"gamma"]


async def asgi_echo(scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
    """An ASGI 3 app: answers its body in three messages, and a header naming the path it saw."""
    assert scope["type"] == "http"
    message = await receive()
    body = message["body"]
    await anyio.lowlevel.checkpoint()  # async I/O on the server's own loop is fine
    await send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-type", b"text/plain"),
        (b"x-path", scope["path"].encode()),
        (b"x-query", scope["query_string"]),
        (b"x-client-port", str(scope["client"][1]).encode()),
    ]})
    third = len(body) // 3
    for i, piece in enumerate((body[:third], body[third : 2 * third], body[2 * third :])):
        await send({"type": "http.response.body", "body": piece, "more_body": i < 2})


class AsgiApp:
    """An ASGI app as a class instance with ``async __call__``."""

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 202, "headers": [(b"content-length", b"5")]})
        await send({"type": "http.response.body", "body": b"class"})


def test_detects_asgi_and_wsgi() -> None:
    """Async callables (functions or instances) are ASGI; plain callables are WSGI."""
    assert is_asgi(asgi_echo)
    assert is_asgi(AsgiApp())
    assert not is_asgi(wsgi_echo)


def test_wsgi_app_gets_a_pep3333_environ(connfault_server_factory: Factory) -> None:
    """The WSGI app sees method, path (%-decoded), query, headers and body; runs in a worker thread."""
    server = connfault_server_factory(app=wsgi_echo)
    with httpx.Client(base_url=server.url) as client:
        response = client.post("/a%20b/c?x=1&y=2", content=b"payload", headers={"X-Token": "t"})
    assert response.status_code == 201
    assert response.content == b"payload"
    assert response.headers["x-path"] == "/a b/c"
    assert response.headers["x-query"] == "x=1&y=2"
    assert response.headers["x-token"] == "t"
    assert response.headers["x-thread"].startswith("connfault-wsgi")
    assert server.requests[0].outcome.status == 201


def test_wsgi_pieces_are_sent_as_chunks(connfault_server_factory: Factory) -> None:
    """An answer without Content-Length goes out chunked, one chunk per non-empty piece."""
    server = connfault_server_factory(app=wsgi_pieces)
    with RawClient(server) as raw:
        reply = raw.request("GET", "/")
    assert reply.complete
    assert reply.header("transfer-encoding") == "chunked"
    assert reply.body == b"alpha-beta-gamma"
    assert b"6\r\nalpha-\r\n5\r\nbeta-\r\n5\r\ngamma\r\n0\r\n\r\n" in reply.raw


@pytest.mark.parametrize("drop", ["close", "reset", "half_close"])
def test_327_in_front_of_a_wsgi_app_with_httpx(connfault_server_factory: Factory, drop: str) -> None:
    """The documented bug in front of the user's own WSGI app: idle drop, then reuse on a new connection."""
    server = connfault_server_factory(app=wsgi_echo)
    with httpx.Client(base_url=server.url) as client:
        assert client.post("/one", content=b"1").content == b"1"
        getattr(server, f"{drop}_idle")()
        assert client.post("/two", content=b"2").content == b"2"
        assert_pool(client, active=0, idle=1, server=server)
    assert_new_connection(server, request=2)


def test_327_in_front_of_an_asgi_app_with_requests(connfault_server_factory: Factory) -> None:
    """requests in front of an ASGI app: the idle connection is reset, the next request succeeds on a new one."""
    server = connfault_server_factory(app=asgi_echo)
    with requests.Session() as session:
        assert session.post(f"{server.url}/one", data=b"abc").content == b"abc"
        server.reset_idle()
        assert session.post(f"{server.url}/two", data=b"def").content == b"def"
    assert [r.connection_id for r in server.requests] == [1, 2]


def test_werkzeug_app(connfault_server_factory: Factory) -> None:
    """A framework WSGI app (werkzeug) served directly, with a mid-body drop armed in front of it."""
    from werkzeug.wrappers import Request as WRequest
    from werkzeug.wrappers import Response as WResponse

    @WRequest.application  # type: ignore[misc]
    def app(request: WRequest) -> WResponse:
        return WResponse(f"hello {request.args.get('name', '')}" + "." * 200)

    server = connfault_server_factory(app=app)
    handle = server.inject("reset", at="mid_body", body_bytes=10, request=2)
    with httpx.Client(base_url=server.url) as client:
        assert client.get("/?name=werkzeug").text.startswith("hello werkzeug...")
        with pytest.raises(httpx.ReadError):
            client.get("/?name=again")
    assert handle.wait(5).request_index == 2


def test_asgi_app_pieces_and_scope(connfault_server_factory: Factory) -> None:
    """The ASGI app runs on the server's loop; its three body messages become three chunks."""
    server = connfault_server_factory(app=asgi_echo)
    with RawClient(server) as raw:
        reply = raw.request("POST", "/p%C3%A4th?q=1", body=b"abcdefghi")
    assert (reply.status, reply.body) == (200, b"abcdefghi")
    assert reply.header("x-path") == "/p\u00e4th".encode().decode("latin-1")
    assert reply.header("x-query") == "q=1"
    assert reply.header("x-client-port") == str(raw.local_port)
    assert b"3\r\nabc\r\n3\r\ndef\r\n3\r\nghi\r\n0\r\n\r\n" in reply.raw


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_asgi_class_app_on_both_backends(connfault_server_factory: Factory, backend: str) -> None:
    """An ASGI app written on anyio runs on asyncio and trio servers alike; its Content-Length is kept."""
    server = connfault_server_factory(app=AsgiApp(), backend=backend)
    with httpx.Client(base_url=server.url) as client:
        response = client.get("/")
    assert (response.status_code, response.text, response.headers["content-length"]) == (202, "class", "5")


@pytest.mark.parametrize(("app", "cut"), [(wsgi_echo, b"0123"), (AsgiApp(), b"clas")], ids=["wsgi", "asgi"])
def test_truncate_in_front_of_an_app(connfault_server_factory: Factory, app: Any, cut: bytes) -> None:
    """Client-side faults cut the app's own answer at the byte asked for."""
    server = connfault_server_factory(app=app)
    server.inject("truncate", body_bytes=4, then="close")
    with RawClient(server) as raw:
        reply = raw.request("POST", "/", body=b"0123456789")
    assert (reply.end, reply.body, reply.complete) == (FIN, cut, False)


def _raising(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    raise RuntimeError("the app broke")


async def _silent(scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
    await receive()


@pytest.mark.parametrize("app", [_raising, _silent], ids=["wsgi-raises", "asgi-never-answers"])
def test_broken_app_is_a_500_and_recorded(connfault_server_factory: Factory, app: Any) -> None:
    """An app that raises (or returns without answering) gives a 500; the traceback is in handler_errors."""
    server = connfault_server_factory(app=app)
    with httpx.Client(base_url=server.url) as client:
        assert client.get("/").status_code == 500
        assert client.get("/").status_code == 500
    assert len(server.handler_errors) == 2
    assert server.requests[0].outcome.kind == "handler_error"


def test_blocking_wsgi_app_does_not_block_the_server(connfault_server_factory: Factory) -> None:
    """A WSGI call that blocks holds only its worker: a second client is served meanwhile and unblocks it."""
    gate = threading.Event()

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ["PATH_INFO"] == "/wait":
            assert gate.wait(5), "the second request never came through"
        else:
            gate.set()
        start_response("200 OK", [("Content-Length", "2")])
        return [b"ok"]

    server = connfault_server_factory(app=app)
    results: list[int] = []

    def slow() -> None:
        with httpx.Client(base_url=server.url) as client:
            results.append(client.get("/wait").status_code)

    waiter = threading.Thread(target=slow)
    waiter.start()
    try:
        with httpx.Client(base_url=server.url) as client:
            assert client.get("/go").status_code == 200
    finally:
        waiter.join(10)
    assert results == [200]


def test_stop_joins_the_wsgi_workers(connfault_server_factory: Factory) -> None:
    """After stop() no WSGI worker thread is left."""
    server = connfault_server_factory(app=wsgi_echo)
    with httpx.Client(base_url=server.url) as client:
        client.get("/")
    assert any(t.name.startswith("connfault-wsgi") for t in threading.enumerate())
    server.stop()
    assert not any(t.name.startswith("connfault-wsgi") for t in threading.enumerate())


def test_app_and_handler_are_exclusive() -> None:
    """app= and handler= cannot be combined; app= must be callable."""
    from pytest_connfault import Response

    with pytest.raises(ConnfaultError, match="either handler= or app="):
        FaultServer(app=wsgi_echo, handler=lambda request: Response())
    with pytest.raises(ConnfaultError, match="WSGI or ASGI callable"):
        FaultServer(app="not an app")


class LifespanApp:
    """An ASGI app with startup and shutdown: startup fills the lifespan state its requests read."""

    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.events: list[str] = []

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                self.events.append(message["type"])
                if message["type"] == "lifespan.startup":
                    if self.fail:
                        await send({"type": "lifespan.startup.failed", "message": "no database"})
                        return
                    scope["state"]["greeting"] = b"hello from startup"
                    await send({"type": "lifespan.startup.complete"})
                else:
                    await send({"type": "lifespan.shutdown.complete"})
                    return
        await receive()
        body = scope["state"]["greeting"]
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"%d" % len(body))]})
        await send({"type": "http.response.body", "body": body})


def test_asgi_lifespan_startup_before_the_first_request_and_shutdown_at_stop(connfault_server_factory: Factory) -> None:
    """Startup runs once before the first request (its state reaches the requests); stop() sends shutdown."""
    app = LifespanApp()
    server = connfault_server_factory(app=app)
    assert app.events == []
    with httpx.Client(base_url=server.url) as client:
        assert client.get("/").text == "hello from startup"
        server.close_idle()
        assert client.get("/").text == "hello from startup"
    assert app.events == ["lifespan.startup"]
    server.stop()
    assert app.events == ["lifespan.startup", "lifespan.shutdown"]


def test_asgi_lifespan_startup_failure_is_a_500(connfault_server_factory: Factory) -> None:
    """A failed startup answers requests with a 500 whose traceback names the app's message."""
    server = connfault_server_factory(app=LifespanApp(fail=True))
    with httpx.Client(base_url=server.url) as client:
        assert client.get("/").status_code == 500
    assert "lifespan startup failed: no database" in server.handler_errors[0]


def test_asgi_app_without_lifespan_is_served(connfault_server_factory: Factory) -> None:
    """An app that raises on the lifespan scope (asgi_echo asserts http) is served without lifespan."""
    server = connfault_server_factory(app=asgi_echo)
    with httpx.Client(base_url=server.url) as client:
        assert client.post("/", content=b"xyz").content == b"xyz"
    assert server.handler_errors == []
