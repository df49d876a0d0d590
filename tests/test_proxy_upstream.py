"""FaultProxy, upstream side: drops of the upstream connection, what the client sees, the upstream ledger."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from rawclient import FIN, RST, RawClient
from upstreams import Upstream, pattern

from pytest_connfault import FaultProxy, FaultServer, FaultSpecError


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    with Upstream() as server:
        yield server


@pytest.fixture
def make_proxy(upstream: Upstream, connfault_proxy_factory: Any) -> Any:
    def make(**options: Any) -> FaultProxy:
        return connfault_proxy_factory(upstream.url, **options)  # type: ignore[no-any-return]

    return make


#: at -> the body bytes the client gets before the drop (None: not even the head)
CUTS = {"before_response": None, "after_headers": 0, "mid_body": 300}


@pytest.mark.parametrize("kind", ["reset", "close"])
@pytest.mark.parametrize("at", list(CUTS))
def test_upstream_drop_is_mirrored_to_the_client(make_proxy: Any, kind: str, at: str) -> None:
    """mirror: the client gets what had arrived from the upstream, then the same RST or FIN."""
    proxy = make_proxy()
    options = {"body_bytes": 300} if at == "mid_body" else {}
    handle = proxy.inject_upstream(kind, at=at, request=1, **options)
    with RawClient(proxy) as raw:
        reply = raw.request("GET", "/bytes?size=1000")
    cut = CUTS[at]
    assert reply.end == (RST if kind == "reset" else FIN)
    assert not reply.complete
    if cut is None:
        assert reply.raw == b""
    else:
        assert (reply.status, reply.header("content-length"), reply.body) == (200, "1000", pattern(cut))
    firing = handle.wait(5)
    assert (firing.kind, firing.at, firing.connection_id, firing.request_index) == (kind, at, 1, 1)
    [link] = proxy.upstream_connections
    assert link.ended_by == "fault"
    [conn] = proxy.connections
    assert str(conn.ended_by) == "server_fault"
    assert [(f.kind, f.at) for f in conn.faults] == [(kind, at)]
    assert "mirrors upstream" in conn.faults[0].detail
    [request] = proxy.requests
    assert request.outcome.kind == "fault"
    assert (request.upstream_status, request.upstream_connection) == (None if cut is None else 200, 1)


@pytest.mark.parametrize("at", list(CUTS))
def test_upstream_drop_is_a_502_in_gateway_mode(make_proxy: Any, at: str) -> None:
    """upstream_errors='502': the client gets a 502 and keeps its connection; the next request succeeds."""
    proxy = make_proxy(upstream_errors="502")
    proxy.inject_upstream("reset", at=at, request=1)
    with RawClient(proxy) as raw:
        first = raw.request("GET", "/bytes?size=1000")
        second = raw.request("GET", "/bytes?size=1000")
    assert (first.status, first.complete) == (502, True)
    assert b"upstream reset@" in first.body
    assert (second.status, second.body) == (200, pattern(1000))
    assert [r.connection_id for r in proxy.requests] == [1, 1]
    assert [r.upstream_connection for r in proxy.requests] == [1, 2]
    assert [c.ended_by for c in proxy.upstream_connections] == ["fault", None]


@pytest.mark.parametrize("kind", ["reset", "close"])
def test_upstream_drop_after_response_is_invisible_to_the_client(make_proxy: Any, kind: str) -> None:
    """The idle upstream connection drops: the next request opens a new one, the client sees nothing."""
    proxy = make_proxy()
    handle = proxy.inject_upstream(kind, request=1)
    with httpx.Client(base_url=proxy.url) as client:
        assert client.get("/a").status_code == 200
        handle.wait(5)
        assert client.get("/b").status_code == 200
    assert [r.connection_id for r in proxy.requests] == [1, 1]
    assert [r.upstream_connection for r in proxy.requests] == [1, 2]
    assert proxy.upstream_connections[0].faults[0].kind == kind


@pytest.mark.parametrize("how", ["close", "reset"])
def test_real_upstream_cut_is_mirrored(make_proxy: Any, how: str) -> None:
    """A real upstream that sends 100 of 1000 body bytes then closes (or resets): the client sees the same."""
    proxy = make_proxy()
    with RawClient(proxy) as raw:
        reply = raw.request("GET", f"/cut?size=1000&send=100&how={how}")
    assert not reply.complete
    if how == "close":
        assert (reply.end, reply.body) == (FIN, pattern(100))
    else:
        # An RST may overtake bytes still queued at the proxy: the client gets at most those, then RST.
        assert reply.end == RST
        assert pattern(100).startswith(reply.body)
    assert proxy.upstream_connections[0].ended_by == f"upstream_{how}"


def test_upstream_closing_an_idle_connection_is_retried_unseen(make_proxy: Any) -> None:
    """The upstream closes its keep-alive connection after answering: the next request goes on a new one."""
    proxy = make_proxy()
    with httpx.Client(base_url=proxy.url) as client:
        assert client.get("/quiet-close").text == "bye"
        assert client.get("/b").text == "upstream ok\n"
    assert [r.upstream_connection for r in proxy.requests] == [1, 2]
    assert proxy.upstream_connections[0].ended_by == "upstream_close"


@pytest.mark.parametrize("kind", ["reset", "close"])
def test_upstream_idle_commands(make_proxy: Any, upstream: Upstream, kind: str) -> None:
    """reset/close_upstream_idle() drop the pooled upstream connections; the upstream sees a new client port."""
    proxy = make_proxy()
    with httpx.Client(base_url=proxy.url) as client:
        first = client.get("/echo")
        dropped = getattr(proxy, f"{kind}_upstream_idle")()
        assert [c.id for c in dropped] == [1]
        assert dropped[0].ended_by == "command"
        second = client.get("/echo")
    assert first.headers["x-peer-port"] != second.headers["x-peer-port"]
    assert [r.connection_id for r in proxy.requests] == [1, 1]
    links = proxy.upstream_connections
    assert [c.local_port for c in links] == [int(first.headers["x-peer-port"]), int(second.headers["x-peer-port"])]
    assert links[0].faults[0].commanded


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_upstream_idle_command_async(make_proxy: Any) -> None:
    """The awaitable form does not block the test's loop."""
    proxy = make_proxy()
    async with httpx.AsyncClient(base_url=proxy.url) as client:
        await client.get("/a")
        assert len(await proxy.reset_upstream_idle_async()) == 1
        assert (await client.get("/b")).status_code == 200
    assert [r.upstream_connection for r in proxy.requests] == [1, 2]


def test_upstream_timeout_is_a_504(connfault_server: FaultServer, connfault_proxy_factory: Any) -> None:
    """An upstream that stalls past upstream_timeout gives the client a 504."""
    connfault_server.inject("stall", request=1)
    proxy = connfault_proxy_factory(connfault_server.url, upstream_timeout=0.5)
    with httpx.Client(base_url=proxy.url) as client:
        response = client.get("/slow")
        connfault_server.release()
        assert response.status_code == 504
        assert client.get("/fast").text == "ok\n"
    assert [c.ended_by for c in proxy.upstream_connections] == ["error", None]


def test_fault_server_upstream_reset_mid_body(connfault_server: FaultServer, connfault_proxy_factory: Any) -> None:
    """A FaultServer upstream resets mid-body: through the proxy the client sees a cut body and an RST."""
    connfault_server.respond("/big", body=pattern(2000))
    connfault_server.inject("reset", at="mid_body", body_bytes=700)
    proxy = connfault_proxy_factory(connfault_server.url)
    with RawClient(proxy) as raw:
        reply = raw.request("GET", "/big")
    assert reply.end == RST
    assert pattern(700).startswith(reply.body)
    assert proxy.upstream_connections[0].ended_by == "upstream_reset"


@pytest.mark.parametrize(
    ("fault", "when", "match"),
    [
        ("stall", {}, "upstream fault is one of"),
        ("reset", {"at": "on_connect"}, "fires at one of"),
        ("reset", {"at": "idle"}, "fires at one of"),
        ("explode", {}, "unknown fault"),
    ],
)
def test_inject_upstream_refuses_what_it_cannot_do(make_proxy: Any, fault: str, when: dict[str, Any], match: str) -> None:
    """inject_upstream validates kind and moment, naming the valid ones."""
    proxy = make_proxy()
    with pytest.raises(FaultSpecError, match=match):
        proxy.inject_upstream(fault, **when)


@pytest.mark.parametrize(
    ("upstream", "options", "match"),
    [
        ("ftp://127.0.0.1:1", {}, "upstream must be"),
        ("http://127.0.0.1:1", {"upstream_errors": "ignore"}, "upstream_errors must be"),
        ("http://127.0.0.1:1", {"handler": print}, "takes no handler"),
        ("http://127.0.0.1:1", {"ledger_body_limit": 10}, "takes no ledger_body_limit"),
    ],
)
def test_proxy_options_are_validated(upstream: str, options: dict[str, Any], match: str) -> None:
    """Bad proxy arguments fail at construction with a message that says what is wrong."""
    from pytest_connfault import ConnfaultError

    with pytest.raises(ConnfaultError, match=match):
        FaultProxy(upstream, **options)
