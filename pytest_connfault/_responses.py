"""What the server answers: canned responses per path, a handler for anything else, a default.

Responses are rendered to bytes through the connection's ``h11.Connection`` so that h11's state
machine knows what was sent (keep-alive or close), while the server still controls every byte on
the wire (faults cut the rendered bytes at exact offsets).
"""

from __future__ import annotations

import traceback
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Union

import h11

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
    """

    status: int
    pieces: tuple[bytes, ...]
    headers: tuple[tuple[str, str], ...]
    chunked: bool
    close: bool

    def __init__(
        self,
        status: int = 200,
        body: BodyLike = b"ok\n",
        *,
        headers: HeadersLike = (),
        chunked: bool = False,
        close: bool = False,
        content_type: str = "text/plain",
    ) -> None:
        if not isinstance(status, int) or not 100 <= status <= 999:
            raise ConnfaultError(f"status must be a number from 100 to 999, not {status!r}")
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
        elif "content-length" not in names and "transfer-encoding" not in names:
            pairs.append(("Content-Length", str(sum(len(p) for p in pieces))))
        object.__setattr__(self, "status", status)
        object.__setattr__(self, "pieces", pieces)
        object.__setattr__(self, "headers", tuple(pairs))
        object.__setattr__(self, "chunked", chunked)
        object.__setattr__(self, "close", close)

    @property
    def body(self) -> bytes:
        """The whole body, unframed."""
        return b"".join(self.pieces)


DEFAULT_RESPONSE = Response()

Handler = Callable[["Request"], Response]


@dataclass(frozen=True)
class Rendered:
    """A response as bytes: the head (status line and headers), the framed body, and the tail."""

    head: bytes
    body: bytes
    tail: bytes
    status: int

    @property
    def wire(self) -> bytes:
        return self.head + self.body + self.tail


def render(conn: h11.Connection, response: Response) -> Rendered:
    """Turn ``response`` into bytes through ``conn`` (which then knows it was sent)."""
    head = conn.send(h11.Response(status_code=response.status, headers=list(response.headers)))
    body = b"".join(conn.send(h11.Data(data=p)) or b"" for p in response.pieces if p)
    tail = conn.send(h11.EndOfMessage()) or b""
    return Rendered(head or b"", body, tail, response.status)


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

    def resolve(self, request: Request) -> Response:
        path = request.path
        found = self._by_path.get((request.method, path)) or self._by_path.get((None, path))
        if found is not None:
            return found
        if self.handler is not None:
            result = self.handler(request)
            if not isinstance(result, Response):
                raise ConnfaultError(
                    f"the handler returned {type(result).__name__}, not a pytest_connfault.Response"
                )
            return result
        return DEFAULT_RESPONSE
