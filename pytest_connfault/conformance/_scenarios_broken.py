"""The built-in scenarios, part two: broken responses, stalls, several connections, and TLS.

See ``_scenarios.py`` for what a scenario is. Here the server cuts, stalls or garbles a response,
and the client must report it clearly, keep no dead connection, and go on working.
"""

from __future__ import annotations

from .._faults import Fault
from .._responses import Response
from ._cell import STALL_TIMEOUT, Cell, HarnessError
from ._model import Attempt, Verdict, exception_text, failed, informational, non_strict, ok
from ._scenarios import first_request, onto_half_closed, scenario

#: Body of the cut responses.
BODY = b"0123456789abcdef" * 128
#: Body of the large streamed response (reset after a quarter of it).
LARGE = b"x" * (1024 * 1024)


async def judge_cut(cell: Cell, attempt: Attempt, path: str, expected: bytes, what: str) -> Verdict:
    """A response cut short: a clear error (or a retry that got it whole), then the pool goes on."""
    verdict = cell.unclear(attempt)
    if verdict is not None:
        return verdict
    reads = len(cell.arrivals(path))
    if attempt.reply is not None:
        got = len(attempt.reply.body)
        if attempt.reply.body != expected:
            return failed(
                f"returned {got} of {len(expected)} body bytes as a complete response after {what}; "
                "it must report the message as incomplete (RFC 9112 §8)"
            )
        if reads < 2:  # pragma: no cover - the fault fires on the first read
            return informational("the fault did not affect the response")
        done = f"retried the GET after {what} and got the whole body (the server read it {reads} times)"
    else:
        done = f"reported {exception_text(attempt.error)}"
    after = await cell.get("/after")
    if not after.is_ok:
        return cell.unclear(after) or failed(
            f"{done}, but the next GET raised {exception_text(after.error)}: the broken connection was kept"
        )
    return ok(done)


@scenario(
    "truncated-length",
    "The server sends half of a Content-Length body and closes; an error is due, and the connection dropped.",
    "RFC 9112 §6.3, §8 (incomplete message)",
)
async def truncated_length(cell: Cell) -> Verdict:
    cell.server.respond("/body", body=BODY)
    cell.server.inject(Fault("truncate", path="/body", body_bytes=len(BODY) // 2))
    attempt = await cell.get("/body")
    return await judge_cut(cell, attempt, "/body", BODY, "a cut Content-Length body")


@scenario(
    "truncated-chunked",
    "The server sends half of a chunked body and closes; an error is due, and the connection dropped.",
    "RFC 9112 §7.1, §8 (no last chunk: incomplete)",
)
async def truncated_chunked(cell: Cell) -> Verdict:
    pieces = [BODY[i : i + 256] for i in range(0, len(BODY), 256)]
    cell.server.respond("/body", Response(200, pieces, chunked=True))
    cell.server.inject(Fault("truncate", path="/body", body_bytes=len(BODY) // 2))
    attempt = await cell.get("/body")
    return await judge_cut(cell, attempt, "/body", BODY, "a cut chunked body")


@scenario(
    "stall-read-timeout",
    "The server reads a GET on a reused connection and never answers; the read timeout fires, the conn is dropped.",
    "encode/httpcore#550",
)
async def stall_read_timeout(cell: Cell) -> Verdict:
    handle = cell.server.inject(Fault("stall", at="before_response", path="/stalled"))
    verdict = await first_request(cell)
    if verdict is not None:
        return verdict
    attempt = await cell.get("/stalled", timeout=STALL_TIMEOUT)
    verdict = cell.unclear(attempt)
    if verdict is not None:
        return verdict
    if not handle.fired:  # pragma: no cover - the stall fires on the first read
        return informational("the stall never fired")
    stalled = handle.firings[0].connection_id
    if attempt.is_ok:
        done = f"retried after its read timeout on a new connection (read {len(cell.arrivals('/stalled'))} times)"
    else:
        done = f"timed out with {exception_text(attempt.error)}"
    after = await cell.get("/after")
    if not after.is_ok:
        used = [r.connection_id for r in cell.arrivals("/after")]
        tail = " (it went to the stalled connection)" if stalled in used or not used else ""
        return cell.unclear(after) or failed(
            f"{done}, but the next GET raised {exception_text(after.error)}{tail}: the timed-out connection "
            "went back to the pool"
        )
    return ok(done)


@scenario(
    "reset-mid-body",
    "The server resets the connection a quarter into a 1 MiB body; an error is due, and the connection dropped.",
    "RFC 9112 §8; urllib3/urllib3#2751",
)
async def reset_mid_body(cell: Cell) -> Verdict:
    cell.server.respond("/large", body=LARGE)
    cell.server.inject(Fault("reset", at="mid_body", path="/large", body_bytes=len(LARGE) // 4))
    attempt = await cell.get("/large")
    return await judge_cut(cell, attempt, "/large", LARGE, "a reset mid-body")


@scenario(
    "burst-after-partial-drop",
    "Four pooled connections; the server drops three (FIN, RST, half-close); four concurrent GETs must all succeed.",
    "encode/httpx#327 (pool bookkeeping); RFC 9112 §9.6",
)
async def burst_after_partial_drop(cell: Cell) -> Verdict:
    server = cell.server
    drops = [
        server.inject(Fault("close", at="after_response", path="/fill1")),
        server.inject(Fault("reset", at="after_response", path="/fill2")),
        # The half-closed one keeps reading: a request written onto it is in the ledger.
        server.inject(Fault("half_close", at="after_response", path="/fill3")),
    ]
    first = await all_at_once(cell, "/fill")
    broken = [a for a in first if not a.is_ok]
    if broken:
        return cell.unclear(broken[0]) or failed(f"the first burst failed: {exception_text(broken[0].error)}")
    for handle in drops:
        await cell.wait_fired(handle, "a drop after the first burst")
    second = await all_at_once(cell, "/next")
    verdict = onto_half_closed(cell)
    if verdict is not None:
        return verdict
    broken = [a for a in second if not a.is_ok]
    if broken:
        return cell.unclear(broken[0]) or failed(
            f"{len(broken)} of 4 concurrent GETs failed after 3 of 4 pooled connections were dropped: "
            f"{exception_text(broken[0].error)}"
        )
    return ok("all 4 concurrent GETs succeeded after 3 of 4 pooled connections were dropped; none was reused")


async def all_at_once(cell: Cell, prefix: str, count: int = 4) -> list[Attempt]:
    """Concurrent GETs, each held by the server until all are in: one connection each.

    So every pooled connection is checked out, and the client cannot serve them one by one. A
    request written onto a half-closed connection never reaches its stall; then the others are
    released when that shows in the ledger (the scenario fails on it).
    """
    server = cell.server
    paths = [f"{prefix}{n}" for n in range(1, count + 1)]
    stalls = [server.inject(Fault("stall", at="before_response", path=path)) for path in paths]

    async def hold_until_all_in() -> None:
        try:
            for handle in stalls:
                # Bounded tighter than the harness: a healthy client is in within milliseconds,
                # and a broken one should not cost the matrix seconds.
                await cell.wait_fired(handle, f"{count} concurrent requests ({prefix}*)", timeout=2.0)
        except HarnessError:
            if onto_half_closed(cell) is None:
                raise
        await server.release_async()

    return await cell.burst([("GET", path) for path in paths], hold_until_all_in)


@scenario(
    "queued-on-closing",
    "A pool of one connection, two concurrent GETs, the first answer says Connection: close; the 2nd must not hang.",
    "encode/httpcore#1110",
)
async def queued_on_closing(cell: Cell) -> Verdict:
    server = cell.server
    server.set_handler(lambda request: Response(close=request.index == 1))
    # The first answer waits a little, so that the second request queues behind it in the pool.
    server.inject(Fault("delay", at="before_response", request=1, seconds=0.05))
    attempts = await cell.burst([("GET", "/a"), ("GET", "/b")])
    opened = len(server.connections)
    broken = [a for a in attempts if not a.is_ok]
    if not broken:
        return ok(f"both GETs succeeded with a pool of one ({opened} connections, one after the other)")
    verdict = cell.unclear(broken[0])
    if verdict is not None:
        return verdict
    if len(cell.arrivals(broken[0].path)) == 0:
        return failed(
            f"the queued GET {broken[0].path} never reached the server and ended with "
            f"{exception_text(broken[0].error)} after {broken[0].duration:.1f} s: it hung on the closed connection"
        )
    return failed(f"GET {broken[0].path} failed: {exception_text(broken[0].error)}")


async def bad_reply_on_reuse(cell: Cell, kind: str, what: str) -> Verdict:
    handle = cell.server.inject(Fault(kind, at="before_response", connection=1, request_on_connection=2))
    verdict = await first_request(cell)
    if verdict is not None:
        return verdict
    attempt = await cell.get("/second")
    verdict = cell.unclear(attempt)
    if verdict is not None:
        return verdict
    if not await cell.reused(handle):
        return informational(f"the client did not reuse the keep-alive connection; no {what} was sent")
    if attempt.reply is not None:
        if len(cell.arrivals("/second")) < 2:
            return failed(f"took {what} for a {attempt.reply.status} response")
        done = f"retried the GET on a new connection after {what}"
    else:
        done = f"reported {exception_text(attempt.error)}"
    after = await cell.get("/after")
    if not after.is_ok:
        return cell.unclear(after) or failed(f"{done}, but the next GET raised {exception_text(after.error)}")
    return ok(done)


@scenario(
    "garbage-on-reuse",
    "The server answers a reused connection with bytes that are not HTTP; a clear protocol error is due.",
    "encode/httpx#327 (KeyError from h11), encode/httpx#96; RFC 9112 §2.2",
)
async def garbage_on_reuse(cell: Cell) -> Verdict:
    return await bad_reply_on_reuse(cell, "garbage", "garbage")


@scenario(
    "empty-on-reuse",
    "The server reads a GET on a reused connection and closes without a byte; a clear error or a retry.",
    "encode/httpx#96, encode/httpx#1478, python/cpython#85517; RFC 9112 §9.3.1",
)
async def empty_on_reuse(cell: Cell) -> Verdict:
    return await bad_reply_on_reuse(cell, "empty", "an empty reply")


# -- 15: TLS -------------------------------------------------------------------------------


async def tls_cut(cell: Cell, framed: bool) -> Verdict:
    body = BODY
    if framed:
        cell.server.respond("/cut", Response(200, body))
    else:
        cell.server.respond("/cut", Response(200, body, close_delimited=True))
    # Half the body, then a TCP FIN with no close_notify alert: a truncation the client can only
    # tell from a clean end of a close-delimited body by the missing alert (RFC 9112 §9.8).
    cell.server.inject(Fault("truncate", path="/cut", body_bytes=len(body) // 2, close_notify=False))
    verdict = await first_request(cell)  # proves TLS itself works, so an error below is the cut's
    if verdict is not None:
        return verdict
    attempt = await cell.get("/cut")
    verdict = cell.unclear(attempt)
    if verdict is not None:
        return verdict
    reads = len(cell.arrivals("/cut"))
    if attempt.reply is None:
        return ok(f"reported {exception_text(attempt.error)}")
    if attempt.reply.body == body:
        return ok(f"retried and got the whole body (the server read it {reads} times)")
    got = len(attempt.reply.body)
    if framed:
        return failed(
            f"returned {got} of {len(body)} Content-Length bytes as complete after a close without "
            "close_notify; it must report the message as incomplete"
        )
    return non_strict(
        f"returned the {got} bytes before a close without close_notify as a whole body; RFC 9112 §9.8: "
        "without Content-Length or chunked framing it is complete only after a valid closure alert"
    )


@scenario(
    "tls-close-delimited-cut",
    "Over TLS, a close-delimited body cut by a TCP close without close_notify; it should not pass as complete.",
    "RFC 9112 §9.8",
    needs="tls",
)
async def tls_close_delimited_cut(cell: Cell) -> Verdict:
    return await tls_cut(cell, framed=False)


@scenario(
    "tls-framed-cut",
    "Over TLS, a Content-Length body cut by a TCP close without close_notify; the client must report an error.",
    "RFC 9112 §9.8, §8",
    needs="tls",
)
async def tls_framed_cut(cell: Cell) -> Verdict:
    return await tls_cut(cell, framed=True)
