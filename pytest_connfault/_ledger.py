"""What the server remembers: every connection, every request, every fault that fired.

The server thread writes under the server's lock; tests read frozen snapshots at any time. Ordering
is a contract: a request is recorded before any byte of its response (or of the fault replacing it)
is sent, and a fault is recorded only once it is on the wire.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
from dataclasses import dataclass, field
from typing import Any

from ._faults import FaultFiring

#: The most bytes of a connection's ``unread`` the ledger keeps (the first ones): a whole request
#: head at the default limit, and a client that streams a huge body at a closing or refusing
#: server cannot grow the ledger by more.
UNREAD_LIMIT = 16 * 1024


class EndedBy(str, enum.Enum):
    """How a connection ended."""

    CLIENT_FIN = "client_fin"
    """The client closed its side (EOF)."""
    CLIENT_RST = "client_rst"
    """The client reset the connection."""
    SERVER_CLOSE = "server_close"
    """The server closed it as HTTP says: ``Connection: close``, or after a malformed request."""
    SERVER_FAULT = "server_fault"
    """A fault closed or reset it (see the connection's ``faults``)."""
    SERVER_SHUTDOWN = "server_shutdown"
    """The server stopped with the connection still open."""

    def __str__(self) -> str:
        return self.value


@dataclass(frozen=True)
class Outcome:
    """What the server did with a request.

    ``kind`` is one of ``"pending"`` (being answered), ``"responded"`` (``status`` was sent),
    ``"fault"`` (``fault`` replaced or broke the response), ``"rejected"`` (malformed: ``status``
    400/413/431 with ``detail``), ``"handler_error"`` (the handler raised; 500 sent, traceback in
    ``detail``) or ``"unanswered"`` (arrived on a half-closed connection, or its connection
    ended before the answer was complete: the client reset it, or the server stopped).
    """

    kind: str
    status: int | None = None
    fault: str | None = None
    detail: str = ""

    def __str__(self) -> str:
        if self.kind == "fault":
            return f"fault {self.fault}"
        if self.status is not None:
            text = f"{self.kind} {self.status}"
            if self.kind == "rejected" and self.detail:
                text += f" ({self.detail})"
            return text
        return self.kind


PENDING = Outcome("pending")


@functools.cache
def responded(status: int) -> Outcome:
    """The outcome of a request answered with ``status`` (one shared record per status)."""
    return Outcome("responded", status=status)


def path_of(target: str) -> str:
    """A request target without its query string."""
    return target.split("?", 1)[0]


@dataclass(frozen=True)
class Request:
    """One request as the server read it.

    This type has no public constructor; you get one from ``server.requests`` or a connection
    record's ``requests``.
    """

    index: int
    index_on_connection: int
    connection_id: int
    method: str
    target: str
    headers: tuple[tuple[str, str], ...]
    body: bytes
    outcome: Outcome
    received_at: float
    http_version: str = "1.1"
    #: Behind a ``FaultProxy``: the upstream's status for this request (None: no upstream answer).
    upstream_status: int | None = None
    #: Behind a ``FaultProxy``: the id of the upstream connection that carried it (None: none did).
    upstream_connection: int | None = None

    @property
    def path(self) -> str:
        """The target without its query string."""
        return path_of(self.target)

    def header(self, name: str, default: str | None = None) -> str | None:
        """The first value of header ``name`` (case-insensitive), or ``default``."""
        lowered = name.lower()
        for key, value in self.headers:
            if key.lower() == lowered:
                return value
        return default

    def __str__(self) -> str:
        return (
            f"request {self.index} (#{self.index_on_connection} on connection {self.connection_id}): "
            f"{self.method} {self.target} -> {self.outcome}"
            + (
                f" (upstream {self.upstream_status or 'no answer'} on upstream connection {self.upstream_connection})"
                if self.upstream_connection is not None
                else ""
            )
        )


@dataclass(frozen=True)
class Connection:
    """One connection as the server saw it.

    This type has no public constructor; you get one from ``server.connections`` or from the
    fire-now commands (``server.reset_idle()`` and friends).
    """

    id: int
    client_port: int
    opened_at: float
    closed_at: float | None
    ended_by: EndedBy | None
    requests: tuple[Request, ...]
    faults: tuple[FaultFiring, ...]
    unread: bytes = b""
    tls: bool = False
    #: Why the TLS handshake failed (``"handshake failed: TLSV1_ALERT_UNKNOWN_CA"``), if it did.
    tls_error: str | None = None

    @property
    def is_open(self) -> bool:
        """Whether the server still holds the connection."""
        return self.closed_at is None

    def __str__(self) -> str:
        state = "open" if self.closed_at is None else f"ended by {self.ended_by}"
        return (
            f"connection {self.id} (client port {self.client_port}, {len(self.requests)} requests, {state})"
        )


@dataclass
class ConnectionState:
    """The server's live, mutable view of a connection. Only the server thread writes it."""

    id: int
    client_port: int
    opened_at: float
    tls: bool = False
    closed_at: float | None = None
    ended_by: EndedBy | None = None
    requests: list[Request] = field(default_factory=list)
    faults: list[FaultFiring] = field(default_factory=list)
    unread: bytes = b""
    #: "new" (no request yet), "busy", "idle" (between requests, nothing buffered),
    #: "stalled", "half_closed", "closed"
    phase: str = "new"
    #: The object the connection loop uses for socket actions (set by the server).
    wire: object = None
    tls_error: str | None = None

    def snapshot(self) -> Connection:
        # Filled in directly rather than through the frozen dataclass's __init__ (a setattr per
        # field): the commands take one snapshot per dropped connection, hundreds at a time.
        record = object.__new__(Connection)
        record.__dict__.update(
            id=self.id,
            client_port=self.client_port,
            opened_at=self.opened_at,
            closed_at=self.closed_at,
            ended_by=self.ended_by,
            requests=tuple(self.requests),
            faults=tuple(self.faults),
            unread=self.unread,
            tls=self.tls,
            tls_error=self.tls_error,
        )
        return record


@dataclass
class Ledger:
    """All connections and requests of one server, in arrival order."""

    connections: list[ConnectionState] = field(default_factory=list)
    requests: list[Request] = field(default_factory=list)
    #: Cap on the body bytes kept per request (None keeps them whole).
    body_limit: int | None = None

    def open_connection(self, client_port: int, opened_at: float, tls: bool) -> ConnectionState:
        state = ConnectionState(len(self.connections) + 1, client_port, opened_at, tls=tls)
        self.connections.append(state)
        return state

    def add_request(
        self,
        conn: ConnectionState,
        method: str,
        target: str,
        headers: tuple[tuple[str, str], ...],
        body: bytes,
        received_at: float,
        http_version: str = "1.1",
        outcome: Outcome = PENDING,
    ) -> Request:
        if self.body_limit is not None and len(body) > self.body_limit:
            body = body[: self.body_limit]
        request = Request(
            index=len(self.requests) + 1,
            index_on_connection=len(conn.requests) + 1,
            connection_id=conn.id,
            method=method,
            target=target,
            headers=headers,
            body=body,
            outcome=outcome,
            received_at=received_at,
            http_version=http_version,
        )
        self.requests.append(request)
        conn.requests.append(request)
        return request

    def settle(self, conn: ConnectionState, request: Request, outcome: Outcome) -> Request:
        """Replace a request's record with one that carries its final outcome."""
        # Once per request: cheaper than dataclasses.replace, and built by __init__ so that the
        # record keeps a key-sharing __dict__ (a copied one costs ~65 bytes more per request).
        settled = Request(**{**request.__dict__, "outcome": outcome})
        self.requests[request.index - 1] = settled
        conn.requests[request.index_on_connection - 1] = settled
        return settled

    def update(self, conn: ConnectionState, request: Request, **changes: Any) -> Request:
        """Replace a request's record with a copy that has ``changes`` (the caller holds the lock)."""
        settled = dataclasses.replace(request, **changes)
        self.requests[request.index - 1] = settled
        conn.requests[request.index_on_connection - 1] = settled
        return settled
