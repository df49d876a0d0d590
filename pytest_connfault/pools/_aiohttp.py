"""aiohttp 3.x: ``ClientSession`` and ``TCPConnector`` (any ``BaseConnector``).

Where the books are (3.8 to 3.14)::

    session.connector                 the connector; None once the session is closed
    connector._conns                  idle: ConnectionKey -> list (<= 3.10) or deque (>= 3.11)
                                      of (ResponseHandler, last-used time)
    connector._acquired_per_host      checked out: ConnectionKey -> set of ResponseHandler
    connector._acquired               every checked-out ResponseHandler (placeholders while connecting)
    handler.is_connected()            transport present and not closing: the client's own belief
    handler.transport.get_extra_info("sockname")   the local address

aiohttp prunes a closed connection from ``_conns`` only on its next request for that host (or its
cleanup timer), so a connection the server dropped is kept there with ``is_connected()`` False: the
snapshot shows it as ``closed``. Nothing here is indexed by key: ``_conns`` is a defaultdict, and
indexing it would add entries.
"""

from __future__ import annotations

from typing import Any

from ._common import port_of, reading, type_name
from ._snapshot import ACTIVE, CLOSED, IDLE, PooledConnection, PoolSnapshot

EXPECTS = "connector._conns (key -> [(protocol, time)]), connector._acquired_per_host and _acquired"


def _versions() -> str:
    from . import version_of

    return version_of("aiohttp")


def _key(key: Any) -> tuple[str, str, int]:
    scheme = "https" if getattr(key, "is_ssl", False) else "http"
    return (scheme, str(key.host), int(key.port) if key.port is not None else 0)


def _port(proto: Any) -> int | None:
    transport = getattr(proto, "transport", None)
    if transport is None:
        return None
    return port_of(transport.get_extra_info("sockname"))


def snapshot(client: Any) -> PoolSnapshot | None:
    """The snapshot of an aiohttp ``ClientSession`` or connector; None for other aiohttp objects."""
    name = type_name(client)
    if hasattr(client, "_conns") and hasattr(client, "_acquired"):
        connector = client
    elif hasattr(client, "connector") and hasattr(client, "ws_connect"):
        connector = client.connector
        if connector is None:  # a closed session has dropped its connector
            return PoolSnapshot(f"{name} ({_versions()}, closed)", ())
    else:
        return None
    out: list[PooledConnection] = []
    with reading(name, _versions(), EXPECTS):
        for key, entries in list(connector._conns.items()):
            for proto, _used in list(entries):
                state = IDLE if proto.is_connected() else CLOSED
                out.append(PooledConnection(_port(proto), state, _key(key)))
        keyed: set[int] = set()
        for key, protos in list(connector._acquired_per_host.items()):
            for proto in list(protos):
                keyed.add(id(proto))
                out.append(PooledConnection(_port(proto), ACTIVE, _key(key)))
        for proto in list(connector._acquired):
            if id(proto) not in keyed:  # being connected: no key recorded yet
                out.append(PooledConnection(_port(proto), ACTIVE, ("", "", 0), "connecting"))
    return PoolSnapshot(f"{name} ({_versions()})", tuple(out))
