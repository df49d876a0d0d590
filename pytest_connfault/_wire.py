"""The only code that touches a connection's socket: reading, writing, and the drops.

Sockets are non-blocking and driven with ``anyio.wait_readable``/``wait_writable``, so every action
below is one system call whose effect is on the wire when it returns: that is what lets the
fire-now commands return "only once the kernel has acted".
"""

from __future__ import annotations

import socket
import struct

import anyio

RECEIVE_SIZE = 65536
_LINGER_ZERO = struct.pack("ii", 1, 0)


class WireClosed(Exception):
    """The server closed this socket (a command or shutdown) while the connection loop waited on it."""


class Wire:
    """A connection's socket, as the connection loop and the commands use it."""

    __slots__ = ("sock", "closed", "write_shut")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.closed = False
        self.write_shut = False

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

    async def wait_readable(self) -> None:
        """Wait until bytes (or EOF, or an error) can be read."""
        try:
            await anyio.wait_readable(self.sock)
        except anyio.ClosedResourceError:
            raise WireClosed from None

    def has_bytes(self) -> bool:
        """Whether bytes are waiting, without reading them."""
        try:
            return bool(self.sock.recv(1, socket.MSG_PEEK))
        except (BlockingIOError, OSError):
            return False

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
                try:
                    await anyio.wait_writable(self.sock)
                except anyio.ClosedResourceError:
                    raise WireClosed from None
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
        """Close the socket, waking the connection loop if it waits on it."""
        if self.closed:
            return
        self.closed = True
        try:
            anyio.notify_closing(self.sock)
        except Exception:  # noqa: BLE001 - outside the loop at interpreter exit; nothing waits then
            pass
        self.sock.close()
