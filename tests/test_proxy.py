"""FaultProxy: forwarding to a real upstream (http.server in a thread), client-side faults, the ledger."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

# httpx 0.28 imports httpcore lazily: if that first happened inside a pytester run below, the
# run's sys.modules cleanup would leave httpx mapping the errors of a dropped httpcore module,
# and later tests in this process would get httpcore's exceptions instead of httpx's.
import httpcore  # noqa: F401
import httpx
import pytest
import requests
from upstreams import Upstream, pattern

from pytest_connfault import FaultProxy, FaultServer, assert_new_connection, assert_pool, assert_reused


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    with Upstream() as server:
        yield server


@pytest.fixture
def proxy(upstream: Upstream, connfault_proxy_factory: object) -> FaultProxy:
    return connfault_proxy_factory(upstream.url)  # type: ignore[operator, no-any-return]


def test_get_is_forwarded_and_the_ledger_names_the_upstream(proxy: FaultProxy, upstream: Upstream) -> None:
    """A GET goes through unchanged; the request record carries the upstream's status and connection."""
    with httpx.Client(base_url=proxy.url) as client:
        response = client.get("/status/204")
        assert response.status_code == 204
        assert client.get("/anything").text == "upstream ok\n"
    first, second = proxy.requests
    assert (first.upstream_status, first.upstream_connection) == (204, 1)
    assert (second.upstream_status, second.upstream_connection) == (200, 1)
    assert [c.requests for c in proxy.upstream_connections] == [(1, 2)]
    assert [(m, t) for m, t, *_ in upstream.seen] == [("GET", "/status/204"), ("GET", "/anything")]


def test_headers_are_forwarded_without_hop_by_hop_ones(proxy: FaultProxy, upstream: Upstream) -> None:
    """End-to-end headers reach the upstream; Connection and what it names do not; Host is the upstream's."""
    headers = {"X-Custom": "1", "Connection": "keep-alive, X-Private", "X-Private": "secret"}
    with httpx.Client(base_url=proxy.url) as client:
        response = client.post("/echo", content=b"abc", headers=headers)
    assert response.headers["x-host"] == f"127.0.0.1:{upstream.port}"
    method, _, seen, body, _ = upstream.seen[0]
    assert (method, body) == ("POST", b"abc")
    names = {name.lower() for name in seen}
    assert "x-custom" in names
    assert not {"x-private", "connection"} & names


def test_preserve_host_forwards_the_clients_host(upstream: Upstream, connfault_proxy_factory: object) -> None:
    """With preserve_host=True the upstream sees the Host the client sent."""
    proxy = connfault_proxy_factory(upstream.url, preserve_host=True)  # type: ignore[operator]
    with httpx.Client() as client:
        response = client.get(f"{proxy.url}/echo", headers={"Host": "app.example"})
    assert response.headers["x-host"] == "app.example"


def test_path_prefix_of_the_upstream_url_is_prepended(upstream: Upstream, connfault_proxy_factory: object) -> None:
    """An upstream URL with a path sends /x as /path/x."""
    proxy = connfault_proxy_factory(upstream.url + "/api/")  # type: ignore[operator]
    with httpx.Client(base_url=proxy.url) as client:
        assert client.get("/items?q=1").status_code == 200
    assert upstream.seen[0][1] == "/api/items?q=1"


def test_a_streamed_upload_arrives_intact(proxy: FaultProxy, upstream: Upstream) -> None:
    """A chunked upload of 1 MiB streamed through the proxy reaches the upstream byte for byte and comes back."""
    data = pattern(1024 * 1024)

    def pieces() -> Iterator[bytes]:
        for i in range(0, len(data), 7919):
            yield data[i : i + 7919]

    with httpx.Client(base_url=proxy.url) as client:
        response = client.post("/echo", content=pieces())
    assert response.status_code == 200
    assert hashlib.sha256(response.content).digest() == hashlib.sha256(data).digest()
    assert upstream.seen[0][3] == data
    assert proxy.requests[0].body == data


@pytest.mark.parametrize("chunk", [None, 1, 1000, 65536])
def test_a_streamed_download_arrives_intact_with_the_upstreams_framing(proxy: FaultProxy, chunk: int | None) -> None:
    """The upstream's body (chunked or not) arrives intact, framed as the upstream framed it."""
    size = 5000 if chunk == 1 else 300_000  # http.server writes each chunk with its own system call
    query = f"size={size}" + (f"&chunk={chunk}" if chunk else "")
    with httpx.Client(base_url=proxy.url) as client, client.stream("GET", f"/bytes?{query}") as response:
        received = b"".join(response.iter_raw())
        assert ("transfer-encoding" in response.headers) == (chunk is not None)
    assert received == pattern(size)


def test_head_keeps_the_upstreams_content_length(proxy: FaultProxy) -> None:
    """HEAD answers carry the upstream's Content-Length and no body, and the connection stays usable."""
    with httpx.Client(base_url=proxy.url) as client:
        head = client.head("/bytes?size=1234")
        assert head.headers["content-length"] == "1234"
        assert head.content == b""
        assert client.get("/bytes?size=10").content == pattern(10)
    assert [r.connection_id for r in proxy.requests] == [1, 1]


@pytest.mark.parametrize("drop", ["close", "reset", "half_close"])
def test_httpx_327_through_the_proxy(proxy: FaultProxy, drop: str) -> None:
    """encode/httpx #327 in front of a real server: the proxy drops the idle client connection, the client reconnects."""
    with httpx.Client(base_url=proxy.url) as client:
        assert client.get("/first").status_code == 200
        dropped = getattr(proxy, f"{drop}_idle")()
        assert [c.id for c in dropped] == [1]
        assert client.get("/second").text == "upstream ok\n"
        assert_pool(client, active=0, idle=1, server=proxy)
    assert_new_connection(proxy, request=2)
    # The two sides are independent: the upstream connection was kept and reused.
    assert [r.upstream_connection for r in proxy.requests] == [1, 1]


@pytest.mark.parametrize("drop", ["close", "reset"])
def test_requests_327_through_the_proxy(proxy: FaultProxy, drop: str) -> None:
    """requests (urllib3) recovers the same way: new connection for the second request, via the proxy."""
    with requests.Session() as session:
        assert session.get(f"{proxy.url}/first").status_code == 200
        getattr(proxy, f"{drop}_idle")()
        assert session.get(f"{proxy.url}/second").text == "upstream ok\n"
    assert [r.connection_id for r in proxy.requests] == [1, 2]


def test_keep_alive_reuse_is_visible_on_both_sides(proxy: FaultProxy) -> None:
    """Three requests on one client connection use one upstream connection; the pool assertions agree."""
    with httpx.Client(base_url=proxy.url) as client:
        for _ in range(3):
            client.get("/x")
        assert_pool(client, active=0, idle=1)
    assert_reused(proxy, request=3, same_as=1)
    assert len(proxy.upstream_connections) == 1


def test_client_side_truncate_cuts_the_upstreams_answer(proxy: FaultProxy) -> None:
    """A client-side fault on the proxy cuts the real upstream's body at the given byte."""
    handle = proxy.inject("truncate", body_bytes=100)
    with httpx.Client(base_url=proxy.url) as client, pytest.raises(httpx.RemoteProtocolError):
        client.get("/bytes?size=1000")
    assert handle.wait(5).detail.startswith("100 of 1000")
    assert proxy.requests[0].upstream_status == 200


@pytest.mark.connfault("reset", at="after_response", request=1)
@pytest.mark.parametrize("connfault_proxy", [{"upstream_errors": "502"}], indirect=True)
def test_marker_and_indirect_options_on_connfault_proxy(
    connfault_proxy: FaultProxy, upstream: Upstream, connfault_upstream: object
) -> None:
    """The marker arms faults on connfault_proxy; indirect parametrization passes proxy options."""
    assert connfault_proxy.upstream_errors == "502"
    with httpx.Client(base_url=connfault_proxy.url) as client:
        assert client.get("/one").status_code == 200
        connfault_proxy.faults[0].wait(5)
        assert client.get("/two").status_code == 200
    assert [r.connection_id for r in connfault_proxy.requests] == [1, 2]


@pytest.fixture
def connfault_upstream(upstream: Upstream) -> str:
    return upstream.url


def test_connfault_proxy_takes_its_upstream_from_the_override(connfault_proxy: FaultProxy, upstream: Upstream) -> None:
    """Overriding connfault_upstream points connfault_proxy at the test's own server."""
    assert connfault_proxy.upstream == upstream.url
    with httpx.Client() as client:
        assert client.get(f"{connfault_proxy.url}/z").text == "upstream ok\n"


def test_refused_upstream_is_a_502(connfault_proxy_factory: object) -> None:
    """An upstream that refuses connections gives the client a 502 naming it, on a live connection."""
    with FaultServer() as gone:
        url = gone.url
    proxy = connfault_proxy_factory(url)  # type: ignore[operator]
    with httpx.Client(base_url=proxy.url) as client:
        first = client.get("/")
        assert first.status_code == 502
        assert "cannot connect" in first.text
        assert client.get("/").status_code == 502
    assert [r.connection_id for r in proxy.requests] == [1, 1]
    assert proxy.requests[0].upstream_connection is None
    assert proxy.upstream_connections == []


def test_proxy_in_front_of_a_fault_server(connfault_server: FaultServer, connfault_proxy_factory: object) -> None:
    """A FaultServer can be the upstream too: faults on both sides, each in its own ledger."""
    proxy = connfault_proxy_factory(connfault_server)  # type: ignore[operator]
    with httpx.Client(base_url=proxy.url) as client:
        assert client.get("/a").text == "ok\n"
        connfault_server.close_idle()
        assert client.get("/b").text == "ok\n"
    assert [r.connection_id for r in proxy.requests] == [1, 1]
    assert [r.connection_id for r in connfault_server.requests] == [1, 2]
    assert [c.ended_by for c in proxy.upstream_connections][:1] == ["upstream_close"]


def test_repr_names_both_sides(proxy: FaultProxy, upstream: Upstream) -> None:
    """The repr states the proxy's URL, its upstream and how many upstream connections it opened."""
    assert f"-> {upstream.url}" not in repr(proxy)
    assert f"upstream {upstream.url}: 0 connections" in repr(proxy)
    assert repr(proxy).startswith(f"<FaultProxy {proxy.url}")


def test_timeline_shows_the_upstream_side(proxy: FaultProxy) -> None:
    """The proxy's timeline (the failure report's ledger) ends with its upstream connections' events."""
    with httpx.Client(base_url=proxy.url) as client:
        client.get("/")
        proxy.reset_upstream_idle()
    lines = proxy.timeline()
    assert any("request 1: GET / -> responded 200" in line for line in lines)
    start = lines.index(f"upstream side ({proxy.upstream}):")
    upstream_lines = lines[start + 1 :]
    assert "upstream 1  opened" in upstream_lines[0]
    assert "fault reset@idle commanded" in upstream_lines[1]
    assert upstream_lines[2].endswith("closed, ended by command; carried requests 1")


def test_failing_test_report_shows_both_sides(pytester: pytest.Pytester) -> None:
    """A failing test with connfault_proxy gets the client ledger and the upstream side in its report."""
    pytester.makepyfile(
        """
        import httpx
        import pytest

        @pytest.fixture
        def connfault_upstream(connfault_server):
            return connfault_server

        def test_fails(connfault_proxy):
            with httpx.Client(base_url=connfault_proxy.url) as client:
                client.get("/x")
            assert False
        """
    )
    result = pytester.runpytest("-p", "no:randomly")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines([
        "*connfault ledger*",
        "*conn 1  request 1: GET /x -> responded 200*",
        "upstream side (http://127.0.0.1:*):",
        "*upstream 1  opened*",
    ])


def test_concurrent_clients_each_get_their_own_answer(proxy: FaultProxy) -> None:
    """Eight clients at once: every answer is the one asked for; the upstream pool holds at most eight."""
    import threading

    failures: list[str] = []

    def client_loop(n: int) -> None:
        with httpx.Client(base_url=proxy.url) as client:
            for i in range(15):
                body = f"client {n} request {i} ".encode() * (n + 1)
                got = client.post("/echo", content=body).content
                if got != body:
                    failures.append(f"{n}/{i}: {got[:40]!r}")

    threads = [threading.Thread(target=client_loop, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert failures == []
    assert len(proxy.requests) == 8 * 15
    assert all(r.upstream_status == 200 for r in proxy.requests)
    assert 1 <= len(proxy.upstream_connections) <= 8


def test_upstream_by_name_localhost(upstream: Upstream, connfault_proxy_factory: object) -> None:
    """An upstream named "localhost" is reached on whichever of its addresses listens (127.0.0.1 here)."""
    proxy = connfault_proxy_factory(f"http://localhost:{upstream.port}")  # type: ignore[operator]
    with httpx.Client(base_url=proxy.url) as client:
        response = client.get("/echo")
    assert response.headers["x-host"] == f"localhost:{upstream.port}"


def test_connfault_proxy_without_an_upstream_says_what_to_do(pytester: pytest.Pytester) -> None:
    """Using connfault_proxy with no upstream given fails the test with a message naming both ways to give one."""
    pytester.makepyfile(
        """
        def test_needs_upstream(connfault_proxy):
            pass
        """
    )
    result = pytester.runpytest("-p", "no:randomly")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*override the connfault_upstream fixture*parametrize connfault_proxy indirectly*"])


@pytest.mark.connfault(["close", "reset"], at="after_response", request=1)
def test_marker_list_form_parametrizes_connfault_proxy(connfault_proxy: FaultProxy, request: pytest.FixtureRequest) -> None:
    """A list of faults in the marker parametrizes a connfault_proxy test, one case per fault."""
    kind = request.node.callspec.id
    assert [h.fault.kind for h in connfault_proxy.faults] == [kind]
    with httpx.Client(base_url=connfault_proxy.url) as client:
        client.get("/a")
        firing = connfault_proxy.faults[0].wait(5)
        client.get("/b")
    assert firing.kind == kind
    assert [r.connection_id for r in connfault_proxy.requests] == [1, 2]
