"""The documented bug (encode/httpx #327) against niquests, with the pool's books checked.

Runs where niquests is installed (its own tox environment: it replaces urllib3 with urllib3-future).
Request, the server drops the idle connection (FIN, RST or half-close), request again: a new
connection serves, and the pool holds 0 active and 1 idle. Mid-exchange niquests does not retry:
a reset before the response, a truncated body and a read timeout raise; after the truncated body
the closed connection object stays registered with no socket (``unconnected``), never as idle.
"""

from __future__ import annotations

import pytest

from pytest_connfault import (
    FaultServer,
    assert_new_connection,
    assert_no_leak,
    assert_no_stale,
    assert_pool,
)

niquests = pytest.importorskip("niquests")

DROPS = ["close", "reset", "half_close"]


@pytest.mark.parametrize("drop", DROPS)
def test_session_after_idle_drop(connfault_server: FaultServer, drop: str) -> None:
    """niquests: after the server drops the idle connection, a new one serves; the pool holds 0 active, 1 idle."""
    with niquests.Session() as session:
        assert session.get(connfault_server.url + "/first").status_code == 200
        getattr(connfault_server, f"{drop}_idle")()
        assert session.get(connfault_server.url + "/second").status_code == 200
        assert_new_connection(connfault_server, client=session)
        assert_pool(session, active=0, idle=1, server=connfault_server)
        assert_no_stale(session, connfault_server)


@pytest.mark.connfault("reset", at="before_response")
def test_reset_before_response_leaves_nothing(connfault_server: FaultServer) -> None:
    """A reset before the response raises ConnectionError and leaves the pool empty."""
    with niquests.Session() as session:
        with pytest.raises(niquests.ConnectionError):
            session.get(connfault_server.url)
        assert_pool(session, active=0, idle=0, server=connfault_server)


@pytest.mark.connfault("truncate", body_bytes=10)
def test_truncated_body_leaves_an_unconnected_entry(connfault_server: FaultServer) -> None:
    """A body cut short raises ChunkedEncodingError; the connection object is kept unconnected, not idle."""
    connfault_server.respond("/", body=b"x" * 100)
    with niquests.Session() as session:
        with pytest.raises(niquests.exceptions.ChunkedEncodingError):
            session.get(connfault_server.url)
        snapshot = assert_pool(session, active=0, idle=0, server=connfault_server)
        assert [c.state for c in snapshot.connections] == ["unconnected"]
        assert session.get(connfault_server.url).status_code == 200
        assert_pool(session, active=0, idle=1)


@pytest.mark.connfault("stall")
def test_read_timeout_during_stall_leaves_nothing(connfault_server: FaultServer) -> None:
    """A stalled server raises ReadTimeout; the connection is not kept."""
    with niquests.Session() as session:
        with pytest.raises(niquests.ReadTimeout):
            session.get(connfault_server.url, timeout=(5, 0.3))
        assert_pool(session, active=0, idle=0, server=connfault_server)
        assert_no_leak(session)
