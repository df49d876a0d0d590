"""pool_snapshot on httpx (httpcore pools): sync and async, asyncio and trio, over real sockets."""

from __future__ import annotations

import httpcore
import httpx
import pytest

from pytest_connfault import FaultServer, pool_snapshot


def _key(server: FaultServer) -> tuple[str, str, int]:
    return ("http", "127.0.0.1", server.port)


def test_idle_connection_after_a_response(connfault_server: FaultServer) -> None:
    """After a response is read, the pool holds its connection as idle, with the port the server saw."""
    with httpx.Client() as client:
        assert client.get(connfault_server.url).status_code == 200
        snapshot = pool_snapshot(client)
    assert (snapshot.active, snapshot.idle, snapshot.total) == (0, 1, 1)
    [pooled] = snapshot.connections
    assert pooled.state == "idle"
    assert pooled.key == _key(connfault_server)
    assert pooled.local_port == connfault_server.connections[0].client_port
    assert snapshot.client.startswith("httpx.Client (httpx ")
    assert "httpcore" in snapshot.client


def test_active_while_the_body_is_unread(connfault_server: FaultServer) -> None:
    """A streamed response whose body has not arrived keeps its connection active, then idle once read."""
    handle = connfault_server.inject("stall", at="after_headers")
    with httpx.Client() as client:
        with client.stream("GET", connfault_server.url) as response:
            assert response.status_code == 200
            handle.wait(timeout=5)
            during = pool_snapshot(client)
            connfault_server.release()
            response.read()
        after = pool_snapshot(client)
    assert (during.active, during.idle) == (1, 0)
    assert during.connections[0].local_port == connfault_server.connections[0].client_port
    assert (after.active, after.idle) == (0, 1)


def test_server_drop_is_not_seen_until_the_next_request(connfault_server: FaultServer) -> None:
    """The snapshot reports the client's belief: a connection reset by the server stays idle until reused."""
    with httpx.Client() as client:
        client.get(connfault_server.url)
        [dropped] = connfault_server.reset_idle()
        before = pool_snapshot(client)
        client.get(connfault_server.url)
        after = pool_snapshot(client)
    assert [c.local_port for c in before.connections] == [dropped.client_port]
    assert before.connections[0].state == "idle"
    assert after.idle == 1
    assert after.connections[0].local_port == connfault_server.connections[1].client_port != dropped.client_port


def test_transport_and_httpcore_pool_are_accepted(connfault_server: FaultServer) -> None:
    """The transport and a bare httpcore pool give the same snapshot as the client."""
    transport = httpx.HTTPTransport()
    with httpx.Client(transport=transport) as client:
        client.get(connfault_server.url)
        via_client = pool_snapshot(client).connections
        assert pool_snapshot(transport).connections == via_client
    with httpcore.ConnectionPool() as pool:
        pool.request("GET", connfault_server.url)
        bare = pool_snapshot(pool)
    assert (bare.active, bare.idle) == (0, 1)
    assert bare.client.startswith("httpcore.ConnectionPool")


def test_mounted_transports_are_included(connfault_server: FaultServer) -> None:
    """Connections of a mounted transport (as for a proxy or one host) count too."""
    other = FaultServer().start()
    try:
        mounts = {f"http://127.0.0.1:{other.port}": httpx.HTTPTransport()}
        with httpx.Client(mounts=mounts) as client:
            client.get(connfault_server.url)
            client.get(other.url)
            snapshot = pool_snapshot(client)
    finally:
        other.stop()
    assert sorted(c.key[2] for c in snapshot.connections) == sorted([connfault_server.port, other.port])
    assert snapshot.idle == 2


def test_mock_transport_pools_nothing() -> None:
    """A client on a transport without a pool has an empty snapshot, not an error."""
    transport = httpx.MockTransport(lambda request: httpx.Response(200))
    with httpx.Client(transport=transport) as client:
        client.get("http://example.invalid/")
        assert pool_snapshot(client).connections == ()


def test_closed_client_has_an_empty_pool(connfault_server: FaultServer) -> None:
    """Closing the client empties its pool."""
    client = httpx.Client()
    client.get(connfault_server.url)
    client.close()
    assert pool_snapshot(client).connections == ()


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_async_client_idle_and_active(connfault_server: FaultServer) -> None:
    """httpx.AsyncClient on asyncio and trio: active while streaming, idle after, ports joined to the ledger."""
    handle = connfault_server.inject("stall", at="after_headers")
    async with httpx.AsyncClient() as client:
        async with client.stream("GET", connfault_server.url) as response:
            await handle.wait_async(timeout=5)
            during = pool_snapshot(client)
            await connfault_server.release_async()
            await response.aread()
        after = pool_snapshot(client)
    port = connfault_server.connections[0].client_port
    assert [(c.state, c.local_port) for c in during.connections] == [("active", port)]
    assert [(c.state, c.local_port) for c in after.connections] == [("idle", port)]
    assert after.client.startswith("httpx.AsyncClient")


def test_moved_internals_name_the_version(monkeypatch: pytest.MonkeyPatch, connfault_server: FaultServer) -> None:
    """When httpcore's structures are not where the adapter expects, the error names the versions."""
    from pytest_connfault import PoolSnapshotError

    with httpx.Client() as client:
        client.get(connfault_server.url)
        [conn] = client._transport._pool.connections  # type: ignore[attr-defined]
        # Simulate a future httpcore that renamed the origin attribute (on this object only).
        monkeypatch.delattr(conn, "_origin")
        with pytest.raises(PoolSnapshotError, match=r"httpx 0\.\d+\.\d+, httpcore \d+\.\d+\.\d+.*_origin"):
            pool_snapshot(client)
