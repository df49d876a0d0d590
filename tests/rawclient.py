"""A small raw-socket HTTP/1.1 client for the project's own tests.

Real clients hide what the server put on the wire: they retry, pool and wrap errors. This one
tells apart exactly what a fault is about:

- ``FIN``: ``recv`` returned ``b""`` (the server closed or half-closed its side);
- ``RST``: ``recv`` raised ``ConnectionResetError`` (the server reset the connection);
- ``TIMEOUT``: nothing more arrived within the bound given (a stall);

and keeps every byte it received, in the pieces ``recv`` returned them. Requests are rendered and
responses parsed with h11's client side; one throwaway ``h11.Connection`` per exchange, so a
broken exchange never poisons the next. Every read has a deadline.
"""

from __future__ import annotations

import socket
import struct
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import h11

if TYPE_CHECKING:
    from typing_extensions import Self

FIN = "fin"
RST = "rst"
TIMEOUT = "timeout"

#: The default bound on any single read (seconds): long enough for a loaded CI machine, short
#: enough that a broken server fails a test instead of hanging it.
DEFAULT_TIMEOUT = 5.0

Address = tuple[str, int]


@dataclass
class Reply:
    """What came back for one request.

    Attributes:
        status: the status code, once the head was parsed (None if it never was).
        headers: the response headers (lower-case names), once parsed.
        body: the body bytes h11 parsed (unframed).
        complete: the whole response arrived (h11 saw its end).
        end: how the read stopped short: ``FIN``, ``RST``, ``TIMEOUT``; None when complete.
        raw: every byte received during the read, in order.
        pieces: the results of each ``recv`` call, in order.
        error: h11's complaint when the bytes were not a valid response (e.g. garbage).
        elapsed: seconds from the start of the read (or the send) to its end.
    """

    status: int | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    complete: bool = False
    end: str | None = None
    raw: bytes = b""
    pieces: list[bytes] = field(default_factory=list)
    error: str | None = None
    elapsed: float = 0.0

    def header(self, name: str) -> str | None:
        """The first value of header ``name`` (case-insensitive), or None."""
        for key, value in self.headers:
            if key == name.lower():
                return value
        return None


@dataclass
class Received:
    """Bytes read until the connection ended (or the bound ran out), and how it ended.

    ``end`` is ``FIN``, ``RST`` or ``TIMEOUT``, or ``""`` when a :meth:`RawClient.read_bytes`
    got all it asked for.
    """

    data: bytes
    end: str
    pieces: list[bytes]


def render_request(
    method: str = "GET",
    target: str = "/",
    headers: list[tuple[str, str]] | tuple[tuple[str, str], ...] = (),
    body: bytes = b"",
    host: str = "127.0.0.1",
) -> bytes:
    """A well-formed HTTP/1.1 request as bytes (Host and Content-Length added when missing)."""
    pairs = list(headers)
    names = {name.lower() for name, _ in pairs}
    if "host" not in names:
        pairs.insert(0, ("Host", host))
    if body and "content-length" not in names and "transfer-encoding" not in names:
        pairs.append(("Content-Length", str(len(body))))
    conn = h11.Connection(h11.CLIENT)
    data = conn.send(h11.Request(method=method, target=target, headers=pairs)) or b""
    if body:
        data += conn.send(h11.Data(data=body)) or b""
    data += conn.send(h11.EndOfMessage()) or b""
    return data


class RawClient:
    """One TCP connection to the server, driven by hand.

    Args:
        address: ``(host, port)``, or anything with ``host`` and ``port`` (a ``FaultServer``).
        timeout: the default bound on each read, in seconds.
    """

    def __init__(self, address: object, timeout: float = DEFAULT_TIMEOUT) -> None:
        if isinstance(address, tuple):
            host, port = address
        else:
            host, port = address.host, address.port  # type: ignore[attr-defined]
        self.host = host
        self.timeout = timeout
        self._buffer = b""  # received, not yet consumed by a read
        self._end: str | None = None  # sticky once the connection ended
        self._reset_at_connect = False
        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect((host, port))
        except ConnectionResetError:
            # The server reset the connection so fast (an on_connect fault) that the RST beat
            # connect()'s own wake-up: the connection was made and ended by RST. connect()
            # consumed the socket's error, so the bytes queued before the RST are still read
            # first, and the EOF after them stands for that RST.
            self._reset_at_connect = True
        except BaseException:
            self.sock.close()
            raise
        self.local_port: int = self.sock.getsockname()[1]

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- sending ----------------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        """Send raw bytes (a ``ConnectionError`` propagates: it is evidence too)."""
        self.sock.sendall(data)

    def send_request(
        self,
        method: str = "GET",
        target: str = "/",
        headers: list[tuple[str, str]] | tuple[tuple[str, str], ...] = (),
        body: bytes = b"",
    ) -> None:
        """Send a well-formed request."""
        self.send(render_request(method, target, headers, body, self.host))

    # -- reading ----------------------------------------------------------------------------

    def _recv(self, deadline: float) -> bytes | str:
        """One read: bytes, or FIN / RST / TIMEOUT."""
        if self._buffer:
            data, self._buffer = self._buffer, b""
            return data
        if self._end is not None:
            return self._end
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return TIMEOUT
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            return TIMEOUT
        except ConnectionResetError:
            self._end = RST
            return RST
        if not data:
            self._end = RST if self._reset_at_connect else FIN
            return self._end
        return data

    def read_reply(self, timeout: float | None = None, method: str = "GET") -> Reply:
        """Read one response: until it is complete, or the connection ends, or ``timeout``."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        started = time.monotonic()
        parser = h11.Connection(h11.CLIENT)
        parser.send(h11.Request(method=method, target="/", headers=[("Host", self.host)]))
        parser.send(h11.EndOfMessage())
        reply = Reply()
        body: list[bytes] = []
        broken = False
        while not reply.complete:
            got = self._recv(deadline)
            if isinstance(got, str):
                reply.end = got
                if got == FIN and not broken:
                    parser.receive_data(b"")
                    self._drain_events(parser, reply, body)
                break
            reply.raw += got
            reply.pieces.append(got)
            if broken:
                continue
            parser.receive_data(got)
            broken = not self._drain_events(parser, reply, body)
            if reply.complete and parser.trailing_data[0]:
                self._buffer = parser.trailing_data[0] + self._buffer
        reply.body = b"".join(body)
        reply.elapsed = time.monotonic() - started
        return reply

    @staticmethod
    def _drain_events(parser: h11.Connection, reply: Reply, body: list[bytes]) -> bool:
        """Feed h11's events into ``reply``; False once the bytes are not HTTP."""
        while True:
            try:
                event = parser.next_event()
            except h11.RemoteProtocolError as exc:
                reply.error = str(exc)
                return False
            if event is h11.NEED_DATA or event is h11.PAUSED or isinstance(event, h11.ConnectionClosed):
                return True
            if isinstance(event, h11.Response):
                reply.status = event.status_code
                reply.headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in event.headers]
            elif isinstance(event, h11.Data):
                body.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                reply.complete = True
                return True

    def request(
        self,
        method: str = "GET",
        target: str = "/",
        headers: list[tuple[str, str]] | tuple[tuple[str, str], ...] = (),
        body: bytes = b"",
        timeout: float | None = None,
    ) -> Reply:
        """Send a request and read its reply; ``elapsed`` counts from the send."""
        started = time.monotonic()
        self.send_request(method, target, headers, body)
        reply = self.read_reply(timeout, method)
        reply.elapsed = time.monotonic() - started
        return reply

    def read_to_end(self, timeout: float | None = None) -> Received:
        """Read until FIN or RST (or ``timeout``): every byte, and how the connection ended."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        pieces: list[bytes] = []
        while True:
            got = self._recv(deadline)
            if isinstance(got, str):
                return Received(b"".join(pieces), got, pieces)
            pieces.append(got)

    def read_bytes(self, count: int, timeout: float | None = None) -> Received:
        """Read exactly ``count`` bytes, unless the connection ends or ``timeout`` runs out first.

        ``end`` is ``""`` when all ``count`` bytes arrived; bytes past ``count`` are kept for the
        next read.
        """
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        pieces: list[bytes] = []
        have = 0
        while have < count:
            got = self._recv(deadline)
            if isinstance(got, str):
                return Received(b"".join(pieces), got, pieces)
            if have + len(got) > count:
                got, extra = got[: count - have], got[count - have :]
                self._buffer = extra + self._buffer
            pieces.append(got)
            have += len(got)
        return Received(b"".join(pieces), "", pieces)

    def is_silent(self, seconds: float) -> bool:
        """Whether nothing at all (no byte, no FIN, no RST) arrives within ``seconds``.

        A bounded negative observation, for stalls: what does arrive is kept for the next read.
        """
        got = self._recv(time.monotonic() + seconds)
        if got == TIMEOUT:
            return True
        if isinstance(got, bytes):
            self._buffer = got + self._buffer
        return False

    # -- ending -----------------------------------------------------------------------------

    def shutdown_write(self) -> None:
        """Half-close from the client: send FIN, keep reading."""
        self.sock.shutdown(socket.SHUT_WR)

    def reset(self) -> None:
        """Abort the connection from the client: RST (SO_LINGER 0, then close)."""
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.sock.close()

    def close(self) -> None:
        """Close the socket (idempotent)."""
        self.sock.close()


def wait_until(condition: Callable[[], bool], timeout: float = DEFAULT_TIMEOUT, what: str = "condition") -> None:
    """Poll ``condition`` until it holds, within ``timeout`` seconds, else fail.

    For ledger facts that have no event to wait on (a connection's end after the client's FIN):
    a bounded wait on a condition, never a sleep standing in for one.
    """
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not hold within {timeout} s")
        time.sleep(0.001)
