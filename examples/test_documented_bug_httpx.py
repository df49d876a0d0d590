"""The documented bug (encode/httpx #327) against httpx, with the pool's books checked.

Request, the server drops the idle keep-alive connection (FIN, RST or half-close), request again:
the second request must succeed on a new connection, and the pool must then hold 0 active and
1 idle connection, none of them one the server has dropped, and the dropped one's socket must be
closed (the server sees it end). Then the faults mid-exchange: after a
reset before the response, a truncated body or a read timeout during a stall, httpx raises, and its
pool keeps nothing of the broken connection.
"""

from __future__ import annotations

import httpx
import pytest

from pytest_connfault import (
    FaultServer,
    assert_new_connection,
    assert_no_leak,
    assert_no_stale,
    assert_pool,
)

DROPS = ["close", "reset", "half_close"]


@pytest.mark.parametrize("drop", DROPS)
def test_sync_client_after_idle_drop(connfault_server: FaultServer, drop: str) -> None:
    """httpx.Client: after the server drops the idle connection, a new one serves; the pool holds 0 active, 1 idle."""
    with httpx.Client(base_url=connfault_server.url) as client:
        assert client.get("/first").status_code == 200
        getattr(connfault_server, f"{drop}_idle")()
        assert client.get("/second").status_code == 200
        assert_new_connection(connfault_server, client=client)
        assert_pool(client, active=0, idle=1, server=connfault_server)
        assert_no_stale(client, connfault_server)
        # Not only out of the pool: its socket closed (after a half-close, the server waits for that).
        [dropped] = connfault_server.wait_connections_ended(1)
        assert dropped.ended_by == "server_fault"


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
@pytest.mark.parametrize("drop", DROPS)
async def test_async_client_after_idle_drop(connfault_server: FaultServer, drop: str) -> None:
    """httpx.AsyncClient on asyncio and trio: the same, with the awaitable drop command."""
    async with httpx.AsyncClient(base_url=connfault_server.url) as client:
        assert (await client.get("/first")).status_code == 200
        await getattr(connfault_server, f"{drop}_idle_async")()
        assert (await client.get("/second")).status_code == 200
        assert_new_connection(connfault_server, client=client)
        assert_pool(client, active=0, idle=1, server=connfault_server)
        assert_no_stale(client, connfault_server)
        [dropped] = await connfault_server.wait_connections_ended_async(1)
        assert dropped.ended_by == "server_fault"


@pytest.mark.connfault("reset", at="before_response")
def test_reset_before_response_leaves_nothing(connfault_server: FaultServer) -> None:
    """A reset before the response: httpx raises ReadError, does not retry, and pools nothing."""
    with httpx.Client(base_url=connfault_server.url) as client:
        with pytest.raises(httpx.ReadError):
            client.get("/")
        assert_pool(client, active=0, idle=0, server=connfault_server)
    assert len(connfault_server.requests) == 1


@pytest.mark.connfault("truncate", body_bytes=10)
def test_truncated_body_leaves_nothing(connfault_server: FaultServer) -> None:
    """Content-Length 100, 10 bytes, FIN: httpx raises RemoteProtocolError and drops the connection."""
    connfault_server.respond("/", body=b"x" * 100)
    with httpx.Client(base_url=connfault_server.url) as client:
        with pytest.raises(httpx.RemoteProtocolError, match="received 10 bytes, expected 100"):
            client.get("/")
        assert_pool(client, active=0, idle=0, server=connfault_server)
        assert client.get("/").status_code == 200  # the next request opens a new connection
        assert_new_connection(connfault_server)
        assert_pool(client, active=0, idle=1)


@pytest.mark.connfault("stall")
def test_read_timeout_during_stall_leaves_nothing(connfault_server: FaultServer) -> None:
    """A stalled server: httpx raises ReadTimeout after its read timeout and drops the connection."""
    with httpx.Client(base_url=connfault_server.url, timeout=httpx.Timeout(5, read=0.3)) as client:
        with pytest.raises(httpx.ReadTimeout):
            client.get("/")
        assert_no_leak(client, server=connfault_server)
        assert_pool(client, idle=0)


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
@pytest.mark.connfault("truncate", body_bytes=10, then="reset")
async def test_async_truncated_then_reset_leaves_nothing(connfault_server: FaultServer) -> None:
    """httpx.AsyncClient: a body cut short by a reset raises, and the pool keeps nothing."""
    connfault_server.respond("/", body=b"x" * 100)
    async with httpx.AsyncClient(base_url=connfault_server.url) as client:
        with pytest.raises(httpx.TransportError):
            await client.get("/")
        assert_pool(client, active=0, idle=0, server=connfault_server)
