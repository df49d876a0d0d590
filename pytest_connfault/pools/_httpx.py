"""httpx and httpcore: ``Client``, ``AsyncClient``, their transports, and httpcore pools.

Where the books are (httpcore 0.14 to 1.0, sync and async, asyncio and trio alike)::

    client._transport._pool            httpcore ConnectionPool / AsyncConnectionPool
    client._mounts[pattern]._pool      the same, for mounted transports (proxies)
    pool.connections                   every connection: HTTPConnection (proxy pools: their own types)
    connection._connection             HTTP11Connection / HTTP2Connection; None while connecting
    ._network_stream.get_extra_info("client_addr")   the local address
    connection.is_idle() / is_closed() / info()       the connection's own state, no socket probing

``has_expired()`` is not called: it probes the socket, and a snapshot reports what the client
believes, not what the socket says.
"""

from __future__ import annotations

from typing import Any

from ._common import port_of, reading, text, type_name
from ._snapshot import ACTIVE, CLOSED, IDLE, PooledConnection, PoolSnapshot

EXPECTS = (
    "client._transport._pool.connections (httpcore >= 0.14), and on each connection "
    "_connection._network_stream, _origin, is_idle() and is_closed()"
)


def _versions() -> str:
    from . import version_of

    return f"{version_of('httpx')}, {version_of('httpcore')}"


def _is_pool(obj: Any) -> bool:
    return type(obj).__module__.startswith("httpcore") and hasattr(obj, "connections")


def _pools(obj: Any) -> list[Any] | None:
    """The httpcore pools behind ``obj``, or None when ``obj`` is nothing of ours."""
    if _is_pool(obj):
        return [obj]
    module = type(obj).__module__
    if module.startswith("httpx") and hasattr(obj, "_transport"):  # Client, AsyncClient
        transports = [obj._transport, *getattr(obj, "_mounts", {}).values()]
    elif module.startswith("httpx") and hasattr(obj, "_pool"):  # HTTPTransport, AsyncHTTPTransport
        transports = [obj]
    else:
        return None
    pools = []
    for transport in transports:
        if transport is None:  # a mount that disables a pattern
            continue
        if _is_pool(transport):  # httpx 0.13-0.17: the transport is the pool
            pools.append(transport)
        elif _is_pool(getattr(transport, "_pool", None)):
            pools.append(transport._pool)
        # Other transports (MockTransport, WSGI, ASGI, a user's own) pool nothing.
    return pools


def _origin(conn: Any) -> tuple[str, str, int]:
    origin = getattr(conn, "_remote_origin", None) or conn._origin
    return (text(origin.scheme), text(origin.host), int(origin.port))


def _local_port(conn: Any) -> int | None:
    inner = conn
    # Proxy connections wrap an HTTPConnection, which wraps the HTTP/1.1 or HTTP/2 connection.
    for _ in range(4):
        if hasattr(inner, "_network_stream"):
            break
        inner = getattr(inner, "_connection", None)
        if inner is None:
            return None  # still connecting, or the connection failed
    else:
        return None
    stream = inner._network_stream
    try:
        return port_of(stream.get_extra_info("client_addr"))
    except (OSError, LookupError):  # the socket is closed already
        return None


def _info(conn: Any) -> str:
    """httpcore's own words for the connection, without the origin the key already gives."""
    info = str(conn.info()) if hasattr(conn, "info") else ""
    return info.split("', ", 1)[1] if info.startswith("'") and "', " in info else info


def _state(conn: Any) -> str:
    if conn.is_closed():
        return CLOSED
    if conn.is_idle():
        return IDLE
    return ACTIVE


def snapshot(client: Any) -> PoolSnapshot | None:
    """The snapshot of an httpx client, transport or httpcore pool; None for other httpx objects."""
    pools = _pools(client)
    if pools is None:
        return None
    versions = _versions()
    name = type_name(client)
    connections = []
    with reading(name, versions, EXPECTS):
        for pool in pools:
            for conn in list(pool.connections):
                connections.append(
                    PooledConnection(
                        local_port=_local_port(conn),
                        state=_state(conn),
                        key=_origin(conn),
                        detail=_info(conn),
                    )
                )
    return PoolSnapshot(f"{name} ({versions})", tuple(connections))
