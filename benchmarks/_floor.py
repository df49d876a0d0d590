"""The floor: the least a loopback HTTP server can do, and a raw client that costs as little.

``FloorServer`` is a listening socket and a thread per connection that reads to the blank line and
writes fixed bytes (GET only, no parsing, keep-alive). Nothing real can be faster in Python, so its
figures are the floor the real servers are compared with. ``RawClient`` helpers speak the same
minimal HTTP from the client side, for measurements where ``http.client`` would cost more than the
server under test.
"""

from __future__ import annotations

import socket
import threading
import time

RESPONSE = b"HTTP/1.1 200 \r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nok\n"
REQUEST = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"


class FloorServer:
    """Raw socket + threads; ``with FloorServer() as s:`` or ``start()``/``stop()``."""

    def __init__(self) -> None:
        self.host = "127.0.0.1"
        self.port = 0
        self.accepted = 0
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._conns: list[tuple[socket.socket, threading.Thread]] = []

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> FloorServer:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind((self.host, 0))
        listener.listen(1024)
        self.port = listener.getsockname()[1]
        self._listener = listener
        self._thread = threading.Thread(target=self._accept, name="floor-accept", daemon=True)
        self._thread.start()
        return self

    def _accept(self) -> None:
        listener = self._listener  # stop() clears the attribute while this thread runs
        assert listener is not None
        while True:
            try:
                sock, _ = listener.accept()
            except OSError:  # shutdown() by stop()
                return
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            thread = threading.Thread(target=self._serve, args=(sock,), name="floor-conn", daemon=True)
            with self._lock:
                self.accepted += 1
                self._conns.append((sock, thread))
            thread.start()

    @staticmethod
    def _serve(sock: socket.socket) -> None:
        buffered = b""
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    return
                buffered += data
                count = buffered.count(b"\r\n\r\n")
                if count:
                    buffered = buffered[buffered.rfind(b"\r\n\r\n") + 4 :]
                    sock.sendall(RESPONSE * count)
        except OSError:
            return
        finally:
            sock.close()

    def stop(self) -> None:
        listener, self._listener = self._listener, None
        if listener is None:
            return
        try:
            listener.shutdown(socket.SHUT_RDWR)  # wakes accept(); close() alone would not
        except OSError:
            pass
        listener.close()
        if self._thread is not None:
            self._thread.join(5)
        with self._lock:
            conns, self._conns = self._conns, []
        for sock, _ in conns:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for _, thread in conns:
            thread.join(5)

    def __enter__(self) -> FloorServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def connect(host: str, port: int, timeout: float = 10.0) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def response_end(buffer: bytes | bytearray) -> int:
    """The offset just past the first complete response in ``buffer`` (Content-Length framed), or -1."""
    head_end = buffer.find(b"\r\n\r\n")
    if head_end < 0:
        return -1
    head = bytes(buffer[:head_end]).lower()
    at = head.find(b"content-length:")
    if at < 0:
        raise ValueError(f"response without Content-Length: {bytes(buffer[:head_end])!r}")
    line_end = head.find(b"\r\n", at)
    length = int(head[at + 15 : line_end if line_end >= 0 else len(head)])
    end = head_end + 4 + length
    return end if len(buffer) >= end else -1


def get(sock: socket.socket, request: bytes = REQUEST, deadline: float | None = None) -> bytes:
    """Send one request on ``sock`` and read exactly its response (keep-alive)."""
    sock.sendall(request)
    buffer = bytearray()
    limit = time.monotonic() + 10 if deadline is None else deadline
    while True:
        end = response_end(buffer)
        if end >= 0:
            if end != len(buffer):
                raise RuntimeError("bytes after the response: the server answered more than asked")
            return bytes(buffer)
        if time.monotonic() > limit:
            raise TimeoutError("no complete response in time")
        data = sock.recv(65536)
        if not data:
            raise ConnectionError(f"EOF after {len(buffer)} bytes of a response")
        buffer += data
