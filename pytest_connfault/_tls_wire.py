"""TLS on the same connection loop: a :class:`Wire` that encrypts, sans-IO.

An ``ssl.SSLObject`` between two ``ssl.MemoryBIO`` buffers does the TLS; this module moves the
bytes between those buffers and the same non-blocking socket the plain wire uses. So the server
still decides every byte and every system call, and each drop keeps its meaning over TLS:

- ``fin_close(close_notify=True)``: the ``close_notify`` alert, then FIN (a clean TLS close);
  ``close_notify=False``: FIN with no alert (an abrupt close, a truncation attack to the client);
- ``half_close``: ``close_notify`` (unless asked not to), then ``shutdown(SHUT_WR)``;
- ``reset``: RST, no alert, as for plain connections.

Until the handshake is done the wire is plain TCP: faults at ``on_connect`` and ``handshake``
act on raw bytes (``garbage`` arrives where the client expects a ServerHello). The handshake runs
in the connection's own task (:func:`serve_handshake`), never in the accept loop, so a client
that stalls its handshake holds up nothing else.
"""

from __future__ import annotations

import ssl
from typing import TYPE_CHECKING, Callable

from ._ledger import EndedBy
from ._wire import RECEIVE_SIZE, Wire, WireClosed

if TYPE_CHECKING:
    import socket

    from ._connection import ConnectionLoop


def is_unexpected_eof(exc: BaseException) -> bool:
    """Whether ``exc`` is the peer's TCP close without ``close_notify`` (an abrupt end of the stream).

    OpenSSL 3 reports it as ``UNEXPECTED_EOF_WHILE_READING``. Pythons with python/cpython#95494
    (3.12, and the 3.10 and 3.11 releases since spring 2023) raise that as ``ssl.SSLEOFError``;
    older ones, 3.9 among them, raise a plain ``ssl.SSLError`` with that reason. Both shapes mean
    the same thing.
    """
    if isinstance(exc, ssl.SSLEOFError):
        return True
    return isinstance(exc, ssl.SSLError) and exc.reason == "UNEXPECTED_EOF_WHILE_READING"


class TlsWire(Wire):
    """A connection's socket with TLS on top; the interface of :class:`Wire`, in plaintext."""

    __slots__ = ("_eof", "_out", "_plain", "established", "incoming", "notified", "outgoing", "tls")

    def __init__(self, sock: socket.socket, context: ssl.SSLContext, own_waits: bool = False) -> None:
        super().__init__(sock, own_waits)
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_side=True)
        self.established = False
        #: Whether our close_notify has been sent.
        self.notified = False
        self._plain = b""
        self._eof = False
        self._out = bytearray()

    # -- the handshake --------------------------------------------------------------------

    async def handshake(self) -> None:
        """Run the TLS handshake to its end.

        Raises:
            ssl.SSLError: the handshake failed (the alert, if any, has been sent).
            WireClosed: the server closed the socket meanwhile.
        """
        while True:
            try:
                self.tls.do_handshake()
            except ssl.SSLWantReadError:
                await self._flush()
                await self._feed()
                continue
            except ssl.SSLError:
                self._push()
                raise
            break
        self.established = True
        await self._flush()

    async def _feed(self) -> None:
        """Read ciphertext from the socket into the TLS object (EOF included); waits for some."""
        while True:
            if self.closed:
                raise WireClosed
            try:
                data = self.sock.recv(RECEIVE_SIZE)
            except BlockingIOError:
                await Wire.wait_readable(self)  # the raw wait: ours would recurse into here
                continue
            break
        if data:
            self.incoming.write(data)
        else:
            self.incoming.write_eof()

    def _feed_now(self) -> None:
        """Move what already arrived on the socket into the TLS object, without waiting."""
        data = Wire.drain(self)
        if data:
            self.incoming.write(data)

    # -- sending ---------------------------------------------------------------------------

    def _push(self, strict: bool = False) -> bool:
        """Send queued ciphertext as far as the kernel takes it now; whether all went.

        With ``strict``, a send error (the client reset) or a closed wire is raised, not ignored.
        """
        self._out += self.outgoing.read()
        while self._out:
            if self.closed:
                if strict:
                    raise WireClosed
                return False
            try:
                sent = self.sock.send(self._out)
            except BlockingIOError:
                return False
            except OSError:
                if strict:
                    raise
                return False
            del self._out[:sent]
        return True

    async def _flush(self) -> None:
        """Hand every queued ciphertext byte to the kernel, waiting for room as needed.

        Raises:
            ConnectionError: the client reset or closed the connection.
            WireClosed: the server closed the socket meanwhile.
        """
        while not self._push(strict=True):
            await Wire.wait_writable(self)

    async def send_all(self, data: bytes) -> None:
        if not self.established:
            await super().send_all(data)
            return
        if self.closed:
            raise WireClosed
        self.tls.write(data)
        await self._flush()

    def try_send(self, data: bytes) -> int:
        if not self.established:
            return super().try_send(data)
        if self.closed:
            return 0
        self.tls.write(data)
        self._push()
        return len(data)

    # -- receiving -------------------------------------------------------------------------

    def _decrypt(self) -> bool:
        """Move decrypted bytes into the plaintext buffer; whether any (or EOF) is there now."""
        if self._plain or self._eof:
            return True
        try:
            self._plain = self.tls.read(RECEIVE_SIZE)
        except ssl.SSLWantReadError:
            self._push()  # reading may have produced output (a key update answer)
            return False
        except ssl.SSLError as exc:
            if not (isinstance(exc, ssl.SSLZeroReturnError) or is_unexpected_eof(exc)):
                raise
            # close_notify, or a TCP close without one: either way the peer is done sending
            self._eof = True
            return True
        if not self._plain:
            self._eof = True
        return True

    async def wait_readable(self, inline: Callable[[], bool] | None = None) -> None:
        """Wait until plaintext (or the client's EOF) can be read; ciphertext alone is not enough.

        ``inline`` is not called: what arrives is ciphertext, for this wire to decrypt.
        """
        if not self.established:
            await super().wait_readable()
            return
        while not self._decrypt():
            await self._feed()

    async def receive(self, wait_first: bool = False) -> bytes:
        if not self.established:
            return await super().receive(wait_first)
        if self.closed:
            raise WireClosed
        await self.wait_readable()  # decrypts what is buffered first, so wait_first adds nothing
        data, self._plain = self._plain, b""
        return data

    def readable_now(self) -> bool:
        if not self.established:
            return super().readable_now()
        return bool(self._plain) or self.tls.pending() > 0 or super().readable_now()

    def peek(self) -> bytes:
        if not self.established:
            return super().peek()
        self._feed_now()
        self._decrypt()
        return self._plain

    def drain(self) -> bytes:
        if not self.established:
            return super().drain()
        self._feed_now()
        chunks = [self._plain]
        self._plain = b""
        while True:
            try:
                chunk = self.tls.read(RECEIVE_SIZE)
            except ssl.SSLError:
                break
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)

    # -- the drops -------------------------------------------------------------------------

    def notify(self) -> None:
        """Send ``close_notify`` now (once; only after the handshake)."""
        if not self.established or self.notified or self.closed:
            return
        self.notified = True
        try:
            self.tls.unwrap()
        except ssl.SSLError:  # SSLWantReadError: our alert is out, the client's is not in yet
            pass
        self._push()

    def half_close(self, close_notify: bool = True) -> None:
        """``close_notify`` (unless ``close_notify=False``), then ``shutdown(SHUT_WR)``."""
        if self.closed or self.write_shut:
            return
        if close_notify:
            self.notify()
        super().half_close()

    def fin_close(self, close_notify: bool = True) -> bytes:
        """``close_notify`` (unless ``close_notify=False``: an abrupt close), FIN, drain, close.

        Returns the plaintext that was waiting unread (ciphertext that could not be read any
        more is discarded, but read from the socket so that the close is a FIN, not an RST).
        """
        if self.closed:
            return b""
        unread = self.drain()
        if close_notify:
            self.notify()
        else:
            self._push()
        Wire.half_close(self)
        Wire.drain(self)
        self.close()
        return unread


async def serve_handshake(loop: ConnectionLoop) -> bool:
    """The ``handshake`` moment, then the handshake itself; False when the connection is over.

    A ``handshake`` fault fires once the ClientHello's first bytes have arrived and before any
    byte of the ServerHello is sent. A failed handshake is recorded on the connection
    (``tls_error``): a client that refused our certificate ends it (``client_fin``), bytes that
    are not TLS end it from the server (``server_close``).
    """
    wire = loop.wire
    assert isinstance(wire, TlsWire)
    core = loop.core
    with core.lock:
        armed = core.plan.has("handshake")
    if armed:
        await wire.wait_readable()
        handle = loop._take("handshake")
        if handle is not None and await loop._fire(handle, None):
            return False
    try:
        await wire.handshake()
    except ssl.SSLError as exc:
        reason = exc.reason or type(exc).__name__
        ended = isinstance(exc, ssl.SSLZeroReturnError) or is_unexpected_eof(exc)
        by_client = "ALERT" in str(reason).upper() or ended
        with core.lock:
            loop.state.tls_error = f"handshake failed: {reason}"
            if loop.state.ended_by is None:
                loop.state.ended_by = EndedBy.CLIENT_FIN if by_client else EndedBy.SERVER_CLOSE
            wire.fin_close(close_notify=False)
        return False
    return True
