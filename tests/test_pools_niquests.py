"""pool_snapshot on niquests (urllib3-future's TrafficPolice pools); runs in the niquests tox environment.

Installing niquests replaces the ``urllib3`` package with urllib3-future, so these run apart from the
main environment; here they are skipped.
"""

from __future__ import annotations

import pytest

from pytest_connfault import FaultServer, pool_snapshot

niquests = pytest.importorskip("niquests")


def test_session_idle_active_and_named(connfault_server: FaultServer) -> None:
    """niquests.Session: idle after a response, active while a streamed body is pending; urllib3-future named."""
    handle = connfault_server.inject("stall", at="after_headers", request=2)
    with niquests.Session() as session:
        session.get(connfault_server.url)
        idle = pool_snapshot(session)
        response = session.get(connfault_server.url, stream=True)
        handle.wait(timeout=5)
        during = pool_snapshot(session)
        connfault_server.release()
        assert response.content == b"ok\n"
        response.close()
        after = pool_snapshot(session)
    port = connfault_server.connections[0].client_port
    assert [(c.state, c.local_port) for c in idle.connections] == [("idle", port)]
    assert [(c.state, c.local_port) for c in during.connections] == [("active", port)]
    assert [(c.state, c.local_port) for c in after.connections] == [("idle", port)]
    assert "niquests" in idle.client
    assert "urllib3-future" in idle.client


def test_urllib3_name_is_recognised_as_urllib3_future(connfault_server: FaultServer) -> None:
    """Under the ``urllib3`` name, urllib3-future's PoolManager is read through its TrafficPolice."""
    import urllib3

    manager = urllib3.PoolManager()
    try:
        manager.request("GET", connfault_server.url)
        snapshot = pool_snapshot(manager)
    finally:
        manager.clear()
    assert (snapshot.active, snapshot.idle) == (0, 1)
    if type(manager.pools).__name__ == "TrafficPolice":
        assert "urllib3-future" in snapshot.client


def test_connection_close_leaves_an_unconnected_entry(connfault_server: FaultServer) -> None:
    """After `Connection: close` the connection object stays registered with no socket: unconnected."""
    connfault_server.respond("/", close=True)
    with niquests.Session() as session:
        session.get(connfault_server.url)
        snapshot = pool_snapshot(session)
    assert [(c.state, c.local_port) for c in snapshot.connections] == [("unconnected", None)]
