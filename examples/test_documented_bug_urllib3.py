"""The documented bug (encode/httpx #327) against urllib3's PoolManager, with the pool's books checked.

Request, the server drops the idle keep-alive connection (FIN, RST or half-close), request again:
the second request must succeed on a new connection, and the pool must then hold 0 active and
1 idle connection. Mid-exchange, urllib3 retries idempotent requests on its own (``Retry(3)``): after
a reset before the response, a truncated body or a read timeout, the GET succeeds on a new
connection; the server's ledger shows it arrived twice, and the pool holds only the new connection.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import urllib3

from pytest_connfault import (
    FaultServer,
    assert_new_connection,
    assert_no_leak,
    assert_no_stale,
    assert_pool,
)

DROPS = ["close", "reset", "half_close"]


@pytest.fixture
def manager() -> Iterator[urllib3.PoolManager]:
    """A PoolManager with a short read timeout, cleared after the test."""
    manager = urllib3.PoolManager(timeout=urllib3.Timeout(connect=5, read=0.3))
    yield manager
    manager.clear()


@pytest.mark.parametrize("drop", DROPS)
def test_pool_manager_after_idle_drop(connfault_server: FaultServer, manager: urllib3.PoolManager, drop: str) -> None:
    """urllib3: after the server drops the idle connection, a new one serves; the pool holds 0 active, 1 idle."""
    assert manager.request("GET", connfault_server.url + "/first").status == 200
    getattr(connfault_server, f"{drop}_idle")()
    assert manager.request("GET", connfault_server.url + "/second").status == 200
    assert_new_connection(connfault_server, client=manager)
    assert_pool(manager, active=0, idle=1, server=connfault_server)
    assert_no_stale(manager, connfault_server)


def _served_twice(server: FaultServer) -> None:
    """The GET arrived twice: the fault broke the first try, urllib3 retried on a new connection."""
    first, second = server.requests
    assert (first.connection_id, second.connection_id) == (1, 2)
    assert second.outcome.kind == "responded"


@pytest.mark.connfault("reset", at="before_response")
def test_reset_before_response_is_retried(connfault_server: FaultServer, manager: urllib3.PoolManager) -> None:
    """A reset before the response: urllib3 retries the GET on a new connection and pools only that one."""
    assert manager.request("GET", connfault_server.url).status == 200
    _served_twice(connfault_server)
    assert_pool(manager, active=0, idle=1, server=connfault_server)
    assert_no_stale(manager, connfault_server)


@pytest.mark.connfault("truncate", body_bytes=10)
def test_truncated_body_is_retried(connfault_server: FaultServer, manager: urllib3.PoolManager) -> None:
    """A body cut short: urllib3 retries the preloaded GET and pools only the new connection."""
    connfault_server.respond("/", body=b"x" * 100)
    assert manager.request("GET", connfault_server.url).data == b"x" * 100
    _served_twice(connfault_server)
    assert_pool(manager, active=0, idle=1, server=connfault_server)
    assert_no_stale(manager, connfault_server)


@pytest.mark.connfault("truncate", body_bytes=10)
def test_truncated_stream_keeps_an_unconnected_entry(
    connfault_server: FaultServer, manager: urllib3.PoolManager
) -> None:
    """Streamed, the cut raises ProtocolError; urllib3 queues the closed connection object: unconnected, not idle."""
    connfault_server.respond("/", body=b"x" * 100)
    response = manager.request("GET", connfault_server.url, preload_content=False)
    with pytest.raises(urllib3.exceptions.ProtocolError, match="IncompleteRead"):
        response.read()
    response.release_conn()
    snapshot = assert_pool(manager, active=0, idle=0, server=connfault_server)
    assert [c.state for c in snapshot.connections] == ["unconnected"]
    assert_no_leak(manager)


@pytest.mark.connfault("stall")
def test_read_timeout_during_stall_is_retried(connfault_server: FaultServer, manager: urllib3.PoolManager) -> None:
    """A stalled server: after the read timeout urllib3 retries on a new connection and pools only that one."""
    assert manager.request("GET", connfault_server.url).status == 200
    first, second = connfault_server.requests
    assert (first.connection_id, first.outcome.kind) == (1, "pending")  # still stalled
    assert second.connection_id == 2
    assert_pool(manager, active=0, idle=1, server=connfault_server)
    assert_no_leak(manager)
