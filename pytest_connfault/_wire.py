"""The only code that touches a connection's socket: reading, writing, and the drops.

Sockets are non-blocking; every action below is one system call whose effect is on the wire when it
returns: that is what lets the fire-now commands return "only once the kernel has acted".

Waiting for a socket goes through the loop's private epoll (``_poller.py``) rather than anyio's
generic helpers: it is the hottest path of the server (twice per request), and owning the waiter
lets the commands close a socket and wake its connection loop in one step, and lets
``server.inject`` wake a loop waiting between requests. Without epoll, the backends' own waits.

On trio, a server's lone connection waits through trio itself (``own_waits``): there a wake
through the poller costs a second scheduler batch (trio wakes the poller's task, which wakes the
connection's), some 40-90 µs per connection, while the poller pays off for crowds (a command's
hundred wake-ups are plain values instead of a hundred exceptions) and for a connection that
serves request after request (served on the spot: ``wait_through_poller``).
"""

from __future__ import annotations

import asyncio
import select
import socket
import struct
from typing import Any, Callable

from ._poller import CLOSED as _CLOSED
from ._poller import READY as _READY
from ._poller import WOKEN as _WOKEN
from ._poller import Poller, TrioPoller, poller_for, trio_poller

RECEIVE_SIZE = 65536

#: ``getsockopt`` of the TCP state (Linux; None elsewhere) and the states (``tcp_states.h``) of a
#: socket whose peer has ended it: CLOSE (a reset arrived) and CLOSE_WAIT (a FIN arrived).
_TCP_INFO: int | None = getattr(socket, "TCP_INFO", None)
_PEER_ENDED_STATES = (7, 8)
_LINGER_ZERO = struct.pack("ii", 1, 0)


class WireClosed(Exception):
    """The server closed this socket (a command or shutdown) while the connection loop waited on it."""


class WireWoken(Exception):
    """The wait was interrupted on purpose (``Wire.wake``): look at the fault plan again."""


def _resolve(future: asyncio.Future[str], outcome: str = _READY) -> None:
    if not future.done():
        future.set_result(outcome)


class Wire:
    """A connection's socket, as the connection loop and the commands use it."""

    __slots__ = ("_loop", "_poller", "_reader", "_woken", "_writer", "closed", "sock", "write_shut")

    def __init__(self, sock: socket.socket, own_waits: bool = False) -> None:
        """``own_waits``: on trio, wait through trio itself rather than the poller (see the module's
        docstring; ``_server.py`` asks it for a server's lone connection)."""
        self.sock = sock
        self.closed = False
        self.write_shut = False
        try:
            self._loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:  # made on a trio loop
            self._loop = None
        self._poller: Poller | TrioPoller | None
        if self._loop is not None:
            self._poller = poller_for(self._loop)
        else:
            self._poller = None if own_waits else trio_poller()
        #: Without a poller, whether a read or write wait is pending: its asyncio future, or True.
        self._reader: Any = None
        self._writer: Any = None
        #: trio without a poller: ``wake`` interrupted the pending wait.
        self._woken = False

    async def receive(self, wait_first: bool = False) -> bytes:
        """The next bytes from the client; ``b""`` at its EOF.

        ``wait_first`` skips the first read attempt, for when nothing can have arrived yet (right
        after a response: the next request comes later), saving a system call per request.

        Raises:
            ConnectionResetError: the client reset the connection.
            WireClosed: the server closed the socket meanwhile.
        """
        if wait_first:
            await self.wait_readable()
        while True:
            if self.closed:
                raise WireClosed
            try:
                return self.sock.recv(RECEIVE_SIZE)
            except BlockingIOError:
                await self.wait_readable()

    def receive_now(self) -> bytes | None:
        """The bytes that have arrived (``b""`` at the client's EOF), or None if none have: no wait.

        Raises:
            ConnectionResetError: the client reset the connection.
            WireClosed: the server closed the socket meanwhile.
        """
        if self.closed:
            raise WireClosed
        try:
            return self.sock.recv(RECEIVE_SIZE)
        except BlockingIOError:
            return None

    async def wait_readable(self, inline: Callable[[], bool] | None = None) -> None:
        """Wait until bytes (or EOF, or an error) can be read.

        ``inline``: with the poller, called on the loop thread whenever the socket is readable,
        before this wait ends; when it returns True (it read and handled the bytes itself), the
        wait goes on. Without the poller it is never called.

        Raises:
            WireClosed: the server closed the socket meanwhile.
            WireWoken: :meth:`wake` interrupted the wait.
        """
        if self.closed:
            raise WireClosed
        await self._wait(True, inline)

    async def wait_writable(self) -> None:
        """Wait until the kernel takes more bytes (or the socket fails)."""
        if self.closed:
            raise WireClosed
        await self._wait(False)

    async def _wait(self, read: bool, inline: Callable[[], bool] | None = None) -> None:
        poller = self._poller
        if poller is not None:
            outcome = await poller.wait(self.sock.fileno(), read, inline)
        elif self._loop is not None:
            outcome = await self._wait_asyncio(read)
        else:
            outcome = await self._wait_trio(read)
        if outcome == _CLOSED:
            raise WireClosed
        if outcome == _WOKEN:
            raise WireWoken

    async def _wait_asyncio(self, read: bool) -> str:
        """Without epoll: the loop's ``add_reader``/``add_writer``."""
        loop = self._loop
        assert loop is not None
        fd = self.sock.fileno()
        future: asyncio.Future[str] = loop.create_future()
        if read:
            self._reader = future
            loop.add_reader(fd, _resolve, future)
        else:
            self._writer = future
            loop.add_writer(fd, _resolve, future)
        try:
            return await future
        finally:
            if read:
                self._reader = None
            else:
                self._writer = None
            if not self.closed:
                if read:
                    loop.remove_reader(fd)
                else:
                    loop.remove_writer(fd)

    async def _wait_trio(self, read: bool) -> str:
        """trio's own waits. ``wake`` and ``close`` end one with ``notify_closing``, which leaves
        the socket usable: no cancel scope per wait (entering and leaving one costs more than the
        wait itself)."""
        import trio

        if read:
            self._reader = True
        else:
            self._writer = True
        try:
            if read:
                await trio.lowlevel.wait_readable(self.sock)
            else:
                await trio.lowlevel.wait_writable(self.sock)
        except trio.ClosedResourceError:
            if self.closed:
                return _CLOSED
            if self._woken:
                return _WOKEN
            raise
        finally:
            self._woken = False
            if read:
                self._reader = None
            else:
                self._writer = None
        return _READY

    def wait_through_poller(self) -> None:
        """On trio, move a lone connection's waits onto the poller from now on (loop thread, between
        waits; a no-op otherwise).

        Asked once a connection has served two requests: one that serves more is worth the poller,
        which serves a plain keep-alive request on the spot without waking the connection's task.
        One that serves a request or two and ends (most tests) keeps trio's own waits: its end
        through the poller would cost a second scheduler batch (see the module's docstring).
        """
        if self._poller is None and self._loop is None and self._reader is None and self._writer is None:
            self._poller = trio_poller()

    def wake(self) -> None:
        """Interrupt a pending read wait with :class:`WireWoken` (on the loop thread)."""
        if self._poller is not None:
            self._poller.interrupt(self.sock.fileno(), True, _WOKEN)
            return
        waiter = self._reader
        if waiter is None:
            return
        if self._loop is not None:
            _resolve(waiter, _WOKEN)
        else:
            import trio

            self._woken = True
            trio.lowlevel.notify_closing(self.sock)

    def readable_now(self) -> bool:
        """Whether a read would return at once: bytes, the client's EOF or its reset are waiting.

        Asked with a zero-timeout poll, which consumes nothing: a peek would consume a reset, and
        the read after it would see a plain EOF, as if the client had closed.
        """
        poll = select.poll()
        try:
            poll.register(self.sock, select.POLLIN)
        except (OSError, ValueError):  # closed meanwhile
            return False
        return bool(poll.poll(0))

    def peer_ended(self) -> str | None:
        """Whether the client already ended the connection unseen: "fin", "rst", or None.

        By a peek: the EOF or reset waits in the socket (a stop may come before the connection
        loop has seen it). A peek consumes a waiting reset, so only the loop thread may ask, and
        it must record the answer; from another thread, ask :meth:`peer_end_in_tcp_state`.
        """
        try:
            return None if self.sock.recv(1, socket.MSG_PEEK) else "fin"
        except ConnectionResetError:
            return "rst"
        except OSError:  # BlockingIOError included: nothing has arrived
            return None

    def peer_end_in_tcp_state(self) -> bool:
        """Whether the client's FIN or reset has reached the socket, asked of the kernel's TCP
        state (``TCP_INFO``, Linux) without reading: safe from any thread, consumes nothing.
        False where that cannot be told.
        """
        if _TCP_INFO is None:
            return False
        try:
            info = self.sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, 1)
        except (OSError, ValueError):  # not TCP, closed meanwhile, or no TCP_INFO here
            return False
        return bool(info) and info[0] in _PEER_ENDED_STATES

    def peek(self) -> bytes:
        """The bytes waiting to be read, left in place (evidence for the ledger)."""
        try:
            return self.sock.recv(RECEIVE_SIZE, socket.MSG_PEEK)
        except (BlockingIOError, OSError):
            return b""

    async def send_all(self, data: bytes) -> None:
        """Hand all of ``data`` to the kernel.

        Raises:
            ConnectionError: the client reset or closed the connection.
            WireClosed: the server closed the socket meanwhile.
        """
        view = memoryview(data)
        while view:
            if self.closed:
                raise WireClosed
            try:
                sent = self.sock.send(view)
            except BlockingIOError:
                await self.wait_writable()
                continue
            view = view[sent:]

    def try_send(self, data: bytes) -> int:
        """Send what the kernel takes now, without waiting; the count sent."""
        try:
            return self.sock.send(data)
        except (BlockingIOError, OSError):
            return 0

    def drain(self) -> bytes:
        """Read and return what already arrived, without waiting."""
        chunks = []
        while True:
            try:
                chunk = self.sock.recv(RECEIVE_SIZE)
            except (BlockingIOError, OSError):
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)

    # The drops. Each returns once the kernel has put the RST or FIN on the wire.

    def reset(self) -> None:
        """Abortive close: SO_LINGER on with timeout 0, then close, so the kernel sends RST."""
        if self.closed:
            return
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_ZERO)
        except OSError:
            pass
        self.close()

    def half_close(self, close_notify: bool = True) -> None:
        """Send FIN and keep reading: ``shutdown(SHUT_WR)``. (``close_notify``: TLS only.)"""
        if self.closed or self.write_shut:
            return
        self.write_shut = True
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def fin_close(self, close_notify: bool = True) -> bytes:
        """Graceful close: FIN first, then read what already arrived, then close.

        ``close_notify`` matters over TLS only (see ``TlsWire``): whether the alert precedes the FIN.

        Returns the bytes that were waiting unread. Draining first matters: ``close()`` with unread
        bytes in the receive queue makes the kernel send RST instead of FIN. Bytes that arrive
        after this (a client writing onto the dead connection) are answered with RST by the
        kernel, as for any closed socket.
        """
        if self.closed:
            return b""
        self.half_close()
        unread = self.drain()
        self.close()
        return unread

    def close(self) -> None:
        """Close the socket, first waking the connection loop if it waits on it (loop thread only)."""
        if self.closed:
            return
        self.closed = True
        loop = self._loop
        if self._poller is not None:
            self._poller.forget(self.sock.fileno(), _CLOSED)
        elif loop is not None:
            fd = self.sock.fileno()
            if self._reader is not None:
                loop.remove_reader(fd)
                _resolve(self._reader, _CLOSED)
            if self._writer is not None:
                loop.remove_writer(fd)
                _resolve(self._writer, _CLOSED)
        elif self._reader is not None or self._writer is not None:
            import trio

            trio.lowlevel.notify_closing(self.sock)
        self.sock.close()
