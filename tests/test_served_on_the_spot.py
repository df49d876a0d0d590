"""Plain keep-alive requests are served on the spot, as the poller sees them arrive (``_serve_inline``).

Between requests a connection's task waits through the poller; a plain request to a canned or
default answer, with no fault armed, is answered right there, without waking the task. These tests
check that the shortcut is taken, that it leaves the same ledger as the task would, and that
everything else is handed to the task intact: pipelined bytes, an answer bigger than the kernel
takes at once, ``Connection: close``, a malformed request, the client's FIN or reset, a fault
armed between requests, and a bug in the shortcut itself.

On trio a server's lone connection waits for its first request through trio itself, not the
poller, so there the tested connection is opened beside another one (the crowd waits through the
poller); a lone one moves to the poller once it has served two requests (the last test).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Callable

import pytest
from rawclient import FIN, RST, RawClient

from pytest_connfault import EndedBy, FaultServer, Response
from pytest_connfault._connection import ConnectionLoop

ServerFactory = Callable[..., FaultServer]


@dataclass
class Spot:
    """What ``_serve_plain`` did: requests answered on the spot, hand-overs to the task, and
    hand-overs that left part of an answer for the task to send; and the connection's phase as
    each call that answered a request left it, by that request's target."""

    served: int = 0
    handed: int = 0
    partial: int = 0
    targets: list[str] = field(default_factory=list)
    phase_after: dict[str, str] = field(default_factory=dict)


@pytest.fixture
def spot(monkeypatch: pytest.MonkeyPatch) -> Spot:
    record = Spot()
    original = ConnectionLoop._serve_plain

    def counted(loop: ConnectionLoop) -> bool:
        before = len(loop.state.requests)
        result = original(loop)
        answered = [r.target for r in loop.state.requests[before:]]
        record.targets += answered
        record.phase_after.update(dict.fromkeys(answered, loop.state.phase))
        if result:
            record.served += 1
        else:
            record.handed += 1
            record.partial += bool(loop._unsent)
        return result

    monkeypatch.setattr(ConnectionLoop, "_serve_plain", counted)
    return record


@pytest.fixture(params=["asyncio", "trio"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def server(connfault_server_factory: ServerFactory, backend: str) -> Iterator[FaultServer]:
    """A server whose next connection waits through the poller (on trio, beside a bystander)."""
    server = connfault_server_factory(backend=backend)
    if backend == "asyncio":
        yield server
        return
    with RawClient(server) as bystander:
        assert bystander.request().status == 200
        yield server


def id_under_test(server: FaultServer) -> int:
    """The id of the connection under test (the bystander, on trio, is connection 1)."""
    return 2 if server.options.backend == "trio" else 1


def test_plain_keep_alive_requests_are_served_on_the_spot(server: FaultServer, spot: Spot) -> None:
    with RawClient(server) as client:
        for number in range(1, 6):
            reply = client.request("GET", f"/n/{number}")
            assert (reply.status, reply.body) == (200, b"ok\n")
            # idle: what the *_idle commands act on, marked before the answer's last byte left
            assert server._core.live[id_under_test(server)].phase == "idle"
    # Once the connection has ended, every call made on the spot has returned (one loop thread).
    connection = server.wait_connections_ended(id_under_test(server))[0]
    on_the_spot = [f"/n/{n}" for n in range(2, 6)]
    assert [t for t in spot.targets if t in on_the_spot] == on_the_spot, (
        f"the requests after the first were not all served on the spot: {spot}"
    )
    assert [r.target for r in connection.requests] == [f"/n/{n}" for n in range(1, 6)]
    assert all(r.outcome.kind == "responded" and r.outcome.status == 200 for r in connection.requests)
    assert [r.index_on_connection for r in connection.requests] == [1, 2, 3, 4, 5]


def test_a_canned_answer_is_served_on_the_spot_with_its_own_bytes(server: FaultServer, spot: Spot) -> None:
    server.respond("/teapot", Response(418, b"short and stout", headers={"X-Pot": "1"}))
    with RawClient(server) as client:
        assert client.request().status == 200
        reply = client.request("GET", "/teapot?x=1")
        assert (reply.status, reply.body, reply.header("x-pot")) == (418, b"short and stout", "1")
        head = client.request("HEAD", "/teapot")
        assert (head.status, head.body) == (418, b"")
    server.wait_connections_ended(id_under_test(server))
    assert spot.targets[-2:] == ["/teapot?x=1", "/teapot"], f"not served on the spot: {spot}"
    assert [r.outcome.status for r in server.requests[-3:]] == [200, 418, 418]


def test_pipelined_requests_are_all_answered_in_order(server: FaultServer, spot: Spot) -> None:
    server.respond("/a", Response(body=b"A"))
    server.respond("/b", Response(body=b"B"))
    with RawClient(server) as client:
        assert client.request().status == 200
        client.send(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n")
        assert client.read_reply().body == b"A"
        assert client.read_reply().body == b"B"
        assert client.request().status == 200, "the connection did not go back to waiting after the pipeline"
    assert [r.target for r in server.connection(id_under_test(server)).requests] == ["/", "/a", "/b", "/"]
    # /a was answered on the spot with /b already buffered: the connection is not idle then (the
    # *_idle commands must leave it alone), and the task takes /b.
    left = spot.phase_after.get("/a")
    assert left == "busy", f"/a answered on the spot with /b waiting left the connection {left!r}, not busy"


def test_an_answer_bigger_than_the_kernel_takes_at_once_is_finished_by_the_task(
    server: FaultServer, spot: Spot
) -> None:
    big = bytes(range(256)) * (64 * 1024)  # 16 MiB: more than loopback's socket buffers hold
    server.respond("/big", Response(body=big))
    with RawClient(server, timeout=30) as client:
        assert client.request().status == 200
        reply = client.request("GET", "/big")
        assert reply.complete
        assert reply.body == big, f"the body arrived with {len(reply.body)} of {len(big)} bytes"
        assert client.request().status == 200, "the connection did not serve on after the big answer"
    assert spot.partial >= 1, "the kernel took the whole answer at once: the hand-over was not tested"
    assert [r.target for r in server.connection(id_under_test(server)).requests] == ["/", "/big", "/"]


@pytest.mark.parametrize(
    ("request_bytes", "why"),
    [
        (b"GET /bye HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "Connection: close"),
        (b"GET /bye HTTP/1.0\r\nHost: x\r\n\r\n", "HTTP/1.0"),
    ],
)
def test_a_request_that_ends_the_connection_is_answered_by_the_task_then_closed(
    server: FaultServer, spot: Spot, request_bytes: bytes, why: str
) -> None:
    with RawClient(server) as client:
        assert client.request().status == 200
        client.send(request_bytes)
        reply = client.read_reply()
        assert reply.status == 200
        assert reply.header("connection") == "close", f"{why}: the answer did not say close"
        assert client.read_to_end().end == FIN
    assert "/bye" not in spot.targets, f"{why}: the closing request was served on the spot"
    connection = server.wait_connections_ended(id_under_test(server))[0]
    assert connection.ended_by is EndedBy.SERVER_CLOSE


def test_a_malformed_request_after_a_plain_one_gets_400(server: FaultServer, spot: Spot) -> None:
    with RawClient(server) as client:
        assert client.request().status == 200
        client.send(b"NOT HTTP AT ALL\r\n\r\n")
        assert client.read_reply().status == 400
        assert client.read_to_end().end == FIN
    last = server.connection(id_under_test(server)).requests[-1]
    assert last.outcome.kind == "rejected"
    assert last.outcome.status == 400


@pytest.mark.parametrize(
    ("hang_up", "ended_by"), [("close", EndedBy.CLIENT_FIN), ("reset", EndedBy.CLIENT_RST)]
)
def test_the_clients_end_while_idle_is_recorded_as_it_happened(
    server: FaultServer, spot: Spot, hang_up: str, ended_by: EndedBy
) -> None:
    """A reset read on the spot is kept for the task: read again, it would look like a FIN."""
    client = RawClient(server)
    try:
        assert client.request().status == 200
        assert client.request().status == 200
        getattr(client, hang_up)()
    finally:
        client.close()
    connection = server.wait_connections_ended(id_under_test(server))[0]
    assert connection.ended_by is ended_by


def test_a_fault_armed_between_requests_is_not_skipped(server: FaultServer, spot: Spot) -> None:
    with RawClient(server) as client:
        assert client.request().status == 200
        assert client.request().status == 200
        handle = server.inject("reset", at="before_response", connection=id_under_test(server))
        reply = client.request()
        assert reply.end == RST, "the request after the fault was armed was answered"
    assert handle.wait().connection_id == id_under_test(server)


def test_a_handler_is_always_called_by_the_task(connfault_server_factory: ServerFactory, spot: Spot) -> None:
    """A handler may be async or slow: its requests never take the shortcut."""
    server = connfault_server_factory(handler=lambda request: Response(body=request.path.encode()))
    with RawClient(server) as client:
        for path in ("/x", "/y", "/z"):
            assert client.request("GET", path).body == path.encode()
    server.wait_connections_ended(1)
    assert spot.targets == [], "a request was answered on the spot instead of by the handler"


def test_a_handler_set_while_a_connection_waits_is_called(server: FaultServer, spot: Spot) -> None:
    """The shortcut looks at the handler as each request arrives, not as the wait begins."""
    with RawClient(server) as client:
        assert client.request("GET", "/before").body == b"ok\n"
        assert client.request("GET", "/before").body == b"ok\n"
        server.set_handler(lambda request: Response(body=b"from the handler"))
        assert client.request("GET", "/after").body == b"from the handler"


def test_a_bug_on_the_spot_is_reported_and_the_task_still_serves(
    monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    def broken(loop: ConnectionLoop) -> bool:
        raise RuntimeError("a bug in the shortcut")

    monkeypatch.setattr(ConnectionLoop, "_serve_plain", broken)
    with FaultServer(backend=backend) as server, RawClient(server) as bystander:
        assert bystander.request().status == 200
        with RawClient(server) as client:
            assert client.request().status == 200
            assert client.request().status == 200, "the request the shortcut failed on was not served"
        assert any("a bug in the shortcut" in error for error in server.errors)


def test_on_trio_a_lone_connection_is_served_on_the_spot_from_its_third_request(
    connfault_server_factory: ServerFactory, spot: Spot
) -> None:
    """Its first two requests are served by its task (waiting through trio itself: cheapest for a
    test's request or two, and the connection's end); then it waits through the poller, and the
    rest are served on the spot."""
    server = connfault_server_factory(backend="trio")
    with RawClient(server) as client:
        for number in range(1, 6):
            assert client.request("GET", f"/n/{number}").status == 200
    connection = server.wait_connections_ended(1)[0]
    assert spot.targets == ["/n/3", "/n/4", "/n/5"], (
        f"a lone trio connection's requests after the second were not served on the spot: {spot}"
    )
    assert [r.target for r in connection.requests] == [f"/n/{n}" for n in range(1, 6)]
    assert connection.ended_by is EndedBy.CLIENT_FIN
