"""Fuzzed input: whatever a client sends, the server answers as HTTP allows or closes, and serves on.

Each property test owns one server, reused across its hypothesis examples. Every example opens a
connection, sends its bytes (possibly in pieces), and ends it one of three ways: FIN, RST, or
"hold" (left open while another client is served, then FIN). The oracle, :func:`check_example`:

- the server never leaves the connection hanging: the client sees FIN or RST within a bound;
- every byte the client received parses as HTTP/1.1 responses with an allowed status;
- the ledger agrees with the client: the statuses it records for the connection, in order, are
  what the client read (all of them when the client saw the FIN); no record is left pending;
  the connection's end is recorded;
- a well-formed request on a second connection gets its 200, and ``server.errors`` stays empty.

The number of examples is bounded for CI (``CONNFAULT_FUZZ_EXAMPLES``, default 60; the stress
script runs more). The negative controls at the end run the same oracle against servers that are
broken on purpose, and must fail it.
"""

from __future__ import annotations

import functools
import os
import socket
import ssl
from dataclasses import dataclass
from typing import Callable

import h11
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rawclient import FIN, RST, TIMEOUT, RawClient, wait_until

from pytest_connfault import EndedBy, FaultServer, Response
from pytest_connfault._ledger import ConnectionState
from pytest_connfault._tls import client_context

ServerFactory = Callable[..., FaultServer]

#: What a server may answer to anything: served, bad request, body or head too large, an
#: unsupported Transfer-Encoding, an unsupported HTTP version.
ALLOWED = {200, 400, 413, 431, 501, 505}
HEAD_LIMIT = 4096
BODY_LIMIT = 2048
EXAMPLES = int(os.environ.get("CONNFAULT_FUZZ_EXAMPLES", "60"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(params=["asyncio", "trio"])
def server(request: pytest.FixtureRequest, connfault_server_factory: ServerFactory) -> FaultServer:
    """One server per test (reused by all its examples), on each backend, with small limits."""
    return connfault_server_factory(backend=request.param, max_header_size=HEAD_LIMIT, max_body_size=BODY_LIMIT)


# -- building requests --------------------------------------------------------------------------


def request_bytes(
    method: bytes = b"GET",
    target: bytes = b"/",
    version: bytes = b"HTTP/1.1",
    header_lines: list[bytes] | None = None,
    body: bytes = b"",
    eol: bytes = b"\r\n",
) -> bytes:
    """A request from raw parts; header lines are sent as given (Host: x by default)."""
    lines = [b"Host: x"] if header_lines is None else header_lines
    return method + b" " + target + b" " + version + eol + b"".join(line + eol for line in lines) + eol + body


def well_formed(target: bytes = b"/", body: bytes = b"", close: bool = False) -> bytes:
    """A valid request, with Content-Length when it has a body."""
    lines = [b"Host: x"]
    if body:
        lines.append(b"Content-Length: %d" % len(body))
    if close:
        lines.append(b"Connection: close")
    return request_bytes(b"POST" if body else b"GET", target, header_lines=lines, body=body)


METHODS = [b"GET", b"POST", b"PUT", b"DELETE", b"OPTIONS", b"get", b"", b"G ET", b"GET\x00", b"\xff\xfe", b"X" * 300]
TARGETS = [b"/", b"/a?b=c", b"*", b"", b"/a b", b"/\x7f", b"/\x00", b"http://h/p", b"/" + b"t" * 5000]
VERSIONS = [b"HTTP/1.1", b"HTTP/1.0", b"HTTP/1", b"HTTP/2.0", b"HTTP/0.9", b"http/1.1", b"HTTPS/1.1", b"", b"HTTP/1.1 x"]
HEADER_LINES = [
    b"Host: x",
    b"Host: y",
    b"X-A: 1",
    b"Bad Header",
    b"Space : before",
    b": no name",
    b" folded continuation",
    b"X-Nul: a\x00b",
    b"X-Cr: a\rb",
    b"X(bad): name",
    b"X-Long: " + b"l" * 5000,
    b"Connection: close",
    b"Connection: keep-alive",
    b"Expect: 100-continue",
]
FRAMINGS = [
    [],
    [b"Content-Length: 3"],
    [b"Content-Length: 3", b"Content-Length: 3"],
    [b"Content-Length: 3", b"Content-Length: 4"],
    [b"Content-Length: -1"],
    [b"Content-Length: +3"],
    [b"Content-Length: 3x"],
    [b"Content-Length: 99999999999999999999"],
    [b"Content-Length: 5000"],
    [b"Transfer-Encoding: chunked"],
    [b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked"],
    [b"Transfer-Encoding: gzip, chunked"],
    [b"Transfer-Encoding: chunked, gzip"],
    [b"Transfer-Encoding: gzip"],
    [b"Transfer-Encoding: chunked", b"Content-Length: 3"],
    [b"Content-Length: 3", b"Transfer-Encoding: chunked"],
]
CHUNK_SIZES = [b"3", b"03", b"zz", b"-1", b"ffffffffffffffffffff", b"3;ext=1", b"3 ", b"", b"0x3", b"1000"]


@st.composite
def chunked_bodies(draw: st.DrawFn) -> bytes:
    """Chunked bodies with good and bad chunk sizes, short or long data, trailers, missing ends."""
    body = b""
    for _ in range(draw(st.integers(0, 3))):
        size = draw(st.sampled_from(CHUNK_SIZES))
        data = draw(st.sampled_from([b"abc", b"ab", b"abcd", b"", b"d" * 300]))
        body += size + b"\r\n" + data + draw(st.sampled_from([b"\r\n", b"", b"\n", b"xx\r\n"]))
    ending = draw(st.sampled_from([b"0\r\n\r\n", b"0\r\nX-Trailer: t\r\n\r\n", b"0\r\n", b"", b"0\r\nbad trailer\r\n\r\n"]))
    return body + ending


@st.composite
def mutated_requests(draw: st.DrawFn) -> bytes:
    """One request whose every part may be broken: request line, headers, framing, body."""
    method = draw(st.sampled_from(METHODS))
    target = draw(st.sampled_from(TARGETS))
    version = draw(st.sampled_from(VERSIONS))
    lines = draw(st.lists(st.sampled_from(HEADER_LINES), max_size=5))
    lines += draw(st.sampled_from(FRAMINGS))
    lines = draw(st.permutations(lines))
    if any(b"chunked" in line for line in lines) and draw(st.booleans()):
        body = draw(chunked_bodies())
    else:
        body = draw(st.sampled_from([b"", b"abc", b"ab", b"abcd", b"b" * 3000]))
    eol = draw(st.sampled_from([b"\r\n", b"\r\n", b"\n"]))
    return request_bytes(method, target, version, list(lines), body, eol)


@st.composite
def oversized_heads(draw: st.DrawFn) -> bytes:
    """Heads around the head limit: one long header, or many short ones."""
    size = draw(st.integers(HEAD_LIMIT - 200, HEAD_LIMIT * 3))
    if draw(st.booleans()):
        return request_bytes(header_lines=[b"Host: x", b"X-Big: " + b"b" * size])
    return request_bytes(header_lines=[b"Host: x"] + [b"X-H%d: v" % i for i in range(size // 10)])


@st.composite
def pipelines(draw: st.DrawFn) -> bytes:
    """Several requests back to back: well-formed ones, ones that close, broken ones."""
    parts = draw(
        st.lists(
            st.one_of(
                st.builds(well_formed, st.sampled_from([b"/p1", b"/p2"])),
                st.builds(well_formed, st.just(b"/closing"), close=st.just(True)),
                st.builds(well_formed, st.just(b"/body"), st.binary(min_size=1, max_size=50)),
                mutated_requests(),
            ),
            min_size=2,
            max_size=5,
        )
    )
    return b"".join(parts)


@st.composite
def after_close(draw: st.DrawFn) -> bytes:
    """A request that says Connection: close, followed by anything (bytes, another request)."""
    tail = draw(st.one_of(st.binary(min_size=1, max_size=200), st.builds(well_formed, st.just(b"/late"))))
    return well_formed(b"/last", close=True) + tail


ANY_INPUT = st.one_of(
    st.binary(max_size=400),
    mutated_requests(),
    oversized_heads(),
    pipelines(),
    after_close(),
)


@dataclass
class Transport:
    """How an example is delivered: cut short (early EOF), in pieces, and how the client ends."""

    cut: int | None
    splits: list[int]
    ending: str

    def pieces(self, data: bytes) -> list[bytes]:
        """``data`` cut at ``cut`` (if any) and split at the split points."""
        if self.cut is not None:
            data = data[: self.cut]
        points = sorted({p for p in self.splits if 0 < p < len(data)})
        bounds = [0, *points, len(data)]
        return [data[a:b] for a, b in zip(bounds, bounds[1:])] or [b""]


transports = st.builds(
    Transport,
    cut=st.one_of(st.none(), st.integers(0, 400)),
    splits=st.lists(st.integers(1, 400), max_size=4),
    ending=st.sampled_from(["fin", "fin", "rst", "hold"]),
)


# -- the oracle ------------------------------------------------------------------------------


def parse_responses(data: bytes) -> tuple[list[int], bytes]:
    """The statuses of the whole responses in ``data``, and the bytes after them (a partial one).

    Raises:
        AssertionError: the bytes are not HTTP/1.1 responses.
    """
    statuses: list[int] = []
    while data:
        parser = h11.Connection(h11.CLIENT)
        parser.send(h11.Request(method="GET", target="/", headers=[("Host", "x")]))
        parser.send(h11.EndOfMessage())
        parser.receive_data(data)
        status = None
        while True:
            try:
                event = parser.next_event()
            except h11.RemoteProtocolError as exc:
                raise AssertionError(f"the server sent bytes that are not HTTP: {exc}: {data[:80]!r}") from None
            if isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.EndOfMessage):
                assert status is not None
                statuses.append(status)
                data = parser.trailing_data[0]
                break
            elif event is h11.NEED_DATA:
                return statuses, data
    return statuses, b""


def assert_still_serving(server: FaultServer, timeout: float = 5.0) -> None:
    """A well-formed request on a new connection gets its 200, and the server has no errors."""
    with RawClient(server, timeout=timeout) as client:
        reply = client.request(target="/still-serving")
    assert (reply.status, reply.body) == (200, b"ok\n"), f"the server stopped serving: {reply}"
    assert server.errors == [], server.errors


def deliver(server: FaultServer, data: bytes, transport: Transport, timeout: float) -> tuple[bytes, str, int]:
    """Send ``data`` as ``transport`` says; the bytes received, how the connection ended, the local port."""
    with RawClient(server, timeout=timeout) as client:
        port = client.local_port
        try:
            for piece in transport.pieces(data):
                client.send(piece)
            if transport.ending == "rst":
                client.reset()
                return b"", RST, port
            if transport.ending == "hold":
                assert_still_serving(server, timeout)  # while this connection is open, mid-whatever
            client.shutdown_write()
        except OSError:
            # ECONNRESET, EPIPE, ENOTCONN: the server refused and closed while we sent (allowed);
            # what it said before is read below.
            pass
        got = client.read_to_end(timeout=timeout)
        return got.data, got.end, port


def check_example(server: FaultServer, data: bytes, transport: Transport, timeout: float = 5.0) -> None:
    """The oracle: an answer or a close, the ledger agreeing with the client, and the server serving on."""
    received, end, port = deliver(server, data, transport, timeout)
    assert end != TIMEOUT, f"the server left the connection hanging after {data[:80]!r}"
    statuses, partial = parse_responses(received)
    assert set(statuses) <= ALLOWED, f"statuses {statuses} for {data[:80]!r}"
    if end == FIN:
        assert partial == b"", f"a response cut short before a FIN: {partial[:80]!r}"

    wait_until(
        lambda: (c := server.connection_for_port(port)) is not None and not c.is_open,
        timeout=timeout,
        what="the connection recorded and closed",
    )
    record = server.connection_for_port(port)
    assert record is not None
    assert record.ended_by is not None
    # After the client's RST, a request read whole may find its connection gone: unanswered.
    kinds = {"responded", "rejected"} | ({"unanswered"} if transport.ending == "rst" else set())
    assert all(r.outcome.kind in kinds for r in record.requests), [str(r) for r in record.requests]
    recorded = [r.outcome.status for r in record.requests if r.outcome.status is not None]
    if transport.ending != "rst":
        # What the client read is what the ledger says was sent, in order; all of it after a FIN.
        assert recorded[: len(statuses)] == statuses, (statuses, [str(r) for r in record.requests])
        if end == FIN:
            assert recorded == statuses, (statuses, [str(r) for r in record.requests])
    assert all(r.outcome.status == 200 for r in record.requests if r.outcome.kind == "responded")
    assert_still_serving(server, timeout)


# -- the properties --------------------------------------------------------------------------


@FUZZ
@given(data=st.binary(max_size=600), transport=transports)
def test_arbitrary_bytes(server: FaultServer, data: bytes, transport: Transport) -> None:
    """Any bytes, in any pieces, ended by FIN, RST or held open: the oracle holds."""
    check_example(server, data, transport)


@FUZZ
@given(data=ANY_INPUT, transport=transports)
def test_structured_mutations(server: FaultServer, data: bytes, transport: Transport) -> None:
    """Broken request lines, headers, framing, chunk sizes, oversized heads, pipelines, bytes after close."""
    check_example(server, data, transport)


@FUZZ
@given(
    targets=st.lists(st.sampled_from(["/a", "/b", "/c?q=1"]), min_size=1, max_size=8),
    splits=st.lists(st.integers(1, 400), max_size=6),
)
def test_pipelined_well_formed_requests_are_all_answered_in_order(
    server: FaultServer, targets: list[str], splits: list[int]
) -> None:
    """Well-formed requests pipelined in arbitrary pieces are each answered 200, in order, once."""
    data = b"".join(well_formed(t.encode()) for t in targets)
    received, end, port = deliver(server, data, Transport(None, splits, "fin"), 5.0)
    statuses, partial = parse_responses(received)
    assert (statuses, partial, end) == ([200] * len(targets), b"", FIN)
    server.wait_connections_ended(server.connection_for_port(port))  # type: ignore[arg-type]
    record = server.connection_for_port(port)
    assert record is not None
    assert [r.target for r in record.requests] == targets
    assert [r.index_on_connection for r in record.requests] == list(range(1, len(targets) + 1))


@FUZZ
@given(tail=st.binary(min_size=1, max_size=1000))
def test_bytes_after_connection_close_are_kept_unread(server: FaultServer, tail: bytes) -> None:
    """After a request that says Connection: close, nothing more is answered; the rest is kept as unread."""
    received, end, port = deliver(server, well_formed(b"/last", close=True) + tail, Transport(None, [], "fin"), 5.0)
    statuses, partial = parse_responses(received)
    assert (statuses, partial) == ([200], b"")
    server.wait_connections_ended(server.connection_for_port(port))  # type: ignore[arg-type]
    record = server.connection_for_port(port)
    assert record is not None
    assert [r.target for r in record.requests] == ["/last"]
    assert record.unread == tail
    assert_still_serving(server)


@FUZZ
@given(body=st.binary(max_size=300), data=st.data())
def test_early_eof_anywhere_in_a_request(server: FaultServer, body: bytes, data: st.DataObject) -> None:
    """A request cut short by the client's FIN at any byte: one 400 and one rejected record (none at byte 0)."""
    whole = well_formed(b"/cut", body=body)
    cut = data.draw(st.integers(0, len(whole) - 1), label="cut")
    received, end, port = deliver(server, whole, Transport(cut, [], "fin"), 5.0)
    statuses, _ = parse_responses(received)
    server.wait_connections_ended(server.connection_for_port(port))  # type: ignore[arg-type]
    record = server.connection_for_port(port)
    assert record is not None
    if cut == 0:
        assert (statuses, record.requests, str(record.ended_by)) == ([], (), "client_fin")
    else:
        assert statuses == [400]
        (request,) = record.requests
        assert (request.outcome.kind, request.outcome.status) == ("rejected", 400)
    assert_still_serving(server)


@FUZZ
@given(body=st.binary(min_size=1, max_size=300), data=st.data())
def test_rst_anywhere_in_a_request(server: FaultServer, body: bytes, data: st.DataObject) -> None:
    """A request cut short by the client's RST at any byte: recorded as a reset, nothing left pending.

    An RST that reaches the kernel before the server accepts the connection can make the accepted
    socket read as a plain EOF with the bytes before it dropped (seen ~1 in 5000 tries on trio):
    then the ledger says client_fin with no request, which is what the server was told.
    """
    whole = well_formed(b"/rst", body=body)
    cut = data.draw(st.integers(1, len(whole) - 1), label="cut")
    _, end, port = deliver(server, whole, Transport(cut, [], "rst"), 5.0)
    wait_until(lambda: (c := server.connection_for_port(port)) is not None and not c.is_open)
    record = server.connection_for_port(port)
    assert record is not None
    outcomes = [(r.outcome.kind, r.outcome.status) for r in record.requests]
    if record.ended_by is EndedBy.CLIENT_FIN:
        assert (outcomes, record.unread) == ([], b""), "a FIN only stands in for an RST that lost the bytes"
    elif record.ended_by is EndedBy.SERVER_CLOSE:  # the same EOF after some bytes: a 400, as for a FIN
        assert outcomes == [("rejected", 400)]
    else:
        assert record.ended_by is EndedBy.CLIENT_RST
        assert outcomes in ([], [("rejected", None)])
    assert_still_serving(server)


FAULT_MOMENTS = {
    "reset": ["on_connect", "before_request", "before_response", "after_headers", "mid_body", "after_response", "idle"],
    "close": ["on_connect", "before_request", "before_response", "after_headers", "mid_body", "after_response", "idle"],
    "half_close": ["on_connect", "before_request", "before_response", "after_response", "idle"],
    "garbage": ["on_connect", "before_request", "before_response", "after_response"],
    "empty": ["on_connect", "before_request", "before_response", "after_response"],
    "delay": ["before_request", "before_response", "after_headers"],
    "drip": ["before_response"],
    "truncate": ["before_response"],
}


@st.composite
def armed_faults(draw: st.DrawFn) -> dict[str, object]:
    """A fault (kind, moment, small timings) to arm on the fuzzed connection only."""
    kind = draw(st.sampled_from(sorted(FAULT_MOMENTS)))
    spec: dict[str, object] = {"kind": kind, "at": draw(st.sampled_from(FAULT_MOMENTS[kind]))}
    if spec["at"] == "idle" or kind == "delay":
        spec["seconds"] = 0.005
    if kind == "drip":
        spec.update(chunk_size=draw(st.integers(1, 50)), interval=0.0)
    if kind in ("truncate", "garbage") and draw(st.booleans()):
        spec["then"] = "reset"
    return spec


@FUZZ
@given(data=ANY_INPUT, fault=armed_faults(), splits=st.lists(st.integers(1, 400), max_size=3), rst=st.booleans())
def test_malformed_input_with_a_fault_armed(
    server: FaultServer, data: bytes, fault: dict[str, object], splits: list[int], rst: bool
) -> None:
    """Broken input meeting an armed fault at any moment: no hang, no server error, nothing pending."""
    spec = dict(fault)
    handle = server.inject(str(spec.pop("kind")), connection=len(server.connections) + 1, **spec)
    transport = Transport(None, splits, "rst" if rst else "fin")
    _, end, port = deliver(server, data, transport, 5.0)
    assert end != TIMEOUT, f"hanging after {data[:80]!r} with {handle.fault!r}"
    wait_until(lambda: (c := server.connection_for_port(port)) is not None and not c.is_open)
    record = server.connection_for_port(port)
    assert record is not None
    assert record.ended_by is not None
    assert all(r.outcome.kind != "pending" for r in record.requests), [str(r) for r in record.requests]
    assert len(record.faults) == handle.fired <= 1
    assert_still_serving(server)


# -- over TLS ---------------------------------------------------------------------------------


@pytest.fixture(params=["asyncio", "trio"])
def tls_server(request: pytest.FixtureRequest, connfault_server_factory: ServerFactory) -> FaultServer:
    """One TLS server per test, reused by its examples, with the same small limits."""
    return connfault_server_factory(
        backend=request.param, tls=True, max_header_size=HEAD_LIMIT, max_body_size=BODY_LIMIT
    )


@functools.cache
def tls_client(strict_eof: bool = True) -> ssl.SSLContext:
    """A client context trusting the servers' CA, made once (making one costs milliseconds)."""
    return client_context(strict_eof=strict_eof)


def tls_still_serving(server: FaultServer) -> None:
    """A well-formed request over a new TLS connection gets its 200, and the server has no errors."""
    with socket.create_connection((server.host, server.port), timeout=5.0) as raw:
        with tls_client().wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            tls.sendall(well_formed(b"/still-serving"))
            received = b""
            while b"ok\n" not in received:
                chunk = tls.recv(65536)
                assert chunk, f"the TLS server closed instead of answering: {received!r}"
                received += chunk
    assert received.startswith(b"HTTP/1.1 200 "), received[:40]
    assert server.errors == [], server.errors


def tls_deliver(server: FaultServer, pieces: list[bytes]) -> tuple[bytes, str, int]:
    """Send ``pieces`` inside TLS, then FIN (no close_notify); the plaintext received and the ending."""
    with socket.create_connection((server.host, server.port), timeout=5.0) as raw:
        port = raw.getsockname()[1]
        with tls_client(strict_eof=False).wrap_socket(raw, server_hostname="127.0.0.1") as tls:
            try:
                for piece in pieces:
                    tls.sendall(piece)
                # The TCP FIN without close_notify: SSLSocket.shutdown() would drop the TLS
                # session (and ``raw`` no longer owns the descriptor once wrapped).
                socket.socket.shutdown(tls, socket.SHUT_WR)
            except OSError:
                pass  # refused and closed while we sent: allowed
            received = b""
            while True:
                try:
                    chunk = tls.recv(65536)
                except (ConnectionResetError, ssl.SSLError):
                    return received, RST, port
                except socket.timeout:
                    return received, TIMEOUT, port
                if not chunk:
                    return received, FIN, port
                received += chunk


@settings(FUZZ, max_examples=max(10, EXAMPLES // 2))
@given(data=ANY_INPUT, splits=st.lists(st.integers(1, 400), max_size=3))
def test_structured_mutations_inside_tls(tls_server: FaultServer, data: bytes, splits: list[int]) -> None:
    """Inside an established TLS session, broken requests get the same answers, recorded the same way."""
    received, end, port = tls_deliver(tls_server, Transport(None, splits, "fin").pieces(data))
    assert end != TIMEOUT, f"the TLS server left the connection hanging after {data[:80]!r}"
    statuses, _ = parse_responses(received)
    assert set(statuses) <= ALLOWED, statuses
    wait_until(lambda: (c := tls_server.connection_for_port(port)) is not None and not c.is_open)
    record = tls_server.connection_for_port(port)
    assert record is not None
    assert record.ended_by is not None
    assert all(r.outcome.kind in ("responded", "rejected") for r in record.requests)
    recorded = [r.outcome.status for r in record.requests if r.outcome.status is not None]
    assert recorded[: len(statuses)] == statuses, (statuses, [str(r) for r in record.requests])
    tls_still_serving(tls_server)


@settings(FUZZ, max_examples=max(10, EXAMPLES // 2))
@given(data=st.one_of(st.binary(max_size=600), st.builds(lambda b: b"\x16\x03\x01" + b, st.binary(max_size=300))))
def test_arbitrary_bytes_instead_of_a_tls_handshake(tls_server: FaultServer, data: bytes) -> None:
    """Bytes that are not (or only look like) a ClientHello: the server closes, records it, and serves on."""
    with RawClient(tls_server, timeout=5.0) as client:
        port = client.local_port
        try:
            client.send(data)
            client.shutdown_write()
        except OSError:
            pass  # refused and closed while we sent: allowed
        got = client.read_to_end(timeout=5.0)
    assert got.end != TIMEOUT, f"the TLS server left the connection hanging after {data[:80]!r}"
    assert not got.data.startswith(b"HTTP/"), "no plaintext HTTP answer to a failed handshake"
    wait_until(lambda: (c := tls_server.connection_for_port(port)) is not None and not c.is_open)
    record = tls_server.connection_for_port(port)
    assert record is not None
    assert record.requests == ()
    assert record.ended_by is not None
    assert data == b"" or record.tls_error is not None or record.ended_by is EndedBy.CLIENT_FIN
    tls_still_serving(tls_server)


# -- negative controls: the oracle catches broken servers ------------------------------------


def test_oracle_catches_a_server_that_hangs(connfault_server_factory: ServerFactory) -> None:
    """A server that never answers a request (a stall armed on it) fails the oracle's bound."""
    server = connfault_server_factory()
    server.inject("stall", at="before_response", path="/hang")
    with pytest.raises(AssertionError, match="hanging"):
        check_example(server, well_formed(b"/hang"), Transport(None, [], "fin"), timeout=0.3)
    server.release()


def test_oracle_catches_a_server_with_a_wrong_answer(connfault_server_factory: ServerFactory) -> None:
    """A server that answers 500 to a request fails the oracle's allowed statuses."""
    server = connfault_server_factory()
    server.respond("/boom", Response(500, b"no"))
    with pytest.raises(AssertionError, match="statuses"):
        check_example(server, well_formed(b"/boom"), Transport(None, [], "fin"))


def test_oracle_catches_a_server_that_sends_garbage(connfault_server_factory: ServerFactory) -> None:
    """A server that sends bytes that are not HTTP fails the oracle's parse."""
    server = connfault_server_factory()
    server.inject("garbage", path="/g")
    with pytest.raises(AssertionError, match="not HTTP"):
        check_example(server, well_formed(b"/g"), Transport(None, [], "fin"))


class _DyingServer(FaultServer):
    """A server that dies (a bug in the server) on the first connection it accepts."""

    async def _serve_connection(self, sock: socket.socket, state: ConnectionState, own_waits: bool) -> None:
        sock.close()
        raise RuntimeError("the server died on its input")


def test_oracle_catches_a_server_that_dies_on_input() -> None:
    """A server that dies on its input fails the oracle (no answer, no ending recorded, no one served)."""
    server = _DyingServer().start()
    try:
        with pytest.raises((AssertionError, OSError)):
            check_example(server, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", Transport(None, [], "fin"), timeout=1.0)
        assert any("died on its input" in error for error in server.errors)
    finally:
        server.stop()


def test_oracle_catches_a_ledger_that_disagrees(connfault_server_factory: ServerFactory) -> None:
    """A response the client read but the ledger does not hold as one fails the oracle's ledger check."""
    server = connfault_server_factory()
    # The 'garbage' is a perfect 200 on the wire, while the ledger (rightly) records a fault: the
    # client's view and the ledger's disagree, which is what the oracle must notice.
    server.inject("garbage", path="/t", data=b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
    with pytest.raises(AssertionError, match="fault garbage"):
        check_example(server, well_formed(b"/t"), Transport(None, [], "fin"))


def test_transport_pieces_cover_the_data() -> None:
    """The transport's pieces join back to the (cut) data, whatever the split points."""
    assert Transport(None, [3, 1, 3, 99], "fin").pieces(b"abcdef") == [b"a", b"bc", b"def"]
    assert Transport(2, [1], "fin").pieces(b"abcdef") == [b"a", b"b"]
    assert Transport(0, [], "fin").pieces(b"abc") == [b""]

