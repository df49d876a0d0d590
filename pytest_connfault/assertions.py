"""Assertions on a client's pool and on the server's ledger, with messages that show both sides.

Each helper raises :class:`AssertionError` with a message it builds itself (expected, what the
client's pool holds, and the server's record of the same connections, joined by the client's local
port), so it does not depend on pytest's assertion rewriting. The helpers only read memory: call
them from sync and async tests alike. Their own frames are hidden from pytest's tracebacks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .pools import ACTIVE, IDLE, PoolSnapshot, pool_snapshot

if TYPE_CHECKING:
    from ._ledger import Connection, Request
    from ._server import FaultServer

__all__ = ("assert_new_connection", "assert_no_leak", "assert_no_stale", "assert_pool", "assert_reused")

_NOTICE = (
    "note: a client notices a dropped pooled connection only when it next takes one from its pool "
    "for a request; right after a drop every client still holds it as idle."
)


def assert_pool(
    client: object,
    *,
    active: int | None = None,
    idle: int | None = None,
    total: int | None = None,
    server: FaultServer | None = None,
) -> PoolSnapshot:
    """Assert how many connections ``client``'s pool holds; return its snapshot.

    Args:
        client: any client :func:`~pytest_connfault.pool_snapshot` knows.
        active: connections checked out (in use); None does not check.
        idle: pooled connections with a live socket; None does not check.
        total: ``active + idle``; None does not check.
        server: the server the client talks to, to show its record of the same connections.

    Example: ``assert_pool(client, active=0, idle=1)`` after the documented bug's second request.
    """
    __tracebackhide__ = True
    snapshot = pool_snapshot(client)
    expected = {"active": active, "idle": idle, "total": total}
    found = {"active": snapshot.active, "idle": snapshot.idle, "total": snapshot.total}
    wrong = [name for name, value in expected.items() if value is not None and value != found[name]]
    if wrong:
        want = ", ".join(f"{name}={value}" for name, value in expected.items() if value is not None)
        got = ", ".join(f"{name}={found[name]}" for name in expected)
        raise AssertionError(
            f"assert_pool: the pool of {snapshot.client} was expected to hold {want}; it holds {got}\n"
            + _report(snapshot, server)
        )
    return snapshot


def assert_no_leak(client: object, *, server: FaultServer | None = None) -> PoolSnapshot:
    """Assert that ``client``'s pool has nothing checked out (call it once every response is closed).

    A connection left active after its response was closed, or after an exception mid-response, is
    lost to the pool for good: enough of them and the pool is exhausted. Returns the snapshot.
    """
    __tracebackhide__ = True
    snapshot = pool_snapshot(client)
    leaked = snapshot.by_state(ACTIVE)
    if leaked:
        ports = ", ".join(_port(c.local_port) for c in leaked)
        raise AssertionError(
            f"assert_no_leak: the pool of {snapshot.client} still has {len(leaked)} connection(s) "
            f"checked out (active: {ports}); expected none once every response is closed\n"
            + _report(snapshot, server)
        )
    return snapshot


def assert_no_stale(client: object, server: FaultServer) -> PoolSnapshot:
    """Assert that no connection ``client`` holds as idle is one ``server`` has already dropped.

    Dropped means closed, reset or half-closed by the server (its ledger says so). This is the
    bookkeeping half of the documented bug (httpx #327). Right after a drop it fails for every
    client, since none has looked yet: check once the client has made a request since the drop.
    Only the pooled connections to ``server``'s port are checked. Returns the snapshot.
    """
    __tracebackhide__ = True
    snapshot = pool_snapshot(client)
    stale: list[tuple[int, Connection]] = []
    for pooled in snapshot.connections:
        if pooled.state != IDLE or pooled.local_port is None or pooled.key[2] != server.port:
            continue
        record = server.connection_for_port(pooled.local_port)
        if record is not None and _is_dropped(record):
            stale.append((pooled.local_port, record))
    if stale:
        lines = [f"  port {port}: {_ledger_text(record)}" for port, record in stale]
        raise AssertionError(
            f"assert_no_stale: the pool of {snapshot.client} holds {len(stale)} idle connection(s) "
            f"that the server {server.url} has already dropped:\n"
            + "\n".join(lines)
            + "\n"
            + _report(snapshot, server)
            + "\n"
            + _NOTICE
        )
    return snapshot


def assert_reused(
    server: FaultServer,
    *,
    request: int = -1,
    same_as: int | None = None,
    client: object = None,
) -> Request:
    """Assert that a request arrived on a connection that had carried an earlier request.

    Args:
        server: the server whose ledger is read.
        request: which request, 1-based, or negative from the end; the latest by default.
        same_as: also require it to share its connection with this request (same numbering).
        client: the client, to show its pool in the message.

    Returns the request's record.
    """
    __tracebackhide__ = True
    record = _pick(server, request, "assert_reused", client)
    if same_as is not None:
        other = _pick(server, same_as, "assert_reused", client)
        if other.connection_id != record.connection_id:
            raise AssertionError(
                f"assert_reused: expected {_req(record)} to arrive on the same connection as "
                f"{_req(other)} (connection {other.connection_id}); it arrived on connection "
                f"{record.connection_id}{_opened_for(record)}\n" + _report(None, server, client)
            )
    elif record.index_on_connection == 1:
        raise AssertionError(
            f"assert_reused: expected {_req(record)} to arrive on a reused keep-alive connection; "
            f"it arrived on connection {record.connection_id}, a new one opened for it\n"
            + _report(None, server, client)
        )
    return record


def assert_new_connection(server: FaultServer, *, request: int = -1, client: object = None) -> Request:
    """Assert that a request arrived on a new connection (the first request on its connection).

    Args:
        server: the server whose ledger is read.
        request: which request, 1-based, or negative from the end; the latest by default.
        client: the client, to show its pool in the message.

    Returns the request's record.
    """
    __tracebackhide__ = True
    record = _pick(server, request, "assert_new_connection", client)
    if record.index_on_connection != 1:
        earlier = [
            r for r in server.requests if r.connection_id == record.connection_id and r.index < record.index
        ]
        carried = ", ".join(_req(r) for r in earlier)
        raise AssertionError(
            f"assert_new_connection: expected {_req(record)} to arrive on a new connection; it arrived "
            f"on connection {record.connection_id}, which had already carried {carried}\n"
            + _report(None, server, client)
        )
    return record


# -- building the messages ----------------------------------------------------------------


def _pick(server: FaultServer, number: int, helper: str, client: object) -> Request:
    __tracebackhide__ = True
    requests = server.requests
    if number == 0 or abs(number) > len(requests) or (number < 0 and -number > len(requests)):
        raise AssertionError(
            f"{helper}: no request {number} in the ledger of {server.url}: the server has recorded "
            f"{len(requests)} request(s) (numbers are 1-based, negative from the end)\n"
            + _report(None, server, client)
        )
    return requests[number - 1] if number > 0 else requests[number]


def _req(record: Request) -> str:
    return f"request {record.index} ({record.method} {record.target})"


def _opened_for(record: Request) -> str:
    return ", a new one opened for it" if record.index_on_connection == 1 else ""


def _port(port: int | None) -> str:
    return str(port) if port is not None else "?"


def _is_dropped(record: Connection) -> bool:
    """Whether the server has closed, reset or half-closed the connection (or it ended at all)."""
    return record.closed_at is not None or record.ended_by is not None


def _ledger_text(record: Connection) -> str:
    requests = f"{len(record.requests)} request{'s' if len(record.requests) != 1 else ''}"
    if record.closed_at is None and record.ended_by is None:
        state = "open"
    elif record.closed_at is None and any(f.kind == "half_close" for f in record.faults):
        state = f"half-closed by the server ({record.ended_by})"
    else:  # closed, or being closed: the server records how before its loop lets go of the socket
        state = f"closed, ended by {record.ended_by}"
    faults = "".join(f", fault {f.kind}@{f.at}{' (commanded)' if f.commanded else ''}" for f in record.faults)
    return f"connection {record.id}, {state}{faults}, {requests}"


def _report(snapshot: PoolSnapshot | None, server: FaultServer | None, client: object = None) -> str:
    """The client's pool (each connection joined to the server's record) and the server's ledger."""
    if snapshot is None and client is not None:
        try:
            snapshot = pool_snapshot(client)
        except Exception as exc:  # noqa: BLE001 - the message must not hide the real failure
            snapshot = None
            lines = [f"the client's pool: (cannot be read: {exc})"]
        else:
            lines = []
    else:
        lines = []
    if snapshot is not None:
        lines.append(f"the client's pool ({snapshot.summary()}):")
        if not snapshot.connections:
            lines.append("  (empty)")
        for pooled in snapshot.connections:
            side = ""
            if server is not None and pooled.local_port is not None and pooled.key[2] == server.port:
                record = server.connection_for_port(pooled.local_port)
                side = f"  <-> server: {_ledger_text(record) if record else 'never seen'}"
            lines.append(f"  {pooled}{side}")
    if server is not None:
        timeline = server.timeline()
        lines.append(f"the server's ledger ({server.url}):")
        lines.extend(f"  {line}" for line in timeline or ["(no connections)"])
    return "\n".join(lines)
