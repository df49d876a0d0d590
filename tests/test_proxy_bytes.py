"""Every forwarded byte: random bodies and chunk sizes through the proxy, both directions (hypothesis)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
from hypothesis import given, settings
from hypothesis import strategies as st
from rawclient import RawClient
from upstreams import Upstream, pattern

from pytest_connfault import FaultProxy


def _pieces(data: bytes, size: int) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def test_random_uploads_arrive_intact() -> None:
    """Any body, streamed up in any chunk size, reaches the upstream and comes back byte for byte."""
    with Upstream() as upstream, FaultProxy(upstream.url) as proxy, httpx.Client(base_url=proxy.url) as client:

        @settings(max_examples=60, deadline=None)
        @given(body=st.binary(max_size=50_000), chunk=st.integers(1, 8192))
        def check(body: bytes, chunk: int) -> None:
            before = len(upstream.seen)
            response = client.post("/echo", content=_pieces(body, chunk))
            assert response.status_code == 200
            assert response.content == body
            assert upstream.seen[before][3] == body

        check()
        assert len(proxy.upstream_connections) == 1, "every example reused the one upstream connection"


def test_random_downloads_keep_bytes_and_chunk_boundaries() -> None:
    """Any size in any chunk size arrives intact, in exactly the upstream's chunks."""
    with Upstream() as upstream, FaultProxy(upstream.url) as proxy, RawClient(proxy) as raw:

        @settings(max_examples=60, deadline=None)
        @given(size=st.integers(0, 40_000), chunk=st.integers(64, 10_000))
        def check(size: int, chunk: int) -> None:
            reply = raw.request("GET", f"/bytes?size={size}&chunk={chunk}")
            assert reply.complete
            assert reply.body == pattern(size)
            framing = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in _pieces(pattern(size), chunk)) + b"0\r\n\r\n"
            assert reply.raw.endswith(b"\r\n\r\n" + framing)

        check()
        assert [c.id for c in proxy.connections] == [1], "one client connection carried every example"
