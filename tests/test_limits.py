"""Limits: head size, body size and open connections, with clear defaults; memory stays bounded.

A client over a limit gets the right status (431, 413, 503) with ``Connection: close`` and a
rejected record in the ledger; the clients under the limit are served as before.
"""

from __future__ import annotations

import gc
import resource
import socket
import tracemalloc
from collections.abc import Iterator
from typing import Callable

import pytest
from rawclient import FIN, RawClient, wait_until

from pytest_connfault import FaultServer, ServerOptions
from pytest_connfault._ledger import UNREAD_LIMIT
from pytest_connfault._tls import client_context
from pytest_connfault._tls_wire import TlsWire

ServerFactory = Callable[..., FaultServer]


def head_of_size(size: int) -> bytes:
    """A well-formed GET whose head (request line, headers, blank line) is exactly ``size`` bytes."""
    start = b"GET /sized HTTP/1.1\r\nHost: x\r\nX-Pad: "
    end = b"\r\n\r\n"
    return start + b"p" * (size - len(start) - len(end)) + end


def post(body: bytes, target: str = "/upload") -> bytes:
    """A POST with ``body`` framed by Content-Length."""
    return b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (target.encode(), len(body), body)


def chunked_post(body: bytes, piece: int = 1000) -> bytes:
    """A POST with ``body`` sent as chunks of ``piece`` bytes."""
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(body[i : i + piece]), body[i : i + piece]) for i in range(0, len(body), piece))
    return b"POST /chunked HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n"


def test_defaults_are_documented_values() -> None:
    """The limits default to 16 KiB of head, 16 MiB of body, 512 open connections, whole bodies kept."""
    options = ServerOptions()
    assert options.max_header_size == 16 * 1024
    assert options.max_body_size == 16 * 1024 * 1024
    assert options.max_connections == 512
    assert options.ledger_body_limit is None


# -- head size ------------------------------------------------------------------------------


@pytest.mark.parametrize("limit", [1024, 4096, 16 * 1024])
def test_head_under_the_limit_is_served_and_over_it_is_431(connfault_server_factory: ServerFactory, limit: int) -> None:
    """A head just under max_header_size gets 200; one just over gets 431, a rejected record and FIN."""
    server = connfault_server_factory(max_header_size=limit)
    with RawClient(server) as client:
        client.send(head_of_size(limit - 16))
        assert client.read_reply().status == 200
    with RawClient(server) as client:
        client.send(head_of_size(limit + 16))
        reply = client.read_reply()
        assert (reply.status, reply.header("connection")) == (431, "close")
        assert client.read_to_end().end == FIN
    first, second = server.requests
    assert first.outcome.kind == "responded"
    assert (second.outcome.kind, second.outcome.status) == ("rejected", 431)
    assert server.errors == []


def test_head_limit_holds_when_the_head_never_ends(connfault_server_factory: ServerFactory) -> None:
    """A head that keeps growing without its blank line is cut off at the limit, not buffered forever."""
    server = connfault_server_factory(max_header_size=2048)
    with RawClient(server) as client:
        client.send(b"GET / HTTP/1.1\r\nHost: x\r\n")
        try:
            for _ in range(64):  # 64 KiB offered against a 2 KiB limit
                client.send(b"X-More: " + b"m" * 1014 + b"\r\n")
        except (ConnectionResetError, BrokenPipeError):
            pass  # the server refused and closed while we were still sending: allowed
        reply = client.read_reply()
    assert reply.status == 431
    assert server.requests[0].outcome.status == 431


# -- body size ------------------------------------------------------------------------------


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_body_at_the_limit_is_served_and_one_byte_more_is_413(
    connfault_server_factory: ServerFactory, framing: str
) -> None:
    """max_body_size bytes are accepted whole; max_body_size + 1 get 413 and a rejected record."""
    limit = 5000
    server = connfault_server_factory(max_body_size=limit)
    render = post if framing == "content-length" else chunked_post
    with RawClient(server) as client:
        client.send(render(b"a" * limit))
        assert client.read_reply().status == 200
    with RawClient(server) as client:
        client.send(render(b"b" * (limit + 1)))
        reply = client.read_reply()
        assert (reply.status, reply.header("connection")) == (413, "close")
    accepted, refused = server.requests
    assert accepted.body == b"a" * limit
    assert (refused.outcome.kind, refused.outcome.status) == ("rejected", 413)
    assert f"body over {limit} bytes" in refused.outcome.detail
    assert server.errors == []


def test_declared_length_over_the_limit_is_refused_before_the_body(connfault_server_factory: ServerFactory) -> None:
    """A Content-Length over max_body_size gets 413 at once, without the server waiting for the body."""
    server = connfault_server_factory(max_body_size=1000)
    with RawClient(server) as client:
        client.send(b"POST /huge HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000000\r\n\r\n")
        reply = client.read_reply(timeout=5)
    assert reply.status == 413
    (record,) = server.requests
    assert (record.target, record.outcome.status) == ("/huge", 413)
    assert "Content-Length: 1000000000000" in record.outcome.detail


def test_no_body_limit_accepts_a_large_body(connfault_server_factory: ServerFactory) -> None:
    """max_body_size=None lifts the limit: a body over the default-sized test limit is served whole."""
    server = connfault_server_factory(max_body_size=None)
    body = bytes(range(256)) * 1024
    with RawClient(server) as client:
        client.send(post(body))
        assert client.read_reply().status == 200
    assert server.requests[0].body == body


# -- open connections -------------------------------------------------------------------------


def test_connection_over_max_connections_gets_503_and_a_record(connfault_server_factory: ServerFactory) -> None:
    """With max_connections open, one more gets 503 + Connection: close + FIN; a freed slot serves again."""
    server = connfault_server_factory(max_connections=3)
    held = [RawClient(server) for _ in range(3)]
    try:
        for client in held:
            assert client.request().status == 200  # served, and kept open (keep-alive)
        with RawClient(server) as extra:
            reply = extra.request(target="/one-too-many")
            assert (reply.status, reply.header("connection")) == (503, "close")
            assert extra.read_to_end().end == FIN
        # The 503 went out before the request was read; the record has its target once read.
        server.wait_connections_ended(4)
        refused = server.requests[-1]
        assert (refused.target, refused.outcome.kind, refused.outcome.status) == ("/one-too-many", "rejected", 503)
        assert "max_connections=3" in refused.outcome.detail
        for client in held:  # the three held connections still work
            assert client.request().status == 200
    finally:
        for client in held:
            client.close()
    # Once the held connections have ended, a new connection is served again.
    server.wait_connections_ended()  # the held connections
    with RawClient(server) as client:
        assert client.request().status == 200
    assert server.errors == []


def test_refused_connection_is_answered_even_if_it_never_sends(connfault_server_factory: ServerFactory) -> None:
    """Over the limit, the 503 and the FIN come without the client sending anything."""
    server = connfault_server_factory(max_connections=1)
    with RawClient(server) as first:
        assert first.request().status == 200
        with RawClient(server) as silent:
            reply = silent.read_reply(timeout=5)
            assert reply.status == 503
            assert silent.read_to_end(timeout=5).end == FIN
    record = server.connection(2)
    assert [(r.method, r.target, r.outcome.status) for r in record.requests] == [("", "", 503)]


def test_refused_connection_over_tls(connfault_server_factory: ServerFactory) -> None:
    """Over TLS, the refused connection completes its handshake and reads the 503."""
    server = connfault_server_factory(tls=True, max_connections=1)
    context = client_context()

    def get() -> bytes:
        with socket.create_connection((server.host, server.port), timeout=5) as raw:
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                tls.sendall(b"GET /t HTTP/1.1\r\nHost: x\r\n\r\n")
                return tls.recv(65536)

    with socket.create_connection((server.host, server.port), timeout=5) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as held:
            held.sendall(b"GET /held HTTP/1.1\r\nHost: x\r\n\r\n")
            assert held.recv(65536).startswith(b"HTTP/1.1 200 ")
            answer = get()
    assert answer.startswith(b"HTTP/1.1 503 "), answer[:40]
    assert server.requests[-1].outcome.status == 503


@pytest.fixture
def many_fds() -> Iterator[None]:
    """Room for ~1300 descriptors (600+ connections, both ends in this process), raised if allowed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = 1400
    if soft >= need:
        yield
        return
    if hard != resource.RLIM_INFINITY and hard < need:
        pytest.skip(f"needs {need} file descriptors; the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def statuses_of_simultaneous_clients(server: FaultServer, count: int) -> list[int]:
    """Open ``count`` connections at once, then send a request on each; the statuses, in order."""
    clients: list[RawClient] = []
    try:
        for _ in range(count):
            clients.append(RawClient(server))
        for client in clients:
            client.send_request()
        return [client.read_reply().status for client in clients]
    finally:
        for client in clients:
            client.close()


@pytest.mark.usefixtures("many_fds")
def test_no_connection_limit_serves_many_at_once(connfault_server_factory: ServerFactory) -> None:
    """max_connections=None: 600 connections open at once (over the default 512) are all served."""
    server = connfault_server_factory(max_connections=None)
    assert set(statuses_of_simultaneous_clients(server, 600)) == {200}


@pytest.mark.usefixtures("many_fds")
def test_default_connection_limit_refuses_the_513th(connfault_server_factory: ServerFactory) -> None:
    """With the default limit, 512 connections open at once are served and the 513th gets 503."""
    server = connfault_server_factory()
    statuses = statuses_of_simultaneous_clients(server, 513)
    assert statuses.count(200) == 512
    assert statuses.count(503) == 1


# -- memory -----------------------------------------------------------------------------------


def _retained_after(run: Callable[[], None]) -> int:
    """Bytes still allocated (by any thread) after ``run``, as tracemalloc counts them."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        run()
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("body_limit", [64, None])
def test_ledger_body_limit_bounds_what_the_ledger_keeps(
    connfault_server_factory: ServerFactory, body_limit: int | None
) -> None:
    """40 bodies of 128 KiB: with ledger_body_limit=64 the server keeps under 1 MiB; without, it keeps them."""
    server = connfault_server_factory(ledger_body_limit=body_limit)
    body = b"m" * (128 * 1024)

    def run() -> None:
        with RawClient(server) as client:
            for _ in range(40):
                client.send(post(body))
                assert client.read_reply().status == 200

    retained = _retained_after(run)
    if body_limit is None:
        # The negative control: the measurement does see the bodies when they are kept.
        assert retained > 40 * 128 * 1024
    else:
        assert retained < 1024 * 1024, f"{retained} bytes retained"
        assert all(len(r.body) == 64 for r in server.requests)


def test_refused_bodies_do_not_accumulate(connfault_server_factory: ServerFactory) -> None:
    """60 oversized bodies refused with 413 leave under 32 KiB each behind (the ledger keeps 16 KiB of unread)."""
    server = connfault_server_factory(max_body_size=10_000)
    body = b"o" * (256 * 1024)

    def run() -> None:
        for _ in range(60):
            with RawClient(server) as client:
                try:
                    client.send(b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
                    client.send(b"%x\r\n%s\r\n" % (len(body), body))
                except (ConnectionResetError, BrokenPipeError):
                    pass  # refused and closed while we sent: allowed
                assert client.read_reply().status == 413

    retained = _retained_after(run)
    assert retained < 60 * 32 * 1024, f"{retained} bytes retained"
    assert [r.outcome.status for r in server.requests] == [413] * 60
    assert max(len(c.unread) for c in server.connections) <= UNREAD_LIMIT


def test_closed_tls_connections_leave_no_socket_objects_behind(connfault_server_factory: ServerFactory) -> None:
    """The ledger keeps records, not TLS wires (SSLObject and buffers): memory per closed connection stays small."""
    server = connfault_server_factory(tls=True)
    context = client_context()
    for _ in range(30):
        with socket.create_connection((server.host, server.port), timeout=5.0) as raw:
            with context.wrap_socket(raw, server_hostname="127.0.0.1") as tls:
                tls.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                assert tls.recv(65536).startswith(b"HTTP/1.1 200 ")
    wait_until(lambda: len(server.connections) == 30 and not any(c.is_open for c in server.connections))
    gc.collect()
    # Server-side wires only: a proxy test earlier in the same worker may still hold client ones.
    wires = [o for o in gc.get_objects() if type(o) is TlsWire]
    assert wires == [], f"{len(wires)} TLS wires of closed connections are still referenced"
