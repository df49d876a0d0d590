"""Pool snapshots: what a client's connection pool believes, for any client.

:func:`pool_snapshot` asks, in this order, and the first answer wins:

1. the ``pytest_connfault_pool_snapshot(client)`` hook, when a pytest session is running (so a
   ``conftest.py`` can teach it a client, or override a built-in adapter);
2. the callables of the ``pytest_connfault.pools`` entry-point group (installable adapters);
3. the built-in adapters: httpx/httpcore, urllib3 (and urllib3-future), requests (and niquests),
   aiohttp.

An adapter is a callable ``adapter(client) -> PoolSnapshot | None``; ``None`` means "not mine".
Adapters read the client's own structures only: no monkey-patching, no probing of sockets.
"""

from __future__ import annotations

import sys
from importlib import metadata
from typing import Any, Callable, Optional

from ._snapshot import ACTIVE as ACTIVE
from ._snapshot import CLOSED as CLOSED
from ._snapshot import IDLE as IDLE
from ._snapshot import STATES as STATES
from ._snapshot import UNCONNECTED as UNCONNECTED
from ._snapshot import PooledConnection as PooledConnection
from ._snapshot import PoolSnapshot as PoolSnapshot
from ._snapshot import PoolSnapshotError as PoolSnapshotError

Adapter = Callable[[Any], Optional[PoolSnapshot]]

#: The entry-point group installable adapters register under.
ENTRY_POINT_GROUP = "pytest_connfault.pools"

#: Built-in adapters by the top-level package of the client's class (or one of its bases). The
#: modules are imported only when a client of theirs turns up.
_BUILTIN: dict[str, str] = {
    "httpx": "_httpx",
    "httpcore": "_httpx",
    "urllib3": "_urllib3",
    "urllib3_future": "_urllib3",
    "requests": "_requests",
    "niquests": "_requests",
    "aiohttp": "_aiohttp",
}

#: Hook callers of the running pytest sessions, innermost last (pytester runs sessions in sessions).
#: Pushed and popped by ``pytest_connfault.hooks``; pool_snapshot takes no config, so this is the
#: one place it can find the session's hooks.
_hook_callers: list[Callable[..., Any]] = []

_entry_points: tuple[tuple[str, ...], list[Adapter]] | None = None


def pool_snapshot(client: object) -> PoolSnapshot:
    """What ``client``'s pool holds now: its active and idle connections, with their local ports.

    Works for httpx ``Client``/``AsyncClient`` (and their transports, httpcore pools), urllib3
    ``PoolManager``/``HTTPConnectionPool``, requests ``Session``, aiohttp
    ``ClientSession``/``TCPConnector``, niquests ``Session``, and any client an adapter is
    plugged in for. Safe to call from sync and async code (it only reads memory).

    Raises:
        PoolSnapshotError: no adapter knows the client, or the client's internals are not where
            its adapter expects them (the message names the client's version).
    """
    if _hook_callers:  # the innermost session's hook is the one that applies
        result = _hook_callers[-1](client=client)
        if result is not None:
            return _checked(result, "the pytest_connfault_pool_snapshot hook")
    for adapter in _installed_adapters():
        result = adapter(client)
        if result is not None:
            return _checked(result, f"the {ENTRY_POINT_GROUP} entry point {adapter!r}")
    module = _builtin_module(client)
    if module is not None:
        built_in: PoolSnapshot | None = module.snapshot(client)
        if built_in is not None:
            return built_in
    raise PoolSnapshotError(
        f"no pool adapter knows {_type_name(client)}; built in: httpx, urllib3, requests, aiohttp, "
        "niquests. Teach it one with a pytest_connfault_pool_snapshot(client) hook in conftest.py, "
        f"or install an adapter under the {ENTRY_POINT_GROUP!r} entry-point group."
    )


def _checked(result: object, source: str) -> PoolSnapshot:
    if not isinstance(result, PoolSnapshot):
        raise PoolSnapshotError(f"{source} returned {result!r}, not a PoolSnapshot")
    return result


def _type_name(client: object) -> str:
    cls = type(client)
    return f"{cls.__module__}.{cls.__qualname__}"


def _builtin_module(client: object) -> Any:
    import importlib

    for cls in type(client).__mro__:
        top = cls.__module__.split(".", 1)[0]
        name = _BUILTIN.get(top)
        if name is not None:
            return importlib.import_module(f"{__name__}.{name}")
    return None


def _installed_adapters() -> list[Adapter]:
    """The entry-point adapters, loaded once per ``sys.path``."""
    global _entry_points
    path = tuple(sys.path)
    if _entry_points is None or _entry_points[0] != path:
        found: Any = metadata.entry_points()
        if hasattr(found, "select"):
            points = list(found.select(group=ENTRY_POINT_GROUP))
        else:  # Python 3.9: a dict of groups
            points = list(found.get(ENTRY_POINT_GROUP, ()))
        adapters: list[Adapter] = []
        for point in points:
            try:
                adapter = point.load()
            except Exception as exc:
                raise PoolSnapshotError(
                    f"the {ENTRY_POINT_GROUP} entry point {point.name!r} ({point.value}) failed to load: {exc!r}"
                ) from exc
            if not callable(adapter):
                raise PoolSnapshotError(
                    f"the {ENTRY_POINT_GROUP} entry point {point.name!r} ({point.value}) is not callable"
                )
            adapters.append(adapter)
        _entry_points = (path, adapters)
    return _entry_points[1]


def version_of(distribution: str, module: object = None) -> str:
    """``"<name> <version>"`` of an installed distribution (for names in snapshots and errors)."""
    try:
        return f"{distribution} {metadata.version(distribution)}"
    except metadata.PackageNotFoundError:
        found = getattr(module, "__version__", None)
        return f"{distribution} {found}" if found else f"{distribution} (version unknown)"


__all__ = (
    "ACTIVE",
    "CLOSED",
    "ENTRY_POINT_GROUP",
    "IDLE",
    "STATES",
    "UNCONNECTED",
    "PoolSnapshot",
    "PoolSnapshotError",
    "PooledConnection",
    "pool_snapshot",
    "version_of",
)
