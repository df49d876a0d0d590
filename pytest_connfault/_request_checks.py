"""The checks a parsed request head must pass beyond h11's own, and its headers as the ledger keeps them."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._server import ServerOptions


def unacceptable_head(
    method: str, target: str, headers: tuple[tuple[str, str], ...], version: str, options: ServerOptions
) -> tuple[int, str] | None:
    """What makes a parsed request head unacceptable beyond h11's own checks, as (status, reason)."""
    if version not in ("1.0", "1.1"):
        # RFC 9110 section 15.6.6: 505 for a major version the server does not support.
        return 505, f"HTTP/{version} is not supported"
    size = len(method) + len(target) + 12
    declared: str | None = None
    transfer_encoding = False
    for name, value in headers:  # one pass: this runs for every request
        size += len(name) + len(value) + 4
        lower = name.lower()
        if lower == "content-length":
            declared = value  # h11 and quick_parse let no two different values through
        elif lower == "transfer-encoding":
            transfer_encoding = True
    if size > options.max_header_size:
        # h11 bounds only a head that arrives in pieces; one that arrives whole is checked here.
        return 431, f"request head over {options.max_header_size} bytes"
    if declared is not None and transfer_encoding:
        # RFC 9112 section 6.1: a request with both is how requests are smuggled; refuse it.
        return 400, "both Content-Length and Transfer-Encoding"
    limit = options.max_body_size
    if limit is not None and declared is not None and int(declared) > limit:
        # Refused before the body is read: the client learns at once, nothing is buffered.
        return 413, f"body over {limit} bytes (Content-Length: {declared})"
    return None


def request_headers(event: Any) -> tuple[tuple[str, str], ...]:
    """An h11 request's headers as ``str`` pairs, in the order and case they arrived."""
    return tuple(
        (name.decode("latin-1"), value.decode("latin-1")) for name, value in event.headers.raw_items()
    )
