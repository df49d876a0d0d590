"""What a connection reads once the server has stopped answering it, and the state that shares.

After the server's FIN (a ``half_close`` fault or command) the client may still send: the server
keeps reading, and records each whole request as unanswered, the rest as unread bytes. A
connection over ``max_connections`` is answered 503 at once and read (discarding) to its end.
``ConnectionLoop`` (``_connection.py``) inherits these steps.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import h11

from ._faults import now
from ._ledger import UNREAD_LIMIT, ConnectionState, EndedBy, Outcome
from ._request_checks import request_headers
from ._responses import Response
from ._wire import Wire

if TYPE_CHECKING:
    from ._server import ServerCore

#: (The attribute ``h11`` below shadows the module's name inside the class.)
Parser = h11.Connection


class LateReads:
    """The reading a connection does after the server's last answer, and the parser state it uses."""

    core: ServerCore
    state: ConnectionState
    wire: Wire
    h11: Parser | None  # these two are documented where ConnectionLoop sets them
    pending: bytes

    def _leftover(self) -> bytes:
        """What the client sent past the current request (unparsed yet)."""
        return self.pending if self.h11 is None else self.h11.trailing_data[0]

    def _new_parser(self) -> Parser:
        return h11.Connection(h11.SERVER, max_incomplete_event_size=self.core.options.max_header_size)

    def _end_locked(self, how: EndedBy) -> None:
        if self.state.ended_by is None:
            self.state.ended_by = how

    async def _refuse(self) -> None:
        """Over ``max_connections``: answer 503 at once, send FIN, then read and discard to the end.

        The 503 goes out before any request is read, so a refused connection costs no parsing
        and no buffering; the server keeps reading (discarding) so that the client's request is
        not met by an RST, which could destroy the 503 before the client reads it. The record is
        a rejected request, given the request line and headers if a request head arrives.
        """
        limit = self.core.options.max_connections
        reason = f"over max_connections={limit} open connections"
        with self.core.lock:
            record = self.core.ledger.add_request(
                self.state, "", "", (), b"", now(), outcome=Outcome("rejected", status=503, detail=reason)
            )
        answer = Response(503, f"503 {reason}\n", close=True)
        await self.wire.send_all(answer._head + answer.body)
        with self.core.lock:
            self.wire.half_close()
            self._end_locked(EndedBy.SERVER_CLOSE)
        parser: Parser | None = self._new_parser()
        while True:
            data = await self.wire.receive()
            if not data:
                return
            if parser is None:
                continue
            try:
                parser.receive_data(data)
                event = parser.next_event()
            except h11.ProtocolError:
                parser = None
                continue
            if isinstance(event, h11.Request):
                with self.core.lock:
                    self.core.ledger.update(
                        self.state,
                        record,
                        method=event.method.decode("ascii", "replace"),
                        target=event.target.decode("ascii", "replace"),
                        headers=request_headers(event),
                    )
            if event is not h11.NEED_DATA:
                parser = None

    async def _read_after_half_close(self, data: bytes) -> None:
        """After our FIN the server keeps reading, and records what the client still sends.

        ``data`` is what was already read. Each request that arrives whole is recorded as
        unanswered; bytes that are not a request (or not a whole one) go to ``unread``.
        """
        parser: Parser | None = self.h11
        if self.h11 is None or self.h11.their_state is h11.DONE:
            # At a request boundary, or the current request was read whole (a half_close after
            # it): a new one may follow.
            parser = self._new_parser()
            data = self._leftover() + data
            self.pending = b""
        elif self.h11.their_state is not h11.IDLE:
            parser = None  # in the middle of a request body: no request boundary to parse from
        while data:
            if parser is None:
                with self.core.lock:
                    if len(self.state.unread) < UNREAD_LIMIT:  # a client may stream on for ever
                        self.state.unread += data[: UNREAD_LIMIT - len(self.state.unread)]
            else:
                parser = self._parse_late(parser, data)
            data = await self.wire.receive()
        if parser is not None and parser.trailing_data[0]:
            with self.core.lock:
                self.state.unread += parser.trailing_data[0]

    def _parse_late(self, parser: Parser, data: bytes) -> Parser | None:
        """Feed bytes that arrived after our FIN; record the requests. None once they are not HTTP."""
        try:
            parser.receive_data(data)
            while True:
                event = parser.next_event()
                if event is h11.NEED_DATA:
                    return parser
                if isinstance(event, h11.Request):
                    with self.core.lock:
                        self.core.ledger.add_request(
                            self.state,
                            event.method.decode("ascii", "replace"),
                            event.target.decode("ascii", "replace"),
                            request_headers(event),
                            b"",
                            now(),
                            outcome=Outcome("unanswered", detail="arrived after the server's FIN"),
                        )
                elif isinstance(event, h11.EndOfMessage):
                    leftover = parser.trailing_data[0]
                    parser = self._new_parser()
                    if leftover:
                        parser.receive_data(leftover)
                elif event is h11.PAUSED or isinstance(event, h11.ConnectionClosed):
                    return None
        except h11.ProtocolError:
            with self.core.lock:
                self.state.unread += data
            return None
