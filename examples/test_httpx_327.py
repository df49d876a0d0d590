"""encode/httpx #327, reproduced: the server drops an idle keep-alive connection, the client asks again.

The correct behaviour: the client notices the drop, discards that connection, opens a new one, and the
second request succeeds on it. The ledger proves which connection each request arrived on.
"""

from __future__ import annotations

import httpx
import pytest

from pytest_connfault import FaultServer

DROPS = ["close", "reset", "half_close"]


@pytest.mark.parametrize("drop", DROPS)
def test_sync_client_reconnects_after_idle_drop(connfault_server: FaultServer, drop: str) -> None:
    """httpx.Client: request, the server drops the idle connection, request again on a new one."""
    with httpx.Client(base_url=connfault_server.url) as client:
        assert client.get("/first").status_code == 200
        dropped = getattr(connfault_server, f"{drop}_idle")()
        assert [c.id for c in dropped] == [1], "the first connection should have been idle"
        assert client.get("/second").status_code == 200
    first, second = connfault_server.requests
    assert (first.connection_id, second.connection_id) == (1, 2), "the second request must use a new connection"


@pytest.mark.connfault(DROPS, at="after_response", request=1)
def test_marker_drops_after_first_response(connfault_server: FaultServer) -> None:
    """The same, with the drop armed ahead by the marker: wait on its handle, then reuse."""
    with httpx.Client(base_url=connfault_server.url) as client:
        assert client.get("/first").status_code == 200
        connfault_server.faults[0].wait(timeout=5)
        assert client.get("/second").status_code == 200
    assert [r.connection_id for r in connfault_server.requests] == [1, 2]


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
@pytest.mark.parametrize("drop", DROPS)
async def test_async_client_reconnects_after_idle_drop(connfault_server: FaultServer, drop: str) -> None:
    """httpx.AsyncClient on asyncio and trio: the awaitable command does not block the test's loop."""
    async with httpx.AsyncClient(base_url=connfault_server.url) as client:
        assert (await client.get("/first")).status_code == 200
        dropped = await getattr(connfault_server, f"{drop}_idle_async")()
        assert len(dropped) == 1
        assert (await client.get("/second")).status_code == 200
    assert [r.connection_id for r in connfault_server.requests] == [1, 2]
