"""What the server answers: the default 200, per-path responses, a handler, and handler failures."""

from __future__ import annotations

from typing import Callable

import httpx
import pytest
from rawclient import FIN, RawClient

from pytest_connfault import ConnfaultError, FaultServer, Outcome, Request, Response

ServerFactory = Callable[..., FaultServer]


@pytest.fixture(params=["asyncio", "trio"])
def server(request: pytest.FixtureRequest, connfault_server_factory: ServerFactory) -> FaultServer:
    """A fresh server on each backend."""
    return connfault_server_factory(backend=request.param)


def test_default_answer_is_a_small_200_with_content_length_kept_alive(server: FaultServer) -> None:
    """Any path gets 200 'ok' framed by Content-Length, and the connection stays open for the next request."""
    with RawClient(server) as client:
        first = client.request(target="/anything")
        second = client.request(target="/else?q=1")
        assert client.is_silent(0.01), "the server closed a keep-alive connection"
    for reply in (first, second):
        assert (reply.status, reply.body) == (200, b"ok\n")
        assert reply.header("content-length") == "3"
        assert reply.header("connection") is None
        assert reply.header("transfer-encoding") is None
    assert [r.connection_id for r in server.requests] == [1, 1]


def test_default_answer_through_httpx_reuses_the_connection(server: FaultServer) -> None:
    """A real client sees keep-alive: three requests, one connection."""
    with httpx.Client(base_url=server.url) as client:
        assert [client.get(f"/{n}").text for n in range(3)] == ["ok\n"] * 3
    assert len(server.connections) == 1


def test_per_path_status_headers_and_body(server: FaultServer) -> None:
    """respond() sets the status, extra headers and body of one path; others keep the default."""
    server.respond("/teapot", status=418, headers={"X-Kind": "teapot"}, body="short and stout\n")
    server.respond("/json", body=b'{"a": 1}', headers=[("Content-Type", "application/json")])
    with RawClient(server) as client:
        teapot = client.request(target="/teapot")
        data = client.request(target="/json")
        other = client.request(target="/other")
    assert (teapot.status, teapot.body, teapot.header("x-kind")) == (418, b"short and stout\n", "teapot")
    assert teapot.header("content-type") == "text/plain"
    assert (data.body, data.header("content-type")) == (b'{"a": 1}', "application/json")
    assert (other.status, other.body) == (200, b"ok\n")
    assert server.requests[0].outcome == Outcome("responded", status=418)


def test_per_path_response_for_one_method(server: FaultServer) -> None:
    """respond(method=...) answers that method only; a path-wide response covers the others."""
    server.respond("/r", status=201, method="post")
    server.respond("/r", status=204)
    with RawClient(server) as client:
        assert client.request("POST", "/r", body=b"x").status == 201
        assert client.request("GET", "/r").status == 204


def test_chunked_response_is_framed_in_its_pieces(server: FaultServer) -> None:
    """chunked=True sends Transfer-Encoding: chunked, one chunk per piece, and the body arrives whole."""
    server.respond("/c", body=[b"first ", b"second"], chunked=True)
    with RawClient(server) as client:
        reply = client.request(target="/c")
        assert client.is_silent(0.01), "a chunked response is kept alive too"
    assert reply.header("transfer-encoding") == "chunked"
    assert reply.header("content-length") is None
    assert reply.body == b"first second"
    assert b"6\r\nfirst \r\n6\r\nsecond\r\n0\r\n\r\n" in reply.raw


def test_close_response_says_so_and_closes(server: FaultServer) -> None:
    """close=True adds Connection: close and the server sends FIN after the response."""
    server.respond("/bye", close=True)
    with RawClient(server) as client:
        reply = client.request(target="/bye")
        assert reply.header("connection") == "close"
        assert client.read_to_end().end == FIN
    with httpx.Client(base_url=server.url) as client:
        client.get("/bye")
        client.get("/bye")
    assert [r.connection_id for r in server.requests] == [1, 2, 3], "each close answer ends its connection"


def test_http_1_0_request_gets_a_closed_connection(server: FaultServer) -> None:
    """An HTTP/1.0 request without keep-alive is answered with Connection: close, then FIN."""
    with RawClient(server) as client:
        client.send(b"GET /old HTTP/1.0\r\n\r\n")
        reply = client.read_reply()
        assert reply.status == 200
        assert reply.header("connection") == "close"
        assert client.read_to_end().end == FIN


def test_head_request_gets_headers_only(server: FaultServer) -> None:
    """HEAD gets the GET headers (with Content-Length) and no body, on a connection kept alive."""
    with RawClient(server) as client:
        reply = client.request("HEAD", "/")
        assert client.request().body == b"ok\n", "a body sent for HEAD would corrupt the next response"
    assert reply.status == 200
    assert reply.header("content-length") == "3"
    assert reply.body == b""


def test_handler_answers_paths_without_a_canned_response(server: FaultServer) -> None:
    """The handler gets the recorded Request and its Response is sent; canned paths win over it."""
    seen: list[Request] = []

    def handler(request: Request) -> Response:
        seen.append(request)
        return Response(202, f"{request.method} {request.target} {request.body!r}")

    server.set_handler(handler)
    server.respond("/canned", body="canned")
    with RawClient(server) as client:
        echoed = client.request("PUT", "/h?x=1", body=b"data")
        canned = client.request(target="/canned")
    assert (echoed.status, echoed.body) == (202, b"PUT /h?x=1 b'data'")
    assert canned.body == b"canned"
    assert [r.target for r in seen] == ["/h?x=1"]
    assert seen[0].index == 1


def test_handler_given_to_the_factory(connfault_server_factory: ServerFactory) -> None:
    """handler= on the factory (or FaultServer) works like set_handler()."""
    server = connfault_server_factory(handler=lambda request: Response(body=request.path))
    with RawClient(server) as client:
        assert client.request(target="/p?q").body == b"/p"


def test_async_handler_is_awaited(server: FaultServer) -> None:
    """A coroutine handler is awaited on the server's loop."""

    async def handler(request: Request) -> Response:
        return Response(body=b"async " + request.path.encode())

    server.set_handler(handler)
    with RawClient(server) as client:
        assert client.request(target="/a").body == b"async /a"


def test_handler_exception_becomes_a_500_and_the_server_keeps_serving(server: FaultServer) -> None:
    """A handler that raises gets a 500, its traceback recorded; the same connection then serves on."""

    def handler(request: Request) -> Response:
        if request.path == "/boom":
            raise RuntimeError("handler exploded")
        return Response(body="fine")

    server.set_handler(handler)
    with RawClient(server) as client:
        failed = client.request(target="/boom")
        after = client.request(target="/next")
    assert failed.status == 500
    assert b"RuntimeError: handler exploded" in failed.body
    assert (after.status, after.body) == (200, b"fine")
    (trace,) = server.handler_errors
    assert "RuntimeError: handler exploded" in trace
    assert "Traceback" in trace
    first, second = server.requests
    assert (first.outcome.kind, first.outcome.status) == ("handler_error", 500)
    assert "handler exploded" in first.outcome.detail
    assert second.outcome == Outcome("responded", status=200)
    assert server.errors == [], "a handler's failure is not a server failure"


def test_handler_returning_a_non_response_is_a_500_that_says_why(server: FaultServer) -> None:
    """A handler that returns something else than a Response gets a 500 naming the wrong type."""
    server.set_handler(lambda request: "not a response")  # type: ignore[arg-type, return-value]
    with RawClient(server) as client:
        reply = client.request()
    assert reply.status == 500
    assert "the handler returned str, not a pytest_connfault.Response" in server.handler_errors[0]


def test_handler_exception_shows_in_the_failure_report(pytester: pytest.Pytester) -> None:
    """A failing test's report shows the handler's traceback next to the ledger."""
    pytester.makepyfile(
        """
        import httpx
        from pytest_connfault import Response

        def test_it(connfault_server):
            def handler(request):
                raise ValueError("bad handler")
            connfault_server.set_handler(handler)
            with httpx.Client(base_url=connfault_server.url) as client:
                assert client.get("/").status_code == 200
        """
    )
    # A subprocess: an in-process run would re-import httpx and break its exception mapping
    # for the tests that follow in this process.
    result = pytester.runpytest_subprocess("-p", "no:randomly")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*connfault ledger*", "*ValueError: bad handler*"])


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"status": 99}, "status must be a number from 100 to 999"),
        ({"status": 1000}, "status must be a number from 100 to 999"),
        ({"chunked": True, "close_delimited": True}, "either chunked or close_delimited"),
    ],
)
def test_bad_response_is_refused_when_made(arguments: dict[str, object], message: str) -> None:
    """A response that cannot be sent is refused at construction."""
    with pytest.raises(ConnfaultError, match=message):
        Response(**arguments)  # type: ignore[arg-type]


def test_close_delimited_body_ends_with_the_connection(server: FaultServer) -> None:
    """close_delimited=True sends no length: the body is everything up to the server's FIN."""
    server.respond("/stream", Response(body=b"until the end", close_delimited=True))
    with RawClient(server) as client:
        reply = client.request(target="/stream")
    assert reply.header("content-length") is None
    assert reply.header("transfer-encoding") is None
    assert reply.body == b"until the end"
    assert reply.complete
    server.wait_connections_ended(1)


def test_expect_100_continue_is_answered_before_the_body(server: FaultServer) -> None:
    """A request with Expect: 100-continue gets 100 Continue at once, then its response once the body is sent."""
    with RawClient(server) as client:
        client.send(b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        interim = client.read_bytes(len(b"HTTP/1.1 100 Continue\r\n\r\n"), timeout=5)
        assert interim.data == b"HTTP/1.1 100 Continue\r\n\r\n", "the client was left waiting for 100 Continue"
        client.send(b"hello")
        assert client.read_reply().status == 200
    assert server.requests[0].body == b"hello"


def test_expect_100_continue_over_the_body_limit_gets_413_at_once(connfault_server_factory: ServerFactory) -> None:
    """When the declared body is over max_body_size, the answer to Expect: 100-continue is the final 413."""
    server = connfault_server_factory(max_body_size=10)
    with RawClient(server) as client:
        client.send(b"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\nExpect: 100-continue\r\n\r\n")
        reply = client.read_reply()
    assert reply.status == 413
    assert server.requests[0].outcome.status == 413


def test_httpx_large_upload_with_expect_header_succeeds(server: FaultServer) -> None:
    """A real client that sends Expect: 100-continue gets its upload through."""
    with httpx.Client(base_url=server.url) as client:
        response = client.post("/up", content=b"x" * 1000, headers={"Expect": "100-continue"})
    assert response.status_code == 200
    assert server.requests[0].body == b"x" * 1000
