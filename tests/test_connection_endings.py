"""server.wait_connections_ended(): wait, with a bound, until the server has seen connections end.

A client's close returns before the server has read its FIN, so "how did the connection end" has no
answer yet right after it. These tests hold the connection open until the wait is under way, so the
wait can only return by being woken when the connection ends, never by finding it already over.
"""

from __future__ import annotations

import threading
import time
from typing import Callable

import anyio
import httpx
import pytest
from rawclient import RawClient, wait_until

from pytest_connfault import (
    Connection,
    ConnectionNotEnded,
    ConnfaultError,
    EndedBy,
    FaultServer,
    Request,
    Response,
)

ServerFactory = Callable[..., FaultServer]


@pytest.fixture(params=["asyncio", "trio"])
def server(request: pytest.FixtureRequest, connfault_server_factory: ServerFactory) -> FaultServer:
    """A fresh server on each backend."""
    return connfault_server_factory(backend=request.param)


class Waiter:
    """``server.wait_connections_ended(*args)`` on its own thread, started once it is subscribed.

    Its own timeout is long: ``result()`` gives it far less, so a wait that is not woken when the
    connection ends (and would only notice on running out) fails the test.
    """

    def __init__(self, server: FaultServer, *args: int | Connection, timeout: float = 60.0) -> None:
        self.records: list[Connection] = []
        self.error: BaseException | None = None
        watchers = len(server._core.end_watchers)
        self._thread = threading.Thread(target=self._run, args=(server, args, timeout))
        self._thread.start()
        wait_until(lambda: len(server._core.end_watchers) > watchers or not self._thread.is_alive(), what="the wait began")

    def _run(self, server: FaultServer, args: tuple[int | Connection, ...], timeout: float) -> None:
        try:
            self.records = server.wait_connections_ended(*args, timeout=timeout)
        except BaseException as exc:  # noqa: BLE001 - handed to the test by result()
            self.error = exc

    @property
    def waiting(self) -> bool:
        return self._thread.is_alive()

    def result(self) -> list[Connection]:
        self._thread.join(5)
        assert not self._thread.is_alive(), "the wait was not woken when the connection ended"
        if self.error is not None:
            raise self.error
        return self.records


def test_a_wait_returns_when_the_client_closes_with_the_final_record(server: FaultServer) -> None:
    """The wait blocks while the client holds the connection, and returns its record once the FIN is read."""
    with RawClient(server) as client:
        assert client.request().complete
        waiter = Waiter(server)
        assert waiter.waiting, "the wait returned while the client still held its connection"
        client.close()
        [record] = waiter.result()
    assert record.id == 1
    assert not record.is_open
    assert record.ended_by == EndedBy.CLIENT_FIN
    assert [r.outcome.status for r in record.requests] == [200]


def test_a_clients_reset_is_recorded_by_the_time_the_wait_returns(server: FaultServer) -> None:
    with RawClient(server) as client:
        assert client.request().complete
        waiter = Waiter(server, 1)
        client.reset()
        [record] = waiter.result()
    assert record.ended_by == EndedBy.CLIENT_RST


def test_the_wait_runs_out_naming_the_open_connection_and_showing_the_ledger(server: FaultServer) -> None:
    with RawClient(server) as client:
        assert client.request().complete
        started = time.monotonic()
        with pytest.raises(ConnectionNotEnded) as caught:
            server.wait_connections_ended(timeout=0.05)
        assert time.monotonic() - started >= 0.04, "gave up before its timeout"
    message = str(caught.value)
    assert f"1 of 1 connection(s) had not ended after 0.05 s: connection 1 (client port {client.local_port}" in message
    assert "the ledger:" in message
    assert "GET /" in message
    assert isinstance(caught.value, TimeoutError)


def test_only_the_connections_named_are_waited_for(server: FaultServer) -> None:
    """Waiting for connection 2 (by id or record) returns when it ends, with connection 1 still open."""
    with RawClient(server) as first, RawClient(server) as second:
        assert first.request().complete
        assert second.request().complete
        by_id, by_record = Waiter(server, 2), Waiter(server, server.connection(2))
        second.close()
        assert [r.id for r in by_id.result()] == [2]
        assert [r.ended_by for r in by_record.result()] == [EndedBy.CLIENT_FIN]
        assert server.connection(1).is_open
        with pytest.raises(ConnectionNotEnded, match="1 of 2 connection"):
            server.wait_connections_ended(timeout=0.01)


def test_with_no_connection_named_every_connection_in_the_ledger_is_waited_for(server: FaultServer) -> None:
    assert server.wait_connections_ended() == []  # nothing accepted: nothing to wait for
    with RawClient(server) as first, RawClient(server) as second:
        assert first.request().complete
        assert second.request().complete
        waiter = Waiter(server)
        first.close()
        server.wait_connections_ended(1)
        second.close()
        records = waiter.result()
    assert [r.id for r in records] == [1, 2]
    # A wait that returned on the first end would hand back connection 2 still open.
    assert [r.is_open for r in records] == [False, False], "returned before every connection had ended"


def test_stop_ends_what_a_waiter_waits_for(server: FaultServer) -> None:
    with RawClient(server) as client:
        assert client.request().complete
        waiter = Waiter(server)
        server.stop()
        [record] = waiter.result()
    assert record.ended_by == EndedBy.SERVER_SHUTDOWN


def test_a_half_closed_connection_ends_when_its_client_closes(server: FaultServer) -> None:
    with RawClient(server) as client:
        assert client.request().complete
        [half_closed] = server.half_close_idle()
        assert half_closed.is_open
        with pytest.raises(ConnectionNotEnded):
            server.wait_connections_ended(timeout=0.01)
        client.close()
        [record] = server.wait_connections_ended(timeout=5)
    assert not record.is_open
    assert record.ended_by == EndedBy.SERVER_FAULT


def test_a_connection_dropped_by_a_command_has_ended_at_once(server: FaultServer) -> None:
    with RawClient(server) as client:
        assert client.request().complete
        [dropped] = server.reset_idle()
        [record] = server.wait_connections_ended(dropped, timeout=5)
    assert record.ended_by == EndedBy.SERVER_FAULT
    assert [f.kind for f in record.faults] == ["reset"]


def test_unknown_connections_are_refused_by_name(server: FaultServer) -> None:
    with RawClient(server) as client:
        assert client.request().complete
        with pytest.raises(ConnfaultError, match="no connection 2: the server has seen 1"):
            server.wait_connections_ended(2)
        with pytest.raises(TypeError, match="ids or Connection records, not '1'"):
            server.wait_connections_ended("1")  # type: ignore[arg-type]


def test_a_handler_waiting_would_block_its_own_loop_and_is_refused(server: FaultServer) -> None:
    """Called from a handler (on the server's loop thread), the blocking wait raises at once, and the
    handler's 500 carries why; the server serves on."""

    def handler(request: Request) -> Response:
        server.wait_connections_ended(timeout=30)
        return Response(body=b"unreachable")

    server.set_handler(handler)
    started = time.monotonic()
    with RawClient(server) as client:
        assert client.request(target="/wait").status == 500
        assert client.request(target="/wait").status == 500  # the same connection, served on
    assert time.monotonic() - started < 5, "the handler blocked the loop until its wait ran out"
    assert "called on the server's own loop thread" in server.handler_errors[0]


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_the_awaitable_form_lets_the_tests_loop_close_the_client(server: FaultServer, anyio_backend: str) -> None:
    """The connection ends only when a task on the test's own loop closes the client: a wait that
    blocked the loop would never see it end."""
    client = httpx.AsyncClient(base_url=server.url)
    try:
        assert (await client.get("/")).status_code == 200
        async with anyio.create_task_group() as tg:
            tg.start_soon(client.aclose)  # runs only once the wait yields the loop
            with anyio.fail_after(5):  # far less than its own timeout: it must be woken by the end
                [record] = await server.wait_connections_ended_async(timeout=60)
    finally:
        await client.aclose()
    assert record.ended_by == EndedBy.CLIENT_FIN


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_the_awaitable_form_runs_out_like_the_blocking_one(server: FaultServer, anyio_backend: str) -> None:
    async with httpx.AsyncClient(base_url=server.url) as client:
        assert (await client.get("/")).status_code == 200
        started = anyio.current_time()
        with pytest.raises(ConnectionNotEnded, match="connection 1 .*open"):
            await server.wait_connections_ended_async(timeout=0.05)
        assert anyio.current_time() - started >= 0.04
