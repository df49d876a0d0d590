"""The built-in scenarios, part one: a kept-alive connection is dropped, then reused.

Each scenario is a coroutine ``run(cell) -> Verdict`` with a stable ID (the matrix's rows, the
reports' keys, what ``--connfault-scenario`` matches), a one-sentence description and its source:
the RFC 9110/9112 clause or the public bug it reproduces. It judges the client's outcome from what
the client returned and what the server's ledger proves; the cell then checks the pool (no
connection left active, no idle connection the server has closed).
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Callable

from .._errors import ConnectionNotEnded
from .._faults import Fault
from ._cell import Cell
from ._model import OK, Attempt, Verdict, exception_text, failed, informational, non_strict, ok

#: How long a client that has moved on to a new connection may take to close the socket of one the
#: server half-closed (a sync client closes it in the request that found it dead; an async one within
#: a few turns of its loop).
CLOSE_GRACE = 1.0


@dataclass(frozen=True)
class Scenario:
    """One row of the matrix.

    Attributes:
        id: stable, lowercase, hyphenated; part of every cell's test id.
        title: what happens and what is expected, in one sentence.
        source: the RFC 9110/9112 clause or the public bug report it comes from.
        run: ``async run(cell) -> Verdict``.
        needs: ``"tls"`` when the scenario needs the TLS server, else empty.
    """

    id: str
    title: str
    source: str
    run: Callable[[Cell], Awaitable[Verdict]]
    needs: str = ""


SCENARIOS: dict[str, Scenario] = {}


def scenario(
    id: str, title: str, source: str, needs: str = ""
) -> Callable[[Callable[[Cell], Awaitable[Verdict]]], Callable[[Cell], Awaitable[Verdict]]]:
    """Register the decorated coroutine as a scenario."""

    def register(run: Callable[[Cell], Awaitable[Verdict]]) -> Callable[[Cell], Awaitable[Verdict]]:
        if id in SCENARIOS:  # pragma: no cover - a programming error in this package
            raise ValueError(f"duplicate scenario id {id!r}")
        SCENARIOS[id] = Scenario(id, title, source, run, needs)
        return run

    return register


# -- shared steps ----------------------------------------------------------------------------


async def first_request(cell: Cell, path: str = "/first") -> Verdict | None:
    """The plain request that opens the keep-alive connection; FAILED if even that fails."""
    attempt = await cell.get(path)
    if attempt.is_ok:
        await cell.settle()  # aiohttp hands the connection back to its pool in a callback
        return None
    return failed(f"a plain GET {path} failed before any fault: {exception_text(attempt.error)}")


def onto_half_closed(cell: Cell) -> Verdict | None:
    """FAILED when the client wrote a request onto a connection after the server's FIN."""
    for request in cell.server.requests:
        if request.outcome.kind == "unanswered":
            return failed(
                f"wrote {request.method} {request.path} onto connection {request.connection_id} after the "
                "server had half-closed it (the ledger has it); it should have opened a new connection"
            )
    return None


def judge_reconnect(cell: Cell, attempt: Attempt, dropped: int, what: str) -> Verdict:
    """The request after a drop of idle connection ``dropped``: it must succeed on a new one."""
    verdict = cell.unclear(attempt) or onto_half_closed(cell)
    if verdict is not None:
        return verdict
    if not attempt.is_ok:
        reopened = any(c.id > dropped for c in cell.server.connections)
        tail = "" if reopened else "; it never opened a new connection"
        return failed(
            f"after {what}, {attempt.method} {attempt.path} raised {exception_text(attempt.error)}{tail}; "
            "it should have discarded the dead connection and reconnected"
        )
    arrived = cell.arrivals(attempt.path)
    where = arrived[-1].connection_id if arrived else None
    return ok(f"after {what}, {attempt.path} went out on new connection {where}")


async def drop_idle_then_get(cell: Cell, kind: str, what: str) -> Verdict:
    verdict = await first_request(cell)
    if verdict is not None:
        return verdict
    dropped = await getattr(cell.server, f"{kind}_idle_async")()
    await cell.settle()
    if len(dropped) != 1:
        return informational(
            f"the client kept {len(dropped)} idle connections after one request; nothing to drop"
        )
    attempt = await cell.get("/second")
    return judge_reconnect(cell, attempt, dropped[0].id, what)


# -- 1-3: the documented bug and its variants -----------------------------------------------


@scenario(
    "idle-fin-reuse",
    "The server closes an idle keep-alive connection (FIN); the next GET must succeed on a new connection.",
    "encode/httpx#327; RFC 9112 §9.6",
)
async def idle_fin_reuse(cell: Cell) -> Verdict:
    return await drop_idle_then_get(cell, "close", "a FIN on the idle connection")


@scenario(
    "idle-rst-reuse",
    "The server resets an idle keep-alive connection (RST); the next GET must succeed on a new connection.",
    "encode/httpx#327, urllib3/urllib3#728; RFC 9112 §9.6",
)
async def idle_rst_reuse(cell: Cell) -> Verdict:
    return await drop_idle_then_get(cell, "reset", "an RST on the idle connection")


@scenario(
    "idle-half-close-reuse",
    "The server half-closes an idle connection and keeps reading; the next GET must not be written onto it,"
    " and the client must close it.",
    "RFC 9112 §9.6 (a FIN means the server sends no more)",
)
async def idle_half_close_reuse(cell: Cell) -> Verdict:
    verdict = await drop_idle_then_get(cell, "half_close", "a half-close of the idle connection")
    if verdict.verdict != OK:
        return verdict
    return await kept_half_closed(cell) or verdict


async def kept_half_closed(cell: Cell) -> Verdict | None:
    """FAILED when the client moved on but never closed a connection the server half-closed.

    The server still reads such a connection, so the ledger shows when the client closes its end;
    one left open is a socket the client holds in CLOSE_WAIT for nothing: a descriptor leak.
    """
    half_closed = [c.id for c in cell.server.connections if any(f.kind == "half_close" for f in c.faults)]
    if not half_closed:  # pragma: no cover - the scenario half-closes one before it gets here
        return None
    try:
        await cell.server.wait_connections_ended_async(*half_closed, timeout=CLOSE_GRACE)
    except ConnectionNotEnded:
        return failed(
            f"reconnected, but never closed connection {', '.join(map(str, half_closed))} after the server "
            f"half-closed it (still open {CLOSE_GRACE:g} s later, per the ledger): its socket is left in "
            "CLOSE_WAIT, a descriptor leak"
        )
    return None


# -- 4: the keep-alive race -------------------------------------------------------------------


async def race(cell: Cell, method: str) -> Verdict:
    # The FIN goes out when the next request's first bytes arrive on connection 1: the client has
    # already sent it, as in a real keep-alive timeout race, and the server never reads it.
    handle = cell.server.inject(Fault("close", at="before_request", connection=1, request_on_connection=2))
    verdict = await first_request(cell)
    if verdict is not None:
        return verdict
    attempt = await cell.request(method, "/second", b"payload" if method == "POST" else None)
    verdict = cell.unclear(attempt)
    if verdict is not None:
        return verdict
    arrived = cell.arrivals("/second")
    if not await cell.reused(handle):
        return informational("the client did not reuse the keep-alive connection, so the race never happened")
    if len(arrived) > 1:
        return failed(f"the server read {method} /second {len(arrived)} times: a replay")
    if attempt.is_ok:
        return ok(
            f"retried on new connection {arrived[0].connection_id if arrived else '?'}; the ledger proves "
            "the server closed the old one without reading the request"
        )
    error = exception_text(attempt.error)
    if method == "POST":
        return informational(
            f"surfaced {error}; RFC 9112 §9.3.1 lets a client retry a POST only when it can tell it was not "
            "processed, which it cannot"
        )
    return non_strict(
        f"surfaced {error}; the server never read the GET (ledger), so one retry on a new connection was "
        "safe and allowed (RFC 9112 §9.3.1)"
    )


@scenario(
    "race-get",
    "The server closes a keep-alive connection as the client's next GET arrives, unread; a retry is safe.",
    "encode/httpx#2983, urllib3/urllib3#3184, python/cpython#85517; RFC 9112 §9.3.1",
)
async def race_get(cell: Cell) -> Verdict:
    return await race(cell, "GET")


@scenario(
    "race-post",
    "The same keep-alive race with a POST: the server never read it, so a retry does no harm; an error is allowed.",
    "encode/httpx#2983, urllib3/urllib3#3184; RFC 9112 §9.3.1, RFC 9110 §9.2.2",
)
async def race_post(cell: Cell) -> Verdict:
    return await race(cell, "POST")


# -- 5: reset after the request was read ---------------------------------------------------


async def read_then_reset(cell: Cell, method: str) -> Verdict:
    handle = cell.server.inject(
        Fault("reset", at="before_response", connection=1, request_on_connection=2, method=method)
    )
    verdict = await first_request(cell)
    if verdict is not None:
        return verdict
    attempt = await cell.request(method, "/second", b"payload" if method == "POST" else None)
    verdict = cell.unclear(attempt)
    if verdict is not None:
        return verdict
    if not await cell.reused(handle):
        return informational("the client did not reuse the keep-alive connection; the reset never happened")
    reads = len(cell.arrivals("/second", method))
    if method == "POST" and reads > 1:
        how = "and then failed anyway" if not attempt.is_ok else "silently"
        return failed(
            f"replayed the POST {how}: the server read it {reads} times (ledger); a POST the server may "
            "have processed must not be resent (RFC 9110 §9.2.2), the reset should surface as an error"
        )
    if attempt.is_ok:
        return ok(
            f"retried the idempotent GET on a new connection (read {reads} times; RFC 9112 §9.3.1 allows it)"
        )
    return ok(f"surfaced {exception_text(attempt.error)}; not resent (the server read it once)")


@scenario(
    "read-reset-get",
    "The server reads a GET on a reused connection and resets before answering; a retry or an error is fine.",
    "urllib3/urllib3#1911; RFC 9112 §9.3.1",
)
async def read_reset_get(cell: Cell) -> Verdict:
    return await read_then_reset(cell, "GET")


@scenario(
    "read-reset-post",
    "The server reads a POST on a reused connection and resets before answering; replaying it is a failure.",
    "urllib3/urllib3#1911, jawah/urllib3.future#280; RFC 9110 §9.2.2",
)
async def read_reset_post(cell: Cell) -> Verdict:
    return await read_then_reset(cell, "POST")


# -- 6, 7: the server ends the connection after a response ----------------------------------


@scenario(
    "limit-close-header",
    "The server's keep-alive limit: the 2nd response says Connection: close; the 3rd GET must succeed.",
    "RFC 9112 §9.6 (Connection: close)",
)
async def limit_close_header(cell: Cell) -> Verdict:
    cell.server.respond("/last", close=True)
    verdict = await first_request(cell)
    if verdict is not None:
        return verdict
    last = await cell.get("/last")
    if not last.is_ok:
        return cell.unclear(last) or failed(
            f"the Connection: close response failed: {exception_text(last.error)}"
        )
    attempt = await cell.get("/third")
    if not attempt.is_ok:
        return cell.unclear(attempt) or failed(
            f"Connection: close was not honoured: the next GET raised {exception_text(attempt.error)}"
        )
    return judge_reconnect(cell, attempt, 1, "a Connection: close response")


@scenario(
    "limit-silent",
    "The server's keep-alive limit without warning: FIN right after the 2nd response; the 3rd GET must succeed.",
    "RFC 9112 §9.6; encode/httpx#327",
)
async def limit_silent(cell: Cell) -> Verdict:
    handle = cell.server.inject(Fault("close", at="after_response", connection=1, request_on_connection=2))
    verdict = await first_request(cell)
    if verdict is not None:
        return verdict
    second = await cell.get("/second")
    if not second.is_ok:
        return cell.unclear(second) or failed(f"the 2nd GET failed: {exception_text(second.error)}")
    await cell.wait_fired(handle, "the close after the 2nd response")
    attempt = await cell.get("/third")
    return judge_reconnect(cell, attempt, 1, "a FIN right after the 2nd response")


@scenario(
    "no-content-then-close",
    "A 204 No Content on a keep-alive connection, then the server closes it; the next GET must succeed.",
    "aio-libs/aiohttp#3507; RFC 9110 §15.3.5",
)
async def no_content_then_close(cell: Cell) -> Verdict:
    cell.server.respond("/nothing", status=204, body=b"")
    handle = cell.server.inject(Fault("close", at="after_response", path="/nothing"))
    first = await cell.get("/nothing")
    if not first.is_ok:
        return cell.unclear(first) or failed(f"the 204 response failed: {exception_text(first.error)}")
    await cell.wait_fired(handle, "the close after the 204")
    attempt = await cell.get("/second")
    return judge_reconnect(cell, attempt, 1, "a FIN after a 204")
