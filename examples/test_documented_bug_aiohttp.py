"""The documented bug (encode/httpx #327) against aiohttp, with the pool's books checked.

Request, the server drops the idle keep-alive connection (FIN, RST or half-close), request again:
the second request must succeed on a new connection, and the connector must then hold 0 active and
1 idle connection. aiohttp sees a drop on a turn of its event loop, so there are two cases: the
drop happened a while ago (the loop has run; aiohttp discards the closed connection when it next
picks one), and the keep-alive race (the next request goes out before the loop has run: aiohttp
writes it on the dead connection, and since 3.10 retries an idempotent request once on a new one).
Mid-exchange: a reset before the response is retried the same way; a truncated body and a read
timeout raise. Either way nothing broken stays pooled.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
import pytest

from pytest_connfault import (
    FaultServer,
    assert_new_connection,
    assert_no_leak,
    assert_no_stale,
    assert_pool,
    pool_snapshot,
)

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("anyio_backend", ["asyncio"])]

DROPS = ["close", "reset", "half_close"]

#: aiohttp retries an idempotent request once when a pooled connection fails under it
#: (aio-libs/aiohttp#7363); 3.9.5 does not, 3.14.5 does.
RETRIES_ON_DEAD_CONNECTION = tuple(int(part) for part in aiohttp.__version__.split(".")[:2]) >= (3, 10)
NO_RETRY = (
    f"aiohttp {aiohttp.__version__} writes the request on the connection the server dropped and raises "
    "instead of retrying it on a new one (retry added by aio-libs/aiohttp#7363)"
)


async def _get(session: aiohttp.ClientSession, url: str) -> bytes:
    async with session.get(url) as response:
        assert response.status == 200
        return await response.read()


async def _until_noticed(session: aiohttp.ClientSession, timeout: float = 5.0) -> None:
    """Give aiohttp's loop turns until it has seen the drop (no idle connection left); bounded."""
    deadline = time.monotonic() + timeout
    while pool_snapshot(session).idle:
        assert time.monotonic() < deadline, f"aiohttp did not see the drop within {timeout} s"
        await asyncio.sleep(0)


@pytest.mark.parametrize("drop", DROPS)
async def test_session_after_idle_drop(connfault_server: FaultServer, drop: str) -> None:
    """aiohttp: after the server dropped the idle connection, a new one serves; the pool holds 0 active, 1 idle."""
    async with aiohttp.ClientSession() as session:
        await _get(session, connfault_server.url + "/first")
        await getattr(connfault_server, f"{drop}_idle_async")()
        await _until_noticed(session)
        await _get(session, connfault_server.url + "/second")
        assert_new_connection(connfault_server, client=session)
        assert_pool(session, active=0, idle=1, server=connfault_server)
        assert_no_stale(session, connfault_server)


@pytest.mark.xfail(not RETRIES_ON_DEAD_CONNECTION, strict=True, reason=NO_RETRY)
@pytest.mark.parametrize("drop", DROPS)
async def test_request_right_after_idle_drop(connfault_server: FaultServer, drop: str) -> None:
    """The keep-alive race: the next request leaves before aiohttp's loop has seen the drop; it still succeeds."""
    async with aiohttp.ClientSession() as session:
        await _get(session, connfault_server.url + "/first")
        # The blocking command gives the loop no turn between the drop and the next request.
        getattr(connfault_server, f"{drop}_idle")()
        assert pool_snapshot(session).idle == 1, "aiohttp must not have seen the drop yet"
        await _get(session, connfault_server.url + "/second")
        # After a half-close the server still reads the dead connection, so the copy aiohttp wrote
        # there is in the ledger too (unanswered), before or after the retry: check the answered one.
        answered = [r for r in connfault_server.requests if r.target == "/second" and r.outcome.kind == "responded"]
        assert len(answered) == 1, connfault_server.timeline()
        assert_new_connection(connfault_server, request=answered[0].index, client=session)
        assert_pool(session, active=0, idle=1, server=connfault_server)
        assert_no_stale(session, connfault_server)


@pytest.mark.connfault("reset", at="before_response")
async def test_reset_before_response(connfault_server: FaultServer) -> None:
    """A reset before the response: retried on a new connection (3.10+) or raised; nothing broken is pooled."""
    async with aiohttp.ClientSession() as session:
        if RETRIES_ON_DEAD_CONNECTION:
            await _get(session, connfault_server.url)
            assert [r.connection_id for r in connfault_server.requests] == [1, 2]
            assert_pool(session, active=0, idle=1, server=connfault_server)
        else:
            with pytest.raises(aiohttp.ClientOSError):
                await _get(session, connfault_server.url)
            assert_pool(session, active=0, idle=0, server=connfault_server)
        assert_no_stale(session, connfault_server)


@pytest.mark.connfault("truncate", body_bytes=10)
async def test_truncated_body_leaves_nothing(connfault_server: FaultServer) -> None:
    """A body cut short raises ClientPayloadError; the connection is not pooled."""
    connfault_server.respond("/", body=b"x" * 100)
    async with aiohttp.ClientSession() as session:
        with pytest.raises(aiohttp.ClientPayloadError):
            await _get(session, connfault_server.url)
        assert_pool(session, active=0, idle=0, server=connfault_server)
        assert_no_leak(session)


@pytest.mark.connfault("stall")
async def test_read_timeout_during_stall_leaves_nothing(connfault_server: FaultServer) -> None:
    """A stalled server: aiohttp raises its socket read timeout and does not keep the connection."""
    timeout = aiohttp.ClientTimeout(total=5, sock_read=0.3)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        with pytest.raises(aiohttp.ServerTimeoutError):
            await _get(session, connfault_server.url)
        assert_pool(session, active=0, idle=0, server=connfault_server)
        assert_no_leak(session)
