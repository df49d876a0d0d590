"""On trio, the connections a server accepts while another of its connections is open share a nursery.

``stop()`` cancels each connection's task; on trio that takes a cancel scope, and a task's own
``trio.CancelScope`` costs some 8-15 µs to enter and leave. That is nothing for a test's usual one
connection, but over a millisecond when ``reset_idle()`` ends a hundred idle connections at once
(their tasks all end in the same loop turn). So a server's first connection keeps a scope of its
own (cheapest for one), and connections accepted while another is open start in one nursery of
the server's, hosted by one task: the nursery's cancel scope cancels them all.
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    import trio

    from ._ledger import ConnectionState

#: What runs a connection: ``run(sock, state, cancel)``, with ``cancel`` what cancels its task.
Run = Callable[[socket.socket, "ConnectionState", Callable[[], object]], Awaitable[None]]


class TrioGroup:
    """A nursery for a server's concurrent connections; used on the loop thread only.

    Start ``host`` as a task of the loop, then ``add`` connections: the ones added before the host
    runs wait for it. Once its last connection ends the group takes no more (``accepts`` is False;
    its nursery is closing) and the server makes a new one for the next crowd.
    """

    def __init__(self, run: Run) -> None:
        self._run = run
        self._nursery: trio.Nursery | None = None
        self._pending: list[tuple[socket.socket, ConnectionState]] = []
        self._members = 0
        self._open = True

    def accepts(self) -> bool:
        """Whether ``add`` may still be called (False once the last connection has ended)."""
        return self._open

    def add(self, sock: socket.socket, state: ConnectionState) -> None:
        """Run a connection in the group's nursery (as soon as the host has opened it)."""
        self._members += 1
        if self._nursery is None:
            self._pending.append((sock, state))
        else:
            self._nursery.start_soon(self._member, sock, state)

    async def host(self) -> None:
        """The group's task: opens the nursery and waits for every connection in it to end."""
        import trio

        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            pending, self._pending = self._pending, []
            for sock, state in pending:
                nursery.start_soon(self._member, sock, state)

    async def _member(self, sock: socket.socket, state: ConnectionState) -> None:
        assert self._nursery is not None  # members start in it
        try:
            await self._run(sock, state, self._nursery.cancel_scope.cancel)
        finally:
            self._members -= 1
            if self._members == 0:
                # The nursery closes once this task is gone: later connections need a new group.
                self._open = False
