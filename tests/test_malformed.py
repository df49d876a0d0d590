"""Malformed input: the client gets 400/413/431/501/505 or a close, the ledger says why, the server serves on.

Every case is sent on one connection; then a well-formed request on a second connection must
still get its 200. A property test throws arbitrary bytes and mutated requests at one server.
"""

from __future__ import annotations

from typing import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rawclient import FIN, RST, TIMEOUT, RawClient, wait_until

from pytest_connfault import EndedBy, FaultServer

ServerFactory = Callable[..., FaultServer]
MAX_BODY = 100

CASES = {
    "not a request line": (b"GARBAGE\r\n\r\n", 400, "illegal request line"),
    "request line without target": (b"GET\r\n\r\n", 400, "illegal request line"),
    "NUL in the target": (b"GET /\x00 HTTP/1.1\r\nHost: x\r\n\r\n", 400, "illegal request line"),
    "binary bytes": (bytes(range(256)), 400, "illegal request line"),
    "unsupported version": (b"GET / HTTP/9.9\r\nHost: x\r\n\r\n", 505, "HTTP/9.9 is not supported"),
    "HTTP/2 preface": (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505, "HTTP/2.0 is not supported"),
    "header without colon": (b"GET / HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n", 400, "illegal header line"),
    "space before colon": (b"GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400, "illegal header line"),
    "no Host on HTTP/1.1": (b"GET / HTTP/1.1\r\n\r\n", 400, "Missing mandatory Host"),
    "two Content-Lengths": (
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
        400,
        "conflicting Content-Length",
    ),
    "negative Content-Length": (b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400, "bad Content-Length"),
    "Content-Length and Transfer-Encoding": (
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
        "both Content-Length and Transfer-Encoding",
    ),
    "unknown Transfer-Encoding": (
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
        501,
        "Only Transfer-Encoding: chunked",
    ),
    "bad chunk size": (
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        400,
        "illegal chunk header",
    ),
    "head over the limit in one piece": (
        b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n",
        431,
        "request head over 16384 bytes",
    ),
    "body over max_body_size": (
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 200\r\n\r\n" + b"b" * 200,
        413,
        f"body over {MAX_BODY} bytes",
    ),
}


@pytest.fixture(params=["asyncio", "trio"])
def server(request: pytest.FixtureRequest, connfault_server_factory: ServerFactory) -> FaultServer:
    """A fresh server on each backend, with a small body limit."""
    return connfault_server_factory(backend=request.param, max_body_size=MAX_BODY)


def assert_still_serving(server: FaultServer) -> None:
    """A well-formed request on a new connection gets its 200."""
    with RawClient(server) as client:
        reply = client.request(target="/after")
    assert (reply.status, reply.body) == (200, b"ok\n"), "the server stopped serving after bad input"
    assert server.errors == [], server.errors


@pytest.mark.parametrize("case", list(CASES))
def test_malformed_request_is_answered_recorded_and_closed(server: FaultServer, case: str) -> None:
    """Each malformed request gets its status with Connection: close, a 'rejected' record, then FIN."""
    data, status, reason = CASES[case]
    with RawClient(server) as client:
        client.send(data)
        reply = client.read_reply()
        assert reply.status == status, f"{case}: got {reply.status}"
        assert reply.header("connection") == "close"
        assert client.read_to_end().end == FIN
    (record,) = server.requests
    assert (record.outcome.kind, record.outcome.status) == ("rejected", status)
    assert reason in record.outcome.detail
    server.wait_connections_ended(1)
    assert server.connection(1).ended_by is EndedBy.SERVER_CLOSE
    assert_still_serving(server)


def test_head_over_the_limit_in_pieces_is_431(server: FaultServer) -> None:
    """A head that grows past the limit across reads is refused with 431 before it ends."""
    with RawClient(server) as client:
        client.send(b"GET / HTTP/1.1\r\nHost: x\r\n")
        for _ in range(40):
            try:
                client.send(b"X-Filler: " + b"f" * 990 + b"\r\n")
            except (ConnectionResetError, BrokenPipeError):
                break
        reply = client.read_reply()
    assert reply.status == 431
    assert server.requests[0].outcome.status == 431
    assert_still_serving(server)


def test_request_line_is_recorded_with_a_rejected_body(server: FaultServer) -> None:
    """A rejection after the head was parsed keeps the method, target and headers on the record."""
    with RawClient(server) as client:
        client.send(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n" + b"z" * 500)
        assert client.read_reply().status == 413
    (record,) = server.requests
    assert (record.method, record.target) == ("POST", "/upload")
    assert record.header("content-length") == "500"


def test_early_eof_mid_request_is_recorded(server: FaultServer) -> None:
    """A client that closes in the middle of a request head gets a 400 (it can still read) and a record."""
    with RawClient(server) as client:
        client.send(b"GET /cut HTTP/1.1\r\nHost: x\r\n")
        client.shutdown_write()
        reply = client.read_reply()
        assert client.read_to_end().end == FIN
    assert reply.status == 400
    (record,) = server.requests
    assert record.outcome.kind == "rejected"
    assert "peer unexpectedly closed" in record.outcome.detail
    assert_still_serving(server)


def test_early_eof_mid_body_is_recorded(server: FaultServer) -> None:
    """A client that closes before its body is complete: rejected, with what arrived of the head."""
    with RawClient(server) as client:
        client.send(b"POST /partial HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\nonly ten..")
        client.shutdown_write()
        reply = client.read_reply()
    assert reply.status == 400
    (record,) = server.requests
    assert (record.method, record.target, record.outcome.kind) == ("POST", "/partial", "rejected")
    assert_still_serving(server)


@pytest.mark.parametrize("where", ["head", "body"])
def test_client_rst_mid_request_is_recorded(server: FaultServer, where: str) -> None:
    """A client reset in the middle of a request: the connection ends client_rst, the request is rejected."""
    client = RawClient(server)
    if where == "head":
        client.send(b"GET /rst HTTP/1.1\r\nHost: x\r\n")
    else:
        client.send(b"POST /rst HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\nsome")
    client.reset()  # the server still reads the bytes queued before the RST, then gets the reset
    wait_until(
        lambda: len(server.connections) == 1 and not server.connection(1).is_open, what="the reset connection closed"
    )
    record = server.connection(1)
    assert record.ended_by is EndedBy.CLIENT_RST
    (request,) = record.requests
    assert request.outcome.kind == "rejected"
    assert "reset the connection mid-request" in request.outcome.detail
    if where == "head":
        assert record.unread == b"GET /rst HTTP/1.1\r\nHost: x\r\n", "the partial head is kept as unread"
    else:
        assert (request.method, request.target, request.body) == ("POST", "/rst", b"some")
    assert_still_serving(server)


def test_a_slow_client_does_not_hold_up_another(server: FaultServer) -> None:
    """A client that sends half a request and then nothing does not delay other connections."""
    with RawClient(server) as slow:
        slow.send(b"GET /slow HTTP/1.1\r\nHo")
        for _ in range(5):
            with RawClient(server) as quick:
                assert quick.request(timeout=2).status == 200
        assert slow.is_silent(0.01)


def test_pipelined_requests_are_answered_in_order(server: FaultServer) -> None:
    """Requests sent back to back before any answer are all recorded and answered, in order."""
    with RawClient(server) as client:
        client.send(b"".join(b"GET /%d HTTP/1.1\r\nHost: x\r\n\r\n" % n for n in range(5)))
        replies = [client.read_reply() for _ in range(5)]
    assert [r.status for r in replies] == [200] * 5
    assert [r.target for r in server.requests] == [f"/{n}" for n in range(5)]
    assert {r.connection_id for r in server.requests} == {1}


def test_bytes_after_connection_close_are_not_served(server: FaultServer) -> None:
    """A request after one that said Connection: close is not answered; the connection ends after the first."""
    with RawClient(server) as client:
        client.send(
            b"GET /last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET /extra HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        assert client.read_reply().status == 200
        assert client.read_to_end().end in (FIN, RST)
    assert [r.target for r in server.requests] == ["/last"]
    server.wait_connections_ended(1)
    assert server.connection(1).unread.startswith(b"GET /extra"), "the unserved request is kept as unread"


# -- any input, no crash --------------------------------------------------------------------

ANSWERS = {200, 400, 413, 431, 501, 505}
_token = st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=0, max_size=12)
_field = st.binary(max_size=40)


@st.composite
def mutated_requests(draw: st.DrawFn) -> bytes:
    """A request built from parts, each possibly broken: method, target, version, headers, framing, body."""
    method = draw(st.sampled_from([b"GET", b"POST", b"PUT", b"", b"G ET", b"\xff"]))
    target = draw(st.sampled_from([b"/", b"/a?b=c", b"*", b"", b"/\x00", b"http://x/"]))
    version = draw(st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0", b"HTTP/1", b"http/1.1", b""]))
    headers = draw(st.lists(st.tuples(_token.map(str.encode), _field), max_size=4))
    framing = draw(
        st.sampled_from(
            [
                b"",
                b"Content-Length: 3\r\n",
                b"Content-Length: 3\r\nContent-Length: 4\r\n",
                b"Transfer-Encoding: chunked\r\n",
                b"Transfer-Encoding: chunked\r\nContent-Length: 3\r\n",
                b"Content-Length: 99999999999\r\n",
            ]
        )
    )
    host = draw(st.sampled_from([b"Host: x\r\n", b""]))
    body = draw(st.sampled_from([b"", b"abc", b"3\r\nabc\r\n0\r\n\r\n", b"zz\r\n", b"x" * 300]))
    line_end = draw(st.sampled_from([b"\r\n", b"\n"]))
    head = method + b" " + target + b" " + version + line_end + host + framing
    head += b"".join(name + b": " + value + b"\r\n" for name, value in headers)
    return head + b"\r\n" + body + draw(st.sampled_from([b"", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"]))


def _throw(server: FaultServer, data: bytes, reset: bool) -> None:
    """Send ``data`` and end (FIN or RST); the server must answer as HTTP allows or close, then serve on."""
    opened = len(server.connections)
    try:
        _send_and_end(server, data, reset)
    finally:
        # Accepted, served and closed: a reset connection may be accepted only after the client is done.
        wait_until(
            lambda: len(server.connections) > opened and all(not c.is_open for c in server.connections),
            what="the connection accepted and closed",
        )


def _send_and_end(server: FaultServer, data: bytes, reset: bool) -> None:
    with RawClient(server, timeout=5) as client:
        try:
            client.send(data)
            if reset:
                client.reset()
                return
            client.shutdown_write()
        except (ConnectionResetError, BrokenPipeError):
            return  # the server already refused and closed: allowed
        got = client.read_to_end(timeout=5)
    assert got.end != TIMEOUT, f"the server left the connection hanging after {data[:80]!r}"
    if got.data:
        assert got.data.startswith(b"HTTP/1.1 "), got.data[:80]
        status = int(got.data[9:12])
        assert status in ANSWERS, f"{status} for {data[:80]!r}"


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=300), reset=st.booleans())
def test_arbitrary_bytes_never_break_the_server(server: FaultServer, data: bytes, reset: bool) -> None:
    """Any bytes, ended by FIN or RST: an HTTP answer or a close, a finished record, and the next client served."""
    _throw(server, data, reset)
    _check_ledger_and_serving(server)


@settings(max_examples=80, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=mutated_requests(), reset=st.booleans())
def test_mutated_requests_never_break_the_server(server: FaultServer, data: bytes, reset: bool) -> None:
    """Requests with broken parts: answered as HTTP allows or closed, recorded, and the next client served."""
    _throw(server, data, reset)
    _check_ledger_and_serving(server)


def _check_ledger_and_serving(server: FaultServer) -> None:
    assert all(r.outcome.kind != "pending" for r in server.requests), "a record was left half-written"
    assert all(c.ended_by is not None for c in server.connections)
    before = len(server.requests)
    assert_still_serving(server)
    assert server.requests[before].target == "/after"


def test_a_request_sent_one_byte_at_a_time_is_served_without_holding_up_others(server: FaultServer) -> None:
    """A client that sends its request a byte at a time gets its 200; other clients are served in between."""
    request = b"GET /trickle HTTP/1.1\r\nHost: x\r\n\r\n"
    with RawClient(server) as slow:
        for number, byte in enumerate(request):
            slow.send(bytes([byte]))
            if number % 10 == 0:
                with RawClient(server) as quick:
                    assert quick.request(timeout=2).status == 200
        assert slow.read_reply().status == 200
    assert server.requests[-1].target == "/trickle"
