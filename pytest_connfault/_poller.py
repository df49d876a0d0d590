"""Socket readiness through one private epoll per event loop, for both backends.

asyncio's ``add_reader``/``remove_reader`` run a good deal of Python per call (selector keys,
handles), and trio's ``wait_readable`` registers and unregisters per wait and can only be
interrupted by cancellation or ``notify_closing`` (both raise through the task, an exception
object copied per waiter). A connection waits twice per request, a command drops one socket per
connection, and ``server.inject`` wakes a waiting connection: a private epoll, itself watched once
by the loop, turns each wait into one ``epoll_ctl`` system call, and each wake (ready, woken,
closed) into a plain value handed to the waiter. Where ``select.epoll`` does not exist, the
backends' own waits are used instead (see ``_wire.py``).
"""

from __future__ import annotations

import asyncio
import select
import weakref
from typing import TYPE_CHECKING, Any, Callable, Generic, TypeVar

if TYPE_CHECKING:
    import trio

_IN = getattr(select, "EPOLLIN", 0)
_OUT = getattr(select, "EPOLLOUT", 0)
_ERR = getattr(select, "EPOLLERR", 0) | getattr(select, "EPOLLHUP", 0)
#: Registrations disarm when they fire and stay registered, so a wait costs one ``epoll_ctl``
#: (re-arm) instead of two (register, unregister); ``forget`` unregisters the socket as it closes.
_ONESHOT = getattr(select, "EPOLLONESHOT", 0)

#: What a waiter is handed: the socket is ready, the wait was interrupted, the socket was closed.
READY, WOKEN, CLOSED = "ready", "woken", "closed"

W = TypeVar("W")


class _Epoll(Generic[W]):
    """The waits on sockets, whatever a waiter is (a future, a task); resolved on the loop thread."""

    def __init__(self) -> None:
        self.epoll = select.epoll()
        #: fd -> [read waiter, write waiter]
        self.waiters: dict[int, list[W | None]] = {}
        #: fd -> what to call first when the read wait's socket is ready (see ``wait``).
        self.inline: dict[int, Callable[[], bool]] = {}

    def _resolve(self, waiter: W, outcome: str) -> None:
        raise NotImplementedError

    def arm(self, fd: int, read: bool, waiter: W) -> None:
        """Hand ``waiter`` READY once ``fd`` is readable (or writable)."""
        entry = self.waiters.get(fd)
        if entry is None:
            entry = self.waiters[fd] = [None, None]
            entry[0 if read else 1] = waiter
            self.epoll.register(fd, self._mask(entry))
        else:
            entry[0 if read else 1] = waiter
            try:
                self.epoll.modify(fd, self._mask(entry))
            except FileNotFoundError:  # a stale entry: its socket closed without forget()
                self.epoll.register(fd, self._mask(entry))

    def disarm(self, fd: int, read: bool, waiter: W) -> None:
        """Forget a wait that ended otherwise (cancelled); no-op if it was already handed its outcome.

        The registration may stay armed: if it fires, ``dispatch`` finds no waiter and ignores it.
        """
        entry = self.waiters.get(fd)
        if entry is not None and entry[0 if read else 1] is waiter:
            entry[0 if read else 1] = None

    def interrupt(self, fd: int, read: bool, outcome: str) -> None:
        """Hand the pending wait on ``fd`` (if any) ``outcome`` now."""
        entry = self.waiters.get(fd)
        if entry is None:
            return
        waiter = entry[0 if read else 1]
        if waiter is not None:
            entry[0 if read else 1] = None
            self._resolve(waiter, outcome)

    def forget(self, fd: int, outcome: str) -> None:
        """Before ``fd`` closes: unregister it and hand its waiters ``outcome``."""
        self.inline.pop(fd, None)
        entry = self.waiters.pop(fd, None)
        if entry is None:
            return
        try:
            self.epoll.unregister(fd)
        except (OSError, ValueError):  # ValueError: the loop ended and closed the epoll already
            pass
        for waiter in entry:
            if waiter is not None:
                self._resolve(waiter, outcome)

    @staticmethod
    def _mask(entry: list[Any]) -> int:
        return (_IN if entry[0] is not None else 0) | (_OUT if entry[1] is not None else 0) | _ONESHOT

    def dispatch(self) -> None:
        """Hand READY to the waiters of every socket that is ready (on the loop thread)."""
        for fd, events in self.epoll.poll(0):
            entry = self.waiters.get(fd)
            if entry is None:
                continue
            reader, writer = entry
            if reader is not None and events & (_IN | _ERR):
                inline = self.inline.get(fd)
                if inline is not None and inline() and self.waiters.get(fd) is entry and entry[0] is reader:
                    # Served on the spot: the waiter waits on (a oneshot registration: re-arm).
                    self.epoll.modify(fd, self._mask(entry))
                    continue
                entry[0] = None
                self._resolve(reader, READY)
            if writer is not None and events & (_OUT | _ERR):
                entry[1] = None
                self._resolve(writer, READY)
            if entry[0] is not None or entry[1] is not None:
                self.epoll.modify(fd, self._mask(entry))  # the other direction still waits: re-arm


class Poller(_Epoll["asyncio.Future[str]"]):
    """The asyncio loop's waits: a waiter is a future, resolved with the outcome."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self.loop = loop
        loop.add_reader(self.epoll.fileno(), self.dispatch)

    def _resolve(self, waiter: asyncio.Future[str], outcome: str) -> None:
        if not waiter.done():
            waiter.set_result(outcome)

    async def wait(self, fd: int, read: bool, inline: Callable[[], bool] | None = None) -> str:
        """Wait until ``fd`` is ready; READY, or WOKEN / CLOSED when interrupted.

        ``inline`` (read waits only): called on the loop thread each time ``fd`` is readable, before
        the waiter is; True means it consumed the readiness itself and the wait goes on.
        """
        future: asyncio.Future[str] = self.loop.create_future()
        self.arm(fd, read, future)
        if inline is not None:
            self.inline[fd] = inline
        try:
            return await future
        finally:
            if inline is not None:
                self.inline.pop(fd, None)
            if future.cancelled():  # the task was cancelled (the server stops)
                self.disarm(fd, read, future)

    def close(self) -> None:
        """Stop watching (the loop is ending)."""
        try:
            self.loop.remove_reader(self.epoll.fileno())
        except (RuntimeError, ValueError):  # the loop is already closed
            pass
        self.epoll.close()


class TrioPoller(_Epoll["trio.lowlevel.Task"]):
    """The trio loop's waits: a waiter is a parked task, rescheduled with the outcome.

    ``watch`` must run as a task of the loop for as long as connections wait.
    """

    def __init__(self) -> None:
        import outcome
        import trio

        super().__init__()
        # Looked up once: these run once per wait and once per wake.
        self._reschedule = trio.lowlevel.reschedule
        self._value = outcome.Value
        self._current_task = trio.lowlevel.current_task
        self._park = trio.lowlevel.wait_task_rescheduled
        self._succeeded = trio.lowlevel.Abort.SUCCEEDED

    def _resolve(self, waiter: trio.lowlevel.Task, outcome: str) -> None:
        self._reschedule(waiter, self._value(outcome))

    async def wait(self, fd: int, read: bool, inline: Callable[[], bool] | None = None) -> str:
        """Wait until ``fd`` is ready; READY, or WOKEN / CLOSED when interrupted (``inline``: as
        for :meth:`Poller.wait`)."""
        task = self._current_task()
        self.arm(fd, read, task)
        if inline is not None:
            self.inline[fd] = inline

        def abort(_raise_cancel: Any) -> trio.lowlevel.Abort:
            self.disarm(fd, read, task)  # cancelled (the server stops)
            return self._succeeded

        try:
            result: str = await self._park(abort)
        finally:
            if inline is not None:
                self.inline.pop(fd, None)
        return result

    async def watch(self, *, task_status: Any) -> None:
        """The loop's task that dispatches readiness: start it with ``nursery.start``.

        From its start until it is cancelled (the loop ends), new wires of this loop wait through
        it; it closes the epoll as it ends.
        """
        import trio

        token = trio.lowlevel.current_trio_token()
        _trio_pollers[token] = self
        task_status.started()
        try:
            while True:
                await trio.lowlevel.wait_readable(self.epoll.fileno())
                self.dispatch()
        finally:
            _trio_pollers.pop(token, None)
            self.epoll.close()


_pollers: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Poller] = weakref.WeakKeyDictionary()
_trio_pollers: dict[Any, TrioPoller] = {}


def poller_for(loop: asyncio.AbstractEventLoop) -> Poller | None:
    """The asyncio loop's poller, made on first use; None where epoll is missing."""
    poller = _pollers.get(loop)
    if poller is None:
        if not hasattr(select, "epoll"):
            return None
        poller = _pollers[loop] = Poller(loop)
    return poller


def close_poller(loop: asyncio.AbstractEventLoop) -> None:
    """Close the asyncio loop's poller, if it has one (call before the loop closes)."""
    poller = _pollers.pop(loop, None)
    if poller is not None:
        poller.close()


def new_trio_poller() -> TrioPoller | None:
    """A poller for the trio loop, to run with ``watch``; None where epoll is missing."""
    return TrioPoller() if hasattr(select, "epoll") else None


def trio_poller() -> TrioPoller | None:
    """The running trio loop's poller (its ``watch`` task is running), if it has one."""
    import trio

    return _trio_pollers.get(trio.lowlevel.current_trio_token())
