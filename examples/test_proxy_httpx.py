"""Faults in front of a real server: the documented bug (encode/httpx #327) through a FaultProxy.

The upstream here is a plain ``http.server`` started by the test, standing in for your own service.
``connfault_proxy`` forwards to it (override ``connfault_upstream`` to say where), drops the
client's keep-alive connection on command, and records in one ledger what the client sent, what the
upstream answered, and which upstream connection carried it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest

from pytest_connfault import FaultProxy, assert_new_connection, assert_pool


class OrdersHandler(BaseHTTPRequestHandler):
    """Your service: keep-alive HTTP/1.1, answers every GET and POST with a small JSON body."""

    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: without TCP_NODELAY, Nagle and delayed ACKs
    # add about 40 ms to every small answer.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        body = b'{"orders": []}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_POST = do_GET


class Service(ThreadingHTTPServer):
    daemon_threads = False  # server_close() joins the connection threads


@pytest.fixture
def connfault_upstream() -> Iterator[str]:
    """Start the service for the test; connfault_proxy forwards to this URL."""
    service = Service(("127.0.0.1", 0), OrdersHandler)
    thread = threading.Thread(target=service.serve_forever, args=(0.05,))
    thread.start()
    yield f"http://127.0.0.1:{service.server_address[1]}"
    service.shutdown()
    service.server_close()
    thread.join(10)


@pytest.mark.parametrize("drop", ["close", "reset", "half_close"])
def test_client_reconnects_after_the_proxy_drops_its_idle_connection(connfault_proxy: FaultProxy, drop: str) -> None:
    """httpx notices the dropped keep-alive connection and asks again on a new one; its pool is clean."""
    with httpx.Client(base_url=connfault_proxy.url) as client:
        assert client.get("/orders").json() == {"orders": []}
        getattr(connfault_proxy, f"{drop}_idle")()
        assert client.get("/orders").status_code == 200
        assert_pool(client, active=0, idle=1, server=connfault_proxy)
    assert_new_connection(connfault_proxy, request=2)
    assert [r.upstream_status for r in connfault_proxy.requests] == [200, 200]


@pytest.mark.connfault("close", at="before_request", request=2)
def test_the_keep_alive_race_through_the_proxy(connfault_proxy: FaultProxy) -> None:
    """The marker works on the proxy: the connection closes just as the second request arrives."""
    with httpx.Client(base_url=connfault_proxy.url) as client:
        assert client.get("/orders").status_code == 200
        with pytest.raises(httpx.RemoteProtocolError):
            client.get("/orders")  # httpx does not retry a request the server may have seen
        assert client.get("/orders").status_code == 200


def test_the_upstream_drops_mid_response(connfault_proxy: FaultProxy) -> None:
    """What does the client see when the upstream resets mid-body? The same reset, after the same bytes."""
    connfault_proxy.inject_upstream("reset", at="mid_body", body_bytes=5, request=1)
    with httpx.Client(base_url=connfault_proxy.url) as client:
        with pytest.raises(httpx.ReadError):
            client.get("/orders")
        assert client.get("/orders").status_code == 200  # a new connection on both sides
    first, second = connfault_proxy.requests
    assert str(first.outcome) == "fault reset@mid_body"
    assert (first.upstream_connection, second.upstream_connection) == (1, 2)
