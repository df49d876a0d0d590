"""FaultProxy: the fault-injecting server in front of a real upstream, with its own upstream pool.

A :class:`FaultProxy` is a :class:`FaultServer` whose handler forwards each request to the
upstream over the proxy's own keep-alive connections (an h11 client on the same anyio loop). So
every client-side fault, selector, command and the marker work unchanged, and the ledger is the
same. The two sides are independent: the client's connections and the upstream's are opened,
reused and dropped separately, as behind any reverse proxy.

Responses are read whole from the upstream, then answered to the client (the server renders every
byte, which is what lets the client-side faults cut at exact offsets). Hop-by-hop headers
(RFC 9110 section 7.6.1) are not forwarded; ``Host`` is the upstream's unless ``preserve_host``;
the body is re-framed with ``Content-Length`` on the way up, and kept chunked (with the upstream's
chunk boundaries) or ``Content-Length`` on the way down.

When the upstream connection drops before a whole response (for real, or through
:meth:`FaultProxy.inject_upstream`), ``upstream_errors`` decides what the client sees:

- ``"mirror"`` (default): the same drop, at the same point: the client gets what had arrived
  (nothing, the head, or part of the body) and then an RST (upstream reset) or a FIN (upstream
  close): exactly what it would have seen talking to the upstream directly;
- ``"502"``: a ``502 Bad Gateway`` answer on a connection that stays alive, as nginx answers.

A reused upstream connection found dead before any response byte (the upstream closed it while
idle) is retried once on a new connection, as reverse proxies do; that never reaches the client.
"""

from __future__ import annotations

import socket
import ssl
from typing import Any
from urllib.parse import urlsplit

import anyio
import h11

from ._commands import COMMAND_TIMEOUT
from ._errors import ConnfaultError, FaultSpecError
from ._faults import Fault, FaultFiring, FaultHandle, FaultPlan, now
from ._ledger import ConnectionState, EndedBy, Outcome, Request
from ._responses import Response, render
from ._server import FaultServer
from ._tls_wire import TlsWire
from ._upstream import (
    Link,
    Partial,
    UpstreamBroken,
    UpstreamConnection,
    UpstreamDropped,
    connect,
    read_answer,
    stale,
    strip_hop_by_hop,
)
from ._wire import Wire, WireClosed

#: What an upstream fault can do, and when (``proxy.inject_upstream``).
UPSTREAM_KINDS = ("reset", "close")
UPSTREAM_MOMENTS = {
    "before_response": "the request is sent upstream, no byte of the answer read",
    "after_headers": "the upstream's status line and headers have arrived, no body",
    "mid_body": "`body_bytes` of the upstream's body have arrived (default half)",
    "after_response": "the upstream's answer is complete: its idle keep-alive connection drops",
}

ERROR_MODES = ("mirror", "502")


class FaultProxy(FaultServer):
    """A :class:`FaultServer` that forwards every request to ``upstream`` and answers with its reply.

    Everything of the server works on the client side unchanged: ``inject``, the marker, the
    ``*_idle()`` commands, ``release()``, ``respond()`` (a canned answer for a path, which is then
    not forwarded), the ledger. Each :class:`~pytest_connfault.Request` also records
    ``upstream_status`` and ``upstream_connection``; ``proxy.upstream_connections`` is the
    upstream side's ledger.

    Args:
        upstream: ``"http://host:port"`` or ``"https://host:port"``, optionally with a path
            prefix (``"http://127.0.0.1:8000/api"`` sends ``/items`` as ``/api/items``).
        host, port, backend, tls: the client side, as for :class:`FaultServer`.
        upstream_ssl_context: for an ``https://`` upstream, the client context that trusts it
            (default: ``ssl.create_default_context()``).
        upstream_errors: what the client sees when the upstream connection drops before a
            whole answer: ``"mirror"`` (default; the same drop at the same point) or ``"502"``.
        preserve_host: forward the client's ``Host`` header instead of the upstream's authority.
        upstream_timeout: seconds an upstream answer may take before the client gets a 504
            (default None: wait as long as the upstream takes).
        **options: further :class:`~pytest_connfault.ServerOptions` fields. The ledger must keep
            request bodies whole (they are forwarded from it), so ``ledger_body_limit`` is refused.
    """

    def __init__(
        self,
        upstream: str,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        upstream_ssl_context: ssl.SSLContext | None = None,
        upstream_errors: str = "mirror",
        preserve_host: bool = False,
        upstream_timeout: float | None = None,
        **options: Any,
    ) -> None:
        for refused in ("handler", "app", "ledger_body_limit"):
            if options.get(refused) is not None:
                raise ConnfaultError(f"a FaultProxy forwards every request; it takes no {refused}=")
        parts = urlsplit(upstream)
        if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
            raise ConnfaultError(f"upstream must be http://host:port or https://host:port, not {upstream!r}")
        if upstream_errors not in ERROR_MODES:
            raise ConnfaultError(f"upstream_errors must be one of {ERROR_MODES}, not {upstream_errors!r}")
        super().__init__(host, port, handler=self._forward, **options)
        #: The upstream URL, as given.
        self.upstream = upstream
        self.upstream_errors = upstream_errors
        self.preserve_host = preserve_host
        self.upstream_timeout = upstream_timeout
        self._up_host = parts.hostname
        self._up_port = parts.port or (443 if parts.scheme == "https" else 80)
        self._up_authority = parts.netloc.rsplit("@", 1)[-1]
        self._up_prefix = parts.path.rstrip("/")
        self._up_tls: ssl.SSLContext | None = None
        if parts.scheme == "https":
            self._up_tls = upstream_ssl_context or ssl.create_default_context()
        # Resolved here, in the caller's thread: on the loop it would take a resolver thread.
        infos = socket.getaddrinfo(self._up_host, self._up_port, type=socket.SOCK_STREAM)
        #: Tried in order ("localhost" may be ::1 first while the upstream listens on 127.0.0.1).
        self._up_addresses: list[tuple[Any, ...]] = [(info[0], info[4]) for info in infos]
        self._up_plan = FaultPlan()
        self._links: list[Link] = []
        self._idle: list[Link] = []

    def __repr__(self) -> str:
        text = super().__repr__().replace("<FaultServer", "<FaultProxy", 1)
        with self._core.lock:
            opened = len(self._links)
        return f"{text[:-1]}; upstream {self.upstream}: {opened} connections>"

    # -- the upstream side's ledger and commands --------------------------------------------

    @property
    def upstream_connections(self) -> list[UpstreamConnection]:
        """Every upstream connection so far, in the order opened (frozen records)."""
        with self._core.lock:
            return [link.snapshot() for link in self._links]

    def inject_upstream(self, fault: Fault | str, **when: Any) -> FaultHandle:
        """Arm a drop of the upstream connection that carries a chosen request.

        ``proxy.inject_upstream("reset", at="mid_body", request=2)`` makes the proxy reset its
        upstream connection once half of request 2's answer body has arrived (the upstream sees
        its client vanish), and then act as if the upstream had dropped it: per
        ``upstream_errors``, the client sees the same reset after that half body, or a 502.

        ``fault``: ``"reset"`` or ``"close"`` (or such a :class:`~pytest_connfault.Fault`); ``at``:
        one of :data:`UPSTREAM_MOMENTS` (default ``after_response``: the idle upstream connection
        drops, the next request opens a new one and the client sees nothing). Selectors
        (``request``, ``path``, ``method``, ``connection``, ``request_on_connection``) and
        ``times`` refer to the client's requests, as for :meth:`inject`; ``body_bytes`` sets
        the cut at ``mid_body``. Returns the handle; it fires once the upstream socket is dropped.
        """
        if isinstance(fault, str):
            fault = Fault(fault, **when)
        elif when:
            raise ConnfaultError("pass either a Fault or a fault name with its arguments, not both")
        if fault.kind not in UPSTREAM_KINDS:
            raise FaultSpecError(
                f"an upstream fault is one of {', '.join(map(repr, UPSTREAM_KINDS))}, not {fault.kind!r}"
            )
        if fault.at not in UPSTREAM_MOMENTS:
            raise FaultSpecError(
                f"an upstream fault fires at one of {', '.join(map(repr, UPSTREAM_MOMENTS))}, not {fault.at!r}"
            )
        with self._core.lock:
            return self._up_plan.arm(fault)

    @property
    def upstream_faults(self) -> list[FaultHandle]:
        """The handles of every armed upstream fault, in arming order."""
        with self._core.lock:
            return list(self._up_plan.handles)

    def reset_upstream_idle(self) -> list[UpstreamConnection]:
        """Reset (RST) every idle upstream connection of the pool now; return their records.

        The upstream sees its client vanish; the proxy opens a new connection for the next
        request, so the client sees nothing. Returns once the kernel has sent the RSTs.
        """
        return self._upstream_command("reset")

    def close_upstream_idle(self) -> list[UpstreamConnection]:
        """Close (FIN) every idle upstream connection of the pool now; return their records."""
        return self._upstream_command("close")

    async def reset_upstream_idle_async(self) -> list[UpstreamConnection]:
        """The awaitable form of :meth:`reset_upstream_idle`."""
        return await self._upstream_command_async("reset")

    async def close_upstream_idle_async(self) -> list[UpstreamConnection]:
        """The awaitable form of :meth:`close_upstream_idle`."""
        return await self._upstream_command_async("close")

    def _upstream_command(self, kind: str) -> list[UpstreamConnection]:
        self._require_running()
        assert self._loop is not None
        return self._loop.call(self._drop_idle_links, kind, "command", timeout=COMMAND_TIMEOUT)

    async def _upstream_command_async(self, kind: str) -> list[UpstreamConnection]:
        self._require_running()
        assert self._loop is not None
        return await self._loop.call_async(self._drop_idle_links, kind, "command", timeout=COMMAND_TIMEOUT)

    def _drop_idle_links(self, kind: str, why: str) -> list[UpstreamConnection]:
        """On the loop thread: drop every pooled upstream connection."""
        with self._core.lock:
            links, self._idle = self._idle, []
            for link in links:
                at = now()
                self._end_link(link, why, kind)
                if why == "command":
                    link.faults.append(
                        FaultFiring(kind, "idle", link.id, None, at, f"proxy.{kind}_upstream_idle()", True)
                    )
            return [link.snapshot() for link in links]

    def timeline(self) -> list[str]:
        """The client side's timeline (as for a server), then the upstream side's."""
        lines = super().timeline()
        events: list[tuple[float, int, str]] = []
        for link in self.upstream_connections:
            carried = ", ".join(map(str, link.requests)) or "none"
            events.append((link.opened_at, 0, f"upstream {link.id}  opened (local port {link.local_port})"))
            for firing in link.faults:
                how = "commanded" if firing.commanded else "fired"
                events.append(
                    (
                        firing.fired_at,
                        2,
                        f"upstream {link.id}  fault {firing.kind}@{firing.at} {how} ({firing.detail})",
                    )
                )
            if link.closed_at is not None:
                events.append(
                    (
                        link.closed_at,
                        3,
                        f"upstream {link.id}  closed, ended by {link.ended_by}; carried requests {carried}",
                    )
                )
            else:
                events.append((float("inf"), 3, f"upstream {link.id}  open; carried requests {carried}"))
        if not events:
            return lines
        events.sort(key=lambda e: (e[0], e[1]))

        def stamp(at: float) -> str:
            return "     (now)   " if at == float("inf") else f"+{(at - self.started_at) * 1000:9.3f} ms"

        return [
            *lines,
            f"upstream side ({self.upstream}):",
            *(f"{stamp(at)}  {text}" for at, _, text in events),
        ]

    # -- lifecycle ---------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop serving (as :meth:`FaultServer.stop`), then close every upstream connection."""
        running = self.is_running
        super().stop()
        if running and self._loop is not None:
            self._loop.call(self._drop_idle_links, "close", "shutdown", timeout=COMMAND_TIMEOUT)

    async def stop_async(self) -> None:
        """The awaitable form of :meth:`stop`."""
        running = self.is_running
        await super().stop_async()
        if running and self._loop is not None:
            await self._loop.call_async(self._drop_idle_links, "close", "shutdown", timeout=COMMAND_TIMEOUT)

    # -- forwarding (on the loop thread) ------------------------------------------------------

    def _end_link(self, link: Link, why: str, how: str = "close") -> None:
        """Close an upstream connection and record why (the caller holds the lock)."""
        if link.closed_at is not None:
            return
        if how == "reset":
            link.wire.reset()
        else:
            link.wire.fin_close()
        link.closed_at = now()
        link.ended_by = why

    async def _forward(self, request: Request) -> Response:
        """The handler: the upstream's answer to ``request``, or what a drop there leaves."""
        core = self._core
        for attempt in (1, 2):
            try:
                link, reused = await self._checkout()
            except OSError as exc:
                return self._gateway_error(request, None, 502, f"cannot connect to {self.upstream}: {exc}")
            with core.lock:
                link.requests.append(request.index)
            try:
                with anyio.fail_after(self.upstream_timeout):
                    partial = await self._exchange(link, request)
            except UpstreamDropped as drop:
                with core.lock:
                    if link.ended_by is None:
                        self._end_link(
                            link, f"upstream_{drop.kind}" if drop.kind == "reset" else "upstream_close"
                        )
                if reused and attempt == 1 and not drop.simulated and drop.partial.status is None:
                    continue  # a stale keep-alive connection: the upstream never saw the request
                return await self._upstream_dropped(request, link, drop)
            except (UpstreamBroken, TimeoutError) as exc:
                with core.lock:
                    self._end_link(link, "error", "reset")
                status = 504 if isinstance(exc, TimeoutError) else 502
                reason = f"no answer within {self.upstream_timeout} s" if status == 504 else str(exc)
                return self._gateway_error(request, link, status, f"upstream connection {link.id}: {reason}")
            except BaseException:
                with core.lock:
                    self._end_link(link, "shutdown" if core.stopping else "error", "reset")
                raise
            self._annotate(request, partial.status, link)
            return partial.response()
        raise AssertionError("unreachable")  # pragma: no cover

    async def _checkout(self) -> tuple[Link, bool]:
        """A pooled upstream connection that is still alive (newest first), or a new one."""
        with self._core.lock:
            while self._idle:
                link = self._idle.pop()
                why = stale(link.wire.sock) if not isinstance(link.wire, TlsWire) else None
                if why is None:
                    return link, True
                self._end_link(link, why)
        return await self._connect(), False

    async def _connect(self) -> Link:
        for number, (family, address) in enumerate(self._up_addresses, 1):
            try:
                return await self._connect_to(family, address)
            except ConnectionRefusedError:
                if number == len(self._up_addresses):
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def _connect_to(self, family: int, address: Any) -> Link:
        wire, port = await connect(family, address, self._up_tls, self._up_host)
        with self._core.lock:
            link = Link(len(self._links) + 1, wire, port)
            self._links.append(link)
        return link

    def _upstream_request(self, request: Request) -> h11.Request:
        headers: list[tuple[str, str]] = []
        framed = False
        for name, value in strip_hop_by_hop(request.headers):
            lowered = name.lower()
            if lowered in ("content-length", "expect"):
                framed = framed or lowered == "content-length"
                continue
            if lowered == "host" and not self.preserve_host:
                value = self._up_authority
            headers.append((name, value))
        framed = framed or any(n.lower() == "transfer-encoding" for n, _ in request.headers)
        if not any(n.lower() == "host" for n, _ in headers):
            headers.insert(0, ("Host", self._up_authority))
        if framed or request.body:
            headers.append(("Content-Length", str(len(request.body))))
        target = request.target
        if "://" in target.split("?", 1)[0]:  # absolute form (the client took us for a forward proxy)
            rest = urlsplit(target)
            target = (rest.path or "/") + (f"?{rest.query}" if rest.query else "")
        return h11.Request(method=request.method, target=self._up_prefix + target, headers=headers)

    def _take_up(self, moment: str, request: Request) -> FaultHandle | None:
        with self._core.lock:
            if not self._up_plan.handles:
                return None
            return self._up_plan.take(
                moment,
                connection=request.connection_id,
                request=request.index,
                request_on_connection=request.index_on_connection,
                path=request.path,
                method=request.method,
            )

    def _fire_up(self, handle: FaultHandle, link: Link, request: Request, partial: Partial) -> None:
        """Drop the upstream connection as ``handle`` says, and record it (it is on the wire)."""
        kind = handle.fault.kind
        with self._core.lock:
            self._end_link(link, "fault", kind)
            firing = FaultFiring(
                kind,
                handle.fault.at,
                link.id,
                request.index,
                now(),
                f"upstream connection {link.id}, after {partial.body_size} body bytes"
                if partial.status is not None
                else f"upstream connection {link.id}",
            )
            link.faults.append(firing)
        handle._record(firing)

    async def _exchange(self, link: Link, request: Request) -> Partial:
        """Send ``request`` on ``link`` and read the whole answer, firing upstream faults."""
        conn = link.h11
        if conn.our_state is h11.DONE and conn.their_state is h11.DONE:
            conn.start_next_cycle()
        data = conn.send(self._upstream_request(request)) or b""
        if request.body:
            data += conn.send(h11.Data(data=request.body)) or b""
        data += conn.send(h11.EndOfMessage()) or b""
        partial = Partial(pieces=[])
        try:
            await link.wire.send_all(data)
        except ConnectionResetError:
            raise UpstreamDropped("reset", partial, False) from None
        except OSError:
            raise UpstreamDropped("close", partial, False) from None
        handle = self._take_up("before_response", request)
        if handle is not None:
            self._fire_up(handle, link, request, partial)
            raise UpstreamDropped(handle.fault.kind, partial, True)
        await read_answer(link, partial)
        for moment in ("after_headers", "mid_body"):
            handle = self._take_up(moment, request)
            if handle is not None:
                size = partial.body_size
                cut = (
                    0
                    if moment == "after_headers"
                    else size // 2
                    if handle.fault.body_bytes is None
                    else min(handle.fault.body_bytes, size)
                )
                partial = partial.cut(cut)
                self._fire_up(handle, link, request, partial)
                raise UpstreamDropped(handle.fault.kind, partial, True)
        with self._core.lock:
            reusable = conn.our_state is h11.DONE and conn.their_state is h11.DONE
            if not reusable:
                self._end_link(link, "upstream_close")
        if reusable:
            handle = self._take_up("after_response", request)
            if handle is not None:
                self._fire_up(handle, link, request, partial)
            else:
                with self._core.lock:
                    self._idle.append(link)
        return partial

    # -- what the client gets ----------------------------------------------------------------

    def _annotate(self, request: Request, status: int | None, link: Link | None) -> None:
        core = self._core
        with core.lock:
            state = core.ledger.connections[request.connection_id - 1]
            current = state.requests[request.index_on_connection - 1]
            core.ledger.update(
                state, current, upstream_status=status, upstream_connection=None if link is None else link.id
            )

    def _gateway_error(self, request: Request, link: Link | None, status: int, reason: str) -> Response:
        self._annotate(request, None, link)
        return Response(status, f"connfault proxy: {reason}\n")

    async def _upstream_dropped(self, request: Request, link: Link, drop: UpstreamDropped) -> Response:
        """The upstream connection dropped mid-answer: a 502, or the same drop for the client."""
        partial = drop.partial
        self._annotate(request, partial.status, link)
        what = f"upstream {drop.kind}@{drop.at} on upstream connection {link.id}"
        if self.upstream_errors == "502":
            return Response(502, f"connfault proxy: {what}\n")
        core = self._core
        with core.lock:
            state = core.ledger.connections[request.connection_id - 1]
        wire: Wire = state.wire  # type: ignore[assignment]
        if partial.status is not None:
            rendered = render(partial.response(), request)
            try:
                await wire.send_all(rendered.head + rendered.body)
            except (OSError, WireClosed):
                pass  # the client left meanwhile: the drop below finds its socket closed
        with core.lock:
            self._mirror(state, wire, request, drop, what)
        # Never sent: the wire is closed, so the connection loop ends quietly on it.
        return Response(502, b"", close=True)

    def _mirror(
        self, state: ConnectionState, wire: Wire, request: Request, drop: UpstreamDropped, what: str
    ) -> None:
        """Drop the client's connection as the upstream's dropped (the caller holds the lock)."""
        current = state.requests[request.index_on_connection - 1]
        self._core.ledger.settle(
            state, current, Outcome("fault", fault=f"{drop.kind}@{drop.at}", detail=what)
        )
        if drop.kind == "reset":
            wire.reset()
        else:
            state.unread += wire.fin_close()
        state.faults.append(
            FaultFiring(drop.kind, drop.at, state.id, request.index, now(), f"mirrors {what}")
        )
        state.ended_by = EndedBy.SERVER_FAULT
        state.phase = "closed"
