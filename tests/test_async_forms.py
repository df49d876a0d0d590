"""The awaitable forms: they work from asyncio and trio tests and never block the test's own loop.

The server runs on its own loop thread. A blocking wait inside an ``async`` test would freeze the
test's loop, and with it every client request in flight there. The commands usually finish in
microseconds, which would hide a blocking form; so the tests make the awaited thing depend on the
test's loop: the fault fires only when a request sent from that loop goes on, or the server's
loop is held busy until a task on the test's loop frees it.
"""

from __future__ import annotations

import threading
from collections.abc import Awaitable
from typing import Callable

import anyio
import anyio.lowlevel
import httpx
import pytest
from anyio.abc import TaskGroup

from pytest_connfault import FaultNotFired, FaultServer, Request, Response
from pytest_connfault._waiting import callback_for_current_loop

ServerFactory = Callable[..., FaultServer]

pytestmark = [
    pytest.mark.anyio,
    pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"]),
]


@pytest.fixture(params=["asyncio", "trio"])
def server(request: pytest.FixtureRequest, connfault_server_factory: ServerFactory) -> FaultServer:
    """A fresh server on each backend (the test's own loop is the other parameter)."""
    return connfault_server_factory(backend=request.param)


async def busy_server_loop(server: FaultServer, client: httpx.AsyncClient, tg: TaskGroup) -> threading.Event:
    """Block the server's loop thread in a handler until the returned gate opens (at most 5 s).

    A command awaited after this can only complete once the gate opens; the gate is opened by a
    task on the test's loop, which runs only if the awaiting call lets that loop turn.
    """
    gate, entered = threading.Event(), threading.Event()
    notify, wait = callback_for_current_loop()

    def handler(request: Request) -> Response:
        entered.set()
        notify()
        gate.wait(5)
        return Response(body=b"unblocked")

    server.set_handler(handler)
    tg.start_soon(client.get, "/block")
    await wait(5, entered.is_set)
    assert entered.is_set(), "the blocking handler was never called"
    return gate


async def must_not_block(server: FaultServer, call: Callable[[], Awaitable[object]]) -> object:
    """Await ``call()`` while the server's loop is busy until a task on this loop frees it."""
    async with httpx.AsyncClient(base_url=server.url) as client:
        async with anyio.create_task_group() as tg:
            gate = await busy_server_loop(server, client, tg)
            tg.start_soon(_open, gate)  # runs only when this task yields inside call()
            started = anyio.current_time()
            result = await call()
            took = anyio.current_time() - started
    assert took < 2.0, f"the awaitable blocked the test's loop ({took:.2f} s): the gate opened only on its timeout"
    return result


async def _open(gate: threading.Event) -> None:
    gate.set()


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


async def test_commands_async_drop_idle_connections(server: FaultServer, anyio_backend: str) -> None:
    """reset/close/half_close_idle_async drop the client's idle connection, which the client then replaces."""
    async with httpx.AsyncClient(base_url=server.url) as client:
        for command in ("reset_idle_async", "close_idle_async", "half_close_idle_async"):
            assert (await client.get("/")).status_code == 200
            dropped = await getattr(server, command)()
            assert len(dropped) == 1, f"{command} missed the idle connection"
        assert (await client.get("/")).status_code == 200
    assert [r.connection_id for r in server.requests] == [1, 2, 3, 4], "each drop forced a new connection"


@pytest.mark.parametrize(
    "command", ["reset_idle_async", "close_idle_async", "half_close_idle_async", "release_async", "stop_async"]
)
async def test_awaitable_command_does_not_block_the_tests_loop(
    server: FaultServer, anyio_backend: str, command: str
) -> None:
    """While the server's loop is busy, an awaited command lets the test's loop run (here: the task that frees it)."""
    await must_not_block(server, getattr(server, command))


async def test_release_async_ends_a_stall_on_a_request_in_flight(server: FaultServer, anyio_backend: str) -> None:
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


async def test_stop_async_ends_a_stall_and_the_client_sees_the_close(
    connfault_server_factory: ServerFactory, anyio_backend: str
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
                await server.stop_async()
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
