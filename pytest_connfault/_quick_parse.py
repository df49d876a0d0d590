"""The common request, parsed without h11: a whole head and body, nothing unusual in them.

h11 costs a good part of a request's time on the server (a connection object per request, an event
per step). Most requests a test sends are plain: a request line, a few headers with one ``Host``, no
body or a ``Content-Length`` body that has already arrived whole. Those are parsed here with h11's
own grammar (RFC 9112 section 3 and 5, the same regular expressions), and everything else is left
to h11: returning None means "not sure", never "invalid", so h11 still judges (and answers 400, 413,
431, 501, 505 for) anything unusual — folded or bare-LF lines, a missing or repeated ``Host``,
``Transfer-Encoding``, ``Expect``, odd ``Content-Length`` values, a body still on its way.
"""

from __future__ import annotations

import re
from typing import NamedTuple

_TOKEN = rb"[-!#$%&'*+.^_`|~0-9a-zA-Z]+"
_REQUEST_LINE = re.compile(rb"(" + _TOKEN + rb") ([\x21-\x7e]+) HTTP/(1\.[01])")
#: A header line exactly as h11 reads it (``field-name ":" OWS field-value OWS``).
_FIELD = re.compile(rb"(" + _TOKEN + rb"):[ \t]*((?:[^\x00\s]+(?:[ \t]+[^\x00\s]+)*)?)[ \t]*")
#: Headers whose presence sends the request to h11.
_UNUSUAL = frozenset({"transfer-encoding", "expect"})
#: h11 refuses longer Content-Length values.
_MAX_LENGTH_DIGITS = 20


class QuickRequest(NamedTuple):
    """A request parsed here, and what came after it."""

    method: str
    target: str
    headers: tuple[tuple[str, str], ...]
    version: str
    body: bytes
    #: Bytes past the request (a pipelined next one, or part of it).
    rest: bytes


def quick_parse(data: bytes) -> QuickRequest | None:
    """The request at the start of ``data`` if it is plain and whole; None to leave it to h11."""
    end = data.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = data[:end].split(b"\r\n")
    line = _REQUEST_LINE.fullmatch(lines[0])
    if line is None:
        return None
    headers = []
    hosts = 0
    length = 0
    has_length = False
    for raw in lines[1:]:
        field = _FIELD.fullmatch(raw)
        if field is None:
            return None
        name = field[1].decode("ascii")
        value = field[2]
        lower = name.lower()
        if lower == "host":
            hosts += 1
        elif lower == "content-length":
            if has_length or not value.isdigit() or len(value) > _MAX_LENGTH_DIGITS:
                return None
            has_length = True
            length = int(value)
        elif lower in _UNUSUAL:
            return None
        headers.append((name, value.decode("latin-1")))
    if hosts != 1:
        return None
    start = end + 4
    if len(data) - start < length:
        return None  # the body is still on its way
    return QuickRequest(
        method=line[1].decode("ascii"),
        target=line[2].decode("ascii"),
        headers=tuple(headers),
        version=line[3].decode("ascii"),
        body=data[start : start + length],
        rest=data[start + length :],
    )
