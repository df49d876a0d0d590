"""The fast request parser (``_quick_parse.quick_parse``) agrees with h11 on every request it takes.

``quick_parse(data)`` reads a plain, whole HTTP/1.1 request at the start of ``data`` without h11.
It returns None for anything else, and None means "leave it to h11", never "invalid". Its contract,
with h11 (``h11.Connection(h11.SERVER)`` fed the same bytes) as the oracle:

- when it returns a request, h11 reads exactly the same request: method, target, headers (h11's
  ``raw_items()``, in order, decoded latin-1), HTTP version, body (every ``Data`` up to
  ``EndOfMessage``), and the same bytes left over (``trailing_data``) as ``QuickRequest.rest``;
- when h11 refuses the bytes (``RemoteProtocolError``), it returns None.

The examples first document each rule by one request; the property test then throws requests from a
small grammar mixing valid and broken parts at both parsers. Its example count follows
``CONNFAULT_FUZZ_EXAMPLES`` (as ``test_fuzz.py`` does), eight parsing examples per fuzz example.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Callable

import h11
import pytest
from hypothesis import HealthCheck, Phase, event, example, find, given, settings
from hypothesis import strategies as st
from hypothesis.errors import NoSuchExample

from pytest_connfault._quick_parse import QuickRequest, quick_parse

EXAMPLES = int(os.environ.get("CONNFAULT_FUZZ_EXAMPLES", "60"))
PARSING = settings(max_examples=EXAMPLES * 8, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# -- the oracle ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class H11Reading:
    """What h11 made of some bytes: a whole request, a refusal, or neither (it needs more bytes)."""

    request: QuickRequest | None = None
    error: h11.RemoteProtocolError | None = None

    @property
    def needs_data(self) -> bool:
        return self.request is None and self.error is None


def read_with_h11(data: bytes) -> H11Reading:
    """Feed ``data`` to a fresh h11 server connection and read events up to the end of one request."""
    conn = h11.Connection(h11.SERVER)
    if data:  # (receive_data(b"") would mean the client closed)
        conn.receive_data(data)
    request: h11.Request | None = None
    body = []
    try:
        while True:
            got = conn.next_event()
            if got is h11.NEED_DATA:
                return H11Reading()
            if isinstance(got, h11.Request):
                request = got
            elif isinstance(got, h11.Data):
                body.append(got.data)
            elif isinstance(got, h11.EndOfMessage):
                break
            else:
                raise AssertionError(f"h11 gave an unexpected event {got!r} while reading {data!r}")
    except h11.RemoteProtocolError as error:
        return H11Reading(error=error)
    assert request is not None, f"h11 ended a message it never started, reading {data!r}"
    trailing, _closed = conn.trailing_data
    return H11Reading(
        request=QuickRequest(
            method=request.method.decode("ascii"),
            target=request.target.decode("ascii"),
            headers=tuple(
                (name.decode("latin-1"), value.decode("latin-1"))
                for name, value in request.headers.raw_items()
            ),
            version=request.http_version.decode("ascii"),
            body=b"".join(body),
            rest=bytes(trailing),
        )
    )


def assert_agrees_with_h11(data: bytes) -> QuickRequest | None:
    """The contract for one input; returns what quick_parse made of it."""
    quick = quick_parse(data)
    h11_reading = read_with_h11(data)
    if h11_reading.error is not None:
        assert quick is None, (
            f"h11 refuses {data!r} ({h11_reading.error}), but quick_parse took it as a request: {quick}"
        )
    if quick is not None:
        assert not h11_reading.needs_data, (
            f"quick_parse took {data!r} as a whole request, but h11 is still waiting for more bytes"
        )
        assert quick == h11_reading.request, f"quick_parse read {data!r} differently from h11"
    return quick


def request(
    *header_lines: bytes, line: bytes = b"GET / HTTP/1.1", body: bytes = b"", eol: bytes = b"\r\n"
) -> bytes:
    """Request bytes from a request line and raw header lines, each ended by ``eol``."""
    return line + eol + b"".join(header + eol for header in header_lines) + eol + body


# -- what the fast path takes -------------------------------------------------------------------


def test_a_plain_get_with_host_is_parsed_with_every_field() -> None:
    """A GET with Host and another header: method, target, headers (in order), version, no body, no rest."""
    data = request(b"Host: example.org", b"Accept: */*", line=b"GET /path?q=1 HTTP/1.1")

    assert quick_parse(data) == QuickRequest(
        method="GET",
        target="/path?q=1",
        headers=(("Host", "example.org"), ("Accept", "*/*")),
        version="1.1",
        body=b"",
        rest=b"",
    )
    assert_agrees_with_h11(data)


def test_an_http_1_0_request_is_parsed_with_its_version() -> None:
    """HTTP/1.0 is read as version "1.0" (h11 reads it the same)."""
    quick = assert_agrees_with_h11(request(b"Host: x", line=b"GET / HTTP/1.0"))

    assert quick is not None, "a plain HTTP/1.0 request with Host was left to h11"
    assert quick.version == "1.0"


def test_a_post_with_a_whole_body_is_parsed_and_a_pipelined_request_is_left_as_rest() -> None:
    """The Content-Length body is cut exactly; a request pipelined right behind it comes back as ``rest``."""
    second = request(b"Host: x", line=b"GET /second HTTP/1.1")
    data = request(b"Host: x", b"Content-Length: 5", line=b"POST /form HTTP/1.1", body=b"hello" + second)

    quick = quick_parse(data)

    assert quick == QuickRequest(
        method="POST",
        target="/form",
        headers=(("Host", "x"), ("Content-Length", "5")),
        version="1.1",
        body=b"hello",
        rest=second,
    )
    assert_agrees_with_h11(data)


def test_bytes_after_a_request_without_content_length_are_rest_not_body() -> None:
    """No Content-Length means no body: whatever follows the head is left over, as h11 leaves it."""
    quick = assert_agrees_with_h11(request(b"Host: x", body=b"stray bytes"))

    assert quick is not None, "a plain GET followed by stray bytes was left to h11"
    assert (quick.body, quick.rest) == (b"", b"stray bytes")


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        pytest.param(b"X-Note: plain", "plain", id="no OWS"),
        pytest.param(b"X-Note:  \t a  b\tc \t ", "a  b\tc", id="OWS around, inner spaces and tabs kept"),
        pytest.param(b"X-Note:", "", id="empty value"),
        pytest.param(b"X-Note: \t ", "", id="only OWS"),
    ],
)
def test_header_values_are_trimmed_exactly_as_h11_trims_them(raw: bytes, value: str) -> None:
    """Leading and trailing spaces/tabs are dropped; spaces and tabs inside the value are kept."""
    quick = assert_agrees_with_h11(request(b"Host: x", raw))

    assert quick is not None, f"the header line {raw!r} sent the request to h11"
    assert quick.headers[1] == ("X-Note", value)


def test_obs_text_in_a_header_value_is_decoded_latin_1_as_h11_does() -> None:
    """Bytes 0x80-0xff (obs-text) are allowed in values and come back decoded latin-1, byte for character."""
    quick = assert_agrees_with_h11(request(b"Host: x", b"X-Name: caf\xe9 \xff\x80"))

    assert quick is not None, "obs-text in a header value sent the request to h11"
    assert quick.headers[1] == ("X-Name", "caf\xe9 \xff\x80")


@pytest.mark.parametrize("byte", [b"\x01", b"\x08", b"\x1f", b"\x7f"], ids=lambda b: f"0x{b[0]:02x}")
def test_control_bytes_h11_tolerates_in_a_value_are_taken_alike(byte: bytes) -> None:
    """h11 rejects NUL and the whitespace controls in a value, but lets the other controls and DEL through.

    The fast path must agree with h11 either way; here both take the request with the byte in its value.
    """
    data = request(b"Host: x", b"X-Odd: a" + byte + b"b")

    assert read_with_h11(data).request is not None, (
        f"h11 no longer takes {byte!r} in a value: update the test"
    )
    quick = assert_agrees_with_h11(data)
    assert quick is not None, f"{byte!r} in a value sent the request to h11, which accepts it"


@pytest.mark.parametrize(
    ("raw", "value"),
    [
        pytest.param(b"Content-Length: 5", "5", id="plain"),
        pytest.param(b"Content-Length:  5 \t", "5", id="OWS trimmed"),
        pytest.param(b"content-length: 005", "005", id="leading zeros kept"),
    ],
)
def test_content_length_value_reads_as_h11_normalizes_it(raw: bytes, value: str) -> None:
    """h11 rewrites Content-Length values (strips, merges duplicates); one digits-only value stays as sent."""
    quick = assert_agrees_with_h11(request(b"Host: x", raw, line=b"POST / HTTP/1.1", body=b"hello"))

    assert quick is not None, f"{raw!r} sent the request to h11"
    assert quick.headers[1][1] == value
    assert quick.body == b"hello"


def test_a_content_length_of_twenty_digits_is_the_longest_taken() -> None:
    """h11 refuses a Content-Length longer than 20 digits; 20 (even all zeros) is still a length."""
    twenty = request(b"Host: x", b"Content-Length: " + b"0" * 20, line=b"POST / HTTP/1.1")
    twenty_one = request(b"Host: x", b"Content-Length: " + b"0" * 21, line=b"POST / HTTP/1.1")

    quick = assert_agrees_with_h11(twenty)
    assert quick is not None, "a 20-digit Content-Length sent the request to h11"
    assert quick.body == b""
    assert assert_agrees_with_h11(twenty_one) is None, "a 21-digit Content-Length took the fast path"
    if _h11_version() >= (0, 16):  # the limit came with h11 0.16; older ones take any length
        assert read_with_h11(twenty_one).error is not None, (
            "h11 now takes 21-digit Content-Lengths: update the test"
        )


def _h11_version() -> tuple[int, ...]:
    return tuple(int(part) for part in h11.__version__.split(".")[:2])


# -- what is left to h11 ------------------------------------------------------------------------

REFUSES = "refuses"
ACCEPTS = "accepts"
NEEDS_DATA = "needs more bytes"

#: Inputs quick_parse must leave to h11, and what h11 itself makes of each (checked, so the table
#: cannot go stale): None is right both for what h11 refuses and for what it reads but is unusual.
LEFT_TO_H11 = {
    "body not yet whole": (
        request(b"Host: x", b"Content-Length: 5", line=b"POST / HTTP/1.1", body=b"hell"),
        NEEDS_DATA,
    ),
    "body not started": (request(b"Host: x", b"Content-Length: 5", line=b"POST / HTTP/1.1"), NEEDS_DATA),
    "head without its blank line": (b"GET / HTTP/1.1\r\nHost: x\r\n", NEEDS_DATA),
    "head cut inside a header": (b"GET / HTTP/1.1\r\nHost: x\r\nAcc", NEEDS_DATA),
    "Transfer-Encoding: chunked": (
        request(b"Host: x", b"Transfer-Encoding: chunked", line=b"POST / HTTP/1.1", body=b"0\r\n\r\n"),
        ACCEPTS,
    ),
    "Transfer-Encoding: gzip": (
        request(b"Host: x", b"Transfer-Encoding: gzip", line=b"POST / HTTP/1.1"),
        REFUSES,
    ),
    "Expect: 100-continue": (
        request(
            b"Host: x", b"Expect: 100-continue", b"Content-Length: 2", line=b"POST / HTTP/1.1", body=b"hi"
        ),
        ACCEPTS,
    ),
    "no Host on HTTP/1.1": (request(b"Accept: */*"), REFUSES),
    "no Host on HTTP/1.0": (request(line=b"GET / HTTP/1.0"), ACCEPTS),
    "two Host headers": (request(b"Host: x", b"host: x"), REFUSES),
    "two different Content-Lengths": (
        request(b"Host: x", b"Content-Length: 2", b"Content-Length: 3", line=b"POST / HTTP/1.1", body=b"abc"),
        REFUSES,
    ),
    "two equal Content-Lengths": (
        request(b"Host: x", b"Content-Length: 2", b"Content-Length: 2", line=b"POST / HTTP/1.1", body=b"hi"),
        ACCEPTS,
    ),
    "Content-Length list of equal values": (
        request(b"Host: x", b"Content-Length: 2, 2", line=b"POST / HTTP/1.1", body=b"hi"),
        ACCEPTS,
    ),
    "Content-Length list of different values": (
        request(b"Host: x", b"Content-Length: 2,3", line=b"POST / HTTP/1.1", body=b"hi"),
        REFUSES,
    ),
    "Content-Length with an inner space": (request(b"Host: x", b"Content-Length: 1 0"), REFUSES),
    "Content-Length with a sign": (request(b"Host: x", b"Content-Length: +2", body=b"hi"), REFUSES),
    "negative Content-Length": (request(b"Host: x", b"Content-Length: -1"), REFUSES),
    "hexadecimal Content-Length": (request(b"Host: x", b"Content-Length: 0x2", body=b"hi"), REFUSES),
    "empty Content-Length": (request(b"Host: x", b"Content-Length:"), REFUSES),
    "non-ASCII digit in Content-Length": (request(b"Host: x", b"Content-Length: \xd9\xa3"), REFUSES),
    # Byte B2 decoded latin-1 is "²": a digit to str.isdigit(), not to int() nor to h11.
    "superscript two in Content-Length": (request(b"Host: x", b"Content-Length: \xb2"), REFUSES),
    "obs-fold continuation line": (request(b"Host: x", b"X-Long: first", b"  second"), ACCEPTS),
    "obs-fold before any header": (request(b" folded", b"Host: x"), REFUSES),
    "bare LF line endings": (request(b"Host: x", eol=b"\n"), ACCEPTS),
    "bare LF on one header line": (b"GET / HTTP/1.1\r\nHost: x\nAccept: */*\r\n\r\n", ACCEPTS),
    "bare LF blank line ending the head": (b"GET / HTTP/1.1\r\nHost: x\r\n\nrest", ACCEPTS),
    "HTTP/2.0": (request(b"Host: x", line=b"GET / HTTP/2.0"), ACCEPTS),
    "HTTP/0.9": (request(b"Host: x", line=b"GET / HTTP/0.9"), ACCEPTS),
    "HTTP/1.2": (request(b"Host: x", line=b"GET / HTTP/1.2"), ACCEPTS),
    "lower-case http version": (request(b"Host: x", line=b"GET / http/1.1"), REFUSES),
    "blank line before the request line": (b"\r\n" + request(b"Host: x"), REFUSES),
    "two spaces in the request line": (request(b"Host: x", line=b"GET  / HTTP/1.1"), REFUSES),
    "space in the target": (request(b"Host: x", line=b"GET /a b HTTP/1.1"), REFUSES),
    "obs-text in the target": (request(b"Host: x", line=b"GET /caf\xe9 HTTP/1.1"), REFUSES),
    "invalid method character": (request(b"Host: x", line=b"G(T / HTTP/1.1"), REFUSES),
    "space before the colon": (request(b"Host : x"), REFUSES),
    "header line without a colon": (request(b"Host: x", b"Accept"), REFUSES),
    "NUL in a header value": (request(b"Host: x", b"X-Odd: a\x00b"), REFUSES),
    "vertical tab in a header value": (request(b"Host: x", b"X-Odd: a\x0bb"), REFUSES),
    "form feed in a header value": (request(b"Host: x", b"X-Odd: a\x0cb"), REFUSES),
    "bare CR in a header value": (request(b"Host: x", b"X-Odd: a\rb"), REFUSES),
    "NUL in the Host value": (request(b"Host: x\x00"), REFUSES),
    "NUL in a header name": (request(b"Host: x", b"X\x00: a"), REFUSES),
}


@pytest.mark.parametrize(("data", "h11_says"), list(LEFT_TO_H11.values()), ids=list(LEFT_TO_H11))
def test_unusual_or_incomplete_requests_are_left_to_h11(data: bytes, h11_says: str) -> None:
    """quick_parse returns None (leave it to h11) for anything incomplete, invalid or merely unusual."""
    h11_reading = read_with_h11(data)
    actual = REFUSES if h11_reading.error else NEEDS_DATA if h11_reading.needs_data else ACCEPTS
    assert actual == h11_says, f"this example no longer shows what it says: h11 {actual} {data!r}"

    quick = quick_parse(data)
    assert quick is None, (
        f"quick_parse took {data!r} instead of leaving it to h11 (which {h11_says} it): {quick}"
    )


# -- the differential property test -------------------------------------------------------------

CLEAN_METHODS = (b"GET", b"POST", b"PUT", b"OPTIONS", b"M-SEARCH", b"CONNECT", b"x!#$%&'*+.^_`|~")
ODD_METHODS = (b"", b"G(T", b"G@T", b"G\xe9T", b"G\x00T", b"GET\r")
CLEAN_TARGETS = (b"/", b"/a/b?c=d&e=%20", b"*", b"http://h:1/x", b"/~!$&'()*+,;=:@[]")
ODD_TARGETS = (b"", b"/a b", b"/caf\xe9", b"/\x7f", b"/\x00", b"/\t")
CLEAN_VERSIONS = (b"HTTP/1.1", b"HTTP/1.0")
ODD_VERSIONS = (
    b"HTTP/2.0",
    b"HTTP/0.9",
    b"HTTP/1.2",
    b"HTTP/9.9",
    b"http/1.1",
    b"HTTP/11",
    b"HTTP/1",
    b"HTTP/1.1 ",
    b"",
)
ODD_SEPARATORS = (b"", b"  ", b"\t")
CLEAN_NAMES = (b"Accept", b"X-Trace", b"x_y.z~!#$%&'*+^`|", b"Connection", b"Upgrade", b"user-agent")
ODD_NAMES = (b"", b"X Y", b"X(Y)", b"X\xe9", b"X\x00", b"X ")
#: Value pieces h11 accepts (controls other than NUL and whitespace included, see above)...
CLEAN_VALUE_PIECES = (
    b"a",
    b"text/html",
    b"q=0.9,",
    b" ",
    b"\t",
    b"  ",
    b"\xe9",
    b"\xff",
    b"\x01",
    b"\x7f",
    b'"q"',
    b":",
)
#: ... and pieces it refuses inside a value.
ODD_VALUE_PIECES = (b"\x00", b"\r", b"\n", b"\x0b", b"\x0c")
OWS_CHOICES = (b"", b" ", b"\t", b" \t ")
HOST_NAMES = (b"Host", b"host", b"HOST")
HOST_VALUES = (b"x", b"example.org:8080", b"[::1]", b"")
LENGTH_NAMES = (b"Content-Length", b"content-length", b"CONTENT-LENGTH")
ODD_LENGTHS = (b"", b"+5", b"-1", b"5, 5", b"5,6", b"0x10", b"1e3", b"5 5", b"\xd9\xa3", b"0" * 21, b"0" * 40)
UNUSUAL_LINES = (
    b"Transfer-Encoding: chunked",
    b"transfer-encoding: gzip",
    b"Expect: 100-continue",
    b"expect: nothing",
    b" folded",
    b"\tfolded too",
)
HEADER_COUNTS = st.integers(0, 3)
CLEAN_VALUES = st.lists(st.sampled_from(CLEAN_VALUE_PIECES), max_size=3)
ODD_COUNTS = st.sampled_from((0, 2, 2))
LENGTH_COUNTS = st.sampled_from((0, 1))
LENGTH_SHIFTS = st.sampled_from((0, 0, 0, -1, -3, 1, 4))
LENGTH_WIDTHS = st.sampled_from((1, 1, 3, 20))
LINE_ENDS = (b"\r\n", b"\n")
EXTRA_BYTES = st.binary(min_size=1, max_size=8)
BODIES = st.one_of(
    st.binary(max_size=12),
    st.sampled_from((b"hello", b"\r\n\r\n", b"0\r\n\r\n", request(b"Host: x", line=b"GET /next HTTP/1.1"))),
)


#: One strategy per tuple of choices, built once (building and validating them is most of the cost).
one_of_these = functools.lru_cache(maxsize=None)(st.sampled_from)
#: The places where a request can go wrong.
ASPECTS = (
    "request line spacing",
    "method",
    "target",
    "version",
    "header name",
    "header value",
    "Host count",
    "Content-Length count",
    "Content-Length value",
    "unusual header",
    "line ends",
    "extra bytes",
    "cut short",
)
#: A plain request (nothing odd), one odd aspect (the sharpest test of each rule), or many.
SHAPES = st.sampled_from(("plain", "one odd aspect", "one odd aspect", "one odd aspect", "many odd aspects"))
ODD_ASPECT = st.sampled_from(ASPECTS)
OFTEN = st.sampled_from((False, False, True))


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    """Request bytes: some plain and whole, the others with pieces odd, missing, repeated or cut."""
    shape = draw(SHAPES)
    chosen = draw(ODD_ASPECT) if shape == "one odd aspect" else None

    def odd(aspect: str) -> bool:
        return aspect == chosen or (shape == "many odd aspects" and draw(OFTEN))

    def pick(aspect: str, clean: tuple[bytes, ...], unusual: tuple[bytes, ...]) -> bytes:
        return draw(one_of_these(unusual if odd(aspect) else clean))

    def value() -> bytes:
        text = b"".join(draw(CLEAN_VALUES))
        if odd("header value"):  # one byte h11 refuses, anywhere in the value
            text += draw(one_of_these(ODD_VALUE_PIECES)) + b"".join(draw(CLEAN_VALUES))
        return text

    def field(name: bytes, field_value: bytes) -> bytes:
        return name + b":" + draw(one_of_these(OWS_CHOICES)) + field_value + draw(one_of_these(OWS_CHOICES))

    space = pick("request line spacing", (b" ",), ODD_SEPARATORS)
    line = pick("method", CLEAN_METHODS, ODD_METHODS) + space + pick("target", CLEAN_TARGETS, ODD_TARGETS)
    line += b" " + pick("version", CLEAN_VERSIONS, ODD_VERSIONS)
    body = draw(BODIES)

    count = draw(HEADER_COUNTS) or (1 if chosen in ("header name", "header value") else 0)
    headers = [field(pick("header name", CLEAN_NAMES, ODD_NAMES), value()) for _ in range(count)]
    hosts = draw(ODD_COUNTS) if odd("Host count") else 1
    headers += [field(draw(one_of_these(HOST_NAMES)), draw(one_of_these(HOST_VALUES))) for _ in range(hosts)]
    odd_length = odd("Content-Length value")
    lengths = draw(ODD_COUNTS) if odd("Content-Length count") else 1 if odd_length else draw(LENGTH_COUNTS)
    for _ in range(lengths):
        if odd_length:
            length = draw(one_of_these(ODD_LENGTHS))
        else:  # exact, short of the body (the rest is left over) or past it (not whole), maybe zero-padded
            number = max(0, len(body) + draw(LENGTH_SHIFTS))
            length = b"%0*d" % (draw(LENGTH_WIDTHS), number)
        headers.append(field(draw(one_of_these(LENGTH_NAMES)), length))
    if odd("unusual header"):
        headers.append(draw(one_of_these(UNUSUAL_LINES)))
    if len(headers) > 1:
        headers = list(draw(st.permutations(headers)))

    lines = [line, *headers, b""]
    ends = [draw(one_of_these(LINE_ENDS)) if odd("line ends") else b"\r\n" for _ in lines]
    data = b"".join(text + end for text, end in zip(lines, ends)) + body
    if odd("extra bytes"):
        data += draw(EXTRA_BYTES)
    if odd("cut short"):
        data = data[: draw(st.integers(0, len(data)))]
    return data


@PARSING
@given(data=requests())
# Always tried first: plain requests (the fast path), a body short by one, odd bytes that h11
# tolerates, and heads whose first blank line h11 finds before quick_parse's first CRLF CRLF.
@example(data=request(b"Host: x"))
@example(data=request(b"Host: x", b"Content-Length: 3", line=b"POST / HTTP/1.1", body=b"abcGET"))
@example(data=request(b"Host: x", b"Content-Length: 3", line=b"POST / HTTP/1.1", body=b"ab"))
@example(data=request(b"host: x", b"X-A:\t\xe9 a\x01 \t", line=b"OPTIONS * HTTP/1.0", body=b"\r\n\r\n"))
@example(data=b"GET / HTTP/1.1\r\nHost: x\n\r\n\r\n")
@example(data=b"GET / HTTP/1.1\r\nHost: x\r\n\n\r\n\r\n")
def test_every_request_quick_parse_takes_is_read_identically_by_h11(data: bytes) -> None:
    """Differential: quick_parse's request equals h11's, and whatever h11 refuses quick_parse leaves to it."""
    quick = assert_agrees_with_h11(data)
    event("fast path" if quick is not None else "left to h11")


#: Settings to search the grammar for one input of a kind (no shrinking: any one will do).
SEARCH = settings(max_examples=500, database=None, derandomize=True, phases=[Phase.generate])


@pytest.mark.parametrize(
    ("kind", "condition"),
    [
        pytest.param("taken by quick_parse", lambda data: quick_parse(data) is not None, id="fast path"),
        pytest.param(
            "taken by quick_parse with a body and a rest",
            lambda data: (quick := quick_parse(data)) is not None and bool(quick.body) and bool(quick.rest),
            id="fast path with body and rest",
        ),
        pytest.param("refused by h11", lambda data: read_with_h11(data).error is not None, id="h11 refusal"),
        pytest.param(
            "accepted by h11 but left to it",
            lambda data: quick_parse(data) is None and read_with_h11(data).request is not None,
            id="h11 only",
        ),
        pytest.param("incomplete", lambda data: read_with_h11(data).needs_data, id="incomplete"),
    ],
)
def test_the_request_grammar_is_not_vacuous(kind: str, condition: Callable[[bytes], object]) -> None:
    """The property test only proves something if its grammar yields inputs of every kind it is about."""
    try:
        find(requests(), condition, settings=SEARCH)
    except NoSuchExample:
        pytest.fail(
            f"the request grammar yielded no input {kind} in {SEARCH.max_examples} tries", pytrace=False
        )
