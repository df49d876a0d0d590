"""(4) The fire-now commands: ``reset_idle()`` / ``close_idle()`` with 1, 10, 100, 1000 idle connections.

Each sample opens N keep-alive connections with one answered request each (so all are idle), then
times the command from the call until every client socket has seen its RST (``ECONNRESET``) or FIN
(EOF), polled from the same thread. The time the call itself took is shown too. Bars: at most 1 ms
for 10 connections and 5 ms for 100.
"""

from __future__ import annotations

import select
import time
from typing import Any

from ._common import Config, Section, interleaved, median, run_worker, spread
from ._floor import connect, get

SIZES = (1, 10, 100, 1000)
BARS = {10: 1.0, 100: 5.0}


def _wait_seen(socks: list[Any], timeout: float = 10.0) -> dict[str, int]:
    """Poll until every socket reports EOF or a reset; count which."""
    poller = select.poll()
    by_fd = {}
    for sock in socks:
        poller.register(sock.fileno(), select.POLLIN | select.POLLERR | select.POLLHUP)
        by_fd[sock.fileno()] = sock
    seen = {"rst": 0, "fin": 0, "data": 0}
    deadline = time.perf_counter() + timeout
    while by_fd:
        left = deadline - time.perf_counter()
        if left <= 0:
            raise TimeoutError(f"{len(by_fd)} clients never saw their RST/FIN")
        for fd, _ in poller.poll(left * 1000):
            sock = by_fd.pop(fd, None)
            if sock is None:
                continue
            poller.unregister(fd)
            try:
                data = sock.recv(65536)
            except ConnectionResetError:
                seen["rst"] += 1
                continue
            seen["fin" if not data else "data"] += 1
    return seen


def sample(backend: str, kind: str, size: int, repeat: int) -> dict[str, Any]:
    """Worker: ``repeat`` times, N idle connections dropped by ``server.<kind>_idle()``."""
    from ._common import raise_fd_limit, unlimited_server

    raise_fd_limit()
    seen_times, call_times, seen_kinds = [], [], []
    with unlimited_server(backend) as server:
        for _ in range(repeat):
            socks = [connect(server.host, server.port) for _ in range(size)]
            try:
                for sock in socks:
                    get(sock)
                began = time.perf_counter()
                dropped = getattr(server, f"{kind}_idle")()
                returned = time.perf_counter()
                seen = _wait_seen(socks)
                finished = time.perf_counter()
            finally:
                for sock in socks:
                    sock.close()
            if len(dropped) != size:
                raise RuntimeError(f"{kind}_idle() dropped {len(dropped)} of {size} idle connections")
            call_times.append(returned - began)
            seen_times.append(finished - began)
            seen_kinds.append(seen)
    return {"seen": seen_times, "call": call_times, "kinds": seen_kinds}


def run(config: Config) -> Section:
    section = Section("4. reset_idle() / close_idle(), until every client saw its RST/FIN")
    repeats = {1: 30, 10: 30, 100: 10, 1000: 3}
    if config.quick:
        repeats = {1: 5, 10: 5, 100: 2, 1000: 1}
    if config.quick:  # every size and both commands, each command on one backend
        pairs = [("reset", config.backends[0]), ("close", config.backends[-1])]
    else:
        pairs = [(kind, backend) for kind in ("reset", "close") for backend in config.backends]
    variants = [f"{backend}|{kind}|{n}" for n in SIZES for kind, backend in pairs]

    def one(variant: str) -> dict[str, Any]:
        backend, kind, size = variant.split("|")
        return run_worker("commands.sample", backend=backend, kind=kind, size=int(size),
                          repeat=repeats[int(size)])

    results = interleaved(config, variants, one)
    for variant in variants:
        backend, kind, size = variant.split("|")
        n = int(size)
        seen = [t for r in results[variant] for t in r["seen"]]
        call = [t for r in results[variant] for t in r["call"]]
        kinds: dict[str, int] = {}
        for r in results[variant]:
            for counted in r["kinds"]:
                for key, value in counted.items():
                    kinds[key] = kinds.get(key, 0) + value
        value = median(seen) * 1000
        observed = ", ".join(f"{v} {k.upper()}" for k, v in kinds.items() if v)
        detail = f"call returns in {median(call) * 1000:.3f} ms; {spread(seen, 1000, 3)} ms; clients saw {observed}"
        bar = f"<= {BARS[n]:g} ms" if n in BARS else ""
        section.add(f"{kind}_idle(), {backend}, {n} idle", value, "ms", detail, bar,
                    value <= BARS[n] if n in BARS else None)
    return section
