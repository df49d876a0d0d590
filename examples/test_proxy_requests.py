"""Faults in front of your own WSGI app, with requests: through a FaultProxy, or served directly.

Two ways to put the fault-injecting server between ``requests`` and an application:

- ``connfault_proxy`` in front of the app running in its own server (here ``wsgiref`` in a thread,
  standing in for a dev server): the client's and the upstream's connections are separate;
- ``connfault_server_factory(app=...)``: the server calls the WSGI app itself (in worker threads),
  with no second server at all.

Then a seeded chaos run: a retry wrapper survives random faults on 30 % of requests.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from typing import Any, Callable
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest
import requests

from pytest_connfault import ChaosHandle, FaultProxy, FaultServer


def inventory_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """Your application."""
    body = f"{environ['REQUEST_METHOD']} {environ['PATH_INFO']}: 3 widgets\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def connfault_upstream() -> Iterator[str]:
    """The app in its own server (wsgiref, one thread), for connfault_proxy to forward to."""
    server = make_server("127.0.0.1", 0, inventory_app, handler_class=QuietHandler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,))
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()
    thread.join(10)


@pytest.mark.parametrize("drop", ["close", "reset"])
def test_requests_recovers_from_an_idle_drop_through_the_proxy(connfault_proxy: FaultProxy, drop: str) -> None:
    """requests reuses its connection, the proxy drops it while idle, the next request opens a new one."""
    with requests.Session() as session:
        assert session.get(f"{connfault_proxy.url}/widgets").text == "GET /widgets: 3 widgets\n"
        getattr(connfault_proxy, f"{drop}_idle")()
        assert session.get(f"{connfault_proxy.url}/widgets").status_code == 200
    assert [r.connection_id for r in connfault_proxy.requests] == [1, 2]
    # wsgiref closes after every answer, so each request took its own upstream connection.
    assert [r.upstream_connection for r in connfault_proxy.requests] == [1, 2]


def test_requests_recovers_in_front_of_the_app_served_directly(
    connfault_server_factory: Callable[..., FaultServer],
) -> None:
    """The same without a second server: the fault server runs the WSGI app itself."""
    server = connfault_server_factory(app=inventory_app)
    with requests.Session() as session:
        assert session.get(f"{server.url}/widgets").status_code == 200
        server.reset_idle()
        assert session.post(f"{server.url}/widgets").text == "POST /widgets: 3 widgets\n"
    assert [r.connection_id for r in server.requests] == [1, 2]


def get_with_retries(session: requests.Session, url: str, attempts: int = 10) -> requests.Response:
    """Retry an idempotent GET on any connection-level failure, the body read included."""
    for attempt in range(attempts):
        try:
            return session.get(url)
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError):
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


@pytest.mark.connfault("chaos", rate=0.3, seed=1234)
def test_retry_wrapper_survives_chaos(connfault_proxy: FaultProxy) -> None:
    """Random drops on 30 % of requests (replayable from the seed): every GET still gets its answer."""
    with requests.Session() as session:
        for i in range(30):
            assert get_with_retries(session, f"{connfault_proxy.url}/item/{i}").status_code == 200
    [chaos] = [h for h in connfault_proxy.faults if isinstance(h, ChaosHandle)]
    assert chaos.fired > 0
