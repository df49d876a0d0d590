"""Every fault kind, at every moment it applies to, observed on the wire with a raw client.

The raw client (tests/rawclient.py) tells FIN from RST from silence and keeps every byte, so each
test states exactly what a client receives. Each test waits on the fault's handle (the fault is on
the wire once it is set) and would fail if the fault were not injected: the client would get a
complete response on a connection that stays open.

Settled here (see ``test_bytes_sent_before_a_reset_can_still_be_read``): on Linux, bytes that
reached the client before the server's RST stay readable; the reset surfaces on the read after them.
"""

from __future__ import annotations

import functools
import socket
import struct
import time
from typing import Any, Callable

import httpx
import pytest
from rawclient import FIN, RST, TIMEOUT, RawClient

from pytest_connfault import MOMENTS, FaultServer
from pytest_connfault._faults import APPLIES, DEFAULT_GARBAGE

BODY = bytes(range(48, 58)) * 10  # 100 bytes: "0123456789" ten times
CUT = 37  # body bytes sent before a mid_body fault or a truncate
DELAY = 0.2  # seconds; a normal exchange on loopback takes well under 10 ms
SILENCE = 0.2  # how long a stalled connection is watched for any byte
IDLE = 0.05
#: The moments of a plain TCP connection ("handshake" is TLS only; the TLS tests cover it).
PLAIN = [m for m in MOMENTS if m != "handshake"]

ServerFactory = Callable[..., FaultServer]


@functools.cache
def normal_response() -> bytes:
    """The exact bytes the server sends for ``GET /`` with no fault (a reference exchange)."""
    with FaultServer() as server:
        server.respond("/", body=BODY)
        with RawClient(server) as client:
            reply = client.request()
    assert reply.complete
    assert reply.body == BODY
    return reply.raw


def head() -> bytes:
    """The status line and headers of the normal response."""
    raw = normal_response()
    return raw[: len(raw) - len(BODY)]


@pytest.fixture(params=["asyncio", "trio"])
def server(request: pytest.FixtureRequest, connfault_server_factory: ServerFactory) -> FaultServer:
    """A fresh server on each backend, answering ``GET /`` with the 100-byte BODY."""
    made = connfault_server_factory(backend=request.param)
    made.respond("/", body=BODY)
    return made


def arm(server: FaultServer, kind: str, moment: str, **extra: Any) -> Any:
    """Arm ``kind`` at ``moment``, with the timing parameters that moment takes."""
    if moment == "mid_body":
        extra.setdefault("body_bytes", CUT)
    if moment == "idle":
        extra.setdefault("seconds", IDLE)
    return server.inject(kind, at=moment, **extra)


def drive(client: RawClient, moment: str) -> None:
    """Do what a client does before ``moment`` can come: nothing, send a request, or a whole exchange."""
    if moment == "on_connect":
        return
    if moment in ("after_response", "idle"):
        reply = client.request()
        assert reply.complete, f"the first exchange should be whole before {moment}: {reply}"
        assert reply.body == BODY
        return
    client.send_request()


def sent_before(moment: str) -> bytes:
    """The bytes of the (current) response the client gets before a fault at ``moment`` acts."""
    if moment == "after_headers":
        return head()
    if moment == "mid_body":
        return head() + BODY[:CUT]
    return b""


# -- reset, close, half_close: the drops -----------------------------------------------------


@pytest.mark.parametrize("moment", PLAIN)
@pytest.mark.parametrize(("kind", "end"), [("reset", RST), ("close", FIN), ("half_close", FIN)])
def test_drop_reaches_the_client_as_rst_or_fin(server: FaultServer, kind: str, end: str, moment: str) -> None:
    """reset is an RST, close and half_close a FIN, at every moment, after exactly the bytes due."""
    handle = arm(server, kind, moment)
    with RawClient(server) as client:
        drive(client, moment)
        firing = handle.wait(5)
        got = client.read_to_end(timeout=5)
    assert got.end == end, f"{kind}@{moment}: the client saw {got.end}, expected {end}"
    assert got.data == sent_before(moment), f"{kind}@{moment}: wrong bytes before the drop"
    assert (firing.kind, firing.at, firing.connection_id) == (kind, moment, 1)


@pytest.mark.parametrize("moment", ["before_request", "before_response", "after_headers", "mid_body"])
def test_close_with_the_request_unread_is_still_a_fin(server: FaultServer, moment: str) -> None:
    """close drains what arrived before closing, so a request body left unread does not turn it into RST."""
    handle = arm(server, "close", moment)
    with RawClient(server) as client:
        # A request followed at once by a second one the server has not read when it closes.
        client.send_request()
        if moment != "before_request":
            client.send_request(target="/pipelined")
        handle.wait(5)
        got = client.read_to_end(timeout=5)
    assert got.end == FIN, "unread bytes must be drained before close(), or the kernel sends RST"


@pytest.mark.parametrize("moment", ["on_connect", "before_request", "after_response", "idle"])
def test_half_close_keeps_reading_and_records_the_late_request(server: FaultServer, moment: str) -> None:
    """After a half_close the server still reads: a request sent after its FIN is recorded, unanswered."""
    handle = arm(server, "half_close", moment)
    with RawClient(server) as client:
        drive(client, moment)
        handle.wait(5)
        assert client.read_to_end(timeout=5).end == FIN
        if moment != "before_request":
            client.send_request(target="/late")  # our side is still open: this must not fail
        client.shutdown_write()
        assert client.read_to_end(timeout=5).end == FIN
        server.wait_connections_ended(1)
    late = [r for r in server.requests if r.outcome.kind == "unanswered"]
    assert [r.target for r in late] == ["/late" if moment != "before_request" else "/"], server.timeline()
    assert "after the server's FIN" in late[0].outcome.detail


@pytest.mark.parametrize("moment", ["before_response", "after_headers", "mid_body"])
def test_half_close_mid_exchange_records_late_bytes_as_unread(server: FaultServer, moment: str) -> None:
    """Bytes that arrive after a half_close in the middle of an exchange are kept as the connection's unread."""
    handle = arm(server, "half_close", moment)
    with RawClient(server) as client:
        drive(client, moment)
        handle.wait(5)
        assert client.read_to_end(timeout=5).end == FIN
        client.send(b"written after the server's FIN")
        client.shutdown_write()
        assert client.read_to_end(timeout=5).end == FIN
        server.wait_connections_ended(1)
    assert server.connection(1).unread == b"written after the server's FIN"


def test_bytes_sent_before_a_reset_can_still_be_read(server: FaultServer) -> None:
    """Open question settled: on Linux a client reads the bytes that arrived before an RST, then gets the RST.

    The server sends the head and 37 body bytes, then resets; the test reads only after the
    RST is on the wire (the handle is set). The kernel keeps the received bytes queued: recv
    returns them, and only the next recv raises ConnectionResetError. (A client that had not
    yet read the head when the RST came still sees the head; the RST does not purge it.)
    """
    handle = arm(server, "reset", "mid_body")
    with RawClient(server) as client:
        client.send_request()
        handle.wait(5)
        reply = client.read_reply(timeout=5)
    assert reply.raw == head() + BODY[:CUT], "bytes received before the RST were lost"
    assert reply.end == RST
    assert reply.status == 200
    assert reply.body == BODY[:CUT]


# -- stall, delay: time ----------------------------------------------------------------------


@pytest.mark.parametrize("moment", [m for m in PLAIN if m in APPLIES["stall"]])
def test_stall_sends_nothing_until_released(server: FaultServer, moment: str) -> None:
    """A stall holds the connection silent (no byte, no FIN, no RST); release() lets the response through."""
    handle = arm(server, "stall", moment)
    full = normal_response()
    with RawClient(server) as client:
        drive(client, moment)
        if moment in ("on_connect", "after_response"):
            client.send_request()  # the request that is held up
        handle.wait(5)
        before = client.read_bytes(len(full), timeout=SILENCE)
        assert before.end == TIMEOUT, f"stall@{moment}: the connection did not stay silent"
        assert before.data == sent_before(moment)
        assert server.release() == 1, "release() should count the stalled connection"
        rest = client.read_bytes(len(full) - len(before.data), timeout=5)
        assert rest.end == "", f"after release() the response should complete, got {rest.end}"
        assert before.data + rest.data == full
        assert client.is_silent(0.01), "a released connection stays open for keep-alive"


@pytest.mark.parametrize("moment", [m for m in PLAIN if m in APPLIES["delay"]])
def test_delay_holds_the_response_then_goes_on_normally(server: FaultServer, moment: str) -> None:
    """A delay adds at least its seconds to the exchange, then the response arrives whole on a live connection."""
    handle = arm(server, "delay", moment, seconds=DELAY)
    started = time.monotonic()
    with RawClient(server) as client:
        drive(client, moment)
        held = moment in ("on_connect", "after_response")
        reply = client.request() if held else client.read_reply(timeout=5)
        elapsed = time.monotonic() - started
        assert reply.complete, reply
        assert reply.body == BODY
        assert client.is_silent(0.01), "the connection stays open after a delay"
    assert elapsed >= DELAY, f"delay@{moment}: the exchange took {elapsed:.3f} s, less than {DELAY}"
    assert handle.fired == 1


# -- drip, truncate: the response's bytes ----------------------------------------------------


def test_drip_sends_the_response_in_small_pieces_with_pauses(server: FaultServer) -> None:
    """drip sends the whole response chunk_size bytes at a time, interval apart: intact, but slow."""
    chunk_size, interval = 20, 0.01
    handle = arm(server, "drip", "before_response", chunk_size=chunk_size, interval=interval)
    full = normal_response()
    pieces = -(-len(full) // chunk_size)
    with RawClient(server) as client:
        reply = client.request(timeout=5)
    assert reply.complete, reply
    assert reply.raw == full, "a dripped response must arrive byte for byte intact"
    assert reply.elapsed >= (pieces - 1) * interval, f"{pieces} pieces {interval} s apart took {reply.elapsed:.3f} s"
    assert len(reply.pieces) > 1, "the client read the dripped response in one piece"
    assert handle.fired == 1


@pytest.mark.parametrize(("then", "end"), [("close", FIN), ("reset", RST)])
@pytest.mark.parametrize("body_bytes", [None, 0, 10, len(BODY) - 1])
def test_truncate_sends_the_head_and_part_of_the_body(
    server: FaultServer, then: str, end: str, body_bytes: int | None
) -> None:
    """truncate sends the head and body_bytes of the body (default half), then FIN (close) or RST (reset)."""
    handle = arm(server, "truncate", "before_response", then=then, body_bytes=body_bytes)
    keep = len(BODY) // 2 if body_bytes is None else body_bytes
    with RawClient(server) as client:
        client.send_request()
        firing = handle.wait(5)
        reply = client.read_reply(timeout=5)
    assert reply.raw == head() + BODY[:keep]
    assert reply.end == end
    assert not reply.complete
    assert f"{keep} of {len(BODY)} body bytes, then {then}" in firing.detail


def test_truncate_cuts_a_chunked_body_inside_its_framing(server: FaultServer) -> None:
    """On a chunked response, truncate counts the framed body bytes: the client sees an unfinished chunk."""
    server.respond("/chunked", body=[b"a" * 30, b"b" * 30], chunked=True)
    handle = arm(server, "truncate", "before_response", body_bytes=20)
    with RawClient(server) as client:
        client.send_request(target="/chunked")
        handle.wait(5)
        reply = client.read_reply(timeout=5)
    assert reply.status == 200
    assert reply.header("transfer-encoding") == "chunked"
    assert not reply.complete
    assert reply.end == FIN


# -- garbage, empty --------------------------------------------------------------------------


@pytest.mark.parametrize("moment", [m for m in PLAIN if m in APPLIES["garbage"]])
@pytest.mark.parametrize(("then", "end"), [("close", FIN), ("reset", RST)])
def test_garbage_sends_its_bytes_then_ends(server: FaultServer, moment: str, then: str, end: str) -> None:
    """garbage puts its data on the wire where HTTP is expected, then FIN (then=close) or RST (then=reset)."""
    handle = arm(server, "garbage", moment, then=then)
    with RawClient(server) as client:
        drive(client, moment)
        handle.wait(5)
        got = client.read_to_end(timeout=5)
    assert got.data == sent_before(moment) + DEFAULT_GARBAGE
    assert got.end == end


def test_garbage_data_is_configurable_and_not_http(server: FaultServer) -> None:
    """The garbage bytes are the ones given, and an HTTP parser rejects them."""
    arm(server, "garbage", "before_response", data=b"\xffnot a status line\r\n\r\n")
    with RawClient(server) as client:
        reply = client.request(timeout=5)
    assert reply.raw == b"\xffnot a status line\r\n\r\n"
    assert reply.error is not None, "h11 should have refused the garbage"
    assert reply.status is None


@pytest.mark.parametrize("moment", [m for m in PLAIN if m in APPLIES["empty"]])
def test_empty_closes_without_a_byte(server: FaultServer, moment: str) -> None:
    """empty ends the connection with a FIN and no response byte."""
    handle = arm(server, "empty", moment)
    with RawClient(server) as client:
        drive(client, moment)
        handle.wait(5)
        got = client.read_to_end(timeout=5)
    assert got == type(got)(b"", FIN, []), f"empty@{moment}: got {got}"


# -- the idle moment -------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "end"), [("reset", RST), ("close", FIN), ("half_close", FIN)])
def test_idle_fault_waits_for_the_idle_time(server: FaultServer, kind: str, end: str) -> None:
    """An idle fault fires only after the connection has been idle for its seconds, like a keep-alive timeout."""
    handle = arm(server, kind, "idle", seconds=DELAY)
    with RawClient(server) as client:
        idle_from = time.monotonic()  # no later than the server's idle clock starts
        assert client.request().complete
        got = client.read_to_end(timeout=5)
        waited = time.monotonic() - idle_from
    assert got.end == end
    assert waited >= DELAY, f"{kind}@idle fired after {waited:.3f} s, before its {DELAY} s"
    firing = handle.wait(5)  # the client may see the drop before the handle is set: wait, don't peek
    assert firing.fired_at - server.requests[0].received_at >= DELAY


def test_idle_fault_does_not_fire_while_requests_keep_coming(server: FaultServer) -> None:
    """A connection that is never idle for the full time is not dropped by an idle fault."""
    handle = arm(server, "reset", "idle", seconds=1.0)
    with RawClient(server) as client:
        for _ in range(5):
            assert client.request().complete
    assert handle.fired == 0


# -- through a real client: httpx ------------------------------------------------------------


def test_httpx_sees_a_reset_before_the_response_as_read_error(server: FaultServer) -> None:
    """httpx.Client: RST instead of the response raises httpx.ReadError (connection reset)."""
    server.inject("reset", at="before_response")
    with httpx.Client(base_url=server.url) as client, pytest.raises(httpx.ReadError):
        client.get("/")


@pytest.mark.parametrize("kind", ["close", "empty", "half_close"])
def test_httpx_sees_a_fin_before_the_response_as_server_disconnected(server: FaultServer, kind: str) -> None:
    """httpx.Client: a FIN instead of the response raises RemoteProtocolError 'Server disconnected'."""
    server.inject(kind, at="before_response")
    with httpx.Client(base_url=server.url) as client, pytest.raises(
        httpx.RemoteProtocolError, match="Server disconnected without sending a response"
    ):
        client.get("/")


def test_httpx_sees_a_truncated_body_as_incomplete(server: FaultServer) -> None:
    """httpx.Client: a truncated body raises RemoteProtocolError naming the bytes received and expected."""
    server.inject("truncate", body_bytes=CUT)
    with httpx.Client(base_url=server.url) as client, pytest.raises(
        httpx.RemoteProtocolError, match=f"received {CUT} bytes, expected {len(BODY)}"
    ):
        client.get("/")


def test_httpx_sees_a_reset_mid_body_as_read_error(server: FaultServer) -> None:
    """httpx.Client: RST in the middle of the body raises httpx.ReadError."""
    server.inject("reset", at="mid_body", body_bytes=CUT)
    with httpx.Client(base_url=server.url) as client, pytest.raises(httpx.ReadError):
        client.get("/")


def test_httpx_sees_garbage_as_a_protocol_error(server: FaultServer) -> None:
    """httpx.Client: bytes that are not HTTP raise RemoteProtocolError."""
    server.inject("garbage")
    with httpx.Client(base_url=server.url) as client, pytest.raises(httpx.RemoteProtocolError):
        client.get("/")


def test_httpx_times_out_on_a_stall_and_the_next_request_succeeds(server: FaultServer) -> None:
    """httpx.Client: a stall raises ReadTimeout; after release() the server answers a new connection."""
    handle = server.inject("stall", request=1)
    with httpx.Client(base_url=server.url, timeout=httpx.Timeout(5.0, read=SILENCE)) as client:
        with pytest.raises(httpx.ReadTimeout):
            client.get("/")
        handle.wait(5)
        server.release()
        assert client.get("/").content == BODY
    assert [r.connection_id for r in server.requests] == [1, 2]


def test_httpx_keep_alive_race_is_deterministic_with_before_request(server: FaultServer) -> None:
    """close at before_request (request 2) drops the reused connection just as the request arrives: the race, every time.

    This is the window of encode/httpx #327: the client wrote its request on a kept-alive
    connection the server is closing. httpx does not retry and raises RemoteProtocolError.
    """
    handle = server.inject("close", at="before_request", request=2)
    with httpx.Client(base_url=server.url) as client:
        assert client.get("/1").status_code == 200
        with pytest.raises(httpx.RemoteProtocolError, match="Server disconnected without sending a response"):
            client.get("/2")
        assert client.get("/3").status_code == 200
    assert handle.wait(5).connection_id == 1
    assert [(r.target, r.connection_id) for r in server.requests] == [("/1", 1), ("/3", 2)]
    assert server.connection(1).unread.startswith(b"GET /2 HTTP/1.1"), "the cut request is kept as unread"


def test_httpx_gets_delayed_and_dripped_responses_whole(server: FaultServer) -> None:
    """httpx.Client: delay and drip slow the response down but it arrives intact."""
    server.inject("delay", seconds=DELAY, request=1)
    server.inject("drip", chunk_size=16, interval=0.002, request=2)
    with httpx.Client(base_url=server.url) as client:
        started = time.monotonic()
        assert client.get("/").content == BODY
        assert time.monotonic() - started >= DELAY
        assert client.get("/").content == BODY
    assert [h.fired for h in server.faults] == [1, 1]


# -- the faults also run on a server made directly -------------------------------------------


def test_faults_work_on_a_server_made_without_fixtures() -> None:
    """`with FaultServer() as s:` injects faults as the fixtures' servers do."""
    with FaultServer() as direct:
        handle = direct.inject("reset", at="after_response")
        with RawClient(direct) as client:
            assert client.request().complete
            handle.wait(5)
            assert client.read_to_end(timeout=5).end == RST



def test_idle_faults_each_wait_their_own_time(server: FaultServer) -> None:
    """With several idle faults armed, the one that fires is one whose own idle time has passed."""
    slow = arm(server, "close", "idle", seconds=30.0)  # armed first, but its time never comes here
    fast = arm(server, "reset", "idle", seconds=DELAY)
    with RawClient(server) as client:
        assert client.request().complete
        got = client.read_to_end(timeout=5)
    assert got.end == RST, "the longer idle fault fired at the shorter one's time"
    fast.wait(5)
    assert slow.fired == 0


def test_idle_fault_for_another_connection_does_not_shorten_the_wait(server: FaultServer) -> None:
    """A short idle fault that selects another connection does not make this connection's fault fire early."""
    arm(server, "reset", "idle", seconds=IDLE, connection=2)
    mine = arm(server, "close", "idle", seconds=DELAY, connection=1)
    with RawClient(server) as client:
        idle_from = time.monotonic()  # no later than the server's idle clock starts
        assert client.request().complete
        got = client.read_to_end(timeout=5)
        waited = time.monotonic() - idle_from
    assert got.end == FIN
    assert waited >= DELAY, f"connection 1 was dropped after {waited:.3f} s, before its {DELAY} s"
    mine.wait(5)


@pytest.mark.parametrize(("how", "end"), [("fin", FIN), ("rst", RST), ("silence", TIMEOUT)])
def test_raw_client_tells_fin_from_rst_from_silence(how: str, end: str) -> None:
    """Negative control for the instrument: against a bare socket peer, the raw client names each ending right."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        with RawClient(listener.getsockname()) as client:
            peer, _ = listener.accept()
            with peer:
                peer.sendall(b"before")
                if how == "rst":
                    peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    peer.close()
                elif how == "fin":
                    peer.shutdown(socket.SHUT_WR)
                got = client.read_to_end(timeout=0.2)
    assert (got.data, got.end) == (b"before", end)
