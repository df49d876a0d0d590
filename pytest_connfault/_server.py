"""The fault-injecting HTTP/1.1 server: lifecycle, accept loop, faults armed ahead, the ledger.

A server is a listening socket watched by the process's loop thread for its backend (see
``_loop.py`` and ``_acceptor.py``), and one task per connection. ``start()`` binds, listens and
registers the listener from the caller's thread; ``stop()`` unregisters and closes it there too,
and only when connections are still open asks the loop to end them, waiting until every one is
closed. Everything that touches a socket runs on the loop thread, under the server's lock when it
also changes the ledger, which is what makes the ledger's ordering promises hold.
"""

from __future__ import annotations

import socket
import ssl
import threading
import traceback
from dataclasses import dataclass
from typing import Any, Callable

from ._commands import COMMAND_TIMEOUT, IdleCommands
from ._connection import ConnectionLoop
from ._endings import ConnectionEndings
from ._errors import ConnfaultError, FaultSpecError, ServerError
from ._faults import Fault, FaultHandle, FaultPlan, now
from ._ledger import UNREAD_LIMIT, Connection, ConnectionState, EndedBy, Ledger, Outcome, Request
from ._loop import LoopThread, get_loop
from ._responses import BodyLike, Handler, HeadersLike, Response, Routes
from ._tls_wire import TlsWire
from ._trio_group import TrioGroup
from ._wire import Wire


@dataclass(frozen=True)
class ServerOptions:
    """Settings of one server, fixed when it is made."""

    host: str = "127.0.0.1"
    port: int = 0
    backend: str = "asyncio"
    #: Largest request head (request line and headers); over it: 431. h11's default.
    max_header_size: int = 16 * 1024
    #: Largest request body; over it: 413.
    max_body_size: int | None = 16 * 1024 * 1024
    #: Cap on the body bytes the ledger keeps per request (None keeps them whole).
    ledger_body_limit: int | None = None
    #: Most connections served at once (None: no limit). One more is answered ``503`` with
    #: ``Connection: close`` at once, recorded as a rejected request, and closed. 512 is far above
    #: what a test opens and well below a CI machine's usual file-descriptor limit (1024).
    max_connections: int | None = 512
    backlog: int = 1024


class ServerCore:
    """The state a server shares with its connection loops (all under ``lock``)."""

    def __init__(self, options: ServerOptions, handler: Handler | None) -> None:
        self.options = options
        self.lock = threading.Lock()
        self.ledger = Ledger(body_limit=options.ledger_body_limit)
        self.plan = FaultPlan()
        self.routes = Routes(handler)
        self.live: dict[int, ConnectionState] = {}
        self.handler_errors: list[str] = []
        self.errors: list[str] = []
        self.release_event: Any = None
        self.stopping = False
        #: Connections accepted and not yet ended, refused ones (over ``max_connections``) aside.
        self.serving = 0
        #: Wires of connections waiting at a request boundary (see ``wake``).
        self.waiting: set[Wire] = set()
        #: Called (under the lock) each time a connection has ended: the waits of ``_endings.py``.
        self.end_watchers: list[Callable[[], None]] = []
        #: The loop's clock (``anyio.current_time`` without its dispatch, once per request).
        self.clock: Callable[[], float] = _clock(options.backend)

    def wake(self) -> None:
        """On the loop thread: make connections waiting for a request look at the plan again."""
        for wire in list(self.waiting):
            wire.wake()


def _clock(backend: str) -> Callable[[], float]:
    if backend == "trio":
        import trio

        return trio.current_time
    import time

    return time.monotonic  # what asyncio's loop.time() reads


class FaultServer(IdleCommands, ConnectionEndings):
    """An in-process HTTP/1.1 server on loopback that drops keep-alive connections on command.

    Use it as a context manager, or call :meth:`start` and :meth:`stop`; in tests, the
    ``connfault_server`` fixture gives a started one. All methods are thread-safe.

    Args:
        host: the address to bind; ``127.0.0.1`` by default. Binding anything but a loopback
            address exposes the server to the network: it must be asked for explicitly.
        port: 0 (default) for an ephemeral port.
        backend: the event loop the server runs on, ``"asyncio"`` or ``"trio"``.
        handler: called with each :class:`~pytest_connfault.Request` whose path has no canned
            response; returns a :class:`~pytest_connfault.Response`. It runs on the server's
            loop thread, so it must not block. An exception becomes a 500 and is recorded.
        tls: serve HTTPS: an ``ssl.SSLContext`` (server side, with its certificate), or True for
            a certificate for ``127.0.0.1``, ``::1`` and ``localhost`` from the process's
            ``trustme`` CA (the ``connfault_ca`` fixture; clients trust it through
            ``pytest_connfault._tls.client_context()`` or the ``connfault_client_ssl_context``
            fixture). The handshake runs in each connection's own task.
        app: serve a WSGI or an ASGI 3 application instead of canned answers (see ``_apps.py``):
            ASGI on the server's loop, WSGI in worker threads that ``stop()`` joins.
        **options: further :class:`ServerOptions` fields (limits).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        backend: str = "asyncio",
        handler: Handler | None = None,
        tls: ssl.SSLContext | bool | None = None,
        app: Callable[..., Any] | None = None,
        **options: Any,
    ) -> None:
        self.options = ServerOptions(host=host, port=port, backend=backend, **options)
        self._app: Any = None
        if app is not None:
            if handler is not None:
                raise ConnfaultError("pass either handler= or app=, not both")
            from ._apps import AppBridge

            self._app = handler = AppBridge(app, self)
        if tls is True:
            from ._tls import server_context

            tls = server_context()
        if not (tls is None or tls is False or isinstance(tls, ssl.SSLContext)):
            raise ConnfaultError(f"tls= takes an ssl.SSLContext or True, not {tls!r}")
        #: The server's TLS context, or None for plain HTTP.
        self.tls_context: ssl.SSLContext | None = tls or None
        self._core = ServerCore(self.options, handler)
        self._loop: LoopThread | None = None
        self._listener: socket.socket | None = None
        self._stopped = threading.Event()
        #: Connection tasks (and trio connection-group hosts) started and not yet finished (under
        #: the core's lock).
        self._tasks = 0
        #: How to cancel each running connection's task, by connection id (under the lock).
        self._cancels: dict[int, Callable[[], object]] = {}
        #: trio only: the nursery of the connections accepted while another was open.
        self._group: TrioGroup | None = None
        self._stop_waiters: list[Callable[[], None]] = []
        self._state = "new"
        self.started_at = 0.0
        self.host = host
        self.port = 0

    def __repr__(self) -> str:
        with self._core.lock:
            live = len(self._core.live)
            idle = sum(1 for c in self._core.live.values() if c.phase == "idle")
            total = len(self._core.ledger.connections)
            requests = len(self._core.ledger.requests)
        return (
            f"<FaultServer {self.url if self.port else '(not started)'} [{self._state}, "
            f"{self.options.backend}] connections: {live} open, {idle} idle, {total} total; "
            f"requests: {requests}>"
        )

    # -- lifecycle ------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``http://host:port`` of the running server (IPv6 hosts in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    @property
    def scheme(self) -> str:
        """``"https"`` with TLS, else ``"http"``."""
        return "http" if self.tls_context is None else "https"

    @property
    def is_running(self) -> bool:
        """Whether the server has started and not stopped."""
        return self._state == "running"

    def start(self) -> FaultServer:
        """Bind, listen, and start serving. Returns the server; it is ready for clients at once."""
        if self._state != "new":
            raise ConnfaultError(f"a server can start once; this one is {self._state}")
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            listener.bind((self.host, self.options.port))
            listener.listen(self.options.backlog)
            listener.setblocking(False)
            self._loop = get_loop(self.options.backend)
            # The kernel queues connections from here on; the loop accepts them when it sees them.
            self._loop.acceptor.add(listener, self._accept_ready)
        except BaseException:
            listener.close()
            raise
        self._listener = listener
        self.port = listener.getsockname()[1]
        self.started_at = now()
        self._state = "running"
        return self

    def __enter__(self) -> FaultServer:
        return self.start() if self._state == "new" else self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _accept_ready(self) -> None:
        """On the loop thread, when the listener is readable: accept one waiting connection.

        One per call: the acceptor's selector is level-triggered, so while more connections wait it
        calls again on the loop's next turn, and the usual single connection costs no second
        ``accept`` that would only fail with ``EAGAIN``.
        """
        core = self._core
        listener = self._listener
        assert listener is not None
        assert self._loop is not None
        with core.lock:
            # stop() sets ``stopping`` under this lock before it closes the listener: checked
            # here under it, an accept never meets a closed (or reused) descriptor.
            if core.stopping:
                return
            try:
                sock, address = listener.accept()
            except BlockingIOError:
                return
            except OSError as exc:  # e.g. out of file descriptors
                error = f"accept failed: {exc!r}"
                if error not in core.errors[-1:]:
                    core.errors.append(error)
                return
            sock.setblocking(False)
            if sock.family != socket.AF_UNIX:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            # Numbered here, in accept order: the tasks may start in another (trio shuffles).
            state = core.ledger.open_connection(address[1], now(), tls=self.tls_context is not None)
            limit = self.options.max_connections
            if limit is not None and core.serving >= limit:
                state.phase = "refused"  # ConnectionLoop.run answers 503 and closes
            else:
                core.serving += 1
            crowded = self._tasks > 0
            self._tasks += 1
        if crowded and self.options.backend == "trio":
            self._start_in_group(sock, state)
        else:
            self._loop.start_task(self._connection_task, sock, state)

    def _start_in_group(self, sock: socket.socket, state: ConnectionState) -> None:
        """On the loop thread (trio): run a connection accepted while another is open in the
        server's connection group, which one cancel scope ends (see ``_trio_group.py``)."""
        assert self._loop is not None
        group = self._group
        if group is None or not group.accepts():
            group = self._group = TrioGroup(self._counted)
            with self._core.lock:
                self._tasks += 1  # the host: stop() returns once it too has ended
            self._loop.start_task(self._host_group, group)
        group.add(sock, state)

    async def _host_group(self, group: TrioGroup) -> None:
        try:
            await group.host()
        finally:
            self._task_done()

    def _task_done(self, connection_id: int | None = None) -> None:
        """A connection's task (``connection_id``) or a trio group's host has ended: a stop under
        way completes with the last of them."""
        with self._core.lock:
            if connection_id is not None:
                self._cancels.pop(connection_id, None)
            self._tasks -= 1
            last = self._core.stopping and self._tasks == 0
        if last:
            self._finish_stop()

    def _on_stopped(self, notify: Callable[[], None]) -> Callable[[], None]:
        with self._core.lock:
            self._stop_waiters.append(notify)
        return lambda: None

    async def _connection_task(self, sock: socket.socket, state: ConnectionState) -> None:
        """A connection's task: serve it, cancellable by ``stop()`` (see ``_end_connections``)."""
        if self.options.backend == "trio":
            import trio

            with trio.CancelScope() as scope:
                # The lone connection waits through trio itself (see ``_wire.py``).
                await self._counted(sock, state, scope.cancel, own_waits=True)
        else:
            import asyncio

            task = asyncio.current_task()
            assert task is not None
            await self._counted(sock, state, task.cancel)

    async def _counted(
        self,
        sock: socket.socket,
        state: ConnectionState,
        cancel: Callable[[], object],
        own_waits: bool = False,
    ) -> None:
        core = self._core
        try:
            with core.lock:
                if not core.stopping:
                    self._cancels[state.id] = cancel
            await self._serve_connection(sock, state, own_waits)
        except Exception:  # noqa: BLE001 - a bug in the server itself: reported at the fixture's teardown
            with core.lock:
                core.errors.append(traceback.format_exc())
        finally:
            self._task_done(state.id)

    async def _serve_connection(self, sock: socket.socket, state: ConnectionState, own_waits: bool) -> None:
        core = self._core
        wire = (
            Wire(sock, own_waits) if self.tls_context is None else TlsWire(sock, self.tls_context, own_waits)
        )
        counted = state.phase != "refused"
        with core.lock:
            state.wire = wire
            core.live[state.id] = state
            # A connection accepted just before stop() began ends here, unserved.
            serve = not core.stopping
        try:
            if serve:
                await ConnectionLoop(core, state, wire).run()
        except (ConnectionResetError, BrokenPipeError):
            with core.lock:
                if state.ended_by is None:
                    state.ended_by = EndedBy.CLIENT_RST
        except OSError as exc:
            with core.lock:
                if state.ended_by is None:
                    state.ended_by = EndedBy.CLIENT_RST
                    state.unread += f"[{exc!r}]".encode()
        except Exception:  # noqa: BLE001 - a server bug: recorded, fails the test at teardown
            if not wire.closed:
                core.errors.append(traceback.format_exc())
        finally:
            with core.lock:
                if state.ended_by is None:
                    state.ended_by = EndedBy.SERVER_SHUTDOWN if core.stopping else EndedBy.SERVER_CLOSE
                if state.closed_at is None:  # a drop records its own moment
                    state.closed_at = now()
                state.phase = "closed"
                wire.close()
                # The ledger keeps the record for the server's life, not the socket's objects (a
                # TLS wire holds its SSLObject and buffers: ~40 KiB per connection, measured).
                state.wire = None
                for request in state.requests:
                    # Cut off mid-answer (the client reset during a drip, the server stopped
                    # during a stall): no record is left "pending" once its connection is gone.
                    if request.outcome.kind == "pending":
                        core.ledger.settle(
                            state,
                            request,
                            Outcome("unanswered", detail=f"the connection ended ({state.ended_by}) first"),
                        )
                if len(state.unread) > UNREAD_LIMIT:
                    state.unread = state.unread[:UNREAD_LIMIT]
                core.live.pop(state.id, None)
                if counted:
                    core.serving -= 1
                for notify in core.end_watchers:
                    notify()

    def stop(self) -> None:
        """Stop serving, close every connection (ending stalls), and wait until all is closed.

        Idempotent. Connections still open end with ``ended_by == "server_shutdown"``.
        """
        if self._state != "running":
            return
        self._state = "stopped"
        assert self._loop is not None
        if self._begin_stop():
            if not self._clients_ending():
                self._loop.call_soon(self._end_connections)
            if not self._stopped.wait(COMMAND_TIMEOUT):
                raise ServerError(f"{self!r} did not stop within {COMMAND_TIMEOUT} s")
        if self._app is not None:
            self._app.close()  # joins a WSGI app's worker threads

    async def stop_async(self) -> None:
        """The awaitable form of :meth:`stop`."""
        if self._state != "running":
            return
        self._state = "stopped"
        assert self._loop is not None
        if self._begin_stop():
            if not self._clients_ending():
                await self._loop.call_async(self._end_connections, timeout=COMMAND_TIMEOUT)
            from ._waiting import wait_for

            if not await wait_for(self._on_stopped, self._stopped.is_set, COMMAND_TIMEOUT):
                raise ServerError(f"{self!r} did not stop within {COMMAND_TIMEOUT} s")
        if self._app is not None:
            self._app.close()

    def _begin_stop(self) -> bool:
        """In the caller's thread: stop accepting and close the listener. True while connections
        are still open (the loop thread must end them); False when the server has stopped."""
        core = self._core
        assert self._loop is not None
        with core.lock:
            # From here on the loop accepts nothing (it checks under the lock before each accept),
            # so the listener can close outside it.
            core.stopping = True
            busy = self._tasks > 0
        listener = self._listener
        if listener is not None:
            self._loop.acceptor.remove(listener)
            listener.close()
        if busy:
            return True
        self._finish_stop()
        return False

    def _clients_ending(self) -> bool:
        """In the caller's thread: whether every open connection is parked at its request boundary
        with its client's FIN or reset already in the socket (the usual state right after a test
        closed its client). The loop then ends each one itself as the EOF or reset wakes its wait,
        and records it, so the stop need not interrupt the loop to cancel them.

        Asked of the kernel's TCP state, never by reading: a read (or peek) would consume a reset
        that the loop thread must see, and may race it.
        """
        core = self._core
        with core.lock:
            # With a fault armed, the next request boundary may fire one (a before_request stall
            # would then hold the connection open): the loop must be told to end it. A task that
            # is no live connection (one starting, or a trio group's host) sends stop() that way too.
            if core.plan.handles or len(core.live) != self._tasks:
                return False
            for state in core.live.values():
                wire = state.wire
                if type(wire) is not Wire or wire not in core.waiting or not wire.peer_end_in_tcp_state():
                    return False
        return True

    def _end_connections(self) -> None:
        """On the loop thread: cancel every connection's task (each records ``server_shutdown``).

        A connection waiting for the client's next bytes whose client has already closed or reset
        it (the EOF waits unread: the stop came first) is recorded as the client's end.
        """
        with self._core.lock:
            cancels = list(self._cancels.values())
            for state in self._core.live.values():
                wire = state.wire
                if state.ended_by is None and state.phase in ("new", "idle") and isinstance(wire, Wire):
                    ended = wire.peer_ended()
                    if ended is not None:
                        state.ended_by = EndedBy.CLIENT_FIN if ended == "fin" else EndedBy.CLIENT_RST
        for cancel in cancels:
            cancel()

    def _finish_stop(self) -> None:
        with self._core.lock:
            waiters = list(self._stop_waiters)
        self._stopped.set()
        for notify in waiters:
            notify()

    # -- responses ------------------------------------------------------------------------

    def respond(
        self,
        path: str,
        response: Response | None = None,
        *,
        status: int = 200,
        body: BodyLike = b"ok\n",
        headers: HeadersLike = (),
        chunked: bool = False,
        close: bool = False,
        method: str | None = None,
    ) -> Response:
        """Answer requests for ``path`` (optionally only ``method``) with a canned response.

        Either pass a :class:`Response` or its fields. Returns the response set.
        """
        if response is None:
            response = Response(status, body, headers=headers, chunked=chunked, close=close)
        with self._core.lock:
            self._core.routes.set(path, response, method)
        return response

    def set_handler(self, handler: Handler | None) -> None:
        """Answer requests whose path has no canned response with ``handler(request)``."""
        with self._core.lock:
            self._core.routes.handler = handler

    # -- faults armed ahead ---------------------------------------------------------------

    def inject(self, fault: Fault | str, **when: Any) -> FaultHandle:
        """Arm a fault; it fires when a connection reaches its moment. Returns its handle.

        ``server.inject("reset", at="after_response", request=1)`` is
        ``server.inject(Fault("reset", at="after_response", request=1))``; see
        :class:`~pytest_connfault.Fault` for every argument.
        """
        if isinstance(fault, str):
            fault = Fault(fault, **when)
        elif when:
            raise ConnfaultError("pass either a Fault or a fault name with its arguments, not both")
        if fault.at == "handshake" and self.tls_context is None:
            raise FaultSpecError(f"{fault!r} needs a TLS server: a plain connection has no handshake")
        with self._core.lock:
            handle = self._core.plan.arm(fault)
        if self._loop is not None and self._state == "running":
            # Connections already waiting for their next request must see the new fault.
            self._loop.call_soon(self._core.wake)
        return handle

    @property
    def faults(self) -> list[FaultHandle]:
        """The handles of every armed fault (the marker's included), in arming order."""
        with self._core.lock:
            return list(self._core.plan.handles)

    # -- the ledger -----------------------------------------------------------------------

    @property
    def connections(self) -> list[Connection]:
        """Every connection so far, in accept order (frozen records)."""
        with self._core.lock:
            return [state.snapshot() for state in self._core.ledger.connections]

    @property
    def requests(self) -> list[Request]:
        """Every request so far, in arrival order (frozen records)."""
        with self._core.lock:
            return list(self._core.ledger.requests)

    @property
    def handler_errors(self) -> list[str]:
        """Tracebacks of the handler's exceptions (each answered with a 500)."""
        with self._core.lock:
            return list(self._core.handler_errors)

    @property
    def errors(self) -> list[str]:
        """Failures of the server itself; the fixtures fail the test when any occurred."""
        with self._core.lock:
            return list(self._core.errors)

    def connection(self, id: int) -> Connection:
        """The record of connection ``id`` (1-based)."""
        with self._core.lock:
            states = self._core.ledger.connections
            if not 1 <= id <= len(states):
                raise ConnfaultError(f"no connection {id}: the server has seen {len(states)}")
            return states[id - 1].snapshot()

    def connection_for_port(self, client_port: int) -> Connection | None:
        """The latest connection whose client used ``client_port`` (the pool's local port)."""
        with self._core.lock:
            for state in reversed(self._core.ledger.connections):
                if state.client_port == client_port:
                    return state.snapshot()
        return None

    def timeline(self) -> list[str]:
        """The ledger as one line per event, times in ms from the server's start."""
        from ._timeline import timeline

        return timeline(self.connections, self.started_at)
