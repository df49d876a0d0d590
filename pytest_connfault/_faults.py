"""Faults: what happens to a connection, at which moment of its life, and to which request.

Pure values and matching; no sockets. The server asks :meth:`FaultPlan.take` at each moment of a
connection's life and carries out what it gets back.

The moments, in the order a connection lives them::

    on_connect -> (handshake, TLS only) -> [before_request -> before_response -> after_headers
                   -> mid_body -> after_response -> idle] (repeated per request on a keep-alive connection)
"""

from __future__ import annotations

import fnmatch
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Union

from ._errors import FaultNotFired, FaultSpecError

#: Fault kinds and what each puts on the wire.
KINDS: dict[str, str] = {
    "reset": "TCP RST: SO_LINGER on with timeout 0, then close",
    "close": "graceful FIN (shutdown write, drain what already arrived, close); no Connection: close",
    "half_close": "shutdown(SHUT_WR): FIN sent, the server keeps reading and records what arrives",
    "stall": "stop reading and writing, socket held open, until release() or the server stops",
    "delay": "wait `seconds`, then go on normally",
    "drip": "send the response `chunk_size` bytes at a time, `interval` seconds apart",
    "truncate": "send the headers and `body_bytes` of the body (default half), then close or reset",
    "garbage": "send `data`, bytes that are not HTTP, then close",
    "empty": "close without sending anything",
}

#: Moments in a connection's life at which a fault can fire.
MOMENTS: dict[str, str] = {
    "on_connect": "right after accept, before reading",
    "handshake": "TLS only: the ClientHello has arrived, nothing of the handshake sent (raw TCP)",
    "before_request": "a request's first bytes have arrived, none read (the keep-alive race)",
    "before_response": "request fully read and recorded, nothing sent",
    "after_headers": "status line and headers sent, no body",
    "mid_body": "after `body_bytes` bytes of the body (default half)",
    "after_response": "response complete, connection idle: the documented bug (httpx #327)",
    "idle": "after the connection has been idle for `seconds` (a keep-alive timeout)",
}

_ALL = frozenset(MOMENTS)
_RESPONSE = frozenset({"before_response"})
#: Where each kind makes sense; anything else is refused when the fault is made.
APPLIES: dict[str, frozenset[str]] = {
    "reset": _ALL,
    "close": _ALL,
    "half_close": _ALL,
    "stall": _ALL - {"idle"},
    "delay": _ALL - {"idle"},
    "drip": _RESPONSE,
    "truncate": _RESPONSE,
    "garbage": _ALL - {"mid_body"},
    "empty": frozenset({"on_connect", "handshake", "before_request", "before_response", "after_response"}),
}

#: The moment a kind fires at when ``at`` is not given.
DEFAULT_AT: dict[str, str] = {
    "reset": "after_response",
    "close": "after_response",
    "half_close": "after_response",
    "stall": "before_response",
    "delay": "before_response",
    "drip": "before_response",
    "truncate": "before_response",
    "garbage": "before_response",
    "empty": "before_response",
}

#: Selectors that can be known at each moment (the path and method only once a request is parsed).
_SELECTORS_AT: dict[str, frozenset[str]] = {
    "on_connect": frozenset({"connection"}),
    "handshake": frozenset({"connection"}),
    "before_request": frozenset({"connection", "request", "request_on_connection"}),
}
_ALL_SELECTORS = frozenset({"connection", "request", "request_on_connection", "path", "method"})

#: Parameters that only some kinds (or moments) use.
_PARAMETERS: dict[str, frozenset[str]] = {
    "seconds": frozenset({"delay"}),
    "chunk_size": frozenset({"drip"}),
    "interval": frozenset({"drip"}),
    "body_bytes": frozenset({"truncate"}),
    "then": frozenset({"truncate", "garbage"}),
    "close_notify": frozenset({"close", "half_close", "truncate", "garbage", "empty"}),
    "data": frozenset({"garbage"}),
}

DEFAULT_GARBAGE = b"\x00\x01\x02 this is not HTTP \xfe\xff\r\n\r\n"
DEFAULT_DELAY = 0.1
DEFAULT_IDLE = 0.05

Times = Union[int, str]

#: Every keyword argument a fault takes, for the message on an unknown one.
_ARGUMENTS = (
    "at",
    "request",
    "connection",
    "request_on_connection",
    "path",
    "method",
    "times",
    "seconds",
    "chunk_size",
    "interval",
    "body_bytes",
    "then",
    "data",
    "close_notify",
)


def _choices(names: Any) -> str:
    return ", ".join(repr(n) for n in names)


@dataclass(frozen=True, init=False)
class Fault:
    """A fault, armed with when it fires and which connections or requests it selects.

    Args:
        kind: what happens (see :data:`KINDS`): ``"reset"``, ``"close"``, ``"half_close"``,
            ``"stall"``, ``"delay"``, ``"drip"``, ``"truncate"``, ``"garbage"`` or ``"empty"``.
        at: the moment (see :data:`MOMENTS`); the default depends on the kind
            (:data:`DEFAULT_AT`: ``after_response`` for drops, ``before_response`` otherwise).
        request: only the server's Nth request (1-based).
        connection: only the server's Nth connection (1-based).
        request_on_connection: only the Nth request on its connection (a keep-alive limit).
        path: only requests whose path (target without the query) equals this, or matches
            it as a glob when it contains ``*``, ``?`` or ``[``.
        method: only requests with this method.
        times: how many times it fires: a positive number (default 1) or ``"always"``.
        seconds: ``delay``: how long (default 0.1); ``at="idle"``: the idle time (default 0.05).
        chunk_size: ``drip``: bytes per piece (default 1).
        interval: ``drip``: pause between pieces in seconds (default 0.005).
        body_bytes: ``truncate``: body bytes sent before the cut; ``at="mid_body"``: body bytes
            sent before the fault. Default: half the body.
        then: ``truncate`` and ``garbage``: how the connection ends, ``"close"`` (default) or
            ``"reset"``.
        data: ``garbage``: the bytes to send.
        close_notify: TLS only, for the faults that end with a FIN (``close``, ``half_close``,
            ``truncate``, ``garbage``, ``empty``): send the ``close_notify`` alert before the FIN
            (default True: a clean TLS close) or not (False: an abrupt close, which a client can
            tell from a complete close-delimited body only by the missing alert). Plain
            connections, and moments before the handshake is done, have no alert to send.

    Raises:
        FaultSpecError: a name or value does not exist or cannot apply; the message names it
            and lists the valid ones.
    """

    kind: str
    at: str
    request: int | None
    connection: int | None
    request_on_connection: int | None
    path: str | None
    method: str | None
    times: int | None
    seconds: float | None
    chunk_size: int
    interval: float
    body_bytes: int | None
    then: str
    data: bytes
    close_notify: bool

    def __init__(
        self,
        kind: str,
        *,
        at: str | None = None,
        request: int | None = None,
        connection: int | None = None,
        request_on_connection: int | None = None,
        path: str | None = None,
        method: str | None = None,
        times: Times = 1,
        seconds: float | None = None,
        chunk_size: int | None = None,
        interval: float | None = None,
        body_bytes: int | None = None,
        then: str | None = None,
        data: bytes | None = None,
        close_notify: bool | None = None,
        **unknown: Any,
    ) -> None:
        # Unknown keywords land here (not in a TypeError) so that a typo in a marker or in
        # inject() gets the same message as every other mistake: what was wrong, what exists.
        for name in unknown:
            raise FaultSpecError(f"unknown argument {name}=; the arguments are: {_choices(_ARGUMENTS)}")
        if not isinstance(kind, str) or kind not in KINDS:
            raise FaultSpecError(f"unknown fault {kind!r}; the faults are: {_choices(KINDS)}")
        moment = DEFAULT_AT[kind] if at is None else at
        if not isinstance(moment, str) or moment not in MOMENTS:
            raise FaultSpecError(f"unknown moment at={moment!r}; the moments are: {_choices(MOMENTS)}")
        if moment not in APPLIES[kind]:
            allowed = [m for m in MOMENTS if m in APPLIES[kind]]
            raise FaultSpecError(f"fault {kind!r} cannot fire at={moment!r}; it can at: {_choices(allowed)}")
        given = {
            "request": request,
            "connection": connection,
            "request_on_connection": request_on_connection,
        }
        for name, value in given.items():
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise FaultSpecError(f"{name}= must be a whole number from 1 up, not {value!r}")
        selectors = {n for n, v in {**given, "path": path, "method": method}.items() if v is not None}
        known = _SELECTORS_AT.get(moment, _ALL_SELECTORS)
        for name in sorted(selectors - known):
            raise FaultSpecError(
                f"{name}= cannot select a fault at={moment!r} (it is not known yet then); "
                f"the selectors there are: {_choices(sorted(known))}"
            )
        parameters: dict[str, Any] = {
            "seconds": seconds,
            "chunk_size": chunk_size,
            "interval": interval,
            "body_bytes": body_bytes,
            "then": then,
            "data": data,
            "close_notify": close_notify,
        }
        for name, value in parameters.items():
            if value is None:
                continue
            users = _PARAMETERS[name]
            if name == "seconds" and moment == "idle":
                continue
            if name == "body_bytes" and moment == "mid_body":
                continue
            if kind not in users:
                raise FaultSpecError(
                    f"{name}= does not apply to fault {kind!r} at={moment!r}; "
                    f"it applies to: {_choices(sorted(users))}"
                    + (" and at='idle'" if name == "seconds" else "")
                    + (" and at='mid_body'" if name == "body_bytes" else "")
                )
        if times == "always":
            count: int | None = None
        elif isinstance(times, int) and not isinstance(times, bool) and times >= 1:
            count = times
        else:
            raise FaultSpecError(f"times= must be a whole number from 1 up or 'always', not {times!r}")
        if then is not None and then not in ("close", "reset"):
            raise FaultSpecError(f"then= must be 'close' or 'reset', not {then!r}")
        for name, number in (("seconds", seconds), ("interval", interval)):
            if number is not None and (
                not isinstance(number, (int, float)) or not math.isfinite(number) or number < 0
            ):
                raise FaultSpecError(f"{name}= must be a number of seconds >= 0, not {number!r}")
        for name, number in (("chunk_size", chunk_size), ("body_bytes", body_bytes)):
            if number is not None and (
                not isinstance(number, int) or number < (1 if name == "chunk_size" else 0)
            ):
                raise FaultSpecError(f"{name}= must be a whole number of bytes, not {number!r}")
        if close_notify is not None and not isinstance(close_notify, bool):
            raise FaultSpecError(f"close_notify= must be True or False, not {close_notify!r}")
        if close_notify is not None and then == "reset":
            raise FaultSpecError("close_notify= does not apply with then='reset': an RST sends no alert")
        if data is not None and not isinstance(data, bytes):
            raise FaultSpecError(f"data= must be bytes, not {type(data).__name__}")
        if path is not None and not isinstance(path, str):
            raise FaultSpecError(f"path= must be a str, not {type(path).__name__}")
        if method is not None and not isinstance(method, str):
            raise FaultSpecError(f"method= must be a str, not {type(method).__name__}")
        default_seconds = DEFAULT_IDLE if moment == "idle" else DEFAULT_DELAY if kind == "delay" else None
        values: dict[str, Any] = {
            "kind": kind,
            "at": moment,
            "request": request,
            "connection": connection,
            "request_on_connection": request_on_connection,
            "path": path,
            "method": method.upper() if method is not None else None,
            "times": count,
            "seconds": default_seconds if seconds is None else float(seconds),
            "chunk_size": 1 if chunk_size is None else chunk_size,
            "interval": 0.005 if interval is None else float(interval),
            "body_bytes": body_bytes,
            "then": "close" if then is None else then,
            "data": DEFAULT_GARBAGE if data is None else data,
            "close_notify": True if close_notify is None else close_notify,
        }
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def __repr__(self) -> str:
        parts = [repr(self.kind), f"at={self.at!r}"]
        for name in ("request", "connection", "request_on_connection", "path", "method"):
            value = getattr(self, name)
            if value is not None:
                parts.append(f"{name}={value!r}")
        if self.times != 1:
            parts.append(f"times={'always' if self.times is None else self.times!r}")
        if not self.close_notify:
            parts.append("close_notify=False")
        return f"Fault({', '.join(parts)})"

    @property
    def label(self) -> str:
        """A short readable name, such as ``reset@after_response``."""
        return f"{self.kind}@{self.at}"

    def matches(
        self,
        moment: str,
        *,
        connection: int,
        request: int | None = None,
        request_on_connection: int | None = None,
        path: str | None = None,
        method: str | None = None,
        idle_for: float | None = None,
    ) -> bool:
        """Whether this fault selects the given moment of the given connection and request.

        ``idle_for`` (for ``idle``): how long the connection has been idle; a fault whose own
        idle time is longer does not match yet.
        """
        if moment != self.at:
            return False
        if idle_for is not None and (self.seconds or 0.0) > idle_for:
            return False
        if self.connection is not None and self.connection != connection:
            return False
        if self.request is not None and self.request != request:
            return False
        if self.request_on_connection is not None and self.request_on_connection != request_on_connection:
            return False
        if self.method is not None and self.method != method:
            return False
        if self.path is not None:
            if path is None:
                return False
            if any(c in self.path for c in "*?["):
                return fnmatch.fnmatchcase(path, self.path)
            return path == self.path
        return True


@dataclass(frozen=True)
class FaultFiring:
    """One firing of a fault, recorded once the fault is on the wire.

    This type has no public constructor; you get one from :attr:`FaultHandle.firings`, from
    :meth:`FaultHandle.wait`, or from a connection record's ``faults``.
    """

    kind: str
    at: str
    connection_id: int
    request_index: int | None
    fired_at: float
    detail: str = ""
    commanded: bool = False
    #: Whether seeded chaos (``@pytest.mark.connfault("chaos", ...)``) chose this fault.
    chaos: bool = False

    def __str__(self) -> str:
        where = f"connection {self.connection_id}"
        if self.request_index is not None:
            where += f", request {self.request_index}"
        extra = f" ({self.detail})" if self.detail else ""
        return f"{self.kind}@{self.at} on {where}{extra}" + (" [chaos]" if self.chaos else "")


class FaultHandle:
    """An armed fault, and what became of it. Returned by ``server.inject(...)``.

    This type has no public constructor; you get one from ``server.inject`` or ``server.faults``.
    """

    def __init__(self, fault: Fault) -> None:
        self.fault = fault
        self._remaining = fault.times
        self._firings: list[FaultFiring] = []
        self._fired = threading.Event()
        self._lock = threading.Lock()
        self._subscribers: list[Callable[[], None]] = []

    def __repr__(self) -> str:
        return f"<FaultHandle {self.fault!r} fired={len(self._firings)}>"

    @property
    def firings(self) -> tuple[FaultFiring, ...]:
        """Every firing so far, in order."""
        with self._lock:
            return tuple(self._firings)

    @property
    def fired(self) -> int:
        """How many times the fault has fired."""
        return len(self._firings)

    @property
    def is_exhausted(self) -> bool:
        """Whether the fault has fired as many times as it was armed for."""
        return self._remaining == 0

    def _claim(self) -> bool:
        """Reserve one firing; called under the server's lock."""
        if self._remaining is None:
            return True
        if self._remaining <= 0:
            return False
        self._remaining -= 1
        return True

    def _record(self, firing: FaultFiring) -> None:
        """Record a firing once it is on the wire, and wake whoever waits on it."""
        with self._lock:
            self._firings.append(firing)
            subscribers = list(self._subscribers)
        self._fired.set()
        for notify in subscribers:
            notify()

    def _subscribe(self, notify: Callable[[], None]) -> Callable[[], None]:
        with self._lock:
            self._subscribers.append(notify)

        def unsubscribe() -> None:
            with self._lock:
                if notify in self._subscribers:
                    self._subscribers.remove(notify)

        return unsubscribe

    def _not_fired(self, timeout: float) -> FaultNotFired:
        return FaultNotFired(
            f"{self.fault!r} had not fired after {timeout} s: no connection reached "
            f"{self.fault.at!r} with the selectors given"
        )

    def wait(self, timeout: float = 5.0) -> FaultFiring:
        """Block until the fault has fired (it is on the wire) and return its first firing.

        Raises:
            FaultNotFired: it had not fired within ``timeout`` seconds.
        """
        if not self._fired.wait(timeout):
            raise self._not_fired(timeout)
        return self._firings[0]

    async def wait_async(self, timeout: float = 5.0) -> FaultFiring:
        """The awaitable form of :meth:`wait`, for asyncio and trio tests; it does not block the loop."""
        from ._waiting import wait_for

        if not await wait_for(self._subscribe, self._fired.is_set, timeout):
            raise self._not_fired(timeout)
        return self._firings[0]


@dataclass
class FaultPlan:
    """The armed faults of one server, in arming order. Thread-safe through the server's lock."""

    handles: list[FaultHandle] = field(default_factory=list)
    # An index of ``handles`` (which only ever grows): per moment, the handles keyed by their
    # ``request=`` selector and the rest, each as (arming order, handle). A test that arms
    # hundreds of ``request=N`` faults would otherwise scan them all at every moment of every
    # request (the stress run measured 1 us per handle and moment).
    _index: dict[str, tuple[list[tuple[int, FaultHandle]], dict[int, list[tuple[int, FaultHandle]]]]] = field(
        default_factory=dict, init=False, repr=False
    )
    _indexed: int = field(default=0, init=False, repr=False)

    def arm(self, fault: Fault) -> FaultHandle:
        handle = FaultHandle(fault)
        self.handles.append(handle)
        return handle

    def has(self, moment: str) -> bool:
        """Whether any fault that can still fire waits for ``moment`` (a fast path for the server)."""
        return any(h.fault.at == moment and not h.is_exhausted for h in self.handles)

    def take(self, moment: str, **where: Any) -> FaultHandle | None:
        """The first armed fault that selects this moment, with one firing reserved; or None."""
        while self._indexed < len(self.handles):
            handle = self.handles[self._indexed]
            general, keyed = self._index.setdefault(handle.fault.at, ([], {}))
            entry = (self._indexed, handle)
            if handle.fault.request is None:
                general.append(entry)
            else:
                keyed.setdefault(handle.fault.request, []).append(entry)
            self._indexed += 1
        if moment not in self._index:
            return None
        general, keyed = self._index[moment]
        request = where.get("request")
        candidates = general if request is None or request not in keyed else sorted(general + keyed[request])
        for _, handle in candidates:
            if not handle.is_exhausted and handle.fault.matches(moment, **where) and handle._claim():
                return handle
        return None


def now() -> float:
    """The clock every record uses (monotonic seconds)."""
    return time.monotonic()
