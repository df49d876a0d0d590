"""Where ``select.epoll`` is missing (macOS, the BSDs), connections wait through the backends' own waits.

Linux always has epoll, so these tests take it away from the wires made during the test (the wire
looks its loop's poller up as it is made) and check what the private poller otherwise provides:
waits that a request, an armed fault, a command and a stop each end.
"""

from __future__ import annotations

from typing import Callable

import pytest
from rawclient import FIN, RST, RawClient

import pytest_connfault._wire as wire_module
from pytest_connfault import EndedBy, FaultServer

ServerFactory = Callable[..., FaultServer]


@pytest.fixture(params=["asyncio", "trio"])
def server(
    request: pytest.FixtureRequest, connfault_server_factory: ServerFactory, monkeypatch: pytest.MonkeyPatch
) -> FaultServer:
    """A fresh server on each backend whose wires find no epoll poller."""
    monkeypatch.setattr(wire_module, "poller_for", lambda loop: None)
    monkeypatch.setattr(wire_module, "trio_poller", lambda: None)
    return connfault_server_factory(backend=request.param)


def test_keep_alive_requests_are_answered_on_one_connection(server: FaultServer) -> None:
    """The read waits between requests end when the next request arrives."""
    with RawClient(server) as client:
        for _ in range(3):
            assert client.request().status == 200
    assert [r.connection_id for r in server.requests] == [1, 1, 1]


def test_a_fault_armed_while_the_connection_waits_wakes_it(server: FaultServer) -> None:
    """``inject`` interrupts the wait for the next request, so the fault catches that request."""
    for number in range(1, 6):
        with RawClient(server) as client:
            assert client.request().complete
            server.inject("close", at="before_request", connection=number)
            assert client.request().end == FIN, f"try {number}: the fault armed between requests did not fire"


@pytest.mark.parametrize(("command", "end"), [("reset_idle", RST), ("close_idle", FIN)])
def test_commands_close_the_socket_under_its_waiting_loop(server: FaultServer, command: str, end: str) -> None:
    """The command closes the socket the loop waits on; the loop ends with the fault recorded."""
    with RawClient(server) as client:
        assert client.request().complete
        dropped = getattr(server, command)()
        assert [c.client_port for c in dropped] == [client.local_port]
        assert client.read_to_end(timeout=5).end == end
    server.wait_connections_ended(1)
    assert server.connection(1).ended_by is EndedBy.SERVER_FAULT


def test_stop_ends_a_connection_waiting_for_its_next_request(server: FaultServer) -> None:
    """stop() cancels the waiting loop; the client sees FIN and the ledger says server_shutdown."""
    with RawClient(server) as client:
        assert client.request().complete
        server.stop()
        assert client.read_to_end(timeout=5).end == FIN
    assert server.connection(1).ended_by is EndedBy.SERVER_SHUTDOWN
