"""The hooks pytest-connfault adds to pytest (declared through ``pytest_addhooks``).

Implement them in a ``conftest.py`` or a plugin, like any pytest hook.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import pytest

from . import pools

if TYPE_CHECKING:
    from .pools import PoolSnapshot


@pytest.hookspec(firstresult=True)
def pytest_connfault_pool_snapshot(client: object) -> PoolSnapshot | None:
    """Return what ``client``'s connection pool holds, or None if ``client`` is not yours.

    Called by :func:`pytest_connfault.pool_snapshot` (and so by every ``assert_*`` helper that
    reads a pool) before the installed and built-in adapters: the first non-None result wins, so
    an implementation can teach pytest-connfault a new client or override a built-in adapter.
    Build the result from :class:`~pytest_connfault.PoolSnapshot` and
    :class:`~pytest_connfault.PooledConnection`; read the client's structures, do not probe its
    sockets.

    Example::

        def pytest_connfault_pool_snapshot(client):
            if isinstance(client, MyPool):
                return PoolSnapshot("MyPool", tuple(
                    PooledConnection(c.port, "active" if c.busy else "idle", ("http", c.host, c.remote_port))
                    for c in client.connections))
            return None
    """


class _SessionHooks:
    """Makes the session's hook reachable from ``pool_snapshot`` while the session is configured."""

    def __init__(self, caller: Any) -> None:
        self.caller = caller

    @pytest.hookimpl(trylast=True)
    def pytest_unconfigure(self, config: pytest.Config) -> None:
        if self.caller in pools._hook_callers:
            pools._hook_callers.remove(self.caller)


def register(pluginmanager: pytest.PytestPluginManager) -> None:
    """Declare the hooks on ``pluginmanager`` (called from the plugin's ``pytest_addhooks``)."""
    pluginmanager.add_hookspecs(sys.modules[__name__])
    caller = pluginmanager.hook.pytest_connfault_pool_snapshot
    pools._hook_callers.append(caller)
    pluginmanager.register(_SessionHooks(caller), "connfault-pool-hooks")
