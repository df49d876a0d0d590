"""(3) Keep-alive throughput, and (7) scaling with the number of open keep-alive connections.

(3): for ``seconds``, GET in a loop over one connection with ``http.client`` and with
``httpx.Client``, and from 8 threads with a connection each; client and server in one fresh process,
as in a test run. Servers: connfault (asyncio, trio), the floor, pytest-httpserver (which closes
every connection, so its clients reconnect each time). The ledger (or the floor's accept count)
confirms how many connections carried the requests. Bars, on the default backend (asyncio; trio is
shown against the same bars): at least 50 % of the floor and at least 2x pytest-httpserver, each
ratio taken within every round and the median of those the figure (``ratios_within_rounds``).

(7): one client thread keeps one request in flight on each of N = 1, 8, 64, 256 connections
(``selectors``, raw minimal HTTP), so the figure is the server's cost, not http.client's. Cost per
request is wall time / requests; latency is each request's round trip. Bar: cost per request at
256 connections at most 2x the cost at 1.
"""

from __future__ import annotations

import http.client
import selectors
import threading
import time
from typing import Any, Callable

from ._common import Config, Section, by_round, interleaved, median, ratios_within_rounds, run_worker, spread
from ._floor import REQUEST, FloorServer, connect, get, response_end

SERVERS = ("connfault-asyncio", "connfault-trio", "floor", "pytest-httpserver")
CLIENTS = (("http.client", 1), ("httpx", 1), ("http.client", 8), ("httpx", 8))
LEVELS = (1, 8, 64, 256)
#: Upper bound on requests per client thread, whatever the duration.
MAX_REQUESTS = 2_000_000


def start_server(kind: str) -> tuple[Any, str, Callable[[], int]]:
    """A started server, its URL, and a function counting the connections it accepted."""
    if kind.startswith("connfault-"):
        from pytest_connfault import FaultServer

        server = FaultServer(backend=kind.split("-", 1)[1]).start()
        return server, server.url, lambda: len(server.connections)
    if kind == "floor":
        floor = FloorServer().start()
        return floor, floor.url, lambda: floor.accepted
    if kind == "pytest-httpserver":
        import logging

        from pytest_httpserver import HTTPServer

        # werkzeug logs every request to stderr; silenced, so that its figure is not flattered by I/O.
        logging.getLogger("werkzeug").setLevel(logging.ERROR)

        httpserver = HTTPServer(host="127.0.0.1", port=0)
        httpserver.expect_request("/").respond_with_data("ok\n")
        httpserver.start()
        return httpserver, httpserver.url_for("/").rstrip("/"), lambda: -1
    raise ValueError(kind)


def _client_loop(client: str, url: str) -> Callable[[float], int]:
    """A function that GETs until a deadline and returns its count (after one warm-up GET).

    Each client thread has its own connection: an ``http.client.HTTPConnection``, or an
    ``httpx.Client`` of its own (a shared pool may serve 8 threads with fewer connections).
    """
    if client == "http.client":
        host, port = url.split("//", 1)[1].rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port), timeout=10)

        def one() -> None:
            conn.request("GET", "/")
            response = conn.getresponse()
            response.read()
            if response.status != 200:
                raise RuntimeError(f"status {response.status}")

    else:
        import httpx

        pool = httpx.Client(limits=httpx.Limits(max_connections=1, max_keepalive_connections=1))

        def one() -> None:
            response = pool.get(url + "/")
            if response.status_code != 200:
                raise RuntimeError(f"status {response.status_code}")

    one()

    def loop(deadline: float) -> int:
        count = 0
        while count < MAX_REQUESTS and time.perf_counter() < deadline:
            one()
            count += 1
        if client == "http.client":
            conn.close()
        else:
            pool.close()
        return count

    return loop


def keepalive(server: str, client: str, conns: int, seconds: float) -> dict[str, Any]:
    """Worker: requests per second of ``conns`` client threads against ``server`` for ``seconds``."""
    instance, url, accepted = start_server(server)
    counts: list[int] = []
    errors: list[Exception] = []
    barrier = threading.Barrier(conns + 1, timeout=30)
    lock = threading.Lock()
    ends: list[float] = []

    def worker() -> None:
        try:
            loop = _client_loop(client, url)
        except Exception as exc:  # noqa: BLE001 - re-raised by the main thread
            errors.append(exc)
            barrier.abort()
            return
        barrier.wait()
        try:
            count = loop(time.perf_counter() + seconds)
        except Exception as exc:  # noqa: BLE001 - re-raised by the main thread
            errors.append(exc)
            return
        with lock:
            counts.append(count)
            ends.append(time.perf_counter())

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(conns)]
    for thread in threads:
        thread.start()
    try:
        barrier.wait()
    except threading.BrokenBarrierError:
        pass
    began = time.perf_counter()
    for thread in threads:
        thread.join(seconds + 30)
    connections = accepted()
    instance.stop()
    if errors:
        raise errors[0]
    return {"requests": sum(counts), "elapsed": max(ends) - began, "connections": connections}


CPU_CLIENT = """
import sys
from benchmarks._floor import connect, get
port, count = int(sys.argv[1]), int(sys.argv[2])
sock = connect("127.0.0.1", port)
for _ in range(count):
    get(sock)
sock.close()
"""


def server_cpu(server: str, count: int) -> dict[str, Any]:
    """Worker: the server process's CPU time per request, the client (raw, 1 conn) in another process."""
    import subprocess
    import sys

    from ._common import worker_env

    instance, url, accepted = start_server(server)
    port = url.rsplit(":", 1)[1]
    # The process's CPU time less this thread's (which only spawns and waits for the client).
    cpu, mine, began = time.process_time(), time.thread_time(), time.perf_counter()
    subprocess.run([sys.executable, "-c", CPU_CLIENT, port, str(count)], check=True, timeout=300, env=worker_env())
    wall = time.perf_counter() - began
    cpu = (time.process_time() - cpu) - (time.thread_time() - mine)
    connections = accepted()
    instance.stop()
    return {"cpu": cpu / count, "wall": wall / count, "connections": connections}


def scaling(server: str, conns: int, seconds: float) -> dict[str, Any]:
    """Worker: one request in flight on each of ``conns`` keep-alive connections, for ``seconds``."""
    from ._common import raise_fd_limit

    raise_fd_limit()
    instance, url, accepted = start_server(server)
    host, port = url.split("//", 1)[1].rsplit(":", 1)
    socks = [connect(host, int(port)) for _ in range(conns)]
    selector = selectors.DefaultSelector()
    try:
        for number, sock in enumerate(socks):
            get(sock)
            sock.setblocking(False)
            selector.register(sock, selectors.EVENT_READ, number)
        buffers = [bytearray() for _ in socks]
        sent_at = [0.0] * conns
        latencies: list[float] = []
        began = time.perf_counter()
        deadline = began + seconds
        for number, sock in enumerate(socks):
            sent_at[number] = time.perf_counter()
            sock.send(REQUEST)
        done = 0
        while done < MAX_REQUESTS:
            now = time.perf_counter()
            if now >= deadline:
                break
            for key, _ in selector.select(timeout=min(1.0, deadline - now)):
                number = key.data
                sock = socks[number]
                data = sock.recv(65536)
                if not data:
                    raise ConnectionError(f"connection {number} closed by the server")
                buffer = buffers[number]
                buffer += data
                end = response_end(buffer)
                if end < 0:
                    continue
                del buffer[:end]
                arrived = time.perf_counter()
                latencies.append(arrived - sent_at[number])
                done += 1
                sent_at[number] = arrived
                sock.send(REQUEST)
        elapsed = time.perf_counter() - began
    finally:
        selector.close()
        for sock in socks:
            sock.close()
    connections = accepted()
    instance.stop()
    latencies.sort()
    return {
        "requests": done,
        "elapsed": elapsed,
        "connections": connections,
        "latency_p50": latencies[len(latencies) // 2] if latencies else None,
        "latency_p90": latencies[len(latencies) * 9 // 10] if latencies else None,
    }


def run(config: Config) -> Section:
    section = Section(f"3. keep-alive throughput ({config.seconds:g} s per sample, client in-process)")
    clients = CLIENTS[::3] if config.quick else CLIENTS  # quick: http.client x1 and httpx x8 only
    variants = [f"{server}|{client}|{conns}" for client, conns in clients for server in SERVERS]

    def one(variant: str) -> dict[str, Any]:
        server, client, conns = variant.split("|")
        return run_worker("throughput.keepalive", server=server, client=client, conns=int(conns),
                          seconds=config.seconds)

    rounds = by_round(config, variants, one)
    results = {variant: [sample for _, sample in samples] for variant, samples in rounds.items()}
    for client, conns in clients:
        per_round = {server: {n: s["requests"] / s["elapsed"] for n, s in rounds[f"{server}|{client}|{conns}"]}
                     for server in SERVERS}
        rates = {server: list(per_round[server].values()) for server in SERVERS}
        floor, werkzeug = median(rates["floor"]), median(rates["pytest-httpserver"])
        setup = f"{client}, {conns} conn{'s' if conns > 1 else ''}"
        for server in SERVERS:
            rate = median(rates[server])
            samples = results[f"{server}|{client}|{conns}"]
            used = sorted({s["connections"] for s in samples})
            detail = spread(rates[server], 1, 0) + " req/s"
            if server.startswith("connfault") or server == "floor":
                detail += f"; connections used: {'/'.join(map(str, used))}"
            if server.startswith("connfault"):
                # Each ratio is taken within each round, then the median of them (see ``by_round``).
                share = median(ratios_within_rounds(per_round[server], per_round["floor"]))
                section.add(f"{server} ({setup})", rate, "req/s",
                            detail + f"; {share:.0%} of floor (the medians': {rate / floor:.0%})",
                            ">= 50% of floor", share >= 0.5)
                times = ratios_within_rounds(per_round[server], per_round["pytest-httpserver"])
                section.add(f"  vs pytest-httpserver ({setup})", median(times), "x",
                            f"the median of the rounds' own ratios ({spread(times)}); the medians: "
                            f"{rate:.0f} / {werkzeug:.0f} req/s = {rate / werkzeug:.2f}", ">= 2x",
                            median(times) >= 2)
            else:
                section.add(f"{server} ({setup})", rate, "req/s", detail)
    servers = [f"connfault-{b}" for b in config.backends] + ["floor"]
    count = 500 if config.quick else 5000
    cpu = interleaved(config, servers, lambda s: run_worker("throughput.server_cpu", server=s, count=count))
    floor_cpu = median([s["cpu"] for s in cpu["floor"]])
    for server in servers:
        value = median([s["cpu"] for s in cpu[server]])
        section.add(f"{server}: server CPU per request (client in another process)", value * 1e6, "us",
                    f"{value / floor_cpu:.1f}x floor; {spread([s['cpu'] for s in cpu[server]], 1e6, 1)} us; "
                    f"wall {median([s['wall'] for s in cpu[server]]) * 1e6:.0f} us/req; {count:,} requests")
    section.notes.append(
        "server CPU per request: the server process's CPU time (its loop thread; the floor's threads) over "
        f"{count:,} sequential requests from a raw client in another process: the figure least disturbed by "
        "other load on the machine, and the one the throughput bars depend on."
    )
    section.notes.append(
        "pytest-httpserver (werkzeug) answers every request with Connection: close, so its clients "
        "reconnect each time; 'connections used' comes from connfault's ledger and the floor's accept count."
    )
    return section


def run_scaling(config: Config) -> Section:
    section = Section(f"7. scaling with open keep-alive connections ({config.seconds:g} s per sample)")
    servers = [f"connfault-{b}" for b in config.backends] + ["floor"]
    levels = (LEVELS[0], LEVELS[-1]) if config.quick else LEVELS
    variants = [f"{server}|{conns}" for conns in levels for server in servers]

    def one(variant: str) -> dict[str, Any]:
        server, conns = variant.split("|")
        return run_worker("throughput.scaling", server=server, conns=int(conns), seconds=config.seconds)

    results = interleaved(config, variants, one)
    for server in servers:
        costs = {}
        for conns in levels:
            samples = results[f"{server}|{conns}"]
            cost = [s["elapsed"] / s["requests"] for s in samples if s["requests"]]
            costs[conns] = median(cost)
            latency = median([s["latency_p50"] for s in samples if s["latency_p50"] is not None])
            used = sorted({s["connections"] for s in samples})
            section.add(
                f"{server}, {conns} conns: cost per request", costs[conns] * 1e6, "us",
                f"{1 / costs[conns]:,.0f} req/s; latency p50 {latency * 1e3:.2f} ms; "
                f"{spread(cost, 1e6, 1)} us; connections used: {'/'.join(map(str, used))}",
            )
        growth = costs[LEVELS[-1]] / costs[LEVELS[0]]
        bar = "<= 2x" if server.startswith("connfault") else ""
        section.add(f"{server}: cost growth 1 -> {LEVELS[-1]} conns", growth, "x",
                    f"{costs[LEVELS[-1]] * 1e6:.1f} / {costs[LEVELS[0]] * 1e6:.1f} us", bar,
                    growth <= 2.0 if bar else None)
    section.notes.append(
        "one client thread with a selector keeps one request in flight per connection; by Little's law "
        "latency grows with N at a constant cost per request, so the bar is on the cost."
    )
    return section
