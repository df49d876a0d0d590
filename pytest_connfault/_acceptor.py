"""Listening sockets, watched by each loop thread through one private selector.

A server's ``start()`` registers its listener here and ``stop()`` unregisters it, both from the
caller's thread: epoll and kqueue take registrations while another thread waits on them, so
starting and stopping a server costs the loop thread nothing (no wake-up, no task). The loop watches
the selector's own file descriptor and, when a listener has connections waiting, calls the server's
accept callback on the loop thread.
"""

from __future__ import annotations

import selectors
import socket
from typing import Any, Callable

from ._errors import ConnfaultError


class Acceptor:
    """The listeners of one loop thread, and the callback to run when each has connections."""

    def __init__(self) -> None:
        self._selector = selectors.DefaultSelector()
        if not callable(getattr(self._selector, "fileno", None)):
            self._selector.close()
            raise ConnfaultError(
                "pytest-connfault needs epoll or kqueue (Linux, macOS, the BSDs) to watch its listeners"
            )

    def fileno(self) -> int:
        """The selector's descriptor: readable when some listener has a connection to accept."""
        return self._selector.fileno()

    def add(self, listener: socket.socket, on_ready: Callable[[], None]) -> None:
        """Watch ``listener``; ``on_ready()`` runs on the loop thread while it has connections waiting.

        Thread-safe: called from the thread that starts the server.
        """
        self._selector.register(listener, selectors.EVENT_READ, on_ready)

    def remove(self, listener: socket.socket) -> None:
        """Stop watching ``listener`` (before it is closed). Thread-safe; no-op if not watched."""
        try:
            self._selector.unregister(listener)
        except (KeyError, ValueError, OSError):
            pass

    def dispatch(self) -> None:
        """On the loop thread: run the callback of every listener with connections waiting."""
        for key, _events in self._selector.select(0):
            on_ready: Callable[[], None] = key.data
            on_ready()

    async def watch_trio(self) -> None:
        """The trio loop's watcher task (asyncio watches with ``add_reader`` instead)."""
        import trio

        fd = self.fileno()
        while True:
            await trio.lowlevel.wait_readable(fd)
            self.dispatch()

    def watch_asyncio(self, loop: Any) -> None:
        """Have the asyncio ``loop`` dispatch whenever a listener is ready."""
        loop.add_reader(self.fileno(), self.dispatch)

    def close(self, loop: Any = None) -> None:
        """Stop watching (the loop is ending) and close the selector."""
        if loop is not None:
            try:
                loop.remove_reader(self.fileno())
            except (RuntimeError, ValueError):  # the loop is already closed
                pass
        self._selector.close()
