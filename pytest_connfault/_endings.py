"""Waiting until the server has seen connections end: the one ledger fact a client cannot signal.

A client's ``close()`` returns as soon as its FIN is handed to the kernel, before the server has read
it; a test that asserts how a connection ended (``ended_by``), or that the client let it go at all,
must wait for the server's side. Each connection's task calls the registered watchers once its
record is final (socket closed, requests settled), under the server's lock; the waits re-check the
ledger after every call, so none can miss an end or return a record still changing.
``FaultServer`` (``_server.py``) inherits them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Callable, Union

from ._errors import ConnectionNotEnded, ConnfaultError
from ._ledger import Connection, ConnectionState

if TYPE_CHECKING:
    from ._loop import LoopThread
    from ._server import ServerCore

ConnectionRef = Union[int, Connection]


def _has_ended(core: ServerCore, state: ConnectionState) -> bool:
    """Closed, and out of ``live``: its task's last word is in (socket closed, requests settled)."""
    return state.closed_at is not None and state.id not in core.live


class ConnectionEndings:
    """``wait_connections_ended`` and its awaitable form."""

    _core: ServerCore
    _loop: LoopThread | None

    if TYPE_CHECKING:

        def timeline(self) -> list[str]: ...

        def connection(self, id: int) -> Connection: ...

    def wait_connections_ended(self, *connections: ConnectionRef, timeout: float = 5.0) -> list[Connection]:
        """Block until the server has seen each connection end; return their final records.

        ``connections`` are ids or records (``server.connection(1)``, ``connection_for_port(port)``);
        none given means every connection in the ledger at the call. A connection has ended once
        the server has closed its socket: it read the client's FIN or reset, a fault or command
        dropped it, or the server stopped. A half-closed connection ends when its client closes.

        Raises:
            ConnectionNotEnded: one had not ended within ``timeout`` seconds; the message names
                it and shows the ledger's timeline.
            ConnfaultError: the ledger has no connection with that id, or the caller is the server's
                own loop thread (a handler), which the connections need to end.
        """
        if self._loop is not None and self._loop.in_loop_thread():
            raise ConnfaultError(
                "wait_connections_ended() called on the server's own loop thread (from a handler?) would "
                "block the connections it waits for; a handler can await wait_connections_ended_async()"
            )
        ids = self._connection_ids(connections)
        ended = self._all_ended(ids)
        if not ended():
            deadline = time.monotonic() + timeout
            woken = threading.Event()
            unsubscribe = self._on_connection_end(woken.set)
            try:
                while not ended():
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise self._not_ended(ids, timeout)
                    woken.wait(remaining)
                    woken.clear()  # a later end sets it again; the check above sees any before
            finally:
                unsubscribe()
        return self._records(ids)

    async def wait_connections_ended_async(
        self, *connections: ConnectionRef, timeout: float = 5.0
    ) -> list[Connection]:
        """The awaitable form of :meth:`wait_connections_ended`, for asyncio and trio tests; it does
        not block the test's loop (a client on it goes on processing the drop)."""
        from ._waiting import wait_for

        ids = self._connection_ids(connections)
        ended = self._all_ended(ids)
        deadline = time.monotonic() + timeout
        while not ended():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise self._not_ended(ids, timeout)
            await wait_for(self._on_connection_end, ended, remaining)
        return self._records(ids)

    def _connection_ids(self, connections: Sequence[ConnectionRef]) -> list[int]:
        if not connections:
            with self._core.lock:
                return list(range(1, len(self._core.ledger.connections) + 1))
        ids = []
        for ref in connections:
            if isinstance(ref, Connection):
                ref = ref.id
            elif not isinstance(ref, int) or isinstance(ref, bool):
                raise TypeError(f"connections are ids or Connection records, not {ref!r}")
            ids.append(self.connection(ref).id)  # a ConnfaultError naming it if the ledger has none
        return ids

    def _all_ended(self, ids: list[int]) -> Callable[[], bool]:
        core = self._core

        def ended() -> bool:
            with core.lock:
                states = core.ledger.connections
                return all(_has_ended(core, states[i - 1]) for i in ids)

        return ended

    def _records(self, ids: list[int]) -> list[Connection]:
        with self._core.lock:
            return [self._core.ledger.connections[i - 1].snapshot() for i in ids]

    def _on_connection_end(self, notify: Callable[[], None]) -> Callable[[], None]:
        """Have ``notify()`` called (on the loop thread) whenever a connection has ended."""
        core = self._core
        with core.lock:
            core.end_watchers.append(notify)

        def unsubscribe() -> None:
            with core.lock:
                core.end_watchers.remove(notify)

        return unsubscribe

    def _not_ended(self, ids: list[int], timeout: float) -> ConnectionNotEnded:
        core = self._core
        with core.lock:
            states = [core.ledger.connections[i - 1] for i in ids]
            still_open = [state.snapshot() for state in states if not _has_ended(core, state)]
        lines = "\n".join(f"  {line}" for line in self.timeline())
        return ConnectionNotEnded(
            f"{len(still_open)} of {len(ids)} connection(s) had not ended after {timeout} s: "
            + "; ".join(str(record) for record in still_open)
            + f"\nthe ledger:\n{lines}"
        )
