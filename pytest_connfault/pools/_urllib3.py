"""urllib3 (1.26 and 2.x) and urllib3-future: ``PoolManager`` (and ``ProxyManager``) and
``HTTPConnectionPool``.

Where the books are, in urllib3::

    manager.pools                 RecentlyUsedContainer: ``_container`` (pool key -> pool) under ``lock``
    pool.pool                     LifoQueue pre-filled with ``maxsize`` None placeholders; None once closed
    pool.pool.queue               the connections not checked out (and the unused placeholders)
    connection.sock               the socket; None once closed (the object stays in the queue)

urllib3 keeps no list of checked-out connections (only the response holds one), so the active ones
are counted as ``maxsize - len(queue)``, without ports. With ``block=False`` (the default) urllib3
may open more connections than ``maxsize`` when all are out; those extra ones are not counted.

urllib3-future (installed by niquests, and able to take over the ``urllib3`` name) keeps its pools in
a ``TrafficPolice`` instead: ``_registry`` (id -> every connection) and ``_container`` (ids of the
connections not checked out), under ``_lock``. A connection in the container can still be busy
(streamed responses, multiplexing), so its own ``is_idle`` decides.

The manager's container is read directly: its ``__getitem__`` would mark a pool as recently used.
"""

from __future__ import annotations

import sys
from typing import Any

from ._common import family_module, reading, socket_port, type_name
from ._snapshot import ACTIVE, IDLE, UNCONNECTED, PooledConnection, PoolSnapshot

EXPECTS = (
    "PoolManager.pools (RecentlyUsedContainer: _container, lock; or urllib3-future's TrafficPolice: "
    "_registry, _container, _lock), HTTPConnectionPool.pool (LifoQueue: queue, mutex, maxsize), "
    "and each connection's sock"
)


def _is_police(obj: Any) -> bool:
    return type(obj).__name__ == "TrafficPolice"


def versions(obj: Any) -> str:
    """``urllib3 2.8.0``, or ``urllib3-future 2.25.904`` (whatever name it was imported under)."""
    module = family_module(obj, ("urllib3", "urllib3_future"))
    top = getattr(module, "__name__", "urllib3")
    version = getattr(module, "__version__", "(version unknown)")
    # urllib3-future imports its TrafficPolice module with the package; urllib3 has none.
    future = top == "urllib3_future" or f"{top}.util.traffic_police" in sys.modules
    if future:
        return f"urllib3-future {version} (imported as {top!r})"
    return f"urllib3 {version}"


def _pools_of_manager(manager: Any) -> list[Any]:
    pools = manager.pools
    if _is_police(pools):
        with pools._lock:
            return list(pools._registry.values())
    with pools.lock:
        return list(pools._container.values())


def _key(pool: Any) -> tuple[str, str, int]:
    return (str(pool.scheme), str(pool.host), int(pool.port) if pool.port is not None else 0)


def _connections_of_pool(pool: Any) -> list[PooledConnection]:
    queue = pool.pool
    if queue is None:  # the pool is closed
        return []
    key = _key(pool)
    out = []
    if _is_police(queue):
        with queue._lock:
            everyone = list(queue._registry.items())
            available = set(queue._container)
        for ident, conn in everyone:
            if conn.sock is None:
                state = UNCONNECTED
            elif ident in available and conn.is_idle:
                state = IDLE
            else:
                state = ACTIVE
            out.append(PooledConnection(socket_port(conn.sock), state, key))
        return out
    with queue.mutex:
        items = list(queue.queue)
    checked_out = queue.maxsize - len(items)
    out.extend(PooledConnection(None, ACTIVE, key, "checked out") for _ in range(max(checked_out, 0)))
    for conn in items:
        if conn is None:  # a slot not used yet
            continue
        sock = conn.sock
        if sock is None:
            out.append(PooledConnection(None, UNCONNECTED, key, "sock is None"))
        else:
            out.append(PooledConnection(socket_port(sock), IDLE, key))
    return out


def is_manager(obj: Any) -> bool:
    """Whether ``obj`` looks like a urllib3 (or urllib3-future) ``PoolManager``."""
    return hasattr(obj, "pools") and hasattr(obj, "connection_pool_kw")


def is_pool(obj: Any) -> bool:
    """Whether ``obj`` looks like a urllib3 (or urllib3-future) ``HTTPConnectionPool``."""
    return hasattr(obj, "pool") and hasattr(obj, "ConnectionCls")


def connections(manager_or_pool: Any) -> list[PooledConnection]:
    """The connections of a manager or pool (used by the requests adapter too)."""
    name = type_name(manager_or_pool)
    with reading(name, versions(manager_or_pool), EXPECTS):
        if is_manager(manager_or_pool):
            return [c for pool in _pools_of_manager(manager_or_pool) for c in _connections_of_pool(pool)]
        return _connections_of_pool(manager_or_pool)


def describe(obj: Any) -> str:
    """``urllib3.PoolManager (urllib3 2.8.0)``."""
    return f"{type_name(obj)} ({versions(obj)})"


def snapshot(client: Any) -> PoolSnapshot | None:
    """The snapshot of a urllib3 ``PoolManager`` or ``HTTPConnectionPool``; None otherwise."""
    if not (is_manager(client) or is_pool(client)):
        return None
    return PoolSnapshot(describe(client), tuple(connections(client)))
