"""What the server answers: canned responses per path, a handler for anything else, a default.

Requests are parsed with h11's grammar (``_quick_parse.py``, else h11); responses are rendered to bytes here, so that the server controls every byte
on the wire: faults cut them at exact offsets, and a test may send a deliberately inconsistent
response (a ``Content-Length`` larger than the body, say) that a strict writer would refuse.
Keep-alive follows RFC 9112 section 9.3: the connection persists unless the request or the
response says ``Connection: close``, or the request is HTTP/1.0.
"""

from __future__ import annotations

import traceback
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Callable, NamedTuple, Union

from ._errors import ConnfaultError

if TYPE_CHECKING:
    from ._ledger import Request

HeadersLike = Union[Mapping[str, str], Sequence[tuple[str, str]]]
BodyLike = Union[bytes, str, Sequence[bytes]]


@dataclass(frozen=True, init=False)
class Response:
    """A canned response.

    Args:
        status: the status code (default 200).
        body: bytes (or ``str``, sent as UTF-8); a sequence of bytes is sent as that many
            chunks when ``chunked``. Default ``b"ok\\n"``.
        headers: extra headers, as a mapping or (name, value) pairs.
        chunked: frame the body with ``Transfer-Encoding: chunked`` instead of ``Content-Length``.
        close: add ``Connection: close``, so the server closes the connection after it.
        content_type: the ``Content-Type`` header, unless ``headers`` has one.
        close_delimited: send neither ``Content-Length`` nor chunked framing: the body ends
            where the connection does (RFC 9112 section 6.3, rule 8). Implies ``close``. Over TLS
            the server ends such a body with ``close_notify``; only that alert tells a complete
            body from one cut short (a ``truncate`` fault with ``close_notify=False``).
    """

    status: int
    pieces: tuple[bytes, ...]
    headers: tuple[tuple[str, str], ...]
    chunked: bool
    close: bool
    close_delimited: bool
    _head: bytes

    def __init__(
        self,
        status: int = 200,
        body: BodyLike = b"ok\n",
        *,
        headers: HeadersLike = (),
        chunked: bool = False,
        close: bool = False,
        content_type: str = "text/plain",
        close_delimited: bool = False,
    ) -> None:
        if not isinstance(status, int) or not 100 <= status <= 999:
            raise ConnfaultError(f"status must be a number from 100 to 999, not {status!r}")
        if close_delimited and chunked:
            raise ConnfaultError("a response is either chunked or close_delimited, not both")
        close = close or close_delimited
        if isinstance(body, str):
            pieces: tuple[bytes, ...] = (body.encode("utf-8"),)
        elif isinstance(body, (bytes, bytearray, memoryview)):
            pieces = (bytes(body),)
        else:
            pieces = tuple(bytes(p) for p in body)
        pairs = list(headers.items()) if isinstance(headers, Mapping) else list(headers)
        names = {name.lower() for name, _ in pairs}
        if "content-type" not in names and content_type:
            pairs.append(("Content-Type", content_type))
        if close and "connection" not in names:
            pairs.append(("Connection", "close"))
        if chunked:
            pairs.append(("Transfer-Encoding", "chunked"))
        elif close_delimited:
            pass
        elif "content-length" not in names and "transfer-encoding" not in names and _has_body(status):
            pairs.append(("Content-Length", str(sum(len(p) for p in pieces))))
        object.__setattr__(self, "status", status)
        object.__setattr__(self, "pieces", pieces)
        object.__setattr__(self, "headers", tuple(pairs))
        object.__setattr__(self, "chunked", chunked)
        object.__setattr__(self, "close_delimited", close_delimited)
        object.__setattr__(
            self, "close", close or any(n.lower() == "connection" and "close" in v.lower() for n, v in pairs)
        )
        object.__setattr__(self, "_head", _render_head(status, pairs))

    @property
    def body(self) -> bytes:
        """The whole body, unframed."""
        return b"".join(self.pieces)


Handler = Callable[["Request"], Union[Response, Awaitable[Response]]]


def _has_body(status: int) -> bool:
    # RFC 9110 section 6.4.1: 1xx, 204 and 304 responses end with their header section.
    return status >= 200 and status not in (204, 304)


def _render_head(status: int, headers: Sequence[tuple[str, str]]) -> bytes:
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = "Unknown"
    lines = [f"HTTP/1.1 {status} {reason}"] + [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class Rendered(NamedTuple):
    """A response as bytes: the head (status line and headers), the framed body, and the tail.

    A named tuple: one is built per request, and a frozen dataclass's ``__init__`` (a
    ``object.__setattr__`` call per field) would cost several times as much.
    """

    head: bytes
    body: bytes
    tail: bytes
    status: int
    keep_alive: bool

    @property
    def wire(self) -> bytes:
        return self.head + self.body + self.tail


def render(response: Response, request: Request) -> Rendered:
    """Turn ``response`` into the bytes that answer ``request``."""
    keep_alive = keeps_alive(response, request.http_version, request.headers)
    head = response._head
    if not keep_alive and not response.close:
        head = head[:-2] + b"Connection: close\r\n\r\n"
    if request.method == "HEAD" or not _has_body(response.status):
        return Rendered(head, b"", b"", response.status, keep_alive)
    if response.chunked:
        body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in response.pieces if p)
        return Rendered(head, body, b"0\r\n\r\n", response.status, keep_alive)
    return Rendered(head, b"".join(response.pieces), b"", response.status, keep_alive)


def keeps_alive(response: Response, version: str, headers: Sequence[tuple[str, str]]) -> bool:
    """Whether answering a request (its HTTP ``version`` and ``headers``) with ``response`` leaves
    the connection open for the next one."""
    return not response.close and version == "1.1" and not _asks_close(headers)


def _asks_close(headers: Sequence[tuple[str, str]]) -> bool:
    for name, value in headers:  # noqa: SIM110 - any() over a generator costs half again; runs per request
        if name.lower() == "connection" and "close" in value.lower():
            return True
    return False


DEFAULT_RESPONSE = Response()


def handler_error_response(exc: BaseException) -> tuple[Response, str]:
    """The 500 that replaces a handler's exception, and the traceback for the ledger."""
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return Response(500, f"handler raised {type(exc).__name__}: {exc}\n", close=False), text


class Routes:
    """Per-path responses, then a handler, then the default 200."""

    def __init__(self, handler: Handler | None = None) -> None:
        self._by_path: dict[tuple[str | None, str], Response] = {}
        self.handler = handler

    def set(self, path: str, response: Response, method: str | None = None) -> None:
        self._by_path[(method.upper() if method else None, path)] = response

    def _found(self, method: str, path: str) -> Response | None:
        return self._by_path.get((method, path)) or self._by_path.get((None, path))

    def canned(self, method: str, path: str) -> Response:
        """The canned response for ``method`` and ``path``, else the default (the handler aside)."""
        return self._found(method, path) or DEFAULT_RESPONSE

    def resolve(self, request: Request) -> Response | Awaitable[Response]:
        """The canned response for the request's path, else the handler's answer, else the default.

        An async handler's answer is returned un-awaited; the connection loop awaits it.
        """
        found = self._found(request.method, request.path)
        if found is not None:
            return found
        if self.handler is not None:
            return self.handler(request)
        return DEFAULT_RESPONSE
