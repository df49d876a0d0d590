"""requests and niquests ``Session``: the pools of its adapters' urllib3 pool managers.

``session.adapters`` maps URL prefixes to ``HTTPAdapter`` objects; each holds a ``poolmanager``
(urllib3's, or urllib3-future's under niquests) and a ``proxy_manager`` dict of ``ProxyManager``
objects. The pools themselves are read by the urllib3 adapter.
"""

from __future__ import annotations

from typing import Any

from . import _urllib3
from ._common import family_module, reading, type_name
from ._snapshot import PooledConnection, PoolSnapshot

EXPECTS = "Session.adapters[prefix].poolmanager and .proxy_manager (HTTPAdapter)"


def _versions(session: Any) -> str:
    from . import version_of

    module = family_module(session, ("requests", "niquests"))
    return version_of(getattr(module, "__name__", "requests"), module)


def snapshot(client: Any) -> PoolSnapshot | None:
    """The snapshot of a requests or niquests ``Session`` (or one of its adapters); None otherwise."""
    if hasattr(client, "adapters") and hasattr(client, "mount"):
        adapters = None
    elif hasattr(client, "poolmanager"):
        adapters = [client]
    else:
        return None
    name = type_name(client)
    versions = _versions(client)
    managers: list[Any] = []
    with reading(name, versions, EXPECTS):
        if adapters is None:
            adapters = list(client.adapters.values())
        for adapter in adapters:
            pm = getattr(adapter, "poolmanager", None)
            if pm is not None:
                managers.append(pm)
            managers.extend(getattr(adapter, "proxy_manager", {}).values())
    seen: set[int] = set()
    connections: list[PooledConnection] = []
    under = ""
    for manager in managers:
        if id(manager) in seen:
            continue
        seen.add(id(manager))
        under = _urllib3.versions(manager)
        connections.extend(_urllib3.connections(manager))
    label = f"{name} ({versions}{', ' + under if under else ''})"
    return PoolSnapshot(label, tuple(connections))
