"""The proxy's upstream side: its connections, an h11 client over them, and what came back.

Everything here runs on the server's loop thread, driven by :class:`~pytest_connfault.FaultProxy`;
the records (:class:`UpstreamConnection`) are read from any thread as frozen snapshots.
"""

from __future__ import annotations

import errno
import os
import socket
import ssl
from dataclasses import dataclass
from typing import Any

import anyio
import h11

from ._faults import FaultFiring, now
from ._responses import Response
from ._tls_wire import TlsWire
from ._wire import Wire

#: Headers that describe one connection, not the message (RFC 9110 section 7.6.1): never forwarded.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)

#: How an upstream connection ended (``UpstreamConnection.ended_by``).
UPSTREAM_ENDINGS = {
    "upstream_close": "the upstream closed it (FIN, or Connection: close)",
    "upstream_reset": "the upstream reset it",
    "fault": "an upstream fault dropped it (proxy.inject_upstream)",
    "command": "proxy.reset_upstream_idle() or close_upstream_idle()",
    "error": "the upstream broke HTTP, or timed out",
    "shutdown": "the proxy stopped",
}


@dataclass(frozen=True)
class UpstreamConnection:
    """One connection from the proxy to its upstream.

    This type has no public constructor; you get one from ``proxy.upstream_connections`` or the
    upstream commands (``proxy.reset_upstream_idle()``).

    Attributes:
        id: 1, 2, ... in the order the proxy opened them (``Request.upstream_connection``).
        local_port: the proxy's port on it (the upstream's view of its client).
        ended_by: one of :data:`UPSTREAM_ENDINGS`, or None while open.
        requests: the indices of the client requests it carried, in order.
        faults: the upstream faults fired on it.
    """

    id: int
    local_port: int
    opened_at: float
    closed_at: float | None
    ended_by: str | None
    requests: tuple[int, ...]
    faults: tuple[FaultFiring, ...]

    @property
    def is_open(self) -> bool:
        """Whether the proxy still holds the connection."""
        return self.closed_at is None

    def __str__(self) -> str:
        state = "open" if self.closed_at is None else f"ended by {self.ended_by}"
        return f"upstream connection {self.id} (local port {self.local_port}, {len(self.requests)} requests, {state})"


class Link:
    """A live upstream connection; touched on the loop thread only (records under the lock)."""

    def __init__(self, id: int, wire: Wire, local_port: int) -> None:
        self.id = id
        self.wire = wire
        self.local_port = local_port
        self.opened_at = now()
        self.closed_at: float | None = None
        self.ended_by: str | None = None
        self.requests: list[int] = []
        self.faults: list[FaultFiring] = []
        self.h11 = h11.Connection(h11.CLIENT)

    def snapshot(self) -> UpstreamConnection:
        return UpstreamConnection(
            self.id,
            self.local_port,
            self.opened_at,
            self.closed_at,
            self.ended_by,
            tuple(self.requests),
            tuple(self.faults),
        )


class ClientTlsWire(TlsWire):
    """The client side of TLS on the same sans-IO wire (the proxy talking to an HTTPS upstream)."""

    __slots__ = ()

    _placeholder: ssl.SSLContext | None = None

    def __init__(self, sock: socket.socket, context: ssl.SSLContext, hostname: str) -> None:
        # The parent sets up its buffers with a server-side object; it is replaced before any use.
        if ClientTlsWire._placeholder is None:
            ClientTlsWire._placeholder = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        super().__init__(sock, ClientTlsWire._placeholder)
        self.tls = context.wrap_bio(self.incoming, self.outgoing, server_side=False, server_hostname=hostname)


@dataclass
class Partial:
    """What arrived from the upstream for one request."""

    status: int | None = None
    headers: tuple[tuple[str, str], ...] = ()
    pieces: list[bytes] | None = None
    chunked: bool = False
    complete: bool = False

    @property
    def body_size(self) -> int:
        return sum(len(p) for p in self.pieces or ())

    def cut(self, size: int) -> Partial:
        """The same answer with only the first ``size`` body bytes."""
        kept: list[bytes] = []
        for piece in self.pieces or ():
            if size <= 0:
                break
            kept.append(piece[:size])
            size -= len(kept[-1])
        return Partial(self.status, self.headers, kept, self.chunked, False)

    def response(self) -> Response:
        """The client's answer: hop-by-hop headers dropped, the upstream's framing kept."""
        headers = strip_hop_by_hop(self.headers)
        pieces = [p for p in self.pieces or () if p]
        if self.chunked:
            return Response(self.status or 502, pieces, headers=headers, chunked=True, content_type="")
        return Response(self.status or 502, b"".join(pieces), headers=headers, content_type="")


class UpstreamDropped(Exception):
    """The upstream connection ended before a whole answer."""

    def __init__(self, kind: str, partial: Partial, simulated: bool) -> None:
        super().__init__(kind)
        self.kind = kind
        self.partial = partial
        self.simulated = simulated

    @property
    def at(self) -> str:
        if self.partial.status is None:
            return "before_response"
        return "mid_body" if self.partial.body_size else "after_headers"


class UpstreamBroken(Exception):
    """The upstream answered something that is not HTTP, or timed out: a 502/504 in every mode."""


def strip_hop_by_hop(headers: tuple[tuple[str, str], ...]) -> list[tuple[str, str]]:
    """``headers`` without the hop-by-hop ones, including those the ``Connection`` header names."""
    named = {
        token.strip().lower()
        for name, value in headers
        if name.lower() == "connection"
        for token in value.split(",")
    }
    return [(n, v) for n, v in headers if n.lower() not in HOP_BY_HOP and n.lower() not in named]


def stale(sock: socket.socket) -> str | None:
    """Why an idle upstream socket cannot be reused (the upstream closed or reset it), or None."""
    try:
        data = sock.recv(1, socket.MSG_PEEK)
    except BlockingIOError:
        return None
    except OSError:
        return "upstream_reset"
    # EOF; or bytes nobody asked for, after which the connection's framing is lost anyway
    return "upstream_close" if not data else "error"


async def connect(family: int, address: Any, tls: ssl.SSLContext | None, hostname: str) -> tuple[Wire, int]:
    """A new connection to the upstream (TLS handshake done): its wire, and our local port."""
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setblocking(False)
        code = sock.connect_ex(address)
        if code == errno.EINPROGRESS:
            await anyio.wait_writable(sock)
            code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        if code:
            raise OSError(code, os.strerror(code))
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        port = sock.getsockname()[1]
        if tls is None:
            return Wire(sock), port
        tls_wire = ClientTlsWire(sock, tls, hostname)
        await tls_wire.handshake()
        return tls_wire, port
    except BaseException:
        sock.close()
        raise


async def read_answer(link: Link, partial: Partial) -> None:
    """Read one whole answer into ``partial``; raise :class:`UpstreamDropped` if it ends early."""
    conn = link.h11
    pieces = partial.pieces
    assert pieces is not None
    eof = False
    while True:
        try:
            event = conn.next_event()
        except h11.RemoteProtocolError as exc:
            if eof:  # the upstream closed in the middle of the answer
                raise UpstreamDropped("close", partial, False) from None
            raise UpstreamBroken(f"the upstream's answer is not HTTP/1.1: {exc}") from None
        if event is h11.NEED_DATA:
            try:
                data = await link.wire.receive()
            except OSError:
                raise UpstreamDropped("reset", partial, False) from None
            eof = not data
            conn.receive_data(data)
        elif isinstance(event, h11.Response):
            partial.status = event.status_code
            partial.headers = tuple(
                (n.decode("latin-1"), v.decode("latin-1")) for n, v in event.headers.raw_items()
            )
            partial.chunked = any(
                n.lower() == "transfer-encoding" and "chunked" in v.lower() for n, v in partial.headers
            )
        elif isinstance(event, h11.Data):
            # keep the upstream's chunks as they were, so the client gets the same framing
            if not partial.chunked or event.chunk_start or not pieces:
                pieces.append(bytes(event.data))
            else:
                pieces[-1] += bytes(event.data)
        elif isinstance(event, h11.EndOfMessage):
            partial.complete = True
            return
        elif isinstance(event, h11.ConnectionClosed):
            raise UpstreamDropped("close", partial, False)
        # InformationalResponse (100 Continue, 103): the client gets only the final answer
