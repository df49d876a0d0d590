"""Real upstream servers for the proxy tests: ``http.server`` in a thread, every thread joined at stop.

Routes (any method):

- ``/echo``: answers the request body; headers ``X-Method``, ``X-Host`` (the Host it got),
  ``X-Peer-Port`` (the port of the connection it came on: the proxy's side).
- ``/bytes?size=N&chunk=K``: N deterministic bytes, chunked in pieces of K bytes if K is given.
- ``/status/NNN``: that status, empty body.
- ``/cut?size=N&send=M&how=close|reset``: announces N body bytes, sends M, then closes or resets.
- ``/quiet-close``: a normal keep-alive answer, then the upstream closes the connection anyway.
"""

from __future__ import annotations

import os
import socket
import struct
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit


def pattern(size: int) -> bytes:
    """``size`` deterministic bytes that show any shift or loss."""
    return bytes(i % 251 for i in range(size))


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: without TCP_NODELAY, Nagle and delayed ACKs
    # add about 40 ms to every small answer.
    disable_nagle_algorithm = True
    timeout = 10  # bounds a connection the proxy forgets to close

    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _handle(self) -> None:
        body = self._body()
        parts = urlsplit(self.path)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        self.server.seen.append((self.command, self.path, dict(self.headers.items()), body, self.client_address[1]))
        if parts.path == "/echo":
            self._send(200, body, {
                "X-Method": self.command,
                "X-Host": self.headers.get("Host", ""),
                "X-Peer-Port": str(self.client_address[1]),
            })
        elif parts.path == "/bytes":
            data = pattern(int(query["size"]))
            if "chunk" not in query:
                self._send(200, data, {"Content-Type": "application/octet-stream"})
                return
            size = int(query["chunk"])
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(0, len(data), size):
                piece = data[i : i + size]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
        elif parts.path.startswith("/status/"):
            self._send(int(parts.path.rsplit("/", 1)[1]), b"")
        elif parts.path == "/cut":
            self.send_response(200)
            self.send_header("Content-Length", query["size"])
            self.end_headers()
            self.wfile.write(pattern(int(query["send"])))
            self.wfile.flush()
            if query.get("how") == "reset":
                # RST now: socketserver would shutdown(SHUT_WR) first, a FIN ahead of the RST.
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                os.close(self.connection.detach())
            self.close_connection = True
        elif parts.path == "/quiet-close":
            self._send(200, b"bye")
            self.close_connection = True
        else:
            self._send(200, b"upstream ok\n")

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _handle


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # so that server_close() joins every connection's thread
    block_on_close = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.seen: list[tuple[str, str, dict[str, str], bytes, int]] = []
        self.handler_errors: list[BaseException] = []

    def handle_error(self, request: Any, client_address: Any) -> None:
        import sys

        self.handler_errors.append(sys.exc_info()[1])  # type: ignore[arg-type]


class Upstream:
    """A started ``http.server`` on 127.0.0.1 in a thread; ``stop()`` joins all its threads."""

    def __init__(self) -> None:
        self.httpd = _Server()
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        # A short poll interval: shutdown() waits for the loop's next poll (0.5 s by default).
        self._thread = threading.Thread(
            target=self.httpd.serve_forever, args=(0.02,), name="upstream-http-server"
        )
        self._thread.start()

    @property
    def seen(self) -> list[tuple[str, str, dict[str, str], bytes, int]]:
        """(method, target, headers, body, peer port) of every request the upstream answered."""
        return list(self.httpd.seen)

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(10)

    def __enter__(self) -> Upstream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
