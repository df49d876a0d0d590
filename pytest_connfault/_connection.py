"""One connection's life on the server: read requests with h11, answer them, fire faults.

A connection lives these moments, each a place where an armed fault may fire::

    on_connect
    loop:
        [idle: no bytes for `seconds`]        (only between requests)
        before_request: first bytes arrived, none read
        read the request, record it            <- the ledger has it before any reply byte
        before_response: nothing sent
        after_headers: head sent
        mid_body: part of the body sent
        mark idle, send the last bytes         <- idle from the moment the reply is complete
        after_response
        Connection: close? -> FIN and end

The connection is marked idle *before* the final send, under the server's lock, so that a client
which already holds its response and calls ``server.close_idle()`` always finds it idle.

Between requests, while no fault is armed, a plain request to a canned or default answer is served
on the spot by the poller's callback (``_serve_inline``): the same steps, without waking the task.
"""

from __future__ import annotations

import inspect
import traceback
from typing import TYPE_CHECKING

import anyio
import h11

from ._errors import ConnfaultError
from ._faults import FaultFiring, FaultHandle, now
from ._late_reads import LateReads
from ._ledger import PENDING, ConnectionState, EndedBy, Outcome, Request, path_of, responded
from ._quick_parse import QuickRequest, quick_parse
from ._request_checks import request_headers, unacceptable_head
from ._responses import Rendered, Response, handler_error_response, keeps_alive, render
from ._tls_wire import serve_handshake
from ._wire import RECEIVE_SIZE, Wire, WireWoken

if TYPE_CHECKING:
    from ._server import ServerCore

#: Faults after which the connection is over.
_TERMINAL = frozenset({"reset", "close", "garbage", "empty", "truncate"})


class ConnectionLoop(LateReads):
    """Serves one accepted socket until it ends. Runs as a task on the server's loop thread."""

    def __init__(self, core: ServerCore, state: ConnectionState, wire: Wire) -> None:
        self.core = core
        self.state = state
        self.wire = wire
        #: The h11 parser of the request being read, when it is not a plain one (see
        #: ``_quick_parse.py``); None between requests.
        self.h11: h11.Connection | None = None
        #: Bytes received and not yet parsed: what came after the last request (pipelined), or what
        #: ``_serve_inline`` read and handed to the task.
        self.pending = b""
        #: Whether the client's EOF came with ``pending``.
        self.pending_eof = False
        #: When the connection last became idle (its last response's final send), loop time.
        self.idle_since = 0.0
        #: Left by ``_serve_inline`` for the task: the rest of an answer the kernel did not take at
        #: once, and a reset met while reading.
        self._unsent = b""
        self._reset: OSError | None = None

    # -- faults ---------------------------------------------------------------------------

    def _take(
        self,
        moment: str,
        request: Request | None = None,
        next_index: int | None = None,
        idle_for: float | None = None,
    ) -> FaultHandle | None:
        core = self.core
        with core.lock:
            if not core.plan.handles:
                return None
            if request is not None:
                return core.plan.take(
                    moment,
                    connection=self.state.id,
                    request=request.index,
                    request_on_connection=request.index_on_connection,
                    path=request.path,
                    method=request.method,
                    idle_for=idle_for,
                )
            return core.plan.take(
                moment,
                connection=self.state.id,
                request=next_index,
                request_on_connection=len(self.state.requests) + 1 if next_index is not None else None,
            )

    def _settle(self, request: Request | None, outcome: Outcome) -> None:
        """Give a still-pending request its outcome (the caller holds the lock)."""
        if request is None:
            return
        current = self.state.requests[request.index_on_connection - 1]
        if current.outcome.kind == "pending":
            self.core.ledger.settle(self.state, current, outcome)

    def _record(self, handle: FaultHandle, request: Request | None, detail: str = "") -> None:
        """Record a firing (the caller holds the lock and has just put it on the wire)."""
        fault = handle.fault
        firing = FaultFiring(
            kind=fault.kind,
            at=fault.at,
            connection_id=self.state.id,
            request_index=request.index if request is not None else None,
            fired_at=now(),
            detail=detail,
        )
        self.state.faults.append(firing)
        if fault.kind in _TERMINAL:
            # The socket is already closed (reset or FIN): the record says so before the handle
            # is set, so a test that waited on the handle reads a closed connection.
            self.state.ended_by = EndedBy.SERVER_FAULT
            self.state.phase = "closed"
            self.state.closed_at = firing.fired_at
        elif fault.kind == "half_close":
            # Our FIN ended the connection's usefulness; the client's later FIN only confirms it
            # (the same record as server.half_close_idle() leaves).
            self.state.ended_by = EndedBy.SERVER_FAULT
        handle._record(firing)

    def _drop(self, kind: str, handle: FaultHandle, request: Request | None, detail: str = "") -> None:
        """Carry out an instant drop (reset, close, empty) and record it, under the lock."""
        with self.core.lock:
            self._settle(request, Outcome("fault", fault=handle.fault.label))
            # What the client sent that the server never used: bytes h11 holds past the request
            # (a pipelined next request), then what waits in the socket.
            unread = self._leftover()
            if kind == "reset":
                unread += self.wire.peek()
                self.wire.reset()
            else:
                unread += self.wire.fin_close(handle.fault.close_notify)
            if unread:
                self.state.unread += unread
                detail = detail or f"{len(unread)} unread bytes discarded"
            self._record(handle, request, detail)

    async def _fire(
        self, handle: FaultHandle, request: Request | None, rendered: Rendered | None = None
    ) -> bool:
        """Carry out ``handle``'s fault now. Returns True when the connection is over."""
        fault = handle.fault
        kind = fault.kind
        if kind in ("reset", "close", "empty"):
            self._drop("reset" if kind == "reset" else "close", handle, request)
            return True
        if kind == "half_close":
            with self.core.lock:
                self._settle(request, Outcome("fault", fault=fault.label))
                self.wire.half_close(fault.close_notify)
                self.state.phase = "half_closed"
                self._record(handle, request)
            await self._read_after_half_close(await self.wire.receive())
            return True
        if kind == "garbage":
            await self.wire.send_all(fault.data)
            self._drop(fault.then, handle, request, f"{len(fault.data)} garbage bytes, then {fault.then}")
            return True
        if kind == "truncate":
            assert rendered is not None
            keep = (
                len(rendered.body) // 2
                if fault.body_bytes is None
                else min(fault.body_bytes, len(rendered.body))
            )
            await self.wire.send_all(rendered.head + rendered.body[:keep])
            self._drop(
                fault.then, handle, request, f"{keep} of {len(rendered.body)} body bytes, then {fault.then}"
            )
            return True
        if kind == "delay":
            with self.core.lock:
                self._record(handle, request, f"{fault.seconds} s")
            await anyio.sleep(fault.seconds or 0.0)
            return False
        if kind == "stall":
            with self.core.lock:
                previous = self.state.phase
                self.state.phase = "stalled"
                if self.core.release_event is None:
                    self.core.release_event = anyio.Event()
                release = self.core.release_event
                self._record(handle, request)
            await release.wait()
            with self.core.lock:
                if self.state.phase == "stalled":
                    self.state.phase = previous
            return False
        raise AssertionError(f"unhandled fault kind {kind!r}")  # pragma: no cover

    # -- the loop -------------------------------------------------------------------------

    async def run(self) -> None:
        if self.state.phase == "refused":
            if not self.state.tls or await serve_handshake(self):
                await self._refuse()
            return
        handle = self._take("on_connect")
        if handle is not None and await self._fire(handle, None):
            return
        if self.state.tls and not await serve_handshake(self):
            return
        try:
            while True:
                request = await self._read_request()
                if request is None:
                    return
                if not await self._respond(request):
                    return
        except _ConnectionOver:
            return

    async def _await_request(self) -> bool:
        """At a request boundary: wait until the next request's first bytes (or EOF) can be read,
        firing ``idle`` and ``before_request`` faults on the way. False when the connection is over.

        The waits are wakeable: a fault armed meanwhile (``server.inject`` calls ``core.wake``)
        makes the connection look at the plan again, so a fault armed between two requests always
        applies to the second, and an idle fault armed during a pause counts from its start.
        """
        core = self.core
        if self.state.tls and not self.state.requests and not core.plan.handles and self.wire.readable_now():
            return True  # the first request is usually there already (decrypted with the handshake)
        while True:
            with core.lock:
                idle = [h for h in core.plan.handles if h.fault.at == "idle" and not h.is_exhausted]
            core.waiting.add(self.wire)
            try:
                due = await self._pause(idle if self.state.requests else [])
            except WireWoken:
                continue  # a fault was armed: look again
            finally:
                core.waiting.discard(self.wire)
            if self._unsent:
                # The rest of an answer given on the spot (``_serve_inline``); then this is a
                # request boundary again, unless the next request came with the last.
                unsent, self._unsent = self._unsent, b""
                await self.wire.send_all(unsent)
                if not self.pending:
                    continue
            if due is None:
                break
            # An idle fault's time came (reset, close, half_close, garbage: each ends the connection).
            if await self._fire(due, self.state.requests[-1]):
                return False
        if self.wire.write_shut or not core.plan.handles:
            return True
        handle = self._take("before_request", next_index=len(core.ledger.requests) + 1)
        # The bytes waiting are kept as unread by a drop (see _drop).
        return not (handle is not None and await self._fire(handle, None))

    def _arrived(self) -> bytes | None:
        """A plain connection's first bytes if they have arrived (the usual case), read without a
        wait; None when the loop must wait at the request boundary (see ``_await_request``)."""
        if self.state.tls or self.state.requests or self.core.plan.handles:
            return None
        return self.wire.receive_now()

    async def _pause(self, idle: list[FaultHandle]) -> FaultHandle | None:
        """Wait for bytes; on the way, the first idle fault whose own time passes (and selects us)."""
        if idle:
            last = self.state.requests[-1]
            for threshold in sorted({h.fault.seconds or 0.0 for h in idle}):
                with anyio.move_on_after(threshold - (self.core.clock() - self.idle_since)):
                    await self.wire.wait_readable()
                    return None  # the client spoke first
                handle = self._take("idle", last, idle_for=threshold)
                if handle is not None:
                    return handle
        if self.state.tls:
            await self.wire.wait_readable()
            return None
        if len(self.state.requests) >= 2:
            # A connection that keeps serving: on trio, the poller from now on (see the method).
            self.wire.wait_through_poller()
        await self.wire.wait_readable(self._serve_inline)
        return None

    def _serve_inline(self) -> bool:
        """Serve a plain request on the spot, as the poller sees it arrive; False to leave it to the task.

        Called on the loop thread while the task waits between requests (``_pause``). A plain
        request (parsed by ``quick_parse``, acceptable, keep-alive) to a canned or default answer,
        with no fault armed, takes exactly the task's steps (record, answer, mark idle, send) with
        none of its wake-up: no future, no second turn of the loop. Anything else is handed over:
        bytes read are left in ``pending``, a reset in ``_reset``, and the task takes it from there.
        """
        try:
            return self._serve_plain()
        except Exception:  # noqa: BLE001 - a server bug: recorded (fails the test at teardown), never
            # raised into the poller, whose other connections would then wait for ever
            with self.core.lock:
                self.core.errors.append(traceback.format_exc())
            return False

    def _serve_plain(self) -> bool:
        core = self.core
        wire = self.wire
        if (
            core.plan.handles
            or core.routes.handler is not None  # it may be async, or slow: the task calls it
            or core.stopping
            or wire.write_shut
            or wire.closed
            or self.pending
        ):
            return False
        try:
            data = wire.sock.recv(RECEIVE_SIZE)
        except BlockingIOError:
            return True  # nothing after all: wait on
        except OSError as exc:
            self._reset = exc
            return False
        if not data:
            return False  # the client's EOF: the task reads it again (a recv at EOF returns b"")
        quick = quick_parse(data)
        if (
            quick is None
            or unacceptable_head(quick.method, quick.target, quick.headers, quick.version, core.options)
            is not None
        ):
            self.pending = data
            return False
        response = core.routes.canned(quick.method, path_of(quick.target))
        if not keeps_alive(response, quick.version, quick.headers):
            self.pending = data
            return False
        request = self._add_quick(quick, answered=response.status)
        out = render(response, request).wire
        sent = wire.try_send(out)
        if sent < len(out):
            self._unsent = out[sent:]
            return False
        return not self.pending

    async def _read_request(self) -> Request | None:
        """Read one whole request and record it; None when the connection ended instead."""
        if self.h11 is None:
            data = self.pending
            self.pending = b""
            if not data:
                if self.pending_eof:
                    self._end(EndedBy.CLIENT_FIN)
                    return None
                arrived = self._arrived()
                if arrived is not None:
                    data = arrived
                else:
                    if not await self._await_request():
                        return None
                    data = await self._handed_over()
                if self.wire.write_shut:  # half-closed by server.half_close_idle() while idle
                    await self._read_after_half_close(data)
                    return None
                if not data:
                    self._end(EndedBy.CLIENT_FIN)
                    return None
                with self.core.lock:
                    self.state.phase = "busy"
            quick = quick_parse(data)
            if quick is not None:
                return await self._record_quick(quick)
            # Anything unusual, or not all there yet: h11 reads it.
            self.h11 = self._new_parser()
            self.h11.receive_data(data)
            if self.pending_eof:
                self.h11.receive_data(b"")
        conn = self.h11
        method = target = ""
        headers: tuple[tuple[str, str], ...] = ()
        version = "1.1"
        body: list[bytes] = []
        size = 0
        limit = self.core.options.max_body_size
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError as exc:
                await self._reject(exc.error_status_hint, str(exc), method, target, headers)
                return None
            if event is h11.NEED_DATA:
                # The request has begun (h11 only takes over with its first bytes, above), so
                # there is no request boundary to wait at here: read on.
                try:
                    data = await self.wire.receive()
                except ConnectionResetError:
                    self._record_cut_short(method, target, headers, b"".join(body))
                    raise
                if self.wire.write_shut:
                    await self._read_after_half_close(data)
                    return None
                conn.receive_data(data)
            elif isinstance(event, h11.Request):
                method = event.method.decode("ascii", "replace")
                target = event.target.decode("ascii", "replace")
                headers = request_headers(event)
                version = event.http_version.decode("ascii", "replace")
                problem = unacceptable_head(method, target, headers, version, self.core.options)
                if problem is not None:
                    await self._reject(problem[0], problem[1], method, target, headers)
                    return None
                if conn.they_are_waiting_for_100_continue:
                    # RFC 9110 section 10.1.1: the head is acceptable, so invite the body now
                    # rather than leave the client waiting for its own timeout.
                    await self.wire.send_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            elif isinstance(event, h11.Data):
                size += len(event.data)
                if limit is not None and size > limit:
                    await self._reject(413, f"body over {limit} bytes", method, target, headers)
                    return None
                body.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                with self.core.lock:
                    return self.core.ledger.add_request(
                        self.state, method, target, headers, b"".join(body), now(), version
                    )
            elif isinstance(event, h11.ConnectionClosed):
                self._end(EndedBy.CLIENT_FIN)
                return None

    async def _handed_over(self) -> bytes:
        """After a wait between requests: what ``_serve_inline`` left for the task, else a read."""
        if self._reset is not None:
            reset, self._reset = self._reset, None
            raise reset
        data, self.pending = self.pending, b""
        return data or await self.wire.receive()

    async def _record_quick(self, quick: QuickRequest) -> Request | None:
        """Check and record a request that ``quick_parse`` read whole (what h11's path does)."""
        problem = unacceptable_head(
            quick.method, quick.target, quick.headers, quick.version, self.core.options
        )
        if problem is not None:
            await self._reject(problem[0], problem[1], quick.method, quick.target, quick.headers)
            return None
        return self._add_quick(quick)

    def _add_quick(self, quick: QuickRequest, answered: int | None = None) -> Request:
        """Record a request ``quick_parse`` read whole (its checks passed); what follows it is pending.

        ``answered``: served on the spot, the status it is answered with. It is then recorded
        answered, and the connection idle again unless more came with it, in this one step: what
        ``_complete`` does later on the task's path (on the spot nothing else runs in between).
        """
        core = self.core
        self.pending = quick.rest
        with core.lock:
            self.state.phase = "busy" if answered is None or self.pending else "idle"
            request = core.ledger.add_request(
                self.state,
                quick.method,
                quick.target,
                quick.headers,
                quick.body,
                now(),
                quick.version,
                PENDING if answered is None else responded(answered),
            )
        if answered is not None:
            self.idle_since = core.clock()
        return request

    def _record_cut_short(
        self, method: str, target: str, headers: tuple[tuple[str, str], ...], body: bytes
    ) -> None:
        """The client reset the connection mid-request: record what arrived, rejected unanswered."""
        with self.core.lock:
            self.state.unread += self._leftover()
            self.core.ledger.add_request(
                self.state,
                method,
                target,
                headers,
                body,
                now(),
                outcome=Outcome("rejected", detail="the client reset the connection mid-request"),
            )

    async def _reject(
        self, status: int, reason: str, method: str, target: str, headers: tuple[tuple[str, str], ...]
    ) -> None:
        """Answer a malformed request (400, 413 or 431) where HTTP allows, record it, and close."""
        with self.core.lock:
            self.core.ledger.add_request(
                self.state,
                method,
                target,
                headers,
                b"",
                now(),
                outcome=Outcome("rejected", status=status, detail=reason),
            )
        answer = Response(status, f"{status} {reason}\n", close=True)
        await self.wire.send_all(answer._head + answer.body)
        with self.core.lock:
            self.state.unread += self.wire.fin_close()
            self._end_locked(EndedBy.SERVER_CLOSE)

    def _end(self, how: EndedBy) -> None:
        with self.core.lock:
            self._end_locked(how)

    async def _respond(self, request: Request) -> bool:
        """Answer ``request`` (or fault instead). Returns False when the connection is over."""
        core = self.core
        drip: FaultHandle | None = None
        handle = self._take("before_response", request)
        if handle is not None:
            if handle.fault.kind == "drip":
                drip = handle
            elif handle.fault.kind != "truncate" and await self._fire(handle, request):
                return False
        rendered = render(await self._resolve(request), request)
        if handle is not None and handle.fault.kind == "truncate":
            return not await self._fire(handle, request, rendered)
        data = rendered.wire
        if core.plan.handles and drip is None:
            handle = self._take("after_headers", request)
            if handle is not None:
                await self.wire.send_all(rendered.head)
                if await self._fire(handle, request, rendered):
                    return False
                data = data[len(rendered.head) :]
            handle = self._take("mid_body", request)
            if handle is not None:
                body = rendered.body
                cut = (
                    len(body) // 2
                    if handle.fault.body_bytes is None
                    else min(handle.fault.body_bytes, len(body))
                )
                sent = len(rendered.wire) - len(data)
                upto = len(rendered.head) + cut - sent
                await self.wire.send_all(data[:upto])
                if await self._fire(handle, request, rendered):
                    return False
                data = data[upto:]
        keep_alive = rendered.keep_alive
        if drip is not None:
            await self._drip(drip, request, data, rendered.status, keep_alive)
        else:
            self._complete(request, rendered.status, keep_alive)
            await self.wire.send_all(data)
        pending = self._after_response(request)
        if pending is not None and await self._fire(pending, request):
            return False
        return self._next_cycle(keep_alive)

    def _complete(self, request: Request, status: int, keep_alive: bool) -> None:
        """Settle the request and mark the connection idle: called right before the last send."""
        with self.core.lock:
            self._settle(request, responded(status))
            # Idle means waiting for a request: not so when the next one is already buffered
            # (pipelined); it stays busy, so the *_idle() commands leave it alone.
            if keep_alive and not self._leftover():
                self.state.phase = "idle"
        self.idle_since = self.core.clock()

    async def _drip(
        self, handle: FaultHandle, request: Request, data: bytes, status: int, keep_alive: bool
    ) -> None:
        fault = handle.fault
        with self.core.lock:
            self._record(handle, request, f"{fault.chunk_size} bytes every {fault.interval} s")
        pieces = [data[i : i + fault.chunk_size] for i in range(0, len(data), fault.chunk_size)]
        for piece in pieces[:-1]:
            await self.wire.send_all(piece)
            await anyio.sleep(fault.interval)
        self._complete(request, status, keep_alive)
        if pieces:
            await self.wire.send_all(pieces[-1])

    async def _resolve(self, request: Request) -> Response:
        """The response for ``request``: canned, from the handler (awaited if it is async), or default."""
        try:
            response = self.core.routes.resolve(request)
            if not isinstance(response, Response) and inspect.isawaitable(response):
                response = await response
            if not isinstance(response, Response):
                raise ConnfaultError(
                    f"the handler returned {type(response).__name__}, not a pytest_connfault.Response"
                )
            return response
        except Exception as exc:  # noqa: BLE001 - the user's handler failed: a 500, not a dead server
            response, text = handler_error_response(exc)
            with self.core.lock:
                self.core.handler_errors.append(text)
                self._settle(request, Outcome("handler_error", status=500, detail=text))
            return response

    def _after_response(self, request: Request) -> FaultHandle | None:
        """Fire an ``after_response`` drop right behind the response, as a keep-alive timeout does.

        Drops happen here, with no await since the last send; slower faults (half_close, stall,
        delay, garbage) are returned for the caller to run.
        """
        if not self.core.plan.handles:
            return None
        handle = self._take("after_response", request)
        if handle is None:
            return None
        kind = handle.fault.kind
        if kind in ("reset", "close", "empty"):
            self._drop("reset" if kind == "reset" else "close", handle, request)
            raise _ConnectionOver
        return handle

    def _next_cycle(self, keep_alive: bool) -> bool:
        """After a complete response: close as HTTP says, or get ready for the next request."""
        if not keep_alive:
            with self.core.lock:
                # What the client sent after its last request (h11 holds it) is never served.
                self.state.unread += self._leftover() + self.wire.fin_close()
                self._end_locked(EndedBy.SERVER_CLOSE)
            return False
        # The next request starts from what the client already pipelined (a fresh h11 parser
        # per request when one is needed: h11 only parses here; responses are rendered by us).
        if self.h11 is not None:
            self.pending, closed = self.h11.trailing_data
            self.pending_eof = self.pending_eof or closed
            self.h11 = None
        return True


class _ConnectionOver(Exception):
    """Raised where a fault ended the connection deep in a step; the loop ends quietly."""
