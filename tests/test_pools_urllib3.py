"""pool_snapshot on urllib3 (PoolManager, HTTPConnectionPool) and requests (Session), over real sockets."""

from __future__ import annotations

from importlib.metadata import version

import pytest
import requests
import urllib3

from pytest_connfault import FaultServer, PoolSnapshotError, pool_snapshot


def test_pool_manager_idle_after_a_response(connfault_server: FaultServer) -> None:
    """After a preloaded response, the manager's pool holds one idle connection on the server's port."""
    manager = urllib3.PoolManager()
    try:
        assert manager.request("GET", connfault_server.url).status == 200
        snapshot = pool_snapshot(manager)
    finally:
        manager.clear()
    assert (snapshot.active, snapshot.idle, snapshot.total) == (0, 1, 1)
    [pooled] = snapshot.connections
    assert pooled.key == ("http", "127.0.0.1", connfault_server.port)
    assert pooled.local_port == connfault_server.connections[0].client_port
    assert snapshot.client == f"urllib3.PoolManager (urllib3 {version('urllib3')})"


def test_unread_response_is_active_without_a_port(connfault_server: FaultServer) -> None:
    """A response not yet read keeps its connection checked out: counted active (urllib3 keeps no list)."""
    handle = connfault_server.inject("stall", at="after_headers")
    manager = urllib3.PoolManager()
    try:
        response = manager.request("GET", connfault_server.url, preload_content=False)
        handle.wait(timeout=5)
        during = pool_snapshot(manager)
        connfault_server.release()
        response.read()
        response.release_conn()
        after = pool_snapshot(manager)
    finally:
        manager.clear()
    assert [(c.state, c.local_port) for c in during.connections] == [("active", None)]
    assert [(c.state, c.local_port) for c in after.connections] == [
        ("idle", connfault_server.connections[0].client_port)
    ]


def test_connection_close_leaves_an_unconnected_entry(connfault_server: FaultServer) -> None:
    """A connection closed after `Connection: close` stays queued with no socket: shown as unconnected."""
    connfault_server.respond("/", close=True)
    manager = urllib3.PoolManager()
    try:
        manager.request("GET", connfault_server.url)
        snapshot = pool_snapshot(manager)
    finally:
        manager.clear()
    assert (snapshot.active, snapshot.idle) == (0, 0)
    assert [(c.state, c.local_port) for c in snapshot.connections] == [("unconnected", None)]
    assert "1 unconnected" in repr(snapshot)


def test_connection_pool_directly(connfault_server: FaultServer) -> None:
    """An HTTPConnectionPool is accepted on its own; a closed pool is empty."""
    pool = urllib3.HTTPConnectionPool("127.0.0.1", connfault_server.port, maxsize=2)
    try:
        pool.request("GET", "/")
        snapshot = pool_snapshot(pool)
    finally:
        pool.close()
    assert (snapshot.active, snapshot.idle) == (0, 1)
    assert snapshot.client.startswith("urllib3.HTTPConnectionPool (urllib3 ")
    assert pool_snapshot(pool).connections == ()


def test_snapshot_does_not_touch_the_lru_order(connfault_server: FaultServer) -> None:
    """Reading the manager does not mark a pool as recently used (its container is read directly)."""
    other = FaultServer().start()
    manager = urllib3.PoolManager(num_pools=2)
    try:
        manager.request("GET", connfault_server.url)
        manager.request("GET", other.url)
        order = list(manager.pools.keys())
        pool_snapshot(manager)
        assert list(manager.pools.keys()) == order
    finally:
        manager.clear()
        other.stop()


def test_requests_session_reads_its_adapters(connfault_server: FaultServer) -> None:
    """requests.Session: the adapters' pool managers, idle after a response, active while streaming."""
    handle = connfault_server.inject("stall", at="after_headers", request=2)
    with requests.Session() as session:
        session.get(connfault_server.url)
        idle = pool_snapshot(session)
        with session.get(connfault_server.url, stream=True) as response:
            handle.wait(timeout=5)
            during = pool_snapshot(session)
            connfault_server.release()
            assert response.content == b"ok\n"
        after = pool_snapshot(session)
        adapter = session.get_adapter(connfault_server.url)
        assert pool_snapshot(adapter).connections == after.connections
    port = connfault_server.connections[0].client_port
    assert [(c.state, c.local_port) for c in idle.connections] == [("idle", port)]
    assert (during.active, during.idle) == (1, 0)
    assert [(c.state, c.local_port) for c in after.connections] == [("idle", port)]
    assert idle.client.startswith(f"requests.Session (requests {version('requests')}, urllib3 ")


def test_moved_internals_name_the_version(connfault_server: FaultServer) -> None:
    """A pool manager whose pools are not where urllib3 keeps them gives an error naming the version."""

    class Moved(urllib3.PoolManager):
        @property  # type: ignore[override]
        def pools(self) -> object:
            return object()  # a future urllib3 that keeps something else here

        @pools.setter
        def pools(self, value: object) -> None:
            pass

    manager = Moved()
    with pytest.raises(PoolSnapshotError, match=rf"urllib3 {version('urllib3')}: AttributeError.*_container"):
        pool_snapshot(manager)
