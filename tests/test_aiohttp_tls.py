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
    """One TLS connection, reused: one transport recorded; after close() none is left, and it is closing."""
    connector = tidy_connector(ssl=connfault_client_ssl_context)
    async with aiohttp.ClientSession(connector=connector) as session:
        for path in ("/first", "/second"):
            async with session.get(connfault_tls_server.url + path) as response:
                assert response.status == 200
                await response.read()
        recorded = list(connector.transports.values())
        assert len(recorded) == 1, f"expected the one TLS connection's transport, got {recorded}"
    assert connector.transports == {}
    assert all(transport.is_closing() for transport in recorded)
    assert [r.connection_id for r in connfault_tls_server.requests] == [1, 1]


async def test_plain_http_transports_are_left_alone(connfault_server: FaultServer) -> None:
    """Without TLS the connector records nothing: it is a plain TCPConnector."""
    connector = tidy_connector()
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.get(connfault_server.url) as response:
            assert response.status == 200
            await response.read()
        assert connector.transports == {}
    assert isinstance(connector, aiohttp.TCPConnector)
