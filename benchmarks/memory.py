"""(5) Memory: RSS per idle keep-alive connection, and RSS over many requests on one connection.

The server runs alone in a fresh process (``serve``), so its RSS holds nothing of the clients; the
harness drives it over stdin (``rss``, ``ledger``, ``quit``) and connects from this process.

- 1000 idle connections: RSS before (after a warm-up) and with 1000 connections open, each with one
  answered request. Bar: at most 50 KB per connection (ledger records included).
- N requests on one connection (pipelined in batches, to be quick): RSS and the ledger's own size
  (a deep ``sys.getsizeof`` of its records) after a warm-up and at the end. The ledger keeps every
  request's headers and body by design; ``ledger_body_limit`` caps the bodies, shown with 1 KB POST
  bodies. The bar is on what the server keeps besides: after the warm-up and again at the end, the
  worker drops the ledger's request records (``forget``) and counts the memory blocks the process
  still has allocated (``sys.getallocatedblocks()`` after ``gc.collect()``: exact, where RSS also
  moves with the allocator's rounding). Bar: no growth, at most 1 block per 1000 requests. RSS
  growth beyond the ledger's deep size is shown too, for reference.
"""

from __future__ import annotations

import enum
import gc
import subprocess
import sys
from dataclasses import fields, is_dataclass
from typing import Any

from ._common import ROOT, Config, Section, interleaved, median, raise_fd_limit, rss_kb, spread, worker_env
from ._floor import REQUEST, connect, get, response_end

IDLE = 1000
BATCH = 100


def deep_size(root: Any) -> int:
    """Bytes held by ``root`` and what it references through containers and dataclasses."""
    seen: set[int] = set()
    stack = [root]
    total = 0
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, (type, enum.Enum)) or obj is None:
            continue
        seen.add(id(obj))
        if isinstance(obj, (list, tuple, set, frozenset)):
            total += sys.getsizeof(obj)
            stack.extend(obj)
        elif isinstance(obj, dict):
            total += sys.getsizeof(obj)
            stack.extend(obj.keys())
            stack.extend(obj.values())
        elif is_dataclass(obj):
            total += sys.getsizeof(obj)
            if hasattr(obj, "__dict__"):
                total += sys.getsizeof(obj.__dict__)
            # ``wire`` (the socket) and the like are not the ledger's memory.
            stack.extend(getattr(obj, f.name) for f in fields(obj) if f.name != "wire")
        elif isinstance(obj, (str, bytes, int, float, bool)):
            total += sys.getsizeof(obj)
    return total


def ledger_size(server: Any) -> int:
    core = getattr(server, "_core", None)
    ledger = getattr(core, "ledger", None)
    return deep_size(ledger if ledger is not None else server.requests)


def _forget_requests(server: Any) -> int:
    """Drop the ledger's request records (a benchmark's reach into the internals); blocks left."""
    core = server._core
    with core.lock:
        core.ledger.requests.clear()
        for connection in core.ledger.connections:
            connection.requests.clear()
    gc.collect()
    return sys.getallocatedblocks()


def serve(backend: str, ledger_body_limit: int | None) -> None:
    """Worker (driven over stdin): a server alone in its process, answering ``rss``/``ledger``/``open``/``quit``."""
    from ._common import unlimited_server

    raise_fd_limit()
    server = unlimited_server(backend, ledger_body_limit=ledger_body_limit).start()
    print(f"PORT {server.port}", flush=True)
    try:
        for line in sys.stdin:
            command = line.strip()
            gc.collect()
            if command == "rss":
                print(f"RSS {rss_kb()}", flush=True)
            elif command == "ledger":
                print(f"LEDGER {ledger_size(server)}", flush=True)  # asked only while idle
            elif command == "forget":
                print(f"FORGET {_forget_requests(server)}", flush=True)  # asked only while idle
            elif command == "open":
                print(f"OPEN {sum(1 for c in server.connections if c.is_open)}", flush=True)
            elif command == "quit":
                break
    finally:
        server.stop()


class ServerProcess:
    def __init__(self, backend: str, ledger_body_limit: int | None = None) -> None:
        code = (f"from benchmarks.memory import serve; serve({backend!r}, {ledger_body_limit!r})")
        self.proc = subprocess.Popen([sys.executable, "-c", code], cwd=str(ROOT), env=worker_env(),
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.port = int(self._read("PORT"))

    def _read(self, tag: str) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith(tag + " "):
            self.proc.kill()
            raise RuntimeError(f"the server process said {line!r}, expected {tag}")
        return line.split(" ", 1)[1].strip()

    def ask(self, command: str) -> int:
        assert self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return int(self._read(command.upper()))

    def close(self) -> None:
        if self.proc.stdin is not None:
            try:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.close()
            except OSError:
                pass
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def idle_sample(backend: str, idle: int = IDLE) -> dict[str, float]:
    raise_fd_limit()
    server = ServerProcess(backend)
    try:
        for _ in range(2):  # warm-up: let the allocator reach its working size for a few connections
            warm = [connect("127.0.0.1", server.port) for _ in range(20)]
            for sock in warm:
                get(sock)
                sock.close()
        before = server.ask("rss")
        ledger_before = server.ask("ledger")
        socks = [connect("127.0.0.1", server.port) for _ in range(idle)]
        try:
            for sock in socks:
                get(sock)
            after = server.ask("rss")
            ledger_after = server.ask("ledger")
            held = server.ask("open")
            if held != idle:
                raise RuntimeError(f"the server holds {held} connections open, not {idle}")
        finally:
            for sock in socks:
                sock.close()
    finally:
        server.close()
    return {"per_conn_kb": (after - before) / idle, "ledger_per_conn": (ledger_after - ledger_before) / idle}


def _pipelined(port: int, count: int, request: bytes) -> None:
    """``count`` requests on one connection, sent in batches of ``BATCH`` before reading the answers."""
    sock = connect("127.0.0.1", port, timeout=30)
    try:
        first = get(sock, request)
        size = response_end(first)
        done = 1
        while done < count:
            batch = min(BATCH, count - done)
            sock.sendall(request * batch)
            want = size * batch
            got = 0
            while got < want:
                data = sock.recv(max(65536, want - got))
                if not data:
                    raise ConnectionError("the server closed the connection")
                got += len(data)
            if got != want:
                raise RuntimeError("responses of unexpected length")
            done += batch
    finally:
        sock.close()


def requests_sample(backend: str, count: int, body: int = 0, ledger_body_limit: int | None = None) -> dict[str, float]:
    if body:
        request = (f"POST / HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {body}\r\n\r\n".encode()
                   + b"x" * body)
    else:
        request = REQUEST
    warm = max(200, count // 20)
    server = ServerProcess(backend, ledger_body_limit)
    try:
        _pipelined(server.port, warm, request)
        before, ledger_before = server.ask("rss"), server.ask("ledger")
        _pipelined(server.port, count - warm, request)
        after, ledger_after = server.ask("rss"), server.ask("ledger")
        if not body:
            # The same load again, counted without the ledger: the first run's records go first.
            blocks_before = server.ask("forget")
            _pipelined(server.port, count - warm, request)
            blocks_after = server.ask("forget")
    finally:
        server.close()
    requests = count - warm
    growth = (after - before) * 1024
    ledger = ledger_after - ledger_before
    result = {"rss_per_request": growth / requests, "ledger_per_request": ledger / requests,
              "outside_ledger": growth - ledger, "requests": requests}
    if not body:
        result["blocks_kept"] = blocks_after - blocks_before
    return result


def run(config: Config) -> Section:
    section = Section("5. memory (server alone in its process)")
    count_idle = 200 if config.quick else IDLE
    idle = interleaved(config, list(config.backends), lambda b: idle_sample(b, count_idle))
    for backend in config.backends:
        per_conn = [s["per_conn_kb"] for s in idle[backend]]
        ledger = median([s["ledger_per_conn"] for s in idle[backend]])
        value = median(per_conn)
        section.add(f"{backend}: RSS per idle keep-alive connection ({count_idle} open)", value, "KB",
                    f"{spread(per_conn, 1, 1)} KB; ledger {ledger / 1024:.2f} KB/conn", "<= 50 KB",
                    value <= 50)
    count = config.memory_requests
    # One round: a memory figure is not timing noise, and 100 000 requests take a while.
    samples = interleaved(config, list(config.backends), lambda b: requests_sample(b, count), rounds=1)
    for backend in config.backends:
        results = samples[backend]
        outside = median([s["outside_ledger"] for s in results])
        requests = results[0]["requests"]
        kept = median([s["blocks_kept"] for s in results])
        section.add(
            f"{backend}: memory blocks kept besides the ledger, {requests:,} GETs on 1 connection",
            kept, "blocks",
            f"{kept / requests * 1000:.3f} per 1000 requests; RSS {median([s['rss_per_request'] for s in results]):.0f} "
            f"B/req, ledger {median([s['ledger_per_request'] for s in results]):.0f} B/req, RSS beyond the "
            f"ledger's deep size {outside / 1024:.0f} KB",
            "no growth (<= 1 per 1000 req)", kept <= requests / 1000,
        )
    small = 1000 if config.quick else max(2000, count // 10)
    backend = config.backends[0]
    for limit in (None, 0):
        result = requests_sample(backend, small, body=1024, ledger_body_limit=limit)
        section.add(f"{backend}: ledger per 1 KB POST, ledger_body_limit={limit}",
                    result["ledger_per_request"], "B/req",
                    f"RSS {result['rss_per_request']:.0f} B/req over {result['requests']:,} requests")
    section.notes.append(
        "the ledger keeps every request (headers, body, outcome) until the server is dropped: that growth "
        "is by design and reported apart; RSS is VmRSS of the server's process after gc.collect()."
    )
    section.notes.append(
        "blocks kept: the same GETs are sent again with the ledger's request records dropped before and "
        "after (sys.getallocatedblocks() after gc.collect(), in the server's process). RSS cannot show "
        "this: the ledger's objects take more RSS than their deep size says (allocator rounding), "
        "which is all the 'RSS beyond the ledger' figure is."
    )
    return section
