"""``TrioGroup``: on trio, a server's concurrent connections share one nursery and one cancel scope.

Its contract, on a real trio loop (no sockets needed: the group only hands them to ``run``):
connections added before the host runs wait for it; one cancel ends every member; once the last
member has ended the group takes no more; and on a real server, the connections accepted while
another is open run in it (waiting through the poller) while a lone connection keeps a scope of
its own (and waits through trio itself until it has served two requests).
"""

from __future__ import annotations

import socket
from typing import Callable

import pytest
from rawclient import wait_until

from pytest_connfault import FaultServer
from pytest_connfault._ledger import ConnectionState, EndedBy
from pytest_connfault._trio_group import TrioGroup

trio = pytest.importorskip("trio")
trio_testing = pytest.importorskip("trio.testing")


def _state(number: int) -> ConnectionState:
    return ConnectionState(number, 40000 + number, 0.0)


def test_members_added_before_the_host_runs_start_with_it_and_one_cancel_ends_them_all() -> None:
    started: list[int] = []
    cancelled: list[int] = []
    cancels: list[Callable[[], object]] = []

    async def run(sock: socket.socket, state: ConnectionState, cancel: Callable[[], object]) -> None:
        started.append(state.id)
        cancels.append(cancel)
        try:
            await trio.sleep_forever()
        except trio.Cancelled:
            cancelled.append(state.id)
            raise

    async def main() -> None:
        group = TrioGroup(run)
        async with trio.open_nursery() as nursery:
            group.add(None, _state(1))  # type: ignore[arg-type]
            group.add(None, _state(2))  # type: ignore[arg-type]
            nursery.start_soon(group.host)
            await trio_testing.wait_all_tasks_blocked()
            group.add(None, _state(3))  # type: ignore[arg-type]
            await trio_testing.wait_all_tasks_blocked()
            assert sorted(started) == [1, 2, 3], "members added before and after the host started all run"
            assert group.accepts()
            cancels[0]()  # what stop() calls for one connection: it ends the whole group
        assert sorted(cancelled) == [1, 2, 3], "one cancel did not reach every member"
        assert not group.accepts(), "a group whose members all ended must take no more"

    trio.run(main)


def test_a_group_stops_accepting_once_its_last_member_ends() -> None:
    async def run(sock: socket.socket, state: ConnectionState, cancel: Callable[[], object]) -> None:
        await trio.lowlevel.checkpoint()

    async def main() -> None:
        group = TrioGroup(run)
        async with trio.open_nursery() as nursery:
            group.add(None, _state(1))  # type: ignore[arg-type]
            nursery.start_soon(group.host)
        assert not group.accepts()

    trio.run(main)


def test_a_trio_server_runs_concurrent_connections_in_one_group_and_a_lone_one_outside() -> None:
    with FaultServer(backend="trio") as server:
        with socket.create_connection((server.host, server.port), timeout=5.0) as lone:
            wait_until(lambda: 1 in server._core.live and server._core.live[1].wire in server._core.waiting,
                       what="the lone connection waiting for its first request")
            lone_wire = server._core.live[1].wire
            assert lone_wire is not None
            assert lone_wire._poller is None, (
                "a server's only connection waits for its first request through trio itself, not the poller's task"
            )
            for served in (1, 2):
                lone.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                assert lone.recv(65536).startswith(b"HTTP/1.1 200 ")
                if served == 1:
                    # A test's one request and the connection's end stay off the poller (cheaper).
                    wait_until(lambda: lone_wire in server._core.waiting, what="waiting for the 2nd request")
                    assert lone_wire._poller is None, "one request served, and it moved to the poller already"
            assert server._group is None, "a server's only connection needs no group"
            # Having served two requests, it waits for the next through the poller (served on the spot).
            wait_until(lambda: lone_wire._poller is not None,
                       what="the lone connection moving to the poller after its second request")
            crowd = [socket.create_connection((server.host, server.port), timeout=5.0) for _ in range(3)]
            try:
                for sock in crowd:
                    sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
                    assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
                group = server._group
                assert group is not None, "connections accepted beside another run in a group"
                assert group.accepts()
                assert all(server._core.live[number].wire._poller is not None for number in (2, 3, 4)), (
                    "connections in a group wait through the poller (a command's wake-ups are values)"
                )
                dropped = server.reset_idle()
                assert len(dropped) == 4
            finally:
                for sock in crowd:
                    sock.close()
    assert {c.ended_by for c in server.connections} == {EndedBy.SERVER_FAULT}
