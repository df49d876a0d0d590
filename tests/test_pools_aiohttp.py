"""pool_snapshot on aiohttp (ClientSession, TCPConnector), over real sockets."""

from __future__ import annotations

import asyncio
import re
import time
from typing import Callable

import aiohttp
import pytest

from pytest_connfault import FaultServer, pool_snapshot


async def _until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Give the loop turns until ``condition()`` holds; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true within {timeout} s")
        await asyncio.sleep(0)


pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("anyio_backend", ["asyncio"])]


async def test_idle_after_a_response(connfault_server: FaultServer) -> None:
    """After a response is read, the connector holds one idle connection on the port the server saw."""
    async with aiohttp.ClientSession() as session:
        async with session.get(connfault_server.url) as response:
            assert await response.read() == b"ok\n"
        snapshot = pool_snapshot(session)
        assert pool_snapshot(session.connector).connections == snapshot.connections
    [pooled] = snapshot.connections
    assert (pooled.state, pooled.local_port) == ("idle", connfault_server.connections[0].client_port)
    assert pooled.key == ("http", "127.0.0.1", connfault_server.port)
    assert snapshot.client == f"aiohttp.ClientSession (aiohttp {aiohttp.__version__})"


async def test_active_while_the_body_is_unread(connfault_server: FaultServer) -> None:
    """A response whose body has not arrived keeps its connection acquired: active, with its port."""
    handle = connfault_server.inject("stall", at="after_headers")
    async with aiohttp.ClientSession() as session:
        async with session.get(connfault_server.url) as response:
            await handle.wait_async(timeout=5)
            during = pool_snapshot(session)
            await connfault_server.release_async()
            await response.read()
        after = pool_snapshot(session)
    port = connfault_server.connections[0].client_port
    assert [(c.state, c.local_port) for c in during.connections] == [("active", port)]
    assert [(c.state, c.local_port) for c in after.connections] == [("idle", port)]


async def test_closed_entry_is_not_idle(connfault_server: FaultServer) -> None:
    """aiohttp keeps a connection the server closed among its idle ones until the next request: shown closed."""
    async with aiohttp.ClientSession() as session:
        async with session.get(connfault_server.url) as response:
            await response.read()
        await connfault_server.close_idle_async()
        # aiohttp learns of the FIN on a turn of its own loop: let the loop run until it has (bounded).
        await _until(lambda: pool_snapshot(session).idle == 0)
        snapshot = pool_snapshot(session)
        [dead] = snapshot.connections
        # The port is known while the transport closes, and None once aiohttp has dropped it.
        assert dead.state == "closed"
        assert dead.local_port in (None, connfault_server.connections[0].client_port)
        assert (snapshot.active, snapshot.idle, snapshot.total) == (0, 0, 0)
        async with session.get(connfault_server.url) as response:
            await response.read()
        after = pool_snapshot(session)
    assert [(c.state, c.local_port) for c in after.connections] == [
        ("idle", connfault_server.connections[1].client_port)
    ]


async def test_closed_session_has_no_pool(connfault_server: FaultServer) -> None:
    """A closed session has dropped its connector: an empty snapshot marked closed."""
    session = aiohttp.ClientSession()
    async with session.get(connfault_server.url) as response:
        await response.read()
    await session.close()
    snapshot = pool_snapshot(session)
    assert snapshot.connections == ()
    assert snapshot.client.endswith(", closed)")


async def test_moved_internals_name_the_version(
    monkeypatch: pytest.MonkeyPatch, connfault_server: FaultServer
) -> None:
    """When the connector's books are not where aiohttp keeps them, the error names aiohttp's version."""
    from pytest_connfault import PoolSnapshotError

    async with aiohttp.ClientSession() as session:
        # Simulate a future aiohttp that renamed the per-host table (on this object only).
        monkeypatch.delattr(session.connector, "_acquired_per_host")
        with pytest.raises(PoolSnapshotError, match=rf"aiohttp {re.escape(aiohttp.__version__)}: AttributeError"):
            pool_snapshot(session)
