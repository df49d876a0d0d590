"""The TLS server on the wire: real handshakes with a raw ``ssl`` client that tells every ending apart.

The raw client reads with ``suppress_ragged_eofs=False``, so it sees exactly how a connection
ended: ``close_notify`` (``recv`` returns ``b""``), an abrupt TCP close without the alert
(``ssl.SSLEOFError``; on Python 3.9 a plain ``ssl.SSLError`` with reason
``UNEXPECTED_EOF_WHILE_READING``, see :func:`is_unexpected_eof`), or an RST
(``ConnectionResetError``). Real clients hide the difference; the client tests in
``tests/test_tls_clients.py`` show what each one makes of it.
"""

from __future__ import annotations

import os
import socket
import ssl
from typing import Any, Callable

import h11
import pytest
from rawclient import wait_until

from pytest_connfault import Fault, FaultServer, FaultSpecError, Response
from pytest_connfault._tls import SERVER_IDENTITIES, CaBundle, client_context, server_context
from pytest_connfault._tls_wire import is_unexpected_eof

ServerFactory = Callable[..., FaultServer]

NOTIFY = "close_notify"
ABRUPT = "abrupt"
RST = "rst"
FIN = "fin"
TIMEOUT = "timeout"
BODY = bytes(range(48, 58)) * 10  # 100 bytes


class TlsClient:
    """One TLS connection to a server, read byte for byte; every read has a deadline."""

    def __init__(self, server: FaultServer, timeout: float = 5.0) -> None:
        self.sock: Any = socket.create_connection(("127.0.0.1", server.port), timeout=timeout)

    def __enter__(self) -> TlsClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.sock.close()

    def handshake(self, context: ssl.SSLContext | None = None, hostname: str = "127.0.0.1") -> None:
        """Wrap the socket and run the handshake (the socket stays open if it fails)."""
        context = client_context() if context is None else context
        self.sock = context.wrap_socket(
            self.sock, server_hostname=hostname, suppress_ragged_eofs=False, do_handshake_on_connect=False
        )
        self.sock.do_handshake()

    def send_request(self, target: str = "/") -> None:
        self.sock.sendall(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode())

    def get(self, target: str = "/") -> tuple[int, bytes]:
        """One whole exchange on this connection: the status and the body."""
        self.send_request(target)
        parser = h11.Connection(h11.CLIENT)
        parser.send(h11.Request(method="GET", target=target, headers=[("Host", "127.0.0.1")]))
        parser.send(h11.EndOfMessage())
        status, body = 0, b""
        while True:
            event = parser.next_event()
            if event is h11.NEED_DATA:
                parser.receive_data(self.sock.recv(65536))
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                return status, body
            else:
                raise AssertionError(f"unexpected {event!r}")

    def read_to_end(self) -> tuple[bytes, str]:
        """Everything until the connection ends, and how it ended."""
        data = b""
        while True:
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                return data, RST
            except (socket.timeout, ssl.SSLWantReadError):
                return data, TIMEOUT
            except ssl.SSLError as exc:
                if is_unexpected_eof(exc):
                    return data, ABRUPT
                raise
            if not chunk:
                return data, NOTIFY
            data += chunk

    def read_raw_to_end(self) -> tuple[bytes, str]:
        """The TCP bytes under TLS (or without it) until the server's FIN or RST, and which it was.

        Needed for RST: Python's ssl module (OpenSSL 3.0 here) reports a reset that arrives while
        it reads records as ``SSLEOFError``, the same as a FIN without ``close_notify``.
        """
        data = b""
        while True:
            try:
                chunk = socket.socket.recv(self.sock, 65536)
            except ConnectionResetError:
                return data, RST
            if not chunk:
                return data, FIN
            data += chunk


@pytest.fixture(params=["asyncio", "trio"])
def server(request: pytest.FixtureRequest, connfault_server_factory: ServerFactory) -> FaultServer:
    """A TLS server on each backend, answering ``GET /`` with the 100-byte BODY."""
    made = connfault_server_factory(backend=request.param, tls=True)
    made.respond("/", body=BODY)
    return made


# -- the server and its certificate -----------------------------------------------------------


def test_tls_server_speaks_https_and_the_ledger_says_tls(server: FaultServer) -> None:
    """An https URL, a real handshake, keep-alive inside TLS, and ``tls=True`` on the connection record."""
    assert server.scheme == "https"
    assert server.url == f"https://127.0.0.1:{server.port}"
    with TlsClient(server) as client:
        client.handshake()
        assert client.get() == (200, BODY)
        assert client.get("/again") == (200, b"ok\n")
        assert client.sock.version() in ("TLSv1.2", "TLSv1.3")
    [conn] = server.connections
    assert conn.tls is True
    assert conn.tls_error is None
    assert [r.target for r in conn.requests] == ["/", "/again"]


@pytest.mark.parametrize("hostname", ["127.0.0.1", "localhost"])
def test_certificate_is_valid_for_the_loopback_names(server: FaultServer, hostname: str) -> None:
    """The certificate verifies for 127.0.0.1 and localhost, and names exactly the loopback identities."""
    with TlsClient(server) as client:
        client.handshake(hostname=hostname)
        names = [value for _, value in client.sock.getpeercert()["subjectAltName"]]
    assert sorted(n.replace("0:0:0:0:0:0:0:1", "::1") for n in names) == sorted(SERVER_IDENTITIES)


def test_client_without_the_ca_cannot_connect(server: FaultServer) -> None:
    """Negative control: a client that does not trust the session CA fails its handshake, and the ledger says why."""
    with TlsClient(server) as client:
        with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
            client.handshake(ssl.create_default_context())
        client.read_raw_to_end()  # the server closes once it has recorded the failure
    [conn] = server.connections
    assert conn.tls_error == "handshake failed: TLSV1_ALERT_UNKNOWN_CA"
    assert conn.ended_by == "client_fin"
    assert conn.requests == ()
    server.wait_connections_ended(1)
    opened, closed = server.timeline()
    assert opened.endswith(", TLS)")
    assert closed.endswith("closed, ended by client_fin, handshake failed: TLSV1_ALERT_UNKNOWN_CA")


def test_plain_http_on_the_tls_port_is_recorded_and_refused(server: FaultServer) -> None:
    """A plain-HTTP request to the TLS port ends that connection only; the ledger records why."""
    with TlsClient(server) as plain:
        plain.send_request()
        plain.read_raw_to_end()
    with TlsClient(server) as client:
        client.handshake()
        assert client.get() == (200, BODY)
    first, second = server.connections
    assert first.tls_error == "handshake failed: HTTP_REQUEST"
    assert first.ended_by == "server_close"
    assert first.requests == ()
    assert [r.connection_id for r in server.requests] == [2]


def test_factory_tls_option_takes_a_context_and_rejects_nonsense(connfault_server_factory: ServerFactory) -> None:
    """``tls=`` takes an SSLContext (or True); anything else is refused with a message."""
    made = connfault_server_factory(tls=FaultServer(tls=True).tls_context)
    with TlsClient(made) as client:
        client.handshake()
        assert client.get()[0] == 200
    with pytest.raises(Exception, match="tls= takes an ssl.SSLContext or True"):
        FaultServer(tls="yes")  # type: ignore[arg-type]
    assert FaultServer().scheme == "http"


def test_ca_bundle_is_a_pem_of_the_ca_in_a_temporary_directory() -> None:
    """The CA bundle is the CA's PEM, outside the working tree, and removing it leaves nothing."""
    bundle = CaBundle()
    try:
        with open(bundle.path, "rb") as pem:
            assert pem.read().startswith(b"-----BEGIN CERTIFICATE-----")
        assert not os.path.abspath(bundle.path).startswith(os.getcwd() + os.sep)
        context = ssl.create_default_context(cafile=bundle.path)
        assert context.cert_store_stats()["x509_ca"] >= 1
    finally:
        bundle.remove()
    assert not os.path.exists(bundle.directory)


# -- the drops over TLS ---------------------------------------------------------------------


@pytest.mark.parametrize(("close_notify", "end"), [(True, NOTIFY), (False, ABRUPT)])
@pytest.mark.parametrize("moment", ["before_response", "after_headers", "after_response"])
def test_close_sends_close_notify_unless_asked_not_to(
    server: FaultServer, close_notify: bool, end: str, moment: str
) -> None:
    """``close`` ends with the close_notify alert then FIN; ``close_notify=False`` sends the FIN alone."""
    handle = server.inject("close", at=moment, close_notify=close_notify)
    with TlsClient(server) as client:
        client.handshake()
        if moment == "after_response":
            assert client.get() == (200, BODY)
        else:
            client.send_request()
        handle.wait(5)
        data, how = client.read_to_end()
    assert how == end
    assert (data == b"") == (moment != "after_headers"), "only after_headers sends bytes before the close"
    assert server.connection(1).ended_by == "server_fault"


@pytest.mark.parametrize("moment", ["before_response", "after_response"])
def test_reset_is_an_rst_with_no_alert(server: FaultServer, moment: str) -> None:
    """``reset`` over TLS is an RST, as on plain TCP: no close_notify first."""
    handle = server.inject("reset", at=moment)
    with TlsClient(server) as client:
        client.handshake()
        if moment == "after_response":
            assert client.get() == (200, BODY)
        else:
            client.send_request()
        handle.wait(5)
        data, how = client.read_raw_to_end()
    assert how == RST
    assert len(data) < 600, "at most the session tickets: no response record"


@pytest.mark.parametrize(("command", "end"), [("close_idle", NOTIFY), ("reset_idle", RST)])
def test_commands_drop_idle_tls_connections(server: FaultServer, command: str, end: str) -> None:
    """``close_idle()`` sends close_notify then FIN, ``reset_idle()`` an RST; both return the dropped record."""
    with TlsClient(server) as client:
        client.handshake()
        assert client.get() == (200, BODY)
        dropped = getattr(server, command)()
        assert [(c.id, c.tls) for c in dropped] == [(1, True)]
        if end == RST:
            assert client.read_raw_to_end() == (b"", RST)
        else:
            assert client.read_to_end() == (b"", end)


def test_half_close_idle_sends_close_notify_and_keeps_reading(server: FaultServer) -> None:
    """After a TLS half-close the server still decrypts and records what arrives, unanswered."""
    with TlsClient(server) as client:
        client.handshake()
        assert client.get() == (200, BODY)
        [dropped] = server.half_close_idle()
        assert client.read_to_end() == (b"", NOTIFY)
        client.send_request("/late")
        wait_until(lambda: len(server.requests) == 2, what="both requests recorded")
    late = server.requests[1]
    assert (late.target, late.connection_id, late.outcome.kind) == ("/late", 1, "unanswered")


@pytest.mark.parametrize("strict_server", [False, True], ids=["default-context", "strict-eof-context"])
def test_client_close_without_close_notify_is_a_client_fin(
    connfault_server_factory: ServerFactory, strict_server: bool
) -> None:
    """A client that closes TCP without close_notify ends its connection with ``client_fin``, not an error.

    With ``OP_IGNORE_UNEXPECTED_EOF`` cleared on the server's context, that close reaches the server
    as an unexpected-EOF error (``ssl.SSLEOFError``, or on Python 3.9 a plain ``ssl.SSLError``):
    either shape is the client's end of stream, like ``close_notify``.
    """
    context = server_context()
    if strict_server:
        context.options &= ~getattr(ssl, "OP_IGNORE_UNEXPECTED_EOF", 0)
    made = connfault_server_factory(tls=context)
    with TlsClient(made) as client:
        client.handshake()
        assert client.get()[0] == 200
        socket.socket.shutdown(client.sock, socket.SHUT_WR)  # a bare FIN under TLS: no alert
        assert client.read_raw_to_end()[1] == FIN
    made.wait_connections_ended(1)
    conn = made.connection(1)
    assert (conn.ended_by, conn.unread, conn.tls_error) == ("client_fin", b"", None)
    assert made.errors == []


@pytest.mark.parametrize("close_notify", [True, False])
def test_truncate_cuts_the_body_inside_tls(server: FaultServer, close_notify: bool) -> None:
    """``truncate`` sends the head and N body bytes as TLS records, then ends as asked."""
    handle = server.inject("truncate", body_bytes=37, close_notify=close_notify)
    with TlsClient(server) as client:
        client.handshake()
        client.send_request()
        handle.wait(5)
        data, how = client.read_to_end()
    assert data.endswith(b"\r\n\r\n" + BODY[:37])
    assert b"Content-Length: 100" in data
    assert how == (NOTIFY if close_notify else ABRUPT)


def test_stall_and_release_over_tls(server: FaultServer) -> None:
    """A stalled TLS exchange sends nothing until released, then completes on the same connection."""
    handle = server.inject("stall", at="before_response")
    with TlsClient(server) as client:
        client.handshake()
        client.send_request()
        handle.wait(5)
        client.sock.settimeout(0.2)
        assert client.read_to_end() == (b"", TIMEOUT)
        assert server.release() == 1
        client.sock.settimeout(5)
        data, _ = b"", None
        while not data.endswith(BODY):
            data += client.sock.recv(65536)
    assert server.requests[0].outcome.status == 200


def test_close_delimited_response_ends_with_close_notify(server: FaultServer) -> None:
    """A close-delimited body (no Content-Length, not chunked) is complete when close_notify then FIN end it."""
    server.respond("/", Response(body=BODY, close_delimited=True))
    with TlsClient(server) as client:
        client.handshake()
        client.send_request()
        data, how = client.read_to_end()
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"content-length" not in head.lower()
    assert b"transfer-encoding" not in head.lower()
    assert b"Connection: close" in head
    assert (body, how) == (BODY, NOTIFY)


def test_close_delimited_body_cut_abruptly_differs_only_by_the_missing_alert(server: FaultServer) -> None:
    """Cut short with close_notify=False, a close-delimited body ends in a TCP FIN with no alert."""
    server.respond("/", Response(body=BODY, close_delimited=True))
    server.inject("truncate", body_bytes=40, close_notify=False)
    with TlsClient(server) as client:
        client.handshake()
        client.send_request()
        data, how = client.read_to_end()
    assert (data.partition(b"\r\n\r\n")[2], how) == (BODY[:40], ABRUPT)


# -- the handshake moment -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "error"),
    [
        ("reset", ConnectionResetError),
        ("close", ssl.SSLError),  # an unexpected EOF: checked below
        ("empty", ssl.SSLError),  # the same
        ("garbage", ssl.SSLError),
    ],
)
def test_handshake_faults_fire_where_the_server_hello_should_be(
    server: FaultServer, kind: str, error: type[Exception]
) -> None:
    """At ``handshake`` the ClientHello has arrived; reset, close, empty or garbage replace the ServerHello."""
    handle = server.inject(kind, at="handshake")
    with TlsClient(server) as client, pytest.raises(error) as raised:
        client.handshake()
    if kind == "garbage":
        assert "WRONG_VERSION_NUMBER" in str(raised.value)
    elif kind != "reset":
        assert is_unexpected_eof(raised.value), f"not a TCP close without an alert: {raised.value!r}"
    firing = handle.wait(5)
    assert (firing.kind, firing.at, firing.connection_id, firing.request_index) == (kind, "handshake", 1, None)
    conn = server.connection(1)
    assert (conn.tls, conn.ended_by, conn.requests) == (True, "server_fault", ())


def test_stalled_handshake_times_the_client_out_and_blocks_no_other_connection(server: FaultServer) -> None:
    """A stall at ``handshake`` holds one client (its timeout fires) while another connects and is served."""
    handle = server.inject("stall", at="handshake", connection=1)
    with TlsClient(server, timeout=0.3) as stalled:
        with pytest.raises((socket.timeout, TimeoutError)):
            stalled.handshake()
        handle.wait(5)
        with TlsClient(server) as other:
            other.handshake()
            assert other.get() == (200, BODY)
    assert [r.connection_id for r in server.requests] == [2]
    assert server.connection(1).faults[0].at == "handshake"


def test_delay_at_handshake_then_the_handshake_goes_on(server: FaultServer) -> None:
    """A ``delay`` at ``handshake`` holds the ServerHello back, then the connection works normally."""
    handle = server.inject("delay", at="handshake", seconds=0.05)
    with TlsClient(server) as client:
        client.handshake()
        assert client.get() == (200, BODY)
    assert handle.fired == 1


def test_handshake_moment_needs_a_tls_server(connfault_server: FaultServer) -> None:
    """Arming ``at="handshake"`` on a plain server is refused: it could never fire."""
    with pytest.raises(FaultSpecError, match="needs a TLS server"):
        connfault_server.inject("reset", at="handshake")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": "delay", "close_notify": False}, "close_notify= does not apply to fault 'delay'"),
        ({"kind": "truncate", "then": "reset", "close_notify": False}, "an RST sends no alert"),
        ({"kind": "close", "close_notify": "no"}, "close_notify= must be True or False"),
        ({"kind": "drip", "at": "handshake"}, "cannot fire at='handshake'"),
        ({"kind": "close", "at": "handshake", "request": 1}, "request= cannot select a fault at='handshake'"),
    ],
)
def test_tls_fault_arguments_are_validated(kwargs: dict[str, Any], message: str) -> None:
    """close_notify and the handshake moment are checked when the fault is made, with a message."""
    kind = kwargs.pop("kind")
    with pytest.raises(FaultSpecError, match=message):
        Fault(kind, **kwargs)


def test_close_notify_shows_in_the_repr_only_when_off() -> None:
    """A fault's repr names close_notify only when it differs from the default."""
    assert "close_notify" not in repr(Fault("close"))
    assert repr(Fault("close", close_notify=False)) == "Fault('close', at='after_response', close_notify=False)"
