"""Slow clients: one byte at a time, silent sockets, readers that never read. None delays another.

Each test interleaves the slow client's steps with whole exchanges on other connections, so the
property is checked by order, not by timing: every quick request is answered while the slow one
is provably unfinished. Teardown (``server.stop()``) does not wait for a slow client either.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

import pytest
from rawclient import FIN, RST, RawClient, wait_until

from pytest_connfault import EndedBy, FaultServer, Request, Response

ServerFactory = Callable[..., FaultServer]

#: The bound on one quick exchange while a slow client is connected: generous for a loaded CI
#: machine, and far below what a server blocked by the slow client would take (forever).
QUICK = 2.0


@pytest.fixture(params=["asyncio", "trio"])
def server(request: pytest.FixtureRequest, connfault_server_factory: ServerFactory) -> FaultServer:
    """A fresh server on each backend."""
    return connfault_server_factory(backend=request.param)


def quick_exchange(server: FaultServer, target: str = "/quick") -> None:
    """A whole request on a new connection, answered 200 within QUICK seconds."""
    with RawClient(server, timeout=QUICK) as client:
        reply = client.request(target=target)
    assert reply.status == 200, f"a quick client was held up: {reply}"


def test_one_byte_at_a_time_does_not_delay_others(server: FaultServer) -> None:
    """A request sent one byte at a time: between every two bytes, another client is served whole."""
    data = b"POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
    with RawClient(server) as slow:
        for n, byte in enumerate(data):
            slow.send(bytes([byte]))
            if n % 4 == 0 and n < len(data) - 1:  # every 4th byte, while the request is unfinished
                quick_exchange(server, f"/quick{n}")
        reply = slow.read_reply()
    assert (reply.status, reply.body) == (200, b"ok\n")
    slow_record = next(r for r in server.requests if r.target == "/slow")
    assert slow_record.body == b"hello"
    quick = [r for r in server.requests if r.target.startswith("/quick")]
    assert len(quick) == len(range(0, len(data) - 1, 4))
    assert all(r.index < slow_record.index for r in quick), "the quick requests were recorded first"


def test_silent_connections_do_not_delay_others(server: FaultServer) -> None:
    """Fifty connections that never send a byte: other clients are served, the silent ones stay open."""
    silent = [RawClient(server) for _ in range(50)]
    try:
        for n in range(10):
            quick_exchange(server, f"/q{n}")
        wait_until(lambda: len(server.connections) == 60, what="every connection accepted")
        open_silent = [c for c in server.connections if c.is_open and not c.requests]
        assert len(open_silent) == 50
    finally:
        for client in silent:
            client.close()


def test_a_half_sent_head_does_not_delay_others(server: FaultServer) -> None:
    """A client stuck in the middle of its head (and one in the middle of its body) blocks no one."""
    with RawClient(server) as head, RawClient(server) as body:
        head.send(b"GET /half HTTP/1.1\r\nHo")
        body.send(b"POST /half HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly some")
        for n in range(10):
            quick_exchange(server, f"/q{n}")
        assert head.is_silent(0.01), "the stuck head was answered early"
        assert body.is_silent(0.01), "the stuck body was answered early"
        body.send(b"b" * 91)
        assert body.read_reply().status == 200
    assert next(r for r in server.requests if r.method == "POST").body == b"only some" + b"b" * 91


def test_a_reader_that_never_reads_does_not_delay_others(server: FaultServer) -> None:
    """A client that asks for 8 MiB and never reads holds only its own connection; others are served."""
    server.respond("/big", body=b"B" * (8 * 1024 * 1024))
    with RawClient(server) as stuck:
        stuck.send_request(target="/big")
        # The server fills the socket buffers and then waits for room the client never makes.
        wait_until(lambda: any(r.target == "/big" for r in server.requests), what="/big recorded")
        for n in range(10):
            quick_exchange(server, f"/q{n}")
        # Only now does the stuck client read: all 8 MiB arrive, the server was still sending them.
        reply = stuck.read_reply(timeout=10)
        assert (reply.status, len(reply.body)) == (200, 8 * 1024 * 1024)


def test_stop_does_not_wait_for_slow_clients(server: FaultServer) -> None:
    """With a silent, a half-sent, a dripping and a never-reading client, stop() takes under a second."""
    server.respond("/big", body=b"B" * (8 * 1024 * 1024))
    server.inject("drip", path="/drip", chunk_size=1, interval=0.5)
    clients = [RawClient(server) for _ in range(4)]
    try:
        silent, half, drip, stuck = clients
        half.send(b"GET /half HTTP/1.1\r\nHo")
        drip.send_request(target="/drip")
        stuck.send_request(target="/big")
        assert drip.read_bytes(1).end == "", "the drip has started"
        wait_until(lambda: len(server.requests) == 2 and len(server.connections) == 4, what="all four connected")
        started = time.monotonic()
        server.stop()
        took = time.monotonic() - started
        assert took < 1.0, f"stop() took {took:.3f} s"
        for client in (silent, half, drip):
            assert client.read_to_end(timeout=QUICK).end in (FIN, RST), "the client saw its connection end"
    finally:
        for client in clients:
            client.close()
    assert all(c.ended_by is EndedBy.SERVER_SHUTDOWN for c in server.connections)


def test_negative_control_a_blocked_loop_does_delay_others(connfault_server_factory: ServerFactory) -> None:
    """The check can fail: a handler that blocks the server's loop holds up a quick client past its bound."""
    unblock = threading.Event()

    def blocking(request: Request) -> Response:
        if request.path == "/block":
            unblock.wait(5.0)  # a handler must not block: this one does, on purpose
        return Response(200)

    server = connfault_server_factory(handler=blocking)
    with RawClient(server) as blocker:
        blocker.send_request(target="/block")
        wait_until(lambda: any(r.target == "/block" for r in server.requests), what="/block recorded")
        with RawClient(server, timeout=0.3) as quick:
            reply = quick.request(target="/quick")
        assert reply.status is None, "a blocked loop must hold up the quick client"
        unblock.set()
        assert blocker.read_reply().status == 200
