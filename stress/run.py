"""Load with faults, ledger exact: ``python -m stress [--seconds N]`` or ``python stress/run.py``.

Many concurrent keep-alive clients, some in threads (blocking sockets), some as asyncio tasks,
send requests with unique targets to one :class:`~pytest_connfault.FaultServer`. Before they
start, faults are armed on a known fraction of the server's requests (``request=N`` selectors
drawn from a seeded RNG), each kind with the error a client must see. Afterwards
:func:`reconcile` compares what the clients observed with the server's ledger, exactly:

- every request a client saw answered is in the ledger once, on the connection (client port)
  the client used, as ``responded``, and its body echoes its own target (nothing cross-wired);
- every fault the ledger says fired was armed for that request, fired once, and the client saw
  the matching error; every armed fault whose request exists fired;
- a request missing from the ledger was sent on a connection the server had just dropped after
  a response (a ``reset``/``close`` at ``after_response``, or a command that found it idle), and
  failed; one sent after a ``half_close`` is recorded as ``unanswered`` and the client saw the FIN;
- no record is pending or duplicated; every connection the clients opened is in the ledger,
  and every one ended.

A run is a series of rounds (a fresh server each, alternating asyncio and trio, plain HTTP and
HTTPS, and in some rounds a thread firing ``close_idle``/``reset_idle``/``half_close_idle``
meanwhile) until the time is up. Over TLS, the clients see a ``reset`` as an abrupt end (Python's ssl
reports an RST as ``SSLEOFError``) and a ``close`` as a clean one (``close_notify``). It prints requests sent and served, faults armed and fired, mismatches (expected 0),
wall time and peak RSS; the exit status is 1 if any mismatch was found.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import resource
import socket
import ssl
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h11

if __package__ in (None, ""):  # run as a file: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pytest_connfault import Connection, FaultFiring, FaultServer, Request, Response
from pytest_connfault._tls import client_context

ROOT = Path(__file__).resolve().parent.parent
#: Bound on any one read or connect by a client: a server that hangs is a mismatch, not a hang.
CLIENT_TIMEOUT = 10.0

# What a client can observe for one request.
OK = "ok"  # a complete 200 whose body echoes the request's target
RST = "rst"  # the connection was reset (on send or on read)
EOF_EMPTY = "eof_empty"  # FIN with no byte of a response
EOF_PARTIAL = "eof_partial"  # FIN in the middle of a response
GARBAGE = "garbage"  # bytes that are not HTTP, then FIN
SEND_FAILED = "send_failed"  # the request could not be written (EPIPE)
#: What a request sent on a connection the server already dropped can see.
DEAD = frozenset({RST, EOF_EMPTY, SEND_FAILED})


@dataclass(frozen=True)
class Choice:
    """A fault the stress run can arm, and what the client of the faulted request must see."""

    kind: str
    at: str
    expect: frozenset[str]
    options: tuple[tuple[str, Any], ...] = ()
    #: What happens to the next request on the same connection: "dead" (lost) or "unanswered".
    after: str | None = None

    @property
    def label(self) -> str:
        return f"{self.kind}@{self.at}" + "".join(f",{k}={v}" for k, v in self.options)


MENU: tuple[Choice, ...] = (
    Choice("reset", "before_response", frozenset({RST})),
    Choice("close", "before_response", frozenset({EOF_EMPTY})),
    Choice("empty", "before_response", frozenset({EOF_EMPTY})),
    Choice("garbage", "before_response", frozenset({GARBAGE})),
    Choice("truncate", "before_response", frozenset({EOF_PARTIAL})),
    Choice("truncate", "before_response", frozenset({RST}), (("then", "reset"),)),
    Choice("close", "after_headers", frozenset({EOF_PARTIAL})),
    Choice("reset", "after_headers", frozenset({RST})),
    Choice("close", "mid_body", frozenset({EOF_PARTIAL})),
    Choice("reset", "mid_body", frozenset({RST})),
    Choice("delay", "before_response", frozenset({OK}), (("seconds", 0.001),)),
    Choice("reset", "after_response", frozenset({OK}), after="dead"),
    Choice("close", "after_response", frozenset({OK}), after="dead"),
    Choice("half_close", "after_response", frozenset({OK}), after="unanswered"),
)


def body_for(target: str) -> bytes:
    """The body the server answers ``target`` with: the target, four times (so cuts land inside)."""
    return (target + "\n").encode() * 4


def echo(request: Request) -> Response:
    """The server's handler: echo the target, so a response given to the wrong request shows."""
    return Response(200, body_for(request.target))


# -- the clients --------------------------------------------------------------------------------


@dataclass
class Sent:
    """One request as its client saw it."""

    target: str
    connection: int  # the client's own count of its connections
    port: int  # the local port of that connection
    seen: str = ""


@dataclass
class ClientLog:
    """Everything one client did."""

    name: str
    sent: list[Sent] = field(default_factory=list)
    connections: int = 0


class ResponseReader:
    """Classifies the bytes that come back for one request (h11's client side parses them)."""

    def __init__(self, target: str) -> None:
        self.target = target
        self.parser = h11.Connection(h11.CLIENT)
        self.parser.send(h11.Request(method="GET", target=target, headers=[("Host", "stress")]))
        self.parser.send(h11.EndOfMessage())
        self.got_bytes = False
        self.broken = False
        self.status: int | None = None
        self.body = b""

    def feed(self, data: bytes) -> str | None:
        """Take bytes (``b""`` is the FIN); a verdict once there is one, else None."""
        if not data:
            if not self.got_bytes:
                return EOF_EMPTY
            return GARBAGE if self.broken else EOF_PARTIAL
        self.got_bytes = True
        if self.broken:
            return None  # read on to the end of the garbage
        self.parser.receive_data(data)
        while True:
            try:
                event = self.parser.next_event()
            except h11.RemoteProtocolError:
                self.broken = True
                return None
            if event is h11.NEED_DATA:
                return None
            if isinstance(event, h11.Response):
                self.status = event.status_code
            elif isinstance(event, h11.Data):
                self.body += bytes(event.data)
            elif isinstance(event, h11.EndOfMessage):
                if self.status != 200 or self.body != body_for(self.target):
                    return f"wrong: status {self.status}, body {self.body[:40]!r}"
                if self.parser.trailing_data[0]:
                    return f"wrong: {len(self.parser.trailing_data[0])} bytes after the response"
                return OK


def request_body(target: str) -> bytes:
    """What a client sends as the body for ``target``: none for some targets, up to 3 KiB for others."""
    return target.encode() * (sum(target.encode()) % 4) * 64


def request_bytes(target: str) -> bytes:
    """A GET, or a POST with :func:`request_body` (which the ledger must then hold whole)."""
    body = request_body(target)
    if not body:
        return f"GET {target} HTTP/1.1\r\nHost: stress\r\n\r\n".encode()
    return f"POST {target} HTTP/1.1\r\nHost: stress\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body


def thread_client(
    address: tuple[str, int], log: ClientLog, count: int, start: threading.Event, tls: ssl.SSLContext | None
) -> None:
    """A blocking keep-alive client: reuses its connection until a request fails, then reconnects."""
    start.wait()
    sock: socket.socket | None = None
    port = 0
    try:
        for seq in range(count):
            target = f"/{log.name}/{seq}"
            if sock is None:
                sock = socket.create_connection(address, timeout=CLIENT_TIMEOUT)
                log.connections += 1
                port = sock.getsockname()[1]
                if tls is not None:
                    # suppress_ragged_eofs=False: an end without close_notify raises (an RST reads
                    # as one too: Python's ssl reports it as SSLEOFError), a clean close reads b"".
                    sock = tls.wrap_socket(sock, server_hostname=address[0], suppress_ragged_eofs=False)
            sent = Sent(target, log.connections, port)
            log.sent.append(sent)
            sent.seen = _exchange_sync(sock, target)
            if sent.seen != OK:
                sock.close()
                sock = None
    finally:
        if sock is not None:
            sock.close()


def _exchange_sync(sock: socket.socket, target: str) -> str:
    try:
        sock.sendall(request_bytes(target))
    except ConnectionResetError:
        return RST
    except BrokenPipeError:
        return SEND_FAILED
    except ssl.SSLEOFError:
        return RST  # over TLS: the server reset or closed without close_notify
    except ssl.SSLError as exc:
        return f"tls error on send: {exc}"
    reader = ResponseReader(target)
    while True:
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            return RST
        except socket.timeout:
            return "timeout: the server did not answer"
        except ssl.SSLEOFError:
            return RST  # over TLS: an RST or a FIN without close_notify (see thread_client)
        except ssl.SSLError as exc:
            return f"tls error: {exc}"
        verdict = reader.feed(data)
        if verdict is not None:
            return verdict


async def task_client(address: tuple[str, int], log: ClientLog, count: int, tls: ssl.SSLContext | None) -> None:
    """The same client as an asyncio task, on asyncio's streams."""
    stream: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
    port = 0
    try:
        for seq in range(count):
            target = f"/{log.name}/{seq}"
            if stream is None:
                stream = await asyncio.wait_for(
                    asyncio.open_connection(*address, ssl=tls, server_hostname=address[0] if tls else None),
                    CLIENT_TIMEOUT,
                )
                log.connections += 1
                port = stream[1].get_extra_info("sockname")[1]
            sent = Sent(target, log.connections, port)
            log.sent.append(sent)
            sent.seen = await _exchange_async(*stream, target)
            if sent.seen != OK:
                await _close(stream[1])
                stream = None
    finally:
        if stream is not None:
            await _close(stream[1])


async def _exchange_async(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, target: str) -> str:
    try:
        writer.write(request_bytes(target))
        await writer.drain()
    except ConnectionResetError:
        return RST
    except BrokenPipeError:
        return SEND_FAILED
    except ssl.SSLError as exc:
        return f"tls error on send: {exc}"
    response = ResponseReader(target)
    while True:
        try:
            data = await asyncio.wait_for(reader.read(65536), CLIENT_TIMEOUT)
        except ConnectionResetError:
            return RST
        except asyncio.TimeoutError:
            return "timeout: the server did not answer"
        except ssl.SSLError as exc:
            return f"tls error: {exc}"
        verdict = response.feed(data)
        if verdict is not None:
            return verdict


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    try:
        await writer.wait_closed()
    except OSError:
        pass  # the server reset it: closed all the same


def run_tasks(
    address: tuple[str, int], logs: list[ClientLog], count: int, start: threading.Event, tls: ssl.SSLContext | None
) -> None:
    """Run the asyncio clients on their own loop, in the calling thread."""

    async def main() -> None:
        await asyncio.gather(*(task_client(address, log, count, tls) for log in logs))

    start.wait()
    asyncio.run(main())


# -- one round ----------------------------------------------------------------------------------


@dataclass
class RoundResult:
    """The figures and findings of one round."""

    backend: str
    sent: int = 0
    recorded: int = 0
    served: int = 0
    armed: int = 0
    fired: int = 0
    commanded: int = 0
    lost_on_dropped: int = 0
    connections: int = 0
    mismatches: list[str] = field(default_factory=list)
    seconds: float = 0.0


def run_round(
    *,
    seed: int,
    backend: str = "asyncio",
    threads: int = 8,
    tasks: int = 24,
    per_client: int = 60,
    fault_rate: float = 0.1,
    unplanned: int | None = None,
    tls: bool = False,
    commands: bool = False,
) -> RoundResult:
    """One server, ``threads + tasks`` clients of ``per_client`` requests each, then the reconciliation.

    ``unplanned`` arms a ``close`` on that request without telling the reconciliation: a
    negative control, which must then report mismatches.
    """
    rng = random.Random(seed)
    total = (threads + tasks) * per_client
    result = RoundResult(backend + (" tls" if tls else ""))
    started = time.monotonic()
    server = FaultServer(backend=backend, handler=echo, max_connections=None, tls=tls or None).start()
    # With OP_IGNORE_UNEXPECTED_EOF set (strict_eof=False): a FIN without close_notify reads as an
    # EOF, as in plain TCP, so that the observations keep their meaning over TLS.
    context = client_context(strict_eof=False) if tls else None
    try:
        plan: dict[int, tuple[Choice, Any]] = {}
        for index in sorted(rng.sample(range(1, total + 1), int(total * fault_rate))):
            choice = rng.choice(MENU)
            plan[index] = (choice, server.inject(choice.kind, at=choice.at, request=index, **dict(choice.options)))
        if unplanned is not None:
            plan.pop(unplanned, None)
            server.inject("close", at="before_response", request=unplanned)
        address = (server.host, server.port)
        logs = [ClientLog(f"t{n}") for n in range(threads)] + [ClientLog(f"a{n}") for n in range(tasks)]
        start = threading.Event()
        workers = [
            threading.Thread(
                target=thread_client, args=(address, log, per_client, start, context), name=f"stress-{log.name}"
            )
            for log in logs[:threads]
        ]
        if tasks:
            workers.append(
                threading.Thread(
                    target=run_tasks, args=(address, logs[threads:], per_client, start, context), name="stress-tasks"
                )
            )
        done = threading.Event()
        if commands:
            workers.append(threading.Thread(target=commander, args=(server, done), name="stress-commands"))
        for worker in workers:
            worker.start()
        start.set()
        for worker in workers[: threads + (1 if tasks else 0)]:
            worker.join()
        done.set()
        for worker in workers:
            worker.join()
        _wait_all_closed(server, sum(log.connections for log in logs))
    finally:
        server.stop()
    result.mismatches = reconcile(server, plan, logs, result)
    result.mismatches += [f"server error: {e}" for e in server.errors + server.handler_errors]
    result.seconds = time.monotonic() - started
    return result


def commander(server: FaultServer, done: threading.Event) -> None:
    """Fire the commands at whatever connections are idle, round and round, until the clients finish."""
    commands = (server.close_idle, server.reset_idle, server.half_close_idle)
    n = 0
    while not done.wait(0.01):  # a pace, not a synchronisation: each command returns once done
        commands[n % 3]()
        n += 1


def _wait_all_closed(server: FaultServer, opened: int, timeout: float = 10.0) -> None:
    """Bounded wait until the server has seen every client connection and each has ended."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        connections = server.connections
        if len(connections) >= opened and not any(c.is_open for c in connections):
            return
        time.sleep(0.005)


def reconcile(server: FaultServer, plan: dict[int, tuple[Choice, Any]], logs: list[ClientLog], result: RoundResult) -> list[str]:
    """Compare the clients' observations with the ledger; one line per disagreement."""
    problems: list[str] = []
    records = server.requests
    connections = server.connections
    result.recorded = len(records)
    result.armed = len(plan)
    result.connections = len(connections)
    by_target: dict[str, Request] = {}
    for record in records:
        if record.target in by_target:
            problems.append(f"request recorded twice: {record} and {by_target[record.target]}")
        by_target[record.target] = record
    firings: dict[int | None, FaultFiring] = {}
    commanded: dict[int, FaultFiring] = {}
    for connection in connections:
        if connection.is_open or connection.ended_by is None:
            problems.append(f"connection not ended after the run: {connection}")
        for firing in connection.faults:
            if firing.commanded:
                if connection.id in commanded:
                    problems.append(f"two commands dropped connection {connection.id}")
                commanded[connection.id] = firing
                continue
            if firing.request_index in firings:
                problems.append(f"fault fired twice on request {firing.request_index}")
            firings[firing.request_index] = firing
    result.fired = len(firings)
    result.commanded = len(commanded)

    # Every armed fault whose request exists fired once, as armed; no other fault fired.
    for index, (choice, handle) in plan.items():
        # A request recorded as unanswered (read after a half_close) is never answered: no moment
        # of its response comes, so a fault armed for it cannot fire.
        exists = index <= len(records) and records[index - 1].outcome.kind != "unanswered"
        if handle.fired != (1 if exists else 0):
            problems.append(f"{choice.label} for request {index} fired {handle.fired} times ({len(records)} recorded)")
        fired_as = firings.get(index)
        if exists and (fired_as is None or (fired_as.kind, fired_as.at) != (choice.kind, choice.at)):
            problems.append(f"request {index}: armed {choice.label}, the ledger has {fired_as}")
    for fired_on in firings:
        if fired_on not in plan:
            problems.append(f"a fault fired on request {fired_on}, which had none armed")

    sent_targets = set()
    opened = 0
    tls = server.tls_context is not None
    for log in logs:
        opened += log.connections
        previous: Sent | None = None
        for sent in log.sent:
            sent_targets.add(sent.target)
            result.sent += 1
            found = _check_one(sent, previous, by_target, plan, firings, commanded, connections, tls)
            if not found and sent.target not in by_target:
                result.lost_on_dropped += 1
            problems += found
            previous = sent
    result.served = sum(1 for r in records if r.outcome.kind == "responded")
    for record in records:
        if record.target not in sent_targets:
            problems.append(f"the ledger has a request no client sent: {record}")
    if opened != len(connections):
        problems.append(f"the clients opened {opened} connections, the ledger has {len(connections)}")
    return problems


def _check_one(
    sent: Sent,
    previous: Sent | None,
    by_target: dict[str, Request],
    plan: dict[int, tuple[Choice, Any]],
    firings: dict[int | None, FaultFiring],
    commanded: dict[int, FaultFiring],
    connections: list[Connection],
    tls: bool,
) -> list[str]:
    """The ledger's account of one request against what its client saw."""
    record = by_target.get(sent.target)
    # What happened to the connection after the previous request on it: its after_response
    # fault, or a command that found it idle (which can only be after its last answer).
    after = None
    if previous is not None and previous.connection == sent.connection:
        before = by_target.get(previous.target)
        if before is not None and before.index in firings and before.index in plan:
            after = plan[before.index][0].after
        drop = commanded.get(before.connection_id) if before is not None else None
        if drop is not None:
            after = "unanswered" if drop.kind == "half_close" else "dead"
    if record is None:
        if after == "dead" and sent.seen in DEAD:
            return []  # sent on a connection the server had dropped: never read, correctly
        if tls and after == "unanswered" and sent.seen in DEAD:
            # An asyncio TLS client answers the server's close_notify by closing the connection
            # itself: its next request never leaves it (a blocking ssl client sends it).
            return []
        return [f"{sent.target}: client saw {sent.seen!r}, the ledger has no record (previous: {after})"]
    problems = []
    if record.outcome.kind != "unanswered" and record.body != request_body(sent.target):
        problems.append(f"{sent.target}: the ledger holds {len(record.body)} body bytes, not the {len(request_body(sent.target))} sent")
    port = connections[record.connection_id - 1].client_port
    if port != sent.port:
        problems.append(f"{sent.target}: sent from port {sent.port}, recorded on connection from port {port}")
    kind = record.outcome.kind
    choice = plan[record.index][0] if record.index in firings and record.index in plan else None
    if kind == "responded":
        expected = choice.expect if choice is not None else frozenset({OK})
        if sent.seen not in expected or OK not in expected:
            problems.append(f"{sent.target}: responded ({choice and choice.label}), client saw {sent.seen!r}")
    elif kind == "fault":
        if choice is None or record.outcome.fault != f"{choice.kind}@{choice.at}":
            problems.append(f"{sent.target}: fault {record.outcome.fault} recorded, none armed/fired for it")
        elif sent.seen not in choice.expect:
            problems.append(f"{sent.target}: {choice.label} fired, client saw {sent.seen!r}, expected {set(choice.expect)}")
    elif kind == "unanswered":
        if after != "unanswered" or sent.seen != EOF_EMPTY:
            problems.append(f"{sent.target}: unanswered, client saw {sent.seen!r} (previous: {after})")
    else:
        problems.append(f"{sent.target}: left {record.outcome} (client saw {sent.seen!r})")
    return problems


# -- the command line --------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m stress", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="run rounds for about this long (default 30)")
    parser.add_argument("--threads", type=int, default=8, help="blocking clients, one thread each (default 8)")
    parser.add_argument("--tasks", type=int, default=24, help="asyncio clients, on one loop (default 24)")
    parser.add_argument("--per-client", type=int, default=60, help="requests per client per round (default 60)")
    parser.add_argument("--fault-rate", type=float, default=0.1, help="fraction of requests with a fault (default 0.1)")
    parser.add_argument("--seed", type=int, default=20261125, help="seed of the first round (default fixed)")
    parser.add_argument("--backend", choices=["asyncio", "trio", "both"], default="both")
    parser.add_argument("--tls", choices=["no", "yes", "both"], default="both", help="HTTPS rounds (default: every other)")
    parser.add_argument(
        "--commands",
        choices=["no", "yes", "both"],
        default="both",
        help="a thread firing close_idle/reset_idle/half_close_idle meanwhile (default: every other round)",
    )
    parser.add_argument(
        "--fuzz-examples", type=int, default=0, help="then run tests/test_fuzz.py with this many examples per property"
    )
    args = parser.parse_args(argv)

    backends = ["asyncio", "trio"] if args.backend == "both" else [args.backend]
    started = time.monotonic()
    totals = RoundResult("all")
    rounds = 0
    while rounds == 0 or time.monotonic() - started < args.seconds:
        result = run_round(
            seed=args.seed + rounds,
            backend=backends[rounds % len(backends)],
            threads=args.threads,
            tasks=args.tasks,
            per_client=args.per_client,
            fault_rate=args.fault_rate,
            tls=args.tls == "yes" or (args.tls == "both" and rounds % 4 >= 2),
            commands=args.commands == "yes" or (args.commands == "both" and rounds % 8 >= 4),
        )
        rounds += 1
        for name in ("sent", "recorded", "served", "armed", "fired", "commanded", "lost_on_dropped", "connections"):
            setattr(totals, name, getattr(totals, name) + getattr(result, name))
        totals.mismatches += [f"round {rounds} ({result.backend}): {m}" for m in result.mismatches]
        print(
            f"round {rounds:3d} {result.backend:11s} {result.sent:5d} sent {result.served:5d} served "
            f"{result.fired:4d} faults fired {len(result.mismatches)} mismatches {result.seconds:6.2f} s",
            file=sys.stderr,
        )
    wall = time.monotonic() - started
    fuzz_status = 0
    if args.fuzz_examples:
        env = {**os.environ, "CONNFAULT_FUZZ_EXAMPLES": str(args.fuzz_examples)}
        command = [sys.executable, "-m", "pytest", "tests/test_fuzz.py", "-q", "-p", "no:randomly", "-x"]
        fuzz_status = subprocess.run(command, cwd=ROOT, env=env, check=False).returncode
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    for line in totals.mismatches[:50]:
        print("MISMATCH", line)
    print(f"rounds:            {rounds} ({', '.join(backends)})")
    print(f"clients per round: {args.threads} threads + {args.tasks} asyncio tasks, {args.per_client} requests each")
    print(f"requests sent:     {totals.sent}")
    print(f"requests served:   {totals.served} (answered 200; {totals.recorded} recorded in all)")
    print(f"faults armed:      {totals.armed} (on {args.fault_rate:.0%} of the planned requests)")
    print(f"faults fired:      {totals.fired} (+ {totals.commanded} idle connections dropped by command)")
    print(f"lost, as expected: {totals.lost_on_dropped} (sent on connections dropped after a response)")
    print(f"connections:       {totals.connections}")
    print(f"mismatches:        {len(totals.mismatches)} (expected 0)")
    print(f"wall time:         {wall:.1f} s")
    print(f"peak RSS:          {peak_kib / 1024:.1f} MiB")
    if args.fuzz_examples:
        print(f"fuzz:              {args.fuzz_examples} examples per property, pytest exit status {fuzz_status}")
    return 1 if totals.mismatches or fuzz_status else 0


if __name__ == "__main__":
    sys.exit(main())
