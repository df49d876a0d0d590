"""The awaitable forms: they work from asyncio and trio tests and never block the test's own loop.

The server runs on its own loop thread. A blocking wait inside an ``async`` test would freeze the
test's loop, and with it every client request in flight there. Each test here needs the test's
loop to keep running while it awaits: either the awaited thing can only happen if a request on
that loop goes on, or a ticker task on that loop must advance.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable
from typing import Callable

import anyio
import anyio.lowlevel
import httpx
import pytest

from pytest_connfault import FaultNotFired, FaultServer

ServerFactory = Callable[..., FaultServer]

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"]),
]


@pytest.fixture(params=["asyncio", "trio"])
def server(request: pytest.FixtureRequest, connfault_server_factory: ServerFactory) -> FaultServer:
    """A fresh server on each backend (the test's own loop is the other parameter)."""
    return connfault_server_factory(backend=request.param)


class Ticker:
    """Counts turns of the test's loop, to prove an await let other tasks run."""

    def __init__(self) -> None:
        self.ticks = 0

    async def run(self) -> None:
        while True:
            self.ticks += 1
            await anyio.lowlevel.checkpoint()


@pytest.fixture
async def ticker() -> AsyncIterator[Ticker]:
    """A task that ticks on the test's loop for the test's duration."""
    ticking = Ticker()
    async with anyio.create_task_group() as tg:
        tg.start_soon(ticking.run)
        yield ticking
        tg.cancel_scope.cancel()


async def ticks_during(ticker: Ticker, calls: Callable[[], Awaitable[object]], times: int = 20) -> int:
    """How often the test's loop turned while ``calls()`` was awaited ``times`` times."""
    before = ticker.ticks
    for _ in range(times):
        await calls()
    return ticker.ticks - before


async def test_wait_async_lets_the_request_that_fires_the_fault_go_on(
    server: FaultServer, anyio_backend: str
) -> None:
    """handle.wait_async() returns once a request sent from the same loop fires the fault; a blocking wait never would."""
    handle = server.inject("delay", seconds=0.0, path="/fire")
    async with httpx.AsyncClient(base_url=server.url) as client:
        responses: list[httpx.Response] = []

        async def fetch() -> None:
            responses.append(await client.get("/fire"))

        async with anyio.create_task_group() as tg:
            tg.start_soon(fetch)  # not sent yet: it needs this loop to run
            firing = await handle.wait_async(5)
    assert firing.kind == "delay"
    assert [r.status_code for r in responses] == [200]


async def test_wait_async_times_out_with_fault_not_fired(server: FaultServer, anyio_backend: str) -> None:
    """wait_async on a fault that never fires raises FaultNotFired after its timeout, not before."""
    handle = server.inject("reset", path="/never")
    started = anyio.current_time()
    with pytest.raises(FaultNotFired):
        await handle.wait_async(0.05)
    assert anyio.current_time() - started >= 0.04


async def test_commands_async_drop_idle_connections_without_blocking(
    server: FaultServer, anyio_backend: str, ticker: Ticker
) -> None:
    """reset/close/half_close_idle_async drop the client's idle connection; the loop keeps turning meanwhile."""
    async with httpx.AsyncClient(base_url=server.url) as client:
        for command in ("reset_idle_async", "close_idle_async", "half_close_idle_async"):
            assert (await client.get("/")).status_code == 200
            dropped = await getattr(server, command)()
            assert len(dropped) == 1, f"{command} missed the idle connection"
        assert (await client.get("/")).status_code == 200
        assert await ticks_during(ticker, server.reset_idle_async) > 0, "the awaits never let the loop run"
    assert [r.connection_id for r in server.requests] == [1, 2, 3, 4], "each drop forced a new connection"


async def test_release_async_ends_a_stall_on_a_request_in_flight(
    server: FaultServer, anyio_backend: str, ticker: Ticker
) -> None:
    """release_async() lets the stalled request, in flight on the same loop, complete."""
    handle = server.inject("stall", path="/stall")
    async with httpx.AsyncClient(base_url=server.url) as client:
        responses: list[httpx.Response] = []

        async def fetch() -> None:
            responses.append(await client.get("/stall"))

        async with anyio.create_task_group() as tg:
            tg.start_soon(fetch)
            await handle.wait_async(5)
            other = await client.get("/free")  # a second connection is served meanwhile
            assert other.status_code == 200
            assert responses == [], "the stalled request was answered before release"
            assert await server.release_async() == 1
        assert [r.status_code for r in responses] == [200]
        assert await ticks_during(ticker, server.release_async) > 0


async def test_stop_async_ends_a_stall_and_the_client_sees_the_close(
    connfault_server_factory: ServerFactory, anyio_backend: str, ticker: Ticker
) -> None:
    """stop_async() closes a stalled connection (its client gets an error at once) and is idempotent."""
    server = connfault_server_factory()
    handle = server.inject("stall")
    async with httpx.AsyncClient(base_url=server.url) as client:
        errors: list[Exception] = []

        async def fetch() -> None:
            try:
                await client.get("/")
            except httpx.HTTPError as exc:
                errors.append(exc)

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(fetch)
                await handle.wait_async(5)
                before = ticker.ticks
                await server.stop_async()
                assert ticker.ticks > before, "stop_async blocked the loop"
        await server.stop_async()  # again: nothing to do
    assert len(errors) == 1
    assert isinstance(errors[0], httpx.RemoteProtocolError)
    assert not server.is_running


async def test_async_handler_and_awaitables_from_a_trio_server(
    connfault_server_factory: ServerFactory, anyio_backend: str
) -> None:
    """A trio server serves an async client on either loop, and its handles await the same way."""
    server = connfault_server_factory(backend="trio")
    handle = server.inject("close", at="after_response", request=1)
    async with httpx.AsyncClient(base_url=server.url) as client:
        assert (await client.get("/1")).status_code == 200
        await handle.wait_async(5)
        assert (await client.get("/2")).status_code == 200
    assert [r.connection_id for r in server.requests] == [1, 2]
