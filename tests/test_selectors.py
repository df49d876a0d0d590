"""Which requests a fault hits: request=, connection=, request_on_connection=, path=, method=, times=."""

from __future__ import annotations

from typing import Callable

import httpx
import pytest
from rawclient import RawClient, wait_until

from pytest_connfault import FaultServer

ServerFactory = Callable[..., FaultServer]


@pytest.fixture(params=["asyncio", "trio"])
def server(request: pytest.FixtureRequest, connfault_server_factory: ServerFactory) -> FaultServer:
    """A fresh server on each backend."""
    return connfault_server_factory(backend=request.param)


def fetch(client: RawClient, target: str = "/", method: str = "GET") -> str:
    """One exchange: ``"200"`` (or the status) when answered, else how the connection ended."""
    reply = client.request(method, target, body=b"x" if method == "POST" else b"")
    if reply.complete:
        return str(reply.status)
    return str(reply.end)


def fetch_new(server: FaultServer, target: str = "/", method: str = "GET") -> str:
    """One exchange on a new connection."""
    with RawClient(server) as client:
        return fetch(client, target, method)


def test_request_selects_the_servers_nth_request(server: FaultServer) -> None:
    """request=2 hits the second request the server reads, and no other."""
    handle = server.inject("reset", at="before_response", request=2)
    assert [fetch_new(server) for _ in range(3)] == ["200", "rst", "200"]
    assert handle.wait(0).request_index == 2


def test_request_counts_across_connections_and_keep_alive(server: FaultServer) -> None:
    """request= counts the server's requests, whichever connection they came on."""
    handle = server.inject("reset", at="before_response", request=3)
    with RawClient(server) as client:
        assert [fetch(client), fetch(client)] == ["200", "200"]
        with RawClient(server) as other:
            assert fetch(other) == "rst"
        assert fetch(client) == "200"
    firing = handle.wait(0)
    assert (firing.request_index, firing.connection_id) == (3, 2)


def test_connection_selects_the_servers_nth_connection(server: FaultServer) -> None:
    """connection=2 hits only requests on the second connection accepted."""
    server.inject("reset", at="before_response", connection=2, times="always")
    first, second, third = RawClient(server), RawClient(server), RawClient(server)
    with first, second, third:
        assert fetch(first) == "200"
        assert fetch(third) == "200"
        assert fetch(second) == "rst"
        assert fetch(first) == "200"


def test_request_on_connection_is_a_per_connection_limit(server: FaultServer) -> None:
    """request_on_connection=3 (always) hits the third request of every connection: a keep-alive limit."""
    handle = server.inject("close", at="before_response", request_on_connection=3, times="always")
    for _ in range(2):
        with RawClient(server) as client:
            assert [fetch(client) for _ in range(3)] == ["200", "200", "fin"]
    # The client can see the last drop a moment before the handle records it: wait, don't peek.
    wait_until(lambda: handle.fired == 2, what="two firings")
    assert [(f.connection_id, f.request_index) for f in handle.firings] == [(1, 3), (2, 6)]


@pytest.mark.parametrize(
    ("pattern", "hit", "missed"),
    [
        ("/a", ["/a", "/a?x=1"], ["/b", "/a/", "/ab", "/A"]),
        ("/api/*", ["/api/x", "/api/x/y?q"], ["/api", "/apix", "/x/api/y"]),
        ("/item?", ["/item1"], ["/item", "/item12"]),
        ("/v[12]/*", ["/v1/a", "/v2/b"], ["/v3/a"]),
    ],
)
def test_path_selects_exact_paths_and_globs_ignoring_the_query(
    server: FaultServer, pattern: str, hit: list[str], missed: list[str]
) -> None:
    """path= selects the path without its query, exactly, or as a glob when it has * ? or [."""
    server.inject("reset", at="before_response", path=pattern, times="always")
    assert {t: fetch_new(server, t) for t in hit} == dict.fromkeys(hit, "rst")
    assert {t: fetch_new(server, t) for t in missed} == dict.fromkeys(missed, "200")


def test_method_selects_requests_by_method(server: FaultServer) -> None:
    """method='post' (any case) hits POST requests only."""
    server.inject("reset", at="before_response", method="post", times="always")
    assert fetch_new(server, method="GET") == "200"
    assert fetch_new(server, method="POST") == "rst"
    assert fetch_new(server, method="PUT") == "200"


def test_selectors_must_all_hold(server: FaultServer) -> None:
    """path= and method= together hit only requests that have both."""
    server.inject("reset", at="before_response", path="/x", method="POST", times="always")
    assert fetch_new(server, "/x", "GET") == "200"
    assert fetch_new(server, "/y", "POST") == "200"
    assert fetch_new(server, "/x", "POST") == "rst"


def test_times_fires_exactly_n_times_then_never(server: FaultServer) -> None:
    """times=2 resets the first two matching requests, then the fault is exhausted."""
    handle = server.inject("reset", at="before_response", times=2)
    assert [fetch_new(server) for _ in range(4)] == ["rst", "rst", "200", "200"]
    assert handle.fired == 2, "the later answered requests prove both firings were recorded"
    assert handle.is_exhausted


def test_times_always_never_runs_out(server: FaultServer) -> None:
    """times='always' keeps firing on every matching request."""
    handle = server.inject("reset", at="before_response", times="always")
    assert [fetch_new(server) for _ in range(6)] == ["rst"] * 6
    wait_until(lambda: handle.fired == 6, what="six firings")
    assert not handle.is_exhausted


def test_first_armed_fault_wins_and_the_next_takes_over(server: FaultServer) -> None:
    """Two faults for the same moment fire in arming order; each only as often as armed."""
    first = server.inject("reset", at="before_response")
    second = server.inject("close", at="before_response")
    assert [fetch_new(server) for _ in range(3)] == ["rst", "fin", "200"]
    assert [h.fired for h in server.faults] == [1, 1]
    assert server.faults == [first, second]


def test_a_fault_that_matches_nothing_never_fires(server: FaultServer) -> None:
    """A path that is never requested leaves the fault armed and unfired; waiting on it times out."""
    handle = server.inject("reset", at="before_response", path="/never")
    assert [fetch_new(server, "/other") for _ in range(2)] == ["200", "200"]
    assert handle.fired == 0
    assert not handle.is_exhausted


@pytest.mark.connfault("reset", at="before_response", path="/boom")
def test_marker_arms_a_selected_fault(connfault_server: FaultServer) -> None:
    """The marker's selectors reach the server: only /boom is reset, seen through httpx."""
    with httpx.Client(base_url=connfault_server.url) as client:
        assert client.get("/fine").status_code == 200
        with pytest.raises(httpx.ReadError):
            client.get("/boom")
        assert client.get("/fine").status_code == 200
    assert connfault_server.faults[0].fired == 1


def test_selectors_on_a_directly_made_server() -> None:
    """`with FaultServer() as s:` applies selectors the same way."""
    with FaultServer() as direct:
        direct.inject("close", at="before_response", request=1)
        assert [fetch_new(direct) for _ in range(2)] == ["fin", "200"]


def test_before_request_selects_by_the_request_about_to_be_read(server: FaultServer) -> None:
    """At before_request, request= and request_on_connection= count the request whose first bytes arrived."""
    by_index = server.inject("close", at="before_request", request=2)
    with RawClient(server) as client:
        assert [fetch(client), fetch(client)] == ["200", "fin"]
    assert by_index.wait(5).connection_id == 1
    per_connection = server.inject("reset", at="before_request", request_on_connection=2, times="always")
    with RawClient(server) as client:
        assert [fetch(client), fetch(client)] == ["200", "rst"]
    wait_until(lambda: per_connection.fired == 1)
    assert [r.target for r in server.requests] == ["/", "/"], "requests cut before reading are not recorded"


def test_on_connect_selects_by_connection(server: FaultServer) -> None:
    """At on_connect, connection= picks which accepted connection is dropped before any byte is read."""
    handle = server.inject("reset", at="on_connect", connection=2)
    with RawClient(server) as first:
        assert fetch(first) == "200"
        with RawClient(server) as second:
            handle.wait(5)
            assert second.read_to_end().end == "rst"
        assert fetch(first) == "200"


def test_fault_armed_between_two_requests_applies_to_the_second(server: FaultServer) -> None:
    """A before_request fault armed after request 1 and before request 2 always catches request 2.

    The connection is already waiting for its next request when the fault is armed; arming
    wakes it, so this holds every time rather than only when the server happened to look late.
    """
    for number in range(1, 31):
        with RawClient(server) as client:
            assert fetch(client) == "200"
            server.inject("close", at="before_request", connection=number)
            assert fetch(client) == "fin", f"try {number}: the fault armed between the requests did not fire"


def test_idle_fault_armed_during_the_pause_fires(server: FaultServer) -> None:
    """An idle fault armed while the connection is already idle still fires once its time has passed."""
    for number in range(1, 11):
        with RawClient(server) as client:
            assert fetch(client) == "200"
            handle = server.inject("reset", at="idle", seconds=0.01, connection=number)
            assert client.read_to_end(timeout=2).end == "rst", f"try {number}: the idle fault never fired"
            handle.wait(5)
