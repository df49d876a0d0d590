"""What a client's pool believes, frozen: :class:`PoolSnapshot` and :class:`PooledConnection`."""

from __future__ import annotations

from dataclasses import dataclass, field

from .._errors import ConnfaultError

#: The connection is checked out: a request is using it (or it is being opened for one).
ACTIVE = "active"
#: The connection is pooled with a live socket, available for the next request.
IDLE = "idle"
#: A pooled entry the client itself knows to be closed, still kept among its idle ones
#: (aiohttp keeps a closed protocol until its next request for that host; httpcore briefly).
CLOSED = "closed"
#: A pooled connection object with no socket at all (urllib3 puts closed connections back in its
#: queue with ``sock = None`` and reconnects them lazily on their next checkout).
UNCONNECTED = "unconnected"

#: The states a :class:`PooledConnection` can have; only ``active`` and ``idle`` are counted.
STATES = (ACTIVE, IDLE, CLOSED, UNCONNECTED)

#: ``(scheme, host, port)`` of the pool a connection belongs to.
PoolKey = tuple[str, str, int]


class PoolSnapshotError(ConnfaultError):
    """A client's pool cannot be read: no adapter knows the client, or its internals moved."""


@dataclass(frozen=True)
class PooledConnection:
    """One connection as the client's pool holds it.

    This type has no public constructor for users of the built-in adapters; you get one from
    :attr:`PoolSnapshot.connections`. Adapters for other clients (see the
    ``pytest_connfault_pool_snapshot`` hook) make them.

    Attributes:
        local_port: the client's side of the socket, which joins the pool to the server's ledger
            (``Connection.client_port``); ``None`` where the client has no socket for it or does not
            say (a checked-out urllib3 connection: urllib3 keeps no list of them).
        state: ``"active"``, ``"idle"``, ``"closed"`` or ``"unconnected"`` (see :data:`STATES`).
        key: ``(scheme, host, port)`` of the pool it belongs to.
        detail: the client's own words for it, when it has any (e.g. httpcore's ``info()``).
    """

    local_port: int | None
    state: str
    key: PoolKey
    detail: str = ""

    def __post_init__(self) -> None:
        if self.state not in STATES:
            raise ValueError(f"state must be one of {', '.join(STATES)}; got {self.state!r}")

    @property
    def is_active(self) -> bool:
        """Whether the connection is checked out."""
        return self.state == ACTIVE

    @property
    def is_idle(self) -> bool:
        """Whether the connection is pooled with a live socket."""
        return self.state == IDLE

    def __str__(self) -> str:
        scheme, host, port = self.key
        where = f"port {self.local_port}" if self.local_port is not None else "port ?"
        text = f"{where:<11} {self.state:<11} {scheme}://{host}:{port}"
        return f"{text}  [{self.detail}]" if self.detail else text


@dataclass(frozen=True)
class PoolSnapshot:
    """What a client's pool holds at one moment, as the client itself sees it.

    This type has no public constructor for users; you get one from
    :func:`pytest_connfault.pool_snapshot`. Adapters for other clients make them.

    Attributes:
        client: the client's name and version, e.g. ``"httpx.Client (httpcore 1.0.9)"``.
        connections: every connection the pool holds, dead entries included.
    """

    client: str
    connections: tuple[PooledConnection, ...] = field(default=())

    @property
    def active(self) -> int:
        """Connections checked out (in use)."""
        return sum(1 for c in self.connections if c.state == ACTIVE)

    @property
    def idle(self) -> int:
        """Pooled connections with a live socket, available for reuse."""
        return sum(1 for c in self.connections if c.state == IDLE)

    @property
    def total(self) -> int:
        """``active + idle``: the live connections (dead entries are not counted)."""
        return self.active + self.idle

    @property
    def dead(self) -> tuple[PooledConnection, ...]:
        """The entries the client keeps although it knows they are closed or unconnected."""
        return tuple(c for c in self.connections if c.state not in (ACTIVE, IDLE))

    def by_state(self, state: str) -> tuple[PooledConnection, ...]:
        """The connections in ``state``."""
        return tuple(c for c in self.connections if c.state == state)

    @property
    def ports(self) -> tuple[int, ...]:
        """The known local ports of the active and idle connections."""
        return tuple(
            c.local_port for c in self.connections if c.local_port is not None and c.state in (ACTIVE, IDLE)
        )

    def summary(self) -> str:
        """``"1 active, 1 idle"``, with the dead entries when there are any."""
        text = f"{self.active} active, {self.idle} idle"
        for state in (CLOSED, UNCONNECTED):
            count = len(self.by_state(state))
            if count:
                text += f", {count} {state}"
        return text

    def __repr__(self) -> str:
        parts = ", ".join(
            f"{c.state}:{c.local_port if c.local_port is not None else '?'}" for c in self.connections
        )
        return f"<PoolSnapshot {self.client} [{self.summary()}]{' ' + parts if parts else ''}>"
