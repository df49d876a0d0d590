"""What the server remembers: connection and request records, how connections ended, and ordering."""

from __future__ import annotations

import socket
import struct
import threading
import time
from typing import Callable

import httpx
import pytest
from rawclient import FIN, RST, RawClient, wait_until

from pytest_connfault import Connection, EndedBy, FaultServer, Outcome
from pytest_connfault._loop import get_loop
from pytest_connfault._tls import client_context

ServerFactory = Callable[..., FaultServer]


@pytest.fixture(params=["asyncio", "trio"])
def server(request: pytest.FixtureRequest, connfault_server_factory: ServerFactory) -> FaultServer:
    """A fresh server on each backend."""
    return connfault_server_factory(backend=request.param)


def ended(server: FaultServer, conn_id: int) -> Connection:
    """The record of connection ``conn_id`` once the server has closed it (bounded wait)."""
    server.wait_connections_ended(conn_id)
    return server.connection(conn_id)


# -- connection records ---------------------------------------------------------------------


def test_connections_are_numbered_in_accept_order_with_the_clients_port(server: FaultServer) -> None:
    """Connection ids run 1, 2, 3 per server, and each client_port is that client's local port."""
    clients = []
    try:
        for _ in range(3):
            client = RawClient(server)
            clients.append(client)
            assert client.request().complete  # one exchange each, so the accept order is ours
        records = server.connections
        assert [c.id for c in records] == [1, 2, 3]
        assert [c.client_port for c in records] == [c.local_port for c in clients]
        assert all(c.is_open for c in records)
        assert server.connection_for_port(clients[1].local_port) == records[1]
    finally:
        for client in clients:
            client.close()
    assert server.connection_for_port(1) is None


def test_a_new_server_starts_its_ids_at_one(connfault_server_factory: ServerFactory) -> None:
    """Ids and request indexes are per server, not per process."""
    for _ in range(2):
        server = connfault_server_factory()
        with RawClient(server) as client:
            assert client.request().complete
        assert [c.id for c in server.connections] == [1]
        assert [r.index for r in server.requests] == [1]


def test_times_are_ordered_open_request_close(server: FaultServer) -> None:
    """opened_at <= each request's received_at <= closed_at; closed_at is None while open."""
    with RawClient(server) as client:
        assert client.request().complete
        assert server.connection(1).closed_at is None
    record = ended(server, 1)
    (request,) = record.requests
    assert record.closed_at is not None
    assert record.opened_at <= request.received_at <= record.closed_at
    assert server.started_at <= record.opened_at


def test_client_fin_is_recorded(server: FaultServer) -> None:
    """A client that closes its keep-alive connection ends it with client_fin."""
    with RawClient(server) as client:
        assert client.request().complete
    assert ended(server, 1).ended_by is EndedBy.CLIENT_FIN


def test_client_rst_is_recorded(server: FaultServer) -> None:
    """A client that resets its connection ends it with client_rst."""
    client = RawClient(server)
    assert client.request().complete
    client.reset()
    assert ended(server, 1).ended_by is EndedBy.CLIENT_RST


@pytest.mark.parametrize("tls", [False, True], ids=["plain", "tls"])
def test_a_reset_before_the_first_request_is_the_clients(
    connfault_server_factory: ServerFactory, connfault_backend: str, tls: bool
) -> None:
    """A client that connects (and finishes the TLS handshake) then resets before sending anything
    ends the connection with client_rst: looking for the first request must not swallow the reset
    (a peek once did, and the record said client_fin)."""
    server = connfault_server_factory(backend=connfault_backend, tls=tls)
    raw = socket.create_connection((server.host, server.port), timeout=5.0)
    sock = client_context().wrap_socket(raw, server_hostname=server.host) if tls else raw
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()
    wait_until(lambda: len(server.connections) == 1, what="the connection accepted")
    assert ended(server, 1).ended_by is EndedBy.CLIENT_RST, server.timeline()


@pytest.mark.parametrize(("kind", "end"), [("reset", RST), ("close", FIN), ("half_close", FIN)])
def test_fault_ending_is_recorded_with_the_fault(server: FaultServer, kind: str, end: str) -> None:
    """A fault that drops the connection ends it with server_fault, and the firing is on the record."""
    handle = server.inject(kind, at="after_response")
    with RawClient(server) as client:
        assert client.request().complete
        handle.wait(5)
        assert client.read_to_end().end == end
    record = ended(server, 1)
    assert record.ended_by is EndedBy.SERVER_FAULT
    assert [(f.kind, f.at, f.request_index, f.commanded) for f in record.faults] == [
        (kind, "after_response", 1, False)
    ]
    assert record.faults == handle.firings


@pytest.mark.parametrize("kind", ["reset", "close", "empty", "garbage", "truncate"])
def test_once_a_drop_faults_handle_is_set_the_record_is_closed(server: FaultServer, kind: str) -> None:
    """The handle is set once the drop is on the wire, and the record says so already: closed, by
    server_fault, at the firing's moment (the test's thread must not race the loop's cleanup).
    Repeated, because the loop thread finishes its own bookkeeping just after."""
    for attempt in range(20):
        handle = server.inject(kind, at="before_response", request_on_connection=1, connection=attempt + 1)
        with RawClient(server) as client:
            client.request()
            handle.wait(5)
            record = server.connection(attempt + 1)
            assert not record.is_open, f"attempt {attempt + 1}: {record}"
            assert record.ended_by is EndedBy.SERVER_FAULT
            assert record.closed_at == record.faults[-1].fired_at


@pytest.mark.parametrize("command", ["reset_idle", "close_idle"])
def test_the_records_a_drop_command_returns_are_closed(server: FaultServer, command: str) -> None:
    """reset_idle() / close_idle() return once the kernel acted; the records they return are closed."""
    with RawClient(server) as client:
        assert client.request().complete
        (record,) = getattr(server, command)()
    assert not record.is_open
    assert record.ended_by is EndedBy.SERVER_FAULT
    assert record.closed_at == record.faults[-1].fired_at


@pytest.mark.parametrize("how", ["response", "request"])
def test_connection_close_is_recorded_as_server_close(server: FaultServer, how: str) -> None:
    """A Connection: close exchange (asked by the response or the request) ends with server_close."""
    server.respond("/bye", close=True)
    headers = [("Connection", "close")] if how == "request" else []
    with RawClient(server) as client:
        reply = client.request(target="/" if how == "request" else "/bye", headers=headers)
        assert reply.complete
        assert client.read_to_end().end == FIN
    assert ended(server, 1).ended_by is EndedBy.SERVER_CLOSE


def test_shutdown_is_recorded(connfault_server_factory: ServerFactory) -> None:
    """Connections still open when the server stops end with server_shutdown."""
    server = connfault_server_factory()
    with RawClient(server) as client:
        assert client.request().complete
        server.stop()
        assert client.read_to_end().end == FIN
    record = server.connection(1)
    assert record.ended_by is EndedBy.SERVER_SHUTDOWN
    assert not record.is_open


def stop_right_after_the_clients_end(factory: ServerFactory, backend: str, how: str, attempt: int) -> None:
    """One GET on a fresh server, the client closes (FIN) or resets (RST), then at once stop():
    the ledger must give the end to the client, whichever thread acted first."""
    server = factory(backend=backend)
    client = RawClient(server)
    assert client.request().complete
    if how == RST:
        client.reset()
    else:
        client.close()
    server.stop()
    expected = EndedBy.CLIENT_FIN if how == FIN else EndedBy.CLIENT_RST
    assert server.connection(1).ended_by is expected, f"attempt {attempt + 1}: {server.timeline()}"


@pytest.mark.parametrize("how", [FIN, RST])
def test_a_client_end_the_server_has_not_yet_read_is_still_the_clients(
    connfault_server_factory: ServerFactory, connfault_backend: str, how: str
) -> None:
    """stop() right after the client closed (or reset): the EOF waits unread, yet it was the client's end.

    Repeated, because which side acts first is a race: either way the ledger must say client_fin
    (client_rst), never server_shutdown.
    """
    for attempt in range(20):
        stop_right_after_the_clients_end(connfault_server_factory, connfault_backend, how, attempt)


@pytest.mark.parametrize("how", [FIN, RST])
def test_a_stop_right_after_the_client_ended_lets_the_loop_record_it(
    connfault_server_factory: ServerFactory, connfault_backend: str, how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The usual teardown: the client closed (or reset), its connection waits at a request boundary.

    stop() then leaves the ending to the loop (the EOF or reset wakes the connection, which records
    it) instead of interrupting the loop to cancel the connection. The loop thread is held busy
    while the client ends and stop() looks, so the connection is surely still parked then.
    """
    answers: list[bool] = []
    clients_ending = FaultServer._clients_ending

    def noted(self: FaultServer) -> bool:  # asked by stop() only while connections are open
        answers.append(clients_ending(self))
        return answers[-1]

    monkeypatch.setattr(FaultServer, "_clients_ending", noted)
    server = connfault_server_factory(backend=connfault_backend)
    client = RawClient(server)
    assert client.request().complete
    wait_until(lambda: len(server._core.waiting) == 1, what="the connection parked at its request boundary")
    busy, release = threading.Event(), threading.Event()
    get_loop(connfault_backend).call_soon(lambda: (busy.set(), release.wait(5.0)))
    assert busy.wait(5.0), "the loop thread never ran the call that holds it"
    stopping = threading.Thread(target=server.stop)
    try:
        if how == RST:
            client.reset()
        else:
            client.close()
        stopping.start()
        wait_until(lambda: bool(answers), what="stop() asked whether the clients had ended")
    finally:
        release.set()
    stopping.join(5.0)
    assert not stopping.is_alive(), "stop() did not return once the loop was free"
    assert answers == [True], "stop() interrupted the loop although the client had ended a parked connection"
    expected = EndedBy.CLIENT_FIN if how == FIN else EndedBy.CLIENT_RST
    assert server.connection(1).ended_by is expected, server.timeline()


# -- request records ------------------------------------------------------------------------


def test_request_fields_are_recorded_as_sent(server: FaultServer) -> None:
    """index, index_on_connection, connection_id, method, target (with query), headers and body as sent."""
    with RawClient(server) as first, RawClient(server) as second:
        assert first.request("GET", "/a?x=1", headers=[("X-Trace", "one"), ("x-trace", "two")]).complete
        assert second.request("POST", "/b", body=b"payload \x00\xff").complete
        assert first.request("DELETE", "/c").complete
    one, two, three = server.requests
    assert [(r.index, r.index_on_connection, r.connection_id) for r in (one, two, three)] == [
        (1, 1, 1), (2, 1, 2), (3, 2, 1)
    ]
    assert (one.method, one.target, one.path) == ("GET", "/a?x=1", "/a")
    assert one.headers == (("Host", "127.0.0.1"), ("X-Trace", "one"), ("x-trace", "two"))
    assert one.header("X-TRACE") == "one"
    assert (two.method, two.body) == ("POST", b"payload \x00\xff")
    assert two.header("content-length") == "10"
    assert three.method == "DELETE"
    assert [r.index for r in server.connection(1).requests] == [1, 3]
    assert all(r.outcome == Outcome("responded", status=200) for r in server.requests)


def test_chunked_request_body_is_read_whole(server: FaultServer) -> None:
    """A chunked request body is recorded unframed and whole."""
    with RawClient(server) as client:
        client.send(
            b"POST /up HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
        )
        assert client.read_reply().status == 200
    assert server.requests[0].body == b"hello world"


def test_large_body_is_recorded_whole(server: FaultServer) -> None:
    """A 1 MiB body arrives in many reads and is recorded byte for byte."""
    body = bytes(range(256)) * 4096
    with httpx.Client(base_url=server.url) as client:
        assert client.post("/big", content=body).status_code == 200
    assert server.requests[0].body == body


def test_outcomes_name_what_the_server_did(server: FaultServer) -> None:
    """Outcomes: responded with the status, the fault that replaced the response, or a rejection."""
    server.respond("/missing", status=404)
    server.inject("reset", at="before_response", path="/reset")
    with RawClient(server) as client:
        assert client.request(target="/missing").status == 404
    with RawClient(server) as client:
        assert client.request(target="/reset").end == RST
    with RawClient(server) as client:
        client.send(b"NOT HTTP\r\n\r\n")
        assert client.read_reply().status == 400
    outcomes = [r.outcome for r in server.requests]
    assert outcomes[0] == Outcome("responded", status=404)
    assert outcomes[1] == Outcome("fault", fault="reset@before_response")
    assert (outcomes[2].kind, outcomes[2].status) == ("rejected", 400)
    assert [str(o).split(" (")[0] for o in outcomes] == [
        "responded 404", "fault reset@before_response", "rejected 400"
    ]


def test_request_outcome_for_a_fault_after_the_response_stays_responded(server: FaultServer) -> None:
    """A drop after a complete response does not rewrite that request's outcome: it was answered."""
    handle = server.inject("reset", at="after_response")
    with RawClient(server) as client:
        assert client.request().complete
        handle.wait(5)
    assert server.requests[0].outcome == Outcome("responded", status=200)


# -- ordering promises ----------------------------------------------------------------------


def test_request_is_in_the_ledger_before_its_first_response_byte(server: FaultServer) -> None:
    """Any response byte implies its request is already recorded, with its outcome settled once whole."""
    with RawClient(server) as client:
        size = len(client.request(target="/0").raw)  # every answer here is this long
        for number in range(1, 41):
            client.send_request(target=f"/{number}")
            assert client.read_bytes(1).end == "", "no response byte arrived"
            recorded = server.requests
            assert len(recorded) == number + 1, f"request {number} answered before it was recorded"
            assert recorded[-1].target == f"/{number}"
            assert client.read_bytes(size - 1).end == ""
            assert server.requests[-1].outcome.kind == "responded"


def test_request_is_in_the_ledger_before_a_fault_replacing_its_response(server: FaultServer) -> None:
    """When the client sees the RST that replaces a response, the request and its fault outcome are recorded."""
    server.inject("reset", at="before_response", times="always")
    for number in range(1, 21):
        with RawClient(server) as client:
            assert client.request(target=f"/{number}").end == RST
            assert server.requests[-1].target == f"/{number}"
            assert server.requests[-1].outcome.kind == "fault"


@pytest.mark.parametrize(("kind", "end"), [("reset", RST), ("close", FIN)])
def test_fault_handle_is_set_only_once_the_fault_is_on_the_wire(server: FaultServer, kind: str, end: str) -> None:
    """The moment handle.wait() returns, the client's socket already holds the RST or FIN."""
    handle = server.inject(kind, at="after_response", times="always")
    for number in range(1, 21):
        with RawClient(server) as client:
            assert client.request().complete
            wait_until(lambda n=number: handle.fired >= n, what=f"firing {number}")  # type: ignore[misc]
            assert client.read_to_end(timeout=0.0005).end == end, "the handle was set before the fault acted"
            assert server.connection(number).faults, "the firing is on the connection's record too"


def test_handle_wait_returns_the_first_firing(server: FaultServer) -> None:
    """handle.wait() returns the first firing; firings lists all of them in order."""
    handle = server.inject("close", at="before_response", times=2)
    for _ in range(2):
        with RawClient(server) as client:
            assert client.request().end == FIN
    wait_until(lambda: handle.fired == 2)
    first, second = handle.firings
    assert handle.wait(0) == first
    assert (first.connection_id, second.connection_id) == (1, 2)
    assert first.fired_at <= second.fired_at
    assert str(first) == "close@before_response on connection 1, request 1"


# -- unread bytes ---------------------------------------------------------------------------


def test_unread_bytes_of_a_pipelined_request_are_kept(server: FaultServer) -> None:
    """A close that discards a request the client already sent keeps those bytes as the connection's unread."""
    handle = server.inject("close", at="before_response", request=1)
    with RawClient(server) as client:
        client.send(b"GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n")
        handle.wait(5)
        assert client.read_to_end().end == FIN
    assert ended(server, 1).unread == b"GET /2 HTTP/1.1\r\nHost: x\r\n\r\n"
    assert [r.target for r in server.requests] == ["/1"], "the discarded request is not a request record"


def test_before_request_fault_keeps_the_request_it_never_read(server: FaultServer) -> None:
    """A before_request fault fires on a request's first bytes; those bytes are kept as unread, not as a request."""
    handle = server.inject("reset", at="before_request")
    with RawClient(server) as client:
        client.send(b"GET /never-read HTTP/1.1\r\nHost: x\r\n\r\n")
        handle.wait(5)
        assert client.read_to_end().end == RST
    assert server.requests == []
    assert ended(server, 1).unread.startswith(b"GET /never-read HTTP/1.1")


def test_timeline_lists_every_event_in_time_order(server: FaultServer) -> None:
    """The timeline has one line per event with times in ms from the start, in order."""
    handle = server.inject("reset", at="after_response")
    with RawClient(server) as client:
        assert client.request(target="/t").complete
        handle.wait(5)
    ended(server, 1)
    lines = server.timeline()
    assert [line.split("  conn 1  ")[1] for line in lines] == [
        f"opened (client port {server.connection(1).client_port})",
        "request 1: GET /t -> responded 200",
        "fault reset@after_response fired",
        "closed, ended by server_fault",
    ]
    stamps = [float(line.split("ms")[0].strip(" +")) for line in lines]
    assert stamps == sorted(stamps)


def test_records_are_frozen_snapshots(server: FaultServer) -> None:
    """A record read earlier does not change as the server goes on; reading again sees the news."""
    with RawClient(server) as client:
        assert client.request().complete
        before = server.connection(1)
        assert client.request().complete
    assert len(before.requests) == 1
    assert len(server.connection(1).requests) == 2
    with pytest.raises(AttributeError):
        before.id = 9  # type: ignore[misc]


def test_ledger_is_safe_to_read_while_requests_arrive(server: FaultServer) -> None:
    """Reading the ledger in a tight loop while another connection sends requests never sees a half record."""
    with RawClient(server) as client:
        deadline = time.monotonic() + 5
        for number in range(1, 101):
            client.send_request(target=f"/{number}")
            while time.monotonic() < deadline:
                seen = server.requests
                assert all(r.index == i for i, r in enumerate(seen, 1))
                if len(seen) == number:
                    break
            assert client.read_reply().complete
