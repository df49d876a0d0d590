"""Toy HTTP/1.1 clients with one deliberate bug each, plugged into ``pytest --connfault``.

They prove the matrix can fail: each bug is one the scenarios exist for, and the tests check that
the matrix marks the cell FAILED with the right reason. A toy is a few dozen lines over h11 and
raw sockets, with a pool of its own whose snapshot it reports itself.

- ``toy-good``: notices a dead idle connection before reusing it (the control: OK);
- ``toy-dead-reuse``: reuses an idle connection without checking it (encode/httpx #327);
- ``toy-replay``: resends any failed request once on a new connection, POST included;
- ``toy-leak``: forgets a connection in its "active" set when a response fails;
- ``toy-forget``: drops a dead idle connection from its pool without closing its socket.

Use from a ``conftest.py``: ``from conformance_toys import pytest_connfault_drivers``.
"""

from __future__ import annotations

import select
import socket
from typing import Any
from urllib.parse import urlsplit

import h11

from pytest_connfault.conformance import ClientOptions, Reply, SyncDriver
from pytest_connfault.pools import PooledConnection, PoolSnapshot


class ToyError(Exception):
    """The toy client's one public exception."""


class ToyClient:
    """A keep-alive client with a pool of sockets per origin, and optional bugs."""

    def __init__(self, *, check_dead: bool = True, replay: bool = False, leak: bool = False, forget: bool = False) -> None:
        self.check_dead = check_dead
        self.replay = replay
        self.leak = leak
        self.forget = forget
        #: Dead sockets dropped from the pool unclosed (the ``forget`` bug); closed only by close().
        self.forgotten: list[socket.socket] = []
        self.idle: list[tuple[tuple[str, int], socket.socket]] = []
        self.active: list[tuple[tuple[str, int], socket.socket]] = []

    def _checkout(self, origin: tuple[str, int], timeout: float) -> socket.socket:
        while self.idle:
            key, sock = self.idle.pop()
            if key != origin:
                sock.close()
                continue
            readable, _, _ = select.select([sock], [], [], 0) if self.check_dead else ([], [], [])
            if readable:  # an idle connection has nothing to say: readable means closed
                if self.forget:
                    self.forgotten.append(sock)
                else:
                    sock.close()
                continue
            return sock
        return socket.create_connection(origin, timeout=timeout)

    def request(self, method: str, url: str, body: bytes | None, timeout: float) -> Reply:
        try:
            return self._once(method, url, body, timeout)
        except ToyError:
            if not self.replay:
                raise
            return self._once(method, url, body, timeout, fresh=True)

    def _once(self, method: str, url: str, body: bytes | None, timeout: float, fresh: bool = False) -> Reply:
        parts = urlsplit(url)
        origin = (parts.hostname or "127.0.0.1", parts.port or 80)
        sock = socket.create_connection(origin, timeout=timeout) if fresh else self._checkout(origin, timeout)
        entry = (origin, sock)
        self.active.append(entry)
        try:
            reply, reusable = self._exchange(sock, method, parts, body, timeout)
        except (OSError, h11.ProtocolError) as exc:
            if not self.leak:
                self.active.remove(entry)
                sock.close()
            raise ToyError(f"{method} {parts.path}: {exc!r}") from exc
        self.active.remove(entry)
        if reusable:
            self.idle.append(entry)
        else:
            sock.close()
        return reply

    def _exchange(self, sock: socket.socket, method: str, parts: Any, body: bytes | None, timeout: float) -> tuple[Reply, bool]:
        sock.settimeout(timeout)
        conn = h11.Connection(h11.CLIENT)
        payload = body or b""
        headers = [("Host", parts.netloc), ("Content-Length", str(len(payload)))]
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        sock.sendall(conn.send(h11.Request(method=method, target=target, headers=headers)) + conn.send(h11.Data(data=payload)) + conn.send(h11.EndOfMessage()))
        status = 0
        chunks: list[bytes] = []
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(sock.recv(65536))
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                chunks.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                return Reply(status, b"".join(chunks)), conn.our_state is h11.DONE and conn.their_state is h11.DONE
            elif isinstance(event, h11.ConnectionClosed):
                raise ConnectionResetError("the server closed the connection")

    def close(self) -> None:
        for sock in [s for _, s in self.idle + self.active] + self.forgotten:
            sock.close()
        self.idle.clear()
        self.active.clear()
        self.forgotten.clear()

    def snapshot(self) -> PoolSnapshot:
        def port(sock: socket.socket) -> int | None:
            try:
                return int(sock.getsockname()[1])
            except OSError:
                return None

        def key(origin: tuple[str, int]) -> tuple[str, str, int]:
            return ("http", origin[0], origin[1])

        connections = [PooledConnection(port(s), "idle", key(o)) for o, s in self.idle]
        connections += [PooledConnection(port(s), "active", key(o)) for o, s in self.active]
        return PoolSnapshot("toy", tuple(connections))


class ToyDriver(SyncDriver):
    """A driver for one configuration of :class:`ToyClient`."""

    family = "toy"
    supports_tls = False
    module = "h11"
    distribution = "h11"

    def __init__(self, name: str, **bugs: bool) -> None:
        self.name = name  # type: ignore[misc]
        self.label = name[4:14]  # type: ignore[misc]
        self.bugs = bugs

    def version(self) -> str:
        return "toy 0.1"

    def errors(self) -> tuple[type[BaseException], ...]:
        return (ToyError,)

    def open(self, options: ClientOptions) -> ToyClient:
        return ToyClient(**self.bugs)

    def request(self, client: Any, method: str, url: str, body: bytes | None, timeout: float) -> Reply:
        return client.request(method, url, body, timeout)  # type: ignore[no-any-return]

    def close(self, client: Any) -> None:
        client.close()

    def pool(self, client: Any) -> PoolSnapshot:
        return client.snapshot()  # type: ignore[no-any-return]


class MissingDriver(ToyDriver):
    """A driver whose client is not installed: its cells must be skipped, not failed."""

    module = "no_such_client_module_connfault"


TOYS = [
    ToyDriver("toy-good"),
    ToyDriver("toy-dead-reuse", check_dead=False),
    ToyDriver("toy-replay", replay=True),
    ToyDriver("toy-leak", leak=True),
    ToyDriver("toy-forget", forget=True),
    MissingDriver("toy-missing"),
]


def warm_up() -> None:
    """Run one cell per built-in client in this process, TLS included.

    pytester's inline runs drop every module first imported during a test; a client that caches
    classes of a lazily imported module (httpx keeps a map of httpcore's exceptions) would then
    meet a second copy of that module in the next run and misreport its errors. Importing it all
    once before the first test keeps every inline run on the same modules.
    """
    from pytest_connfault.conformance import BUILTIN_DRIVERS, SCENARIOS
    from pytest_connfault.conformance._cell import run_cell
    from pytest_connfault.conformance.plugin import Conformance

    state = Conformance(list(BUILTIN_DRIVERS), [SCENARIOS["race-get"], SCENARIOS["tls-framed-cut"]], None)
    try:
        for scenario in state.scenarios:
            for driver in BUILTIN_DRIVERS:
                if driver.unavailable() is None:
                    run_cell(driver, scenario, lambda s=scenario: state.server_for(s))  # type: ignore[misc]
    finally:
        if state.ca_bundle is not None:
            state.ca_bundle.remove()


def pytest_connfault_drivers(config: Any) -> list[SyncDriver]:
    """Plug the toys into the matrix."""
    return list(TOYS)
