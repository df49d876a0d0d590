"""The documented bug (encode/httpx #327) against requests, with the pool's books checked.

Request, the server drops the idle keep-alive connection (FIN, RST or half-close), request again:
the second request must succeed on a new connection, and the session's pool must then hold 0 active
and 1 idle connection. Mid-exchange, requests does not retry (its adapter uses ``max_retries=0``):
a reset before the response, a truncated body and a read timeout each raise, and nothing broken
stays pooled as idle or active. After a truncated body urllib3 queues the closed connection object
(``sock is None``) for lazy reconnection: the snapshot shows it as ``unconnected``.
"""

from __future__ import annotations

from collections.abc import Iterator
from importlib.metadata import version

import pytest
import requests

from pytest_connfault import (
    FaultServer,
    assert_new_connection,
    assert_no_leak,
    assert_no_stale,
    assert_pool,
)

DROPS = ["close", "reset", "half_close"]

URLLIB3 = version("urllib3")


@pytest.fixture
def session() -> Iterator[requests.Session]:
    """A requests session, closed after the test."""
    with requests.Session() as session:
        yield session


@pytest.mark.parametrize("drop", DROPS)
def test_session_after_idle_drop(connfault_server: FaultServer, session: requests.Session, drop: str) -> None:
    """requests: after the server drops the idle connection, a new one serves; the pool holds 0 active, 1 idle."""
    assert session.get(connfault_server.url + "/first").status_code == 200
    getattr(connfault_server, f"{drop}_idle")()
    assert session.get(connfault_server.url + "/second").status_code == 200
    assert_new_connection(connfault_server, client=session)
    assert_pool(session, active=0, idle=1, server=connfault_server)
    assert_no_stale(session, connfault_server)


@pytest.mark.connfault("reset", at="before_response")
def test_reset_before_response_leaves_nothing(connfault_server: FaultServer, session: requests.Session) -> None:
    """A reset before the response raises ConnectionError, is not retried, and leaves the pool empty."""
    with pytest.raises(requests.ConnectionError, match="Connection aborted"):
        session.get(connfault_server.url)
    assert len(connfault_server.requests) == 1
    assert_pool(session, active=0, idle=0, server=connfault_server)
    assert_no_leak(session)


@pytest.mark.xfail(
    int(URLLIB3.split(".")[0]) < 2,
    strict=True,
    reason=f"urllib3 {URLLIB3} does not enforce Content-Length: requests returns the 10 bytes without an "
    "error and pools the connection the server closed as idle",
)
@pytest.mark.connfault("truncate", body_bytes=10)
def test_truncated_body_leaves_an_unconnected_entry(connfault_server: FaultServer, session: requests.Session) -> None:
    """A body cut short raises ChunkedEncodingError; the closed connection is queued unconnected, not idle."""
    connfault_server.respond("/", body=b"x" * 100)
    with pytest.raises(requests.exceptions.ChunkedEncodingError, match="IncompleteRead"):
        session.get(connfault_server.url)
    snapshot = assert_pool(session, active=0, idle=0, server=connfault_server)
    assert [(c.state, c.local_port) for c in snapshot.connections] == [("unconnected", None)]
    assert session.get(connfault_server.url).content == b"x" * 100  # reconnects the same object
    assert_new_connection(connfault_server)
    assert_pool(session, active=0, idle=1)


@pytest.mark.connfault("stall")
def test_read_timeout_during_stall_leaves_nothing(connfault_server: FaultServer, session: requests.Session) -> None:
    """A stalled server raises ReadTimeout after the read timeout; the connection is not kept."""
    with pytest.raises(requests.ReadTimeout):
        session.get(connfault_server.url, timeout=(5, 0.3))
    assert_pool(session, active=0, idle=0, server=connfault_server)
    assert_no_leak(session)
