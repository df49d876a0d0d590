"""The hook that plugs a client into ``pytest --connfault`` (declared through ``pytest_addhooks``).

Implement it in a ``conftest.py`` or in a plugin's module (a ``pytest11`` entry point), like any
pytest hook: a client's maintainers can run the matrix against their client, or against a pinned
old version of it, without changes here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from ._drivers import Driver


@pytest.hookspec
def pytest_connfault_drivers(config: pytest.Config) -> list[Driver]:
    """Return client drivers to add to the conformance matrix (every implementation is called).

    A driver is an instance of :class:`pytest_connfault.conformance.SyncDriver` or
    :class:`~pytest_connfault.conformance.AsyncDriver`: its name and version, how to make a
    client, send a request with a timeout, close it, and read its pool. Names must not clash with
    the built-in ones (``httpx-sync``, ``httpx-async-asyncio``, ``httpx-async-trio``, ``urllib3``,
    ``requests``, ``aiohttp``).

    Example::

        from pytest_connfault.conformance import Reply, SyncDriver

        class MyClientDriver(SyncDriver):
            name = family = label = "myclient"
            module = distribution = "myclient"

            def open(self, options):
                return myclient.Client(max_connections=options.max_connections)

            def request(self, client, method, url, body, timeout):
                response = client.request(method, url, body=body, timeout=timeout)
                return Reply(response.status, response.body)

            def close(self, client):
                client.close()

        def pytest_connfault_drivers(config):
            return [MyClientDriver()]
    """
    raise NotImplementedError  # pragma: no cover - a specification
