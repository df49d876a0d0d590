"""encode/httpx #327 over TLS: the server drops an idle keep-alive connection, the client asks again.

Production keep-alive connections are mostly TLS, where a drop comes in more shapes: a close with
the ``close_notify`` alert, an abrupt close without it, an RST, a half-close. Every client here
must notice the dead connection, open a new one (the ledger proves it: the second request arrives
on connection 2) and keep exactly one idle connection in its pool afterwards, the new one.

``connfault_tls_server`` is HTTPS on 127.0.0.1 with a certificate from the session's ``trustme``
CA; ``connfault_client_ssl_context`` and ``connfault_ca_bundle`` are the client side of that trust.
"""

from __future__ import annotations

from typing import Any, Callable

import aiohttp
import anyio
import anyio.lowlevel
import httpx
import pytest
import requests
import urllib3

from pytest_connfault import FaultServer, assert_pool, pool_snapshot
from pytest_connfault.aiohttp_tls import tidy_connector

#: How the idle connection dies: by a command, or by a fault armed ahead (close_notify=False).
DROPS = ["close_notify", "abrupt_close", "reset", "half_close"]
COMMANDS = {"close_notify": "close_idle", "reset": "reset_idle", "half_close": "half_close_idle"}


def arm(server: FaultServer, drop: str) -> Any:
    """Arm the abrupt close ahead (it fires right after the first response); the others are commands."""
    if drop == "abrupt_close":
        return server.inject("close", at="after_response", request=1, close_notify=False)
    return None


def kill_idle(server: FaultServer, drop: str, handle: Any) -> None:
    """Drop the idle connection now, or wait until the armed fault is on the wire."""
    if handle is not None:
        handle.wait(timeout=5)
    else:
        assert [c.id for c in getattr(server, COMMANDS[drop])()] == [1]


async def kill_idle_async(server: FaultServer, drop: str, handle: Any) -> None:
    """The same from an event loop, without blocking it."""
    if handle is not None:
        await handle.wait_async(timeout=5)
    else:
        assert [c.id for c in await getattr(server, COMMANDS[drop] + "_async")()] == [1]


def assert_reused_correctly(server: FaultServer, client: object) -> None:
    """Request 2 on a new connection; the pool holds one idle connection: the new one, per the ledger."""
    assert [r.connection_id for r in server.requests] == [1, 2], server.timeline()
    snapshot = assert_pool(client, active=0, idle=1, server=server)
    [idle] = [c for c in snapshot.connections if c.state == "idle"]
    assert idle.local_port == server.connection(2).client_port


@pytest.mark.parametrize("drop", DROPS)
def test_httpx_reconnects_after_tls_idle_drop(
    connfault_tls_server: FaultServer, connfault_client_ssl_context: Any, drop: str
) -> None:
    """httpx.Client over TLS: request, the idle connection dies, the next request succeeds on a new one."""
    handle = arm(connfault_tls_server, drop)
    with httpx.Client(base_url=connfault_tls_server.url, verify=connfault_client_ssl_context) as client:
        assert client.get("/first").status_code == 200
        kill_idle(connfault_tls_server, drop, handle)
        assert client.get("/second").status_code == 200
        assert_reused_correctly(connfault_tls_server, client)


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
@pytest.mark.parametrize("drop", DROPS)
async def test_httpx_async_reconnects_after_tls_idle_drop(
    connfault_tls_server: FaultServer, connfault_client_ssl_context: Any, drop: str
) -> None:
    """httpx.AsyncClient over TLS on asyncio and trio: the same, with the awaitable commands."""
    handle = arm(connfault_tls_server, drop)
    async with httpx.AsyncClient(base_url=connfault_tls_server.url, verify=connfault_client_ssl_context) as client:
        assert (await client.get("/first")).status_code == 200
        await kill_idle_async(connfault_tls_server, drop, handle)
        assert (await client.get("/second")).status_code == 200
        assert_reused_correctly(connfault_tls_server, client)


@pytest.mark.parametrize("drop", DROPS)
def test_requests_reconnects_after_tls_idle_drop(
    connfault_tls_server: FaultServer, connfault_ca_bundle: str, drop: str
) -> None:
    """requests.Session over TLS, trusting the CA through verify=PATH on each request: the same."""
    # Per request, not session.verify: REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE in the environment
    # override session.verify (psf/requests#3829), and CI machines often set them.
    handle = arm(connfault_tls_server, drop)
    with requests.Session() as session:
        assert session.get(connfault_tls_server.url + "/first", verify=connfault_ca_bundle).status_code == 200
        kill_idle(connfault_tls_server, drop, handle)
        assert session.get(connfault_tls_server.url + "/second", verify=connfault_ca_bundle).status_code == 200
        assert_reused_correctly(connfault_tls_server, session)


@pytest.mark.parametrize("drop", DROPS)
def test_urllib3_reconnects_after_tls_idle_drop(
    connfault_tls_server: FaultServer, connfault_ca_bundle: str, drop: str
) -> None:
    """urllib3.PoolManager over TLS, with retries off so that only the pool's drop check can save it."""
    handle = arm(connfault_tls_server, drop)
    with urllib3.PoolManager(ca_certs=connfault_ca_bundle, retries=False) as manager:
        assert manager.request("GET", connfault_tls_server.url + "/first").status == 200
        kill_idle(connfault_tls_server, drop, handle)
        assert manager.request("GET", connfault_tls_server.url + "/second").status == 200
        assert_reused_correctly(connfault_tls_server, manager)


async def until_no_live_idle_connection(session: aiohttp.ClientSession) -> None:
    """Give aiohttp the loop turns it needs to process the drop (bounded; see the note below).

    asyncio learns of a TLS close over several loop turns (read the alert, answer it, close the
    transport); until then aiohttp's pool still calls the connection alive. A request sent inside
    that window after a half-close goes onto the dead connection (the server records it as
    unanswered) and aiohttp silently retries it on a new one: seen in about half the runs here.
    """
    with anyio.fail_after(5):
        while pool_snapshot(session).idle:  # noqa: ASYNC110 - aiohttp has no event for this; bounded
            await anyio.sleep(0.001)


#: aiohttp before 3.10 hands a new TLS connection back to its pool only a loop turn after the first
#: response on it was read: the release waits for the done callbacks of the request's writer task,
#: which can finish on the same loop turn as the response. aiohttp 3.10 releases it at once.
RELEASES_A_TURN_LATE = tuple(int(part) for part in aiohttp.__version__.split(".")[:2]) < (3, 10)


async def until_released(session: aiohttp.ClientSession) -> None:
    """On aiohttp before 3.10, give its loop the turns it needs to release the last response's connection."""
    if RELEASES_A_TURN_LATE:
        with anyio.fail_after(5):
            while pool_snapshot(session).active:  # aiohttp has no event for this; bounded
                await anyio.lowlevel.checkpoint()


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
@pytest.mark.parametrize("drop", DROPS)
async def test_aiohttp_reconnects_after_tls_idle_drop(
    connfault_tls_server: FaultServer, connfault_client_ssl_context: Any, drop: str
) -> None:
    """aiohttp.ClientSession over TLS (ssl=context): the same; its dead entry may linger as "closed"."""
    handle = arm(connfault_tls_server, drop)
    get: Callable[..., Any]
    # no TLS transport left open on old aiohttp or Python (pytest_connfault.aiohttp_tls)
    async with aiohttp.ClientSession(connfault_tls_server.url, connector=tidy_connector()) as session:
        get = session.get
        async with get("/first", ssl=connfault_client_ssl_context) as response:
            assert response.status == 200
            await response.read()
        await kill_idle_async(connfault_tls_server, drop, handle)
        await until_no_live_idle_connection(session)
        async with get("/second", ssl=connfault_client_ssl_context) as response:
            assert response.status == 200
            await response.read()
        await until_released(session)
        assert_reused_correctly(connfault_tls_server, session)
        assert pool_snapshot(session).active == 0
