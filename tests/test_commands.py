"""Faults fired now: reset_idle/close_idle/half_close_idle, release(), stop().

A command returns only once the kernel has acted, so right after it the client's socket already
holds the RST or FIN: the tests look with a non-blocking read, with no sleep and no wait.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

import httpx
import pytest
from rawclient import FIN, RST, TIMEOUT, RawClient, wait_until

from pytest_connfault import ConnfaultError, EndedBy, FaultServer

ServerFactory = Callable[..., FaultServer]
COMMANDS = [("reset_idle", RST), ("close_idle", FIN), ("half_close_idle", FIN)]


@pytest.fixture(params=["asyncio", "trio"])
def server(request: pytest.FixtureRequest, connfault_server_factory: ServerFactory) -> FaultServer:
    """A fresh server on each backend."""
    return connfault_server_factory(backend=request.param)


def now_end(client: RawClient) -> str:
    """How the connection ended, looked up right away with no other step (TIMEOUT: it has not ended).

    The bound is generous on purpose: the command returns once the server's kernel has sent the
    RST or FIN, but under load the loopback delivery to the client's socket can lag by more than a
    millisecond (softirq work deferred to ksoftirqd); what is tested is that nothing else is needed.
    """
    return client.read_to_end(timeout=1.0).end


@pytest.mark.parametrize(("command", "end"), COMMANDS)
def test_command_acts_on_idle_connections_only(server: FaultServer, command: str, end: str) -> None:
    """Only connections that answered a request and wait for the next are dropped: not new, busy or stalled ones."""
    server.inject("stall", at="before_response", path="/stall")
    with RawClient(server) as idle, RawClient(server) as fresh, RawClient(server) as stalled, RawClient(
        server
    ) as busy:
        assert idle.request().complete
        stalled.send_request(target="/stall")
        server.faults[0].wait(5)
        busy.send(b"GET / HTTP/1.1\r\nHost: x\r\n")  # a request head not yet complete
        wait_until(lambda: len(server.connections) == 4, what="four connections accepted")
        dropped = getattr(server, command)()
        assert [c.client_port for c in dropped] == [idle.local_port]
        assert now_end(idle) == end, f"{command} returned before the kernel acted"
        for other in (fresh, stalled, busy):
            assert other.is_silent(0.001), f"{command} touched a connection that was not idle"
        server.release()
        assert stalled.read_reply().status == 200


@pytest.mark.parametrize(("command", "end"), COMMANDS)
def test_command_returns_records_after_the_kernel_acted(server: FaultServer, command: str, end: str) -> None:
    """The records returned name every dropped connection, with the commanded firing; the client sees it at once."""
    clients = [RawClient(server) for _ in range(3)]
    try:
        for client in clients:
            assert client.request().complete
        dropped = getattr(server, command)()
        assert [now_end(c) for c in clients] == [end] * 3
    finally:
        for client in clients:
            client.close()
    assert sorted(c.client_port for c in dropped) == sorted(c.local_port for c in clients)
    kind = command.replace("_idle", "")
    for record in dropped:
        assert record.ended_by is EndedBy.SERVER_FAULT
        (firing,) = record.faults
        assert (firing.kind, firing.at, firing.commanded) == (kind, "idle", True)
        assert firing.detail == f"server.{command}()"
        assert len(record.requests) == 1


@pytest.mark.parametrize(("command", "end"), COMMANDS)
def test_connection_is_idle_the_moment_its_response_is_read(server: FaultServer, command: str, end: str) -> None:
    """A client holding its whole response always finds its connection idle: the command never misses it."""
    for _ in range(30):
        with RawClient(server) as client:
            assert client.request().complete
            dropped = getattr(server, command)()
            assert [c.client_port for c in dropped] == [client.local_port], "the idle connection was missed"
            assert now_end(client) == end


@pytest.mark.parametrize("command", [c for c, _ in COMMANDS])
def test_command_with_nothing_idle_returns_an_empty_list(server: FaultServer, command: str) -> None:
    """With no idle connection a command drops nothing and says so."""
    assert getattr(server, command)() == []
    with RawClient(server) as fresh:
        assert getattr(server, command)() == []
        assert fresh.is_silent(0.001)


def test_close_idle_is_a_fin_and_writing_after_it_gets_rst(server: FaultServer) -> None:
    """close_idle() closes both ways: the client reads EOF, and its next write is answered with RST."""
    with RawClient(server) as client:
        assert client.request().complete
        server.close_idle()
        assert now_end(client) == FIN
        with pytest.raises((ConnectionResetError, BrokenPipeError)):
            write_until_refused(client)


def write_until_refused(client: RawClient) -> None:
    """Write requests onto a connection the server closed, until the kernel refuses (bounded)."""
    client.sock.settimeout(5)
    for _ in range(100):
        client.send_request()  # the first is accepted locally; the server's kernel answers RST
        client.sock.recv(1)


def test_half_close_idle_keeps_reading(server: FaultServer) -> None:
    """half_close_idle() sends FIN but the server reads on: a request sent after it is recorded, unanswered."""
    with RawClient(server) as client:
        assert client.request().complete
        (record,) = server.half_close_idle()
        assert now_end(client) == FIN
        client.send_request(target="/after")
        client.shutdown_write()
        server.wait_connections_ended(record.id)
    (_, late) = server.requests
    assert late.target == "/after"
    assert late.outcome.kind == "unanswered"


def test_release_ends_every_stall_and_counts_them(server: FaultServer) -> None:
    """release() lets every stalled connection go on and returns how many were stalled."""
    handle = server.inject("stall", at="before_response", times="always")
    with RawClient(server) as one, RawClient(server) as two:
        one.send_request()
        two.send_request()
        wait_until(lambda: handle.fired == 2, what="both stalls")
        assert one.is_silent(0.05)
        assert server.release() == 2
        assert one.read_reply().status == 200
        assert two.read_reply().status == 200
    assert server.release() == 0


def test_release_lets_later_stalls_stall_again(server: FaultServer) -> None:
    """After release(), a stall that fires later holds its connection until the next release()."""
    handle = server.inject("stall", at="before_response", times=2)
    with RawClient(server) as client:
        client.send_request()
        handle.wait(5)
        server.release()
        assert client.read_reply().status == 200
        client.send_request()
        wait_until(lambda: handle.fired == 2, what="the second stall")
        assert client.is_silent(0.05), "the second stall was released by the first release()"
        server.release()
        assert client.read_reply().status == 200


def test_stop_is_idempotent_and_commands_after_it_fail_clearly(connfault_server_factory: ServerFactory) -> None:
    """stop() twice is fine; a command on a stopped server raises ConnfaultError."""
    server = connfault_server_factory()
    server.stop()
    server.stop()
    assert not server.is_running
    with pytest.raises(ConnfaultError, match="stopped"):
        server.reset_idle()
    with pytest.raises(ConnfaultError, match="stopped"):
        server.release()


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_stop_ends_a_stall_and_the_blocked_client_sees_the_close(
    connfault_server_factory: ServerFactory, backend: str
) -> None:
    """A client blocked on a stall sees its connection closed when the server stops, within a bound."""
    server = connfault_server_factory(backend=backend)
    handle = server.inject("stall", at="before_response")
    outcome: list[BaseException] = []

    def blocked_get() -> None:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            try:
                client.get("/")
            except httpx.HTTPError as exc:
                outcome.append(exc)

    thread = threading.Thread(target=blocked_get)
    thread.start()
    try:
        handle.wait(5)
        started = time.monotonic()
        server.stop()
        thread.join(5)
        took = time.monotonic() - started
    finally:
        server.release() if server.is_running else None
        thread.join(5)
    assert not thread.is_alive(), "the blocked client was never woken"
    assert took < 1.0, f"the stalled client waited {took:.3f} s after stop()"
    assert len(outcome) == 1
    assert isinstance(outcome[0], httpx.RemoteProtocolError), outcome
    assert server.connection(1).ended_by is EndedBy.SERVER_SHUTDOWN


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_stop_with_connections_in_every_state_is_quick(connfault_server_factory: ServerFactory, backend: str) -> None:
    """stop() with new, idle, stalled, dripping, half-closed and mid-request connections finishes within 1 s."""
    server = connfault_server_factory(backend=backend)
    server.inject("stall", at="before_response", path="/stall")
    server.inject("drip", path="/drip", chunk_size=1, interval=0.05)
    server.inject("half_close", at="after_response", path="/half")
    clients = [RawClient(server) for _ in range(6)]
    try:
        new, idle, stalled, dripping, half, partial = clients
        assert idle.request().complete
        stalled.send_request(target="/stall")
        dripping.send_request(target="/drip")
        assert half.request(target="/half").complete
        partial.send(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly part")
        for handle in server.faults:
            handle.wait(5)
        wait_until(lambda: len(server.connections) == 6, what="six connections")
        started = time.monotonic()
        server.stop()
        took = time.monotonic() - started
        ends = {name: c.read_to_end(timeout=5).end for name, c in zip(
            ("new", "idle", "stalled", "dripping", "half", "partial"), clients)}
    finally:
        for client in clients:
            client.close()
    assert took < 1.0, f"stop() took {took:.3f} s"
    assert TIMEOUT not in ends.values(), f"a connection was left open by stop(): {ends}"
    assert all(not c.is_open for c in server.connections)
    shut = {c.id: c.ended_by for c in server.connections}
    assert shut[1] is EndedBy.SERVER_SHUTDOWN, shut


def test_stop_of_a_direct_server_twice_and_as_context_manager() -> None:
    """`with FaultServer() as s:` stops on exit, and an explicit stop() inside it is harmless."""
    with FaultServer() as direct:
        with RawClient(direct) as client:
            assert client.request().complete
            direct.stop()
            assert client.read_to_end(timeout=5).end == FIN
    assert not direct.is_running
    assert direct.connection(1).ended_by is EndedBy.SERVER_SHUTDOWN


def test_pipelined_request_makes_the_connection_busy_not_idle(server: FaultServer) -> None:
    """A request read from bytes already buffered (pipelined) makes its connection busy: commands leave it alone."""
    handle = server.inject("delay", path="/slow", seconds=0.3)
    with RawClient(server) as client:
        client.send(b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
        assert client.read_reply().status == 200
        handle.wait(5)  # the server is now delaying its answer to /slow
        assert server.close_idle() == [], "a connection in the middle of a request was taken for idle"
        assert client.read_reply().status == 200
