"""``pytest_connfault.aiohttp_tls.tidy_connector``: no TLS transport outlives its aiohttp session.

On aiohttp >= 3.12.4 with Python >= 3.11 aiohttp closes its TLS transports itself, so what is
checked here is the connector's own part: it records exactly the TLS transports it hands out, and
once the session has closed it holds none and every one it held is closing. (On older aiohttp or
Python the TLS examples, run with ResourceWarning as an error, show the leak it prevents.)
"""

from __future__ import annotations

import ssl

import aiohttp
import pytest

from pytest_connfault import FaultServer
from pytest_connfault.aiohttp_tls import tidy_connector

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("anyio_backend", ["asyncio"])]


async def test_tls_transports_are_recorded_then_closed_with_the_session(
    connfault_tls_server: FaultServer, connfault_client_ssl_context: ssl.SSLContext
) -> None:
    """Each TLS connection's transport is recorded once; after close() none is left, all closing.

    Two requests: aiohttp usually reuses the first connection, but an older one (3.9 in the oldest
    tox env) returns a connection to its pool only once the request's writer task has finished,
    which on a loaded machine can come after the second request has taken a new connection.
    """
    connector = tidy_connector(ssl=connfault_client_ssl_context)
    async with aiohttp.ClientSession(connector=connector) as session:
        for path in ("/first", "/second"):
            async with session.get(connfault_tls_server.url + path) as response:
                assert response.status == 200
                await response.read()
        recorded = list(connector.transports.values())
        opened = len(connfault_tls_server.connections)
        assert len(recorded) == opened, f"{opened} TLS connection(s) opened, transports recorded: {recorded}"
    assert connector.transports == {}
    assert all(transport.is_closing() for transport in recorded)


async def test_plain_http_transports_are_left_alone(connfault_server: FaultServer) -> None:
    """Without TLS the connector records nothing: it is a plain TCPConnector."""
    connector = tidy_connector()
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.get(connfault_server.url) as response:
            assert response.status == 200
            await response.read()
        assert connector.transports == {}
    assert isinstance(connector, aiohttp.TCPConnector)
