"""Proxy overhead: time per request through a FaultProxy versus straight to the same upstream.

``python -m benchmarks.proxy_overhead [--requests N] [--rounds R] [--quick]``

One process, as in a test run: the upstream (a ``http.server`` in a thread, standing in for a
user's service, and a connfault ``FaultServer``), the proxy in front of it, and one
``http.client`` keep-alive connection that sends GETs in a loop. Each round measures "direct" and
"via proxy" back to back on the same upstream (interleaved, so machine noise hits both), for a
small body and for 64 KiB. The figure is the median over rounds of wall time / requests; the
overhead is the difference, and the ratio.
"""

from __future__ import annotations

import argparse
import http.client
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

SMALL = b"ok\n"
LARGE = bytes(range(256)) * 256  # 64 KiB


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: without TCP_NODELAY, Nagle and delayed ACKs
    # add about 40 ms to every small answer.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        body = LARGE if self.path == "/large" else SMALL
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _HttpServer(ThreadingHTTPServer):
    daemon_threads = False


@contextmanager
def http_server_upstream() -> Iterator[str]:
    server = _HttpServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,))
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@contextmanager
def connfault_upstream() -> Iterator[str]:
    from pytest_connfault import FaultServer, Response

    with FaultServer() as server:
        server.respond("/small", Response(200, SMALL))
        server.respond("/large", Response(200, LARGE))
        yield server.url


def per_request(url: str, path: str, requests: int) -> float:
    """Seconds per GET over one keep-alive connection (after one warm-up request)."""
    host, port = url.split("//", 1)[1].rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port))
    try:
        conn.request("GET", path)
        conn.getresponse().read()
        started = time.perf_counter()
        for _ in range(requests):
            conn.request("GET", path)
            response = conn.getresponse()
            body = response.read()
            if response.status != 200 or len(body) != (len(LARGE) if path == "/large" else len(SMALL)):
                raise RuntimeError(f"bad answer {response.status} with {len(body)} bytes")
        return (time.perf_counter() - started) / requests
    finally:
        conn.close()


def measure(requests: int, rounds: int) -> list[tuple[str, str, float, float]]:
    """(upstream, body, direct s/request, via proxy s/request): medians over ``rounds``."""
    from pytest_connfault import FaultProxy

    rows = []
    for name, upstream in (("http.server", http_server_upstream), ("connfault FaultServer", connfault_upstream)):
        with upstream() as url, FaultProxy(url) as proxy:
            for path in ("/small", "/large"):
                direct: list[float] = []
                proxied: list[float] = []
                for _ in range(rounds):
                    direct.append(per_request(url, path, requests))
                    proxied.append(per_request(proxy.url, path, requests))
                rows.append((name, "3 B" if path == "/small" else "64 KiB",
                             statistics.median(direct), statistics.median(proxied)))
            assert len(proxy.upstream_connections) <= 2 * rounds + 2, "the proxy should reuse its upstream connection"
    return rows


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.proxy_overhead", description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="GETs per sample (default 2000)")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved samples per figure (default 5)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 100 requests, 1 round")
    args = parser.parse_args(argv)
    requests, rounds = (100, 1) if args.quick else (args.requests, args.rounds)
    from pytest_connfault._loop import stop_loops

    try:
        rows = measure(requests, rounds)
    finally:
        stop_loops()
    print(f"Proxy overhead, http.client keep-alive GETs, {requests} requests x {rounds} rounds (median)")
    print(f"{'upstream':<22} {'body':>7} {'direct':>11} {'via proxy':>11} {'overhead':>11} {'ratio':>6}")
    for name, body, direct, proxied in rows:
        print(f"{name:<22} {body:>7} {direct * 1e6:>8.0f} us {proxied * 1e6:>8.0f} us "
              f"{(proxied - direct) * 1e6:>8.0f} us {proxied / direct:>5.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
