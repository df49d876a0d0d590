"""Every fault and command of the plain server works over TLS, with the same ledger.

Each case runs one script with a real client (httpx) against a plain server and a TLS server with
the same fault armed, and compares what the two ledgers recorded and what the client got: only the
``tls`` flag may differ.
"""

from __future__ import annotations

import contextlib
import gc
import sys
import warnings
from collections.abc import Iterator
from typing import Any, Callable

import httpx
import pytest

from pytest_connfault import Connection, Fault, FaultServer

ServerFactory = Callable[..., FaultServer]

#: A representative set: each kind, at the moments that matter for keep-alive.
FAULTS = [
    Fault("reset", at="after_response", request=1),
    Fault("close", at="after_response", request=1),
    Fault("half_close", at="after_response", request=1),
    Fault("close", at="idle", seconds=0.05),
    Fault("reset", at="on_connect"),
    Fault("close", at="before_request", request=2),
    Fault("reset", at="before_response"),
    Fault("close", at="before_response"),
    Fault("close", at="after_headers"),
    Fault("reset", at="mid_body", body_bytes=10),
    Fault("truncate", body_bytes=10),
    Fault("truncate", body_bytes=10, then="reset"),
    Fault("garbage", at="before_response"),
    Fault("empty", at="before_response"),
    Fault("delay", seconds=0.01),
    Fault("drip", chunk_size=64, interval=0.001),
]
#: Faults after which the client's next request needs the fault on the wire first.
_BETWEEN = ("after_response", "idle")


def shape(connections: list[Connection]) -> list[tuple[Any, ...]]:
    """A ledger without times, ports and the tls flag."""
    return [
        (
            c.id,
            str(c.ended_by),
            [(r.index, r.index_on_connection, r.target, r.outcome.kind, r.outcome.status, r.outcome.fault)
             for r in c.requests],
            [(f.kind, f.at, f.request_index) for f in c.faults],
        )
        for c in connections
    ]


@contextlib.contextmanager
def cpython_ssl_leak_collected(server: FaultServer, fault: Fault) -> Iterator[None]:
    """Collect, without its ResourceWarning, the client socket CPython leaks on a reset before TLS.

    Before 3.13 (python/cpython#113280), ``wrap_socket`` on a socket whose peer has already reset
    it raises from its not-yet-connected check without closing the new ``SSLSocket``: the leak is
    the client's, and surfaced only when the garbage collector runs, in whatever test that is.
    """
    if server.scheme != "https" or fault.at != "on_connect" or sys.version_info >= (3, 13):
        yield
        return
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r"unclosed <ssl\.SSLSocket", ResourceWarning)
        yield
        gc.collect()


def run_script(server: FaultServer, fault: Fault, verify: Any) -> list[str]:
    """Two GETs on one client (the second after the fault if it fires between them); what each got."""
    handle = server.inject(fault)
    outcomes = []
    with cpython_ssl_leak_collected(server, fault), httpx.Client(base_url=server.url, verify=verify, timeout=5) as client:
        server.respond("/1", body=b"a" * 200)
        for target in ("/1", "/2"):
            try:
                response = client.get(target)
                outcomes.append(f"{response.status_code} {len(response.content)}")
            except httpx.TransportError:
                outcomes.append("error")
            if target == "/1" and fault.at in _BETWEEN:
                handle.wait(5)
    server.wait_connections_ended()  # the server has read the client's FIN
    assert handle.fired == 1, f"{fault!r} did not fire: the case proves nothing"
    return outcomes


@pytest.mark.parametrize("fault", FAULTS, ids=[f.label for f in FAULTS])
def test_fault_over_tls_leaves_the_same_ledger_as_plain(
    connfault_server_factory: ServerFactory, connfault_client_ssl_context: Any, fault: Fault
) -> None:
    """The same fault and client script give the same client outcomes and ledger on http and https."""
    plain = connfault_server_factory()
    tls = connfault_server_factory(tls=True)
    plain_outcomes = run_script(plain, fault, verify=True)
    tls_outcomes = run_script(tls, fault, verify=connfault_client_ssl_context)
    assert tls_outcomes == plain_outcomes
    tls_shape, plain_shape = shape(tls.connections), shape(plain.connections)
    if fault.kind == "half_close":
        # How a half-closed connection ends is the client's doing: after a TLS half-close the
        # client may close its socket with our close_notify record unread, and its kernel then
        # answers with RST where a plain FIN (no data) leaves a FIN. Compare the rest.
        tls_shape[0] = (tls_shape[0][0], plain_shape[0][1], *tls_shape[0][2:])
    assert tls_shape == plain_shape
    assert {c.tls for c in tls.connections} == {True}
    assert {c.tls for c in plain.connections} == {False}


@pytest.mark.parametrize("command", ["reset_idle", "close_idle", "half_close_idle"])
def test_commands_over_tls_leave_the_same_ledger_as_plain(
    connfault_server_factory: ServerFactory, connfault_client_ssl_context: Any, command: str
) -> None:
    """The fire-now commands drop idle TLS connections as they drop plain ones; the client reconnects."""
    ledgers = []
    for server, verify in (
        (connfault_server_factory(), True),
        (connfault_server_factory(tls=True), connfault_client_ssl_context),
    ):
        with httpx.Client(base_url=server.url, verify=verify) as client:
            assert client.get("/1").status_code == 200
            assert [c.id for c in getattr(server, command)()] == [1]
            assert client.get("/2").status_code == 200
        ledgers.append([(r.target, r.connection_id) for r in server.requests])
        assert [(f.kind, f.commanded) for f in server.connection(1).faults] == [(command[:-5], True)]
    assert ledgers[0] == ledgers[1] == [("/1", 1), ("/2", 2)]
