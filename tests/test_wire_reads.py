"""The wire's reads that never wait: ``receive_now`` (a connection's first bytes, read without a
poll), ``readable_now`` (would a read return at once?) and ``peer_end_in_tcp_state`` (has the client ended
the connection? asked of the kernel's TCP state, from any thread), the last two consuming nothing,
on real loopback TCP sockets.
"""

from __future__ import annotations

import asyncio
import socket
import struct
import sys
from collections.abc import Iterator

import pytest

from pytest_connfault._wire import Wire

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="TCP_INFO is Linux's")


@pytest.fixture
def tcp_pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A connected loopback TCP pair: the server's (non-blocking) side first, then the client's."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        client = socket.create_connection(listener.getsockname())
        ours, _ = listener.accept()
    ours.setblocking(False)
    try:
        yield ours, client
    finally:
        ours.close()
        client.close()


def wire_for(sock: socket.socket) -> Wire:
    """A wire as a connection's task makes it (on a running asyncio loop)."""

    async def make() -> Wire:
        return Wire(sock)

    return asyncio.run(make())


def reset(client: socket.socket) -> None:
    """Close with SO_LINGER 0: the kernel sends RST instead of FIN."""
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()


def test_receive_now_is_none_until_bytes_arrive_then_the_bytes(tcp_pair: tuple[socket.socket, socket.socket]) -> None:
    ours, client = tcp_pair
    wire = wire_for(ours)
    assert wire.receive_now() is None, "nothing was sent, yet receive_now returned something"
    client.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert wire.receive_now() == b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"


def test_receive_now_reads_the_clients_eof_as_empty_bytes(tcp_pair: tuple[socket.socket, socket.socket]) -> None:
    ours, client = tcp_pair
    client.close()
    assert wire_for(ours).receive_now() == b""


def test_receive_now_raises_the_clients_reset(tcp_pair: tuple[socket.socket, socket.socket]) -> None:
    ours, client = tcp_pair
    reset(client)
    with pytest.raises(ConnectionResetError):
        wire_for(ours).receive_now()


@linux_only
def test_peer_end_in_tcp_state_is_false_while_the_client_holds_the_connection_open(
    tcp_pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, client = tcp_pair
    wire = wire_for(ours)
    assert not wire.peer_end_in_tcp_state()
    client.sendall(b"partial request")
    assert not wire.peer_end_in_tcp_state(), "bytes waiting are not an end"


@linux_only
def test_peer_end_in_tcp_state_sees_a_fin_and_leaves_the_eof_for_the_reader(
    tcp_pair: tuple[socket.socket, socket.socket],
) -> None:
    ours, client = tcp_pair
    wire = wire_for(ours)
    client.sendall(b"last words")
    client.close()
    assert wire.peer_end_in_tcp_state()
    assert wire.receive_now() == b"last words", "peer_end_in_tcp_state consumed bytes it must leave in place"
    assert wire.receive_now() == b""


@linux_only
def test_peer_end_in_tcp_state_sees_a_reset_and_leaves_it_for_the_reader(tcp_pair: tuple[socket.socket, socket.socket]) -> None:
    """A peek or SO_ERROR would consume the reset, and the loop would then record a FIN."""
    ours, client = tcp_pair
    wire = wire_for(ours)
    reset(client)
    assert wire.peer_end_in_tcp_state()
    with pytest.raises(ConnectionResetError):
        wire.receive_now()


def test_peer_end_in_tcp_state_is_false_for_a_closed_or_non_tcp_socket() -> None:
    ours, theirs = socket.socketpair()
    with ours, theirs:
        ours.setblocking(False)
        wire = wire_for(ours)
        theirs.close()
        assert not wire.peer_end_in_tcp_state(), "a Unix socket has no TCP state to tell"
    assert not wire.peer_end_in_tcp_state(), "a closed socket has no TCP state to tell"


def test_readable_now_tells_without_consuming_bytes_eof_or_reset(
    tcp_pair: tuple[socket.socket, socket.socket],
) -> None:
    """The TLS connection's check for its first request: True for bytes, EOF or a reset, and the
    read after it still gets each (a peek would have consumed the reset, leaving a plain EOF)."""
    ours, client = tcp_pair
    wire = wire_for(ours)
    assert not wire.readable_now()
    client.sendall(b"GET")
    assert wire.readable_now()
    assert wire.receive_now() == b"GET"
    reset(client)
    assert wire.readable_now()
    with pytest.raises(ConnectionResetError):
        wire.receive_now()
