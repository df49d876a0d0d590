"""Socket readiness for the asyncio backend through one private epoll per event loop.

asyncio's ``add_reader``/``remove_reader`` run a good deal of Python per call (selector keys,
handles), and a connection waits twice per request; the fire-now commands unregister one socket
per dropped connection. A private epoll, itself registered once with the loop, turns each of those
into one ``epoll_ctl`` system call. Where ``select.epoll`` does not exist, the loop's own
``add_reader``/``add_writer`` are used instead.
"""

from __future__ import annotations

import asyncio
import select
import weakref
from typing import Callable

Resolve = Callable[["asyncio.Future[str]", str], None]

_IN = getattr(select, "EPOLLIN", 0)
_OUT = getattr(select, "EPOLLOUT", 0)
_ERR = getattr(select, "EPOLLERR", 0) | getattr(select, "EPOLLHUP", 0)
#: Registrations disarm when they fire and stay registered, so a wait costs one ``epoll_ctl``
#: (re-arm) instead of two (register, unregister); ``forget`` unregisters the socket as it closes.
_ONESHOT = getattr(select, "EPOLLONESHOT", 0)


class Poller:
    """Read and write waits on sockets, resolved on the loop thread."""

    def __init__(self, loop: asyncio.AbstractEventLoop, resolve: Resolve) -> None:
        self.loop = loop
        self.resolve = resolve
        self.epoll = select.epoll()
        #: fd -> [read waiter, write waiter]
        self.waiters: dict[int, list[asyncio.Future[str] | None]] = {}
        loop.add_reader(self.epoll.fileno(), self._dispatch)

    def wait(self, fd: int, read: bool, future: asyncio.Future[str]) -> None:
        """Resolve ``future`` with "ready" once ``fd`` is readable (or writable)."""
        entry = self.waiters.get(fd)
        if entry is None:
            entry = self.waiters[fd] = [None, None]
            entry[0 if read else 1] = future
            self.epoll.register(fd, self._mask(entry))
        else:
            entry[0 if read else 1] = future
            try:
                self.epoll.modify(fd, self._mask(entry))
            except FileNotFoundError:  # a stale entry: its socket closed without forget()
                self.epoll.register(fd, self._mask(entry))

    def cancel(self, fd: int, read: bool, future: asyncio.Future[str]) -> None:
        """Forget a wait that ended otherwise (cancelled, woken); no-op if already resolved.

        The registration may stay armed: if it fires, ``_dispatch`` finds no waiter and ignores it.
        """
        entry = self.waiters.get(fd)
        if entry is not None and entry[0 if read else 1] is future:
            entry[0 if read else 1] = None

    def forget(self, fd: int, outcome: str) -> None:
        """Before ``fd`` closes: unregister it and resolve its waiters with ``outcome``."""
        entry = self.waiters.pop(fd, None)
        if entry is None:
            return
        try:
            self.epoll.unregister(fd)
        except OSError:
            pass
        for future in entry:
            if future is not None:
                self.resolve(future, outcome)

    @staticmethod
    def _mask(entry: list[asyncio.Future[str] | None]) -> int:
        return (_IN if entry[0] is not None else 0) | (_OUT if entry[1] is not None else 0) | _ONESHOT

    def _dispatch(self) -> None:
        for fd, events in self.epoll.poll(0):
            entry = self.waiters.get(fd)
            if entry is None:
                continue
            if entry[0] is not None and events & (_IN | _ERR):
                self.resolve(entry[0], "ready")
                entry[0] = None
            if entry[1] is not None and events & (_OUT | _ERR):
                self.resolve(entry[1], "ready")
                entry[1] = None
            if entry[0] is not None or entry[1] is not None:
                self.epoll.modify(fd, self._mask(entry))  # the other direction still waits: re-arm

    def close(self) -> None:
        """Stop watching (the loop is ending)."""
        try:
            self.loop.remove_reader(self.epoll.fileno())
        except (RuntimeError, ValueError):  # the loop is already closed
            pass
        self.epoll.close()


_pollers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Poller] = weakref.WeakKeyDictionary()


def poller_for(loop: asyncio.AbstractEventLoop, resolve: Resolve) -> Poller | None:
    """The loop's poller, made on first use; None where epoll is missing."""
    poller = _pollers.get(loop)
    if poller is None:
        if not hasattr(select, "epoll"):
            return None
        poller = _pollers[loop] = Poller(loop, resolve)
    return poller


def close_poller(loop: asyncio.AbstractEventLoop) -> None:
    """Close the loop's poller, if it has one (call before the loop closes)."""
    poller = _pollers.pop(loop, None)
    if poller is not None:
        poller.close()
