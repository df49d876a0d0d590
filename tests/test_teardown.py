"""Teardown always finishes: stop() with connections in every state, failing tests, leak checks.

``stop()`` must end within a second whatever its connections are doing, free every socket and
task, and close the connection under a client blocked on a stall, so the client wakes. The
project's leak check (``tests/conftest.py``) must catch a test that leaves a server, a socket
or a thread behind; the negative controls here show it does.
"""

from __future__ import annotations

import socket
import ssl
import threading
import time
from pathlib import Path
from typing import Callable

import anyio
import pytest
from rawclient import FIN, RST, RawClient, Reply, wait_until

from pytest_connfault import EndedBy, FaultServer
from pytest_connfault._loop import get_loop
from pytest_connfault._tls import client_context

ServerFactory = Callable[..., FaultServer]
CONFTEST = Path(__file__).with_name("conftest.py")
STOP_BOUND = 1.0


def stop_within_bound(server: FaultServer, blocked: threading.Thread, who: str) -> None:
    """``server.stop()`` returns within STOP_BOUND, and the thread blocked on it is woken as soon."""
    started = time.monotonic()
    server.stop()
    took = time.monotonic() - started
    assert took < STOP_BOUND, f"stop() took {took:.3f} s"
    blocked.join(STOP_BOUND)
    assert not blocked.is_alive(), f"{who} was not woken"


def running_tasks(backend: str) -> int:
    """How many tasks the backend's loop thread runs now (the servers' and the loop's own)."""
    return get_loop(backend).call(lambda: len(anyio.get_running_tasks()), timeout=5.0)


class BlockedRequest:
    """A request sent from a thread that blocks until its reply (or the connection's end) arrives."""

    def __init__(self, server: FaultServer, target: str) -> None:
        self.reply: Reply | None = None
        self.client = RawClient(server, timeout=10.0)
        self.thread = threading.Thread(target=self._run, args=(target,), name=f"blocked-on-{target}")
        self.thread.start()

    def _run(self, target: str) -> None:
        try:
            self.reply = self.client.request(target=target)
        finally:
            self.client.close()


class BlockedHandshake:
    """A TLS handshake from a thread, blocked until the server answers or closes."""

    def __init__(self, server: FaultServer) -> None:
        self.error: BaseException | None = None
        self.sock = socket.create_connection((server.host, server.port), timeout=10.0)
        self.thread = threading.Thread(target=self._run, name="blocked-in-handshake")
        self.thread.start()

    def _run(self) -> None:
        try:
            with client_context().wrap_socket(self.sock, server_hostname="127.0.0.1"):
                pass
        except (OSError, ssl.SSLError) as exc:
            self.error = exc
        finally:
            self.sock.close()


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_stop_with_connections_in_every_state(connfault_server_factory: ServerFactory, backend: str) -> None:
    """Stalled (client blocked), dripping, half-closed, idle, mid-head, mid-body, silent, never reading: stop < 1 s."""
    tasks_before = running_tasks(backend)
    server = connfault_server_factory(backend=backend)
    server.respond("/big", body=b"B" * (8 * 1024 * 1024))
    stall = server.inject("stall", path="/stall")
    drip = server.inject("drip", path="/drip", chunk_size=1, interval=0.5)
    half = server.inject("half_close", path="/half")
    clients: list[RawClient] = []

    def client() -> RawClient:
        clients.append(RawClient(server))
        return clients[-1]

    try:
        blocked = BlockedRequest(server, "/stall")
        stall.wait()
        dripping = client()
        dripping.send_request(target="/drip")
        drip.wait()
        assert dripping.read_bytes(1).end == ""
        half_closed = client()
        assert half_closed.request(target="/half").status == 200
        half.wait()
        idle = client()
        assert idle.request(target="/idle").status == 200
        client().send(b"GET /mid-head HTTP/1.1\r\nHo")
        client().send(b"POST /mid-body HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nsome")
        client()  # silent
        client().send_request(target="/big")  # never reads
        wait_until(lambda: len(server.connections) == 8 and len(server.requests) == 5, what="every client in place")
        assert server.connections[-1].is_open

        stop_within_bound(server, blocked.thread, "the client blocked on the stall")
        assert blocked.reply is not None
        assert blocked.reply.end in (FIN, RST), blocked.reply
        for other in (dripping, half_closed, idle, *clients[3:]):
            assert other.read_to_end(timeout=STOP_BOUND).end in (FIN, RST)
    finally:
        for other in clients:
            other.close()
    assert all(not c.is_open for c in server.connections)
    ended = {c.requests[0].target if c.requests else "(none)": c.ended_by for c in server.connections}
    assert ended["/half"] is EndedBy.SERVER_FAULT
    assert {how for target, how in ended.items() if target != "/half"} == {EndedBy.SERVER_SHUTDOWN}
    assert running_tasks(backend) == tasks_before, "the server's tasks were not all freed"


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_stop_with_a_tls_handshake_stalled(connfault_server_factory: ServerFactory, backend: str) -> None:
    """Over TLS: a handshake stalled (client blocked in it), an idle and a mid-request connection: stop < 1 s."""
    tasks_before = running_tasks(backend)
    server = connfault_server_factory(backend=backend, tls=True)
    context = client_context()
    with socket.create_connection((server.host, server.port), timeout=5.0) as raw:
        with context.wrap_socket(raw, server_hostname="127.0.0.1") as idle:
            idle.sendall(b"GET /idle HTTP/1.1\r\nHost: x\r\n\r\n")
            assert idle.recv(65536).startswith(b"HTTP/1.1 200 ")
            with socket.create_connection((server.host, server.port), timeout=5.0) as raw2:
                with context.wrap_socket(raw2, server_hostname="127.0.0.1") as mid:
                    mid.sendall(b"GET /mid HTTP/1.1\r\nHo")
                    stall = server.inject("stall", at="handshake")
                    blocked = BlockedHandshake(server)
                    stall.wait()

                    stop_within_bound(server, blocked.thread, "the client blocked in its handshake")
                    assert blocked.error is not None, "the stalled handshake cannot have succeeded"
    assert all(c.ended_by is EndedBy.SERVER_SHUTDOWN for c in server.connections)
    assert running_tasks(backend) == tasks_before


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_stop_right_after_a_burst_of_connections(connfault_server_factory: ServerFactory, backend: str) -> None:
    """stop() while connections are still being accepted ends within the bound (it used to hang ~1 in 10)."""
    for _ in range(15):
        server = connfault_server_factory(backend=backend)
        clients = [socket.create_connection((server.host, server.port), timeout=5.0) for _ in range(40)]
        try:
            started = time.monotonic()
            server.stop()
            took = time.monotonic() - started
        finally:
            for client in clients:
                client.close()
        assert took < STOP_BOUND, f"stop() took {took:.3f} s"
        assert all(not c.is_open for c in server.connections)


@pytest.mark.parametrize("kind", ["stall", "delay"])
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_stop_right_after_the_client_closed_with_a_fault_armed_for_the_next_request(
    connfault_server_factory: ServerFactory, backend: str, kind: str
) -> None:
    """The client closed; waking on its FIN, the connection reaches a request boundary where a
    before_request fault for request 2 fires (a stall, a long delay): stop() must still end it
    within the bound, not wait for the connection to finish on its own."""
    for attempt in range(10):
        server = connfault_server_factory(backend=backend)
        server.inject(kind, at="before_request", request=2, **({"seconds": 30.0} if kind == "delay" else {}))
        client = RawClient(server)
        assert client.request().complete
        client.close()
        started = time.monotonic()
        server.stop()
        took = time.monotonic() - started
        assert took < STOP_BOUND, f"attempt {attempt + 1}: stop() took {took:.3f} s"
        assert not server.connection(1).is_open


def test_stop_is_idempotent_and_has_an_awaitable_form(connfault_server_factory: ServerFactory) -> None:
    """stop() twice is fine; stop_async() after stop() is a no-op; the factory's teardown stops nothing twice."""
    server = connfault_server_factory()
    with RawClient(server) as client:
        assert client.request().status == 200
        server.stop()
        server.stop()
        anyio.run(server.stop_async)
        assert client.read_to_end(timeout=STOP_BOUND).end in (FIN, RST)
    assert not server.is_running


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_stop_async_from_a_test_loop(connfault_server_factory: ServerFactory, backend: str) -> None:
    """stop_async() with a stalled connection returns within the bound, awaited on either backend."""
    server = connfault_server_factory(backend=backend)
    stall = server.inject("stall")
    blocked = BlockedRequest(server, "/stall")
    stall.wait()

    async def stop() -> float:
        started = time.monotonic()
        await server.stop_async()
        return time.monotonic() - started

    took = anyio.run(stop, backend=backend)
    assert took < STOP_BOUND
    blocked.thread.join(STOP_BOUND)
    assert not blocked.thread.is_alive()
    assert blocked.reply is not None
    assert blocked.reply.end in (FIN, RST)


# -- a test that fails, errors or is interrupted while a stall is armed ---------------------------

INNER = '''
import socket, threading
import pytest

RESULT = {result!r}


def blocked_client(server):
    """A client blocked on the stall; it writes how its connection ended once woken."""
    sock = socket.create_connection((server.host, server.port), timeout=10)

    def run():
        try:
            sock.sendall(b"GET /s HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
            ending = "fin" if sock.recv(100) == b"" else "data"
        except ConnectionResetError:
            ending = "rst"
        except OSError as exc:
            ending = repr(exc)
        finally:
            sock.close()
        with open(RESULT, "a") as f:
            f.write(ending + "\\n")

    thread = threading.Thread(target=run, name="inner-blocked-client")
    thread.start()


@pytest.fixture
def stalled(connfault_server):
    handle = connfault_server.inject("stall")
    blocked_client(connfault_server)
    handle.wait()
    return connfault_server


@pytest.fixture
def broken_after_the_stall(stalled):
    raise RuntimeError("a fixture failed after the stall was armed")


def test_fails(stalled):
    assert False, "a deliberate failure while a client is blocked on a stall"


def test_errors(stalled):
    raise RuntimeError("a deliberate error while a client is blocked on a stall")


def test_fixture_errors(broken_after_the_stall):
    pass


def test_interrupted(stalled):
    if {interrupt!r}:
        raise KeyboardInterrupt
'''


def _inner(pytester: pytest.Pytester, interrupt: bool) -> Path:
    result = pytester.path / "endings.txt"
    pytester.makeconftest(CONFTEST.read_text())
    pytester.makepyfile(test_inner=INNER.format(result=str(result), interrupt=interrupt))
    return result


def test_failing_tests_still_tear_down(pytester: pytest.Pytester) -> None:
    """A test that fails, errors, or whose fixture errors while a stall is armed: teardown wakes the client."""
    endings = _inner(pytester, interrupt=False)
    started = time.monotonic()
    result = pytester.runpytest("-p", "no:randomly", "-p", "no:cacheprovider")
    took = time.monotonic() - started
    result.assert_outcomes(passed=1, failed=2, errors=1)
    result.stdout.no_fnmatch_line("*leak after the test*")
    result.stdout.no_fnmatch_line("*did not stop*")
    assert endings.read_text().split() == ["fin"] * 4, "each blocked client saw its connection closed"
    assert took < 20


def test_interrupted_test_still_tears_down(pytester: pytest.Pytester) -> None:
    """A KeyboardInterrupt while a stall is armed: the session ends, the server stops, the client wakes."""
    endings = _inner(pytester, interrupt=True)
    recorded = pytester.inline_run("-p", "no:randomly", "-p", "no:cacheprovider", "-k", "interrupted", no_reraise_ctrlc=True)
    assert recorded.ret == pytest.ExitCode.INTERRUPTED
    # Interrupted, pytest tears the fixtures down at the session's end: the server stops there,
    # the client wakes; this test's own leak check then finds nothing of the inner run left.
    assert endings.read_text().split() == ["fin"]


# -- the leak check catches leaks (negative controls) -------------------------------------------

LEAKY = '''
import socket, threading
from pytest_connfault import FaultServer

KEEP = []


def test_leaks_a_server():
    KEEP.append(FaultServer().start())


def test_leaks_a_socket():
    KEEP.append(socket.socket())


def test_leaks_a_thread():
    stop = threading.Event()
    KEEP.append(stop)
    threading.Thread(target=stop.wait, name="leaky-thread", daemon=True).start()


def test_clean():
    with FaultServer() as server:
        assert server.is_running


def test_cleans_up_the_leaks():
    for thing in KEEP:
        (thing.stop if isinstance(thing, FaultServer) else thing.close if isinstance(thing, socket.socket) else thing.set)()
'''


def test_leak_check_catches_a_leaking_test(pytester: pytest.Pytester) -> None:
    """The project's leak check fails a test that leaves a server, a socket or a thread behind."""
    pytester.makeconftest(CONFTEST.read_text())
    pytester.makepyfile(test_leaky=LEAKY)
    result = pytester.runpytest_subprocess("-p", "no:randomly", "-p", "no:cacheprovider", "-p", "no:xdist")
    result.assert_outcomes(passed=5, errors=3)
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_leaks_a_server*",
            "leak after the test: sockets left open*",
            "*ERROR at teardown of test_leaks_a_socket*",
            "leak after the test: sockets left open*",
            "*ERROR at teardown of test_leaks_a_thread*",
            "leak after the test: threads left running: ['leaky-thread']",
        ]
    )
