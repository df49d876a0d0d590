"""The assertion helpers: each passes when it should, and fails with a message showing both sides."""

from __future__ import annotations

import re

import httpx
import pytest
import urllib3

from pytest_connfault import (
    FaultServer,
    assert_new_connection,
    assert_no_leak,
    assert_no_stale,
    assert_pool,
    assert_reused,
)


def _port(server: FaultServer, connection: int) -> int:
    return server.connection(connection).client_port


# -- assert_pool --------------------------------------------------------------------------


def test_assert_pool_passes_and_returns_the_snapshot(connfault_server: FaultServer) -> None:
    """assert_pool passes when every given count matches, and returns the snapshot."""
    with httpx.Client() as client:
        client.get(connfault_server.url)
        snapshot = assert_pool(client, active=0, idle=1, total=1)
        assert_pool(client)  # nothing asked, nothing checked
    assert snapshot.connections[0].local_port == _port(connfault_server, 1)


def test_assert_pool_fails_showing_pool_and_ledger(connfault_server: FaultServer) -> None:
    """assert_pool fails on a wrong count, showing expected, found, the pool joined to the ledger."""
    with httpx.Client() as client:
        client.get(connfault_server.url + "/first")
        with pytest.raises(AssertionError) as failure:
            assert_pool(client, active=0, idle=2, server=connfault_server)
    port = _port(connfault_server, 1)
    message = str(failure.value)
    assert message.startswith(
        "assert_pool: the pool of httpx.Client (httpx "
    ), message
    assert "was expected to hold active=0, idle=2; it holds active=0, idle=1, total=1\n" in message
    assert "the client's pool (0 active, 1 idle):\n" in message
    assert re.search(
        rf"  port {port} +idle +http://127\.0\.0\.1:{connfault_server.port}  \[.*\]"
        rf"  <-> server: connection 1, open, 1 request\n",
        message,
    ), message
    assert f"the server's ledger ({connfault_server.url}):" in message
    assert f"conn 1  opened (client port {port})" in message
    assert "conn 1  request 1: GET /first -> responded 200" in message


# -- assert_no_leak -----------------------------------------------------------------------


def test_assert_no_leak_passes_once_responses_are_closed(connfault_server: FaultServer) -> None:
    """assert_no_leak passes when nothing is checked out."""
    with httpx.Client() as client:
        with client.stream("GET", connfault_server.url) as response:
            response.read()
        assert assert_no_leak(client).idle == 1


def test_assert_no_leak_fails_while_a_response_is_open(connfault_server: FaultServer) -> None:
    """assert_no_leak fails for a connection still checked out, naming its port."""
    handle = connfault_server.inject("stall", at="after_headers")
    with httpx.Client() as client:
        with client.stream("GET", connfault_server.url) as response:
            handle.wait(timeout=5)
            with pytest.raises(AssertionError) as failure:
                assert_no_leak(client, server=connfault_server)
            connfault_server.release()
            response.read()
    port = _port(connfault_server, 1)
    message = str(failure.value)
    assert f"still has 1 connection(s) checked out (active: {port}); expected none" in message
    assert re.search(rf"port {port} +active .*<-> server: connection 1, open, fault stall@after_headers", message)


# -- assert_no_stale ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("drop", "said"),
    [
        ("reset", "closed, ended by server_fault, fault reset@idle (commanded)"),
        ("close", "closed, ended by server_fault, fault close@idle (commanded)"),
        ("half_close", "half-closed by the server (server_fault), fault half_close@idle (commanded)"),
    ],
)
def test_assert_no_stale_fails_right_after_a_drop(connfault_server: FaultServer, drop: str, said: str) -> None:
    """Right after the server drops an idle connection, the client still holds it: assert_no_stale names it."""
    with httpx.Client() as client:
        client.get(connfault_server.url)
        getattr(connfault_server, f"{drop}_idle")()
        with pytest.raises(AssertionError) as failure:
            assert_no_stale(client, connfault_server)
    port = _port(connfault_server, 1)
    message = str(failure.value)
    assert (
        f"holds 1 idle connection(s) that the server {connfault_server.url} has already dropped:\n"
        f"  port {port}: connection 1, {said}, 1 request\n"
    ) in message
    assert f"conn 1  fault {drop}@idle commanded" in message
    assert message.endswith("right after a drop every client still holds it as idle.")


def test_assert_no_stale_passes_after_the_next_request(connfault_server: FaultServer) -> None:
    """Once the client has made a request since the drop, it holds only the new, live connection."""
    with httpx.Client() as client:
        client.get(connfault_server.url)
        connfault_server.reset_idle()
        client.get(connfault_server.url)
        snapshot = assert_no_stale(client, connfault_server)
    assert snapshot.ports == (_port(connfault_server, 2),)


def test_assert_no_stale_after_one_request_names_what_urllib3_left(connfault_server: FaultServer) -> None:
    """urllib3 checks only the connection it takes (LIFO): after one request the other dropped one stays idle."""
    manager = urllib3.PoolManager(maxsize=2)
    try:
        first = manager.request("GET", connfault_server.url, preload_content=False)
        second = manager.request("GET", connfault_server.url, preload_content=False)
        for response in (first, second):
            response.read()
            response.release_conn()
        assert_pool(manager, active=0, idle=2)
        connfault_server.reset_idle()
        manager.request("GET", connfault_server.url)
        with pytest.raises(AssertionError) as failure:
            assert_no_stale(manager, connfault_server)
    finally:
        manager.clear()
    # The last one released (connection 2) was checked and replaced; connection 1 was never looked at.
    assert f"port {_port(connfault_server, 1)}: connection 1, closed" in str(failure.value)
    assert f"port {_port(connfault_server, 2)}:" not in str(failure.value)


def test_assert_no_stale_after_one_request_httpx_checks_every_connection(connfault_server: FaultServer) -> None:
    """httpcore drops every expired connection when it assigns a request: one request cleans the whole pool."""
    with httpx.Client() as client:
        with client.stream("GET", connfault_server.url) as a, client.stream("GET", connfault_server.url) as b:
            a.read()
            b.read()
        assert_pool(client, active=0, idle=2)
        connfault_server.reset_idle()
        client.get(connfault_server.url)
        assert_no_stale(client, connfault_server)
        assert_pool(client, active=0, idle=1)


def test_assert_no_stale_ignores_other_servers(connfault_server: FaultServer) -> None:
    """Only the pooled connections to the given server are checked against its ledger."""
    other = FaultServer().start()
    try:
        with httpx.Client() as client:
            client.get(connfault_server.url)
            client.get(other.url)
            connfault_server.reset_idle()
            assert_no_stale(client, other)
            with pytest.raises(AssertionError, match="holds 1 idle connection"):
                assert_no_stale(client, connfault_server)
    finally:
        other.stop()


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_helpers_work_in_async_tests(connfault_server: FaultServer) -> None:
    """The helpers are plain calls that only read memory: usable from asyncio and trio tests."""
    async with httpx.AsyncClient() as client:
        await client.get(connfault_server.url)
        await connfault_server.close_idle_async()
        with pytest.raises(AssertionError, match="already dropped"):
            assert_no_stale(client, connfault_server)
        await client.get(connfault_server.url)
        assert_no_stale(client, connfault_server)
        assert_pool(client, active=0, idle=1)
        assert_no_leak(client)
    assert_new_connection(connfault_server)


# -- assert_reused / assert_new_connection ------------------------------------------------


def test_assert_reused_passes_on_keep_alive(connfault_server: FaultServer) -> None:
    """Two requests on one kept-alive connection: the second is reused, and on the same one as the first."""
    with httpx.Client() as client:
        client.get(connfault_server.url + "/first")
        client.get(connfault_server.url + "/second")
    record = assert_reused(connfault_server)
    assert (record.index, record.connection_id) == (2, 1)
    assert_reused(connfault_server, request=2, same_as=1)
    assert_new_connection(connfault_server, request=1)
    assert_new_connection(connfault_server, request=-2)


def test_assert_reused_fails_after_a_drop(connfault_server: FaultServer) -> None:
    """After a drop the next request is on a new connection: assert_reused says which, with the ledger."""
    with httpx.Client() as client:
        client.get(connfault_server.url + "/first")
        connfault_server.close_idle()
        client.get(connfault_server.url + "/second")
        with pytest.raises(AssertionError) as failure:
            assert_reused(connfault_server, client=client)
        with pytest.raises(AssertionError) as same:
            assert_reused(connfault_server, request=2, same_as=1)
    message = str(failure.value)
    assert message.startswith(
        "assert_reused: expected request 2 (GET /second) to arrive on a reused keep-alive connection; "
        "it arrived on connection 2, a new one opened for it\n"
    )
    assert "the client's pool (0 active, 1 idle):" in message
    assert "conn 1  fault close@idle commanded" in message
    assert str(same.value).startswith(
        "assert_reused: expected request 2 (GET /second) to arrive on the same connection as "
        "request 1 (GET /first) (connection 1); it arrived on connection 2, a new one opened for it\n"
    )


def test_assert_new_connection_fails_on_reuse(connfault_server: FaultServer) -> None:
    """A reused connection fails assert_new_connection, naming the requests it had already carried."""
    with httpx.Client() as client:
        client.get(connfault_server.url + "/first")
        client.get(connfault_server.url + "/second")
    with pytest.raises(AssertionError) as failure:
        assert_new_connection(connfault_server)
    assert str(failure.value).startswith(
        "assert_new_connection: expected request 2 (GET /second) to arrive on a new connection; "
        "it arrived on connection 1, which had already carried request 1 (GET /first)\n"
        f"the server's ledger ({connfault_server.url}):\n"
    )


@pytest.mark.parametrize("number", [0, 3, -3])
def test_request_out_of_range_is_a_clear_failure(connfault_server: FaultServer, number: int) -> None:
    """Asking about a request the server never saw fails with the count it did see."""
    with httpx.Client() as client:
        client.get(connfault_server.url)
        client.get(connfault_server.url)
    with pytest.raises(AssertionError, match=rf"no request {number} in the ledger .* recorded 2 request\(s\)"):
        assert_reused(connfault_server, request=number)
    with pytest.raises(AssertionError, match=rf"assert_new_connection: no request {number}"):
        assert_new_connection(connfault_server, request=number)


# -- how the failures read in pytest ------------------------------------------------------


@pytest.mark.parametrize("assert_mode", ["rewrite", "plain"])
def test_failure_hides_helper_frames_and_needs_no_rewriting(pytester: pytest.Pytester, assert_mode: str) -> None:
    """The message is the helper's own (also with --assert=plain), and the helper's frames are hidden."""
    pytester.makepyfile(
        """
        import httpx
        from pytest_connfault import assert_pool

        def test_pool(connfault_server):
            with httpx.Client() as client:
                client.get(connfault_server.url)
                assert_pool(client, active=1, server=connfault_server)
        """
    )
    result = pytester.runpytest_inprocess(f"--assert={assert_mode}", "-p", "no:randomly")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "E   *AssertionError: assert_pool: the pool of httpx.Client * was expected to hold active=1; "
            "it holds active=0, idle=1, total=1",
            "E * the client's pool (0 active, 1 idle):",
            "E * port * idle * <-> server: connection 1, open, 1 request",
        ]
    )
    assert "pytest_connfault/assertions.py" not in result.stdout.str()
