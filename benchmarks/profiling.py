"""Where the time goes: cProfile of the caller's thread and of the server's loop thread, side by side.

``python -m benchmarks.profiling startstop|requests|pertest [--backend asyncio|trio] [-n COUNT] [--top N]``

``commands`` times ``reset_idle()`` on 100 idle connections until every client saw its RST (``-n``
repetitions; only that part is profiled). ``pertest`` runs ``COUNT`` generated tests (fresh ``connfault_server`` + one GET each) through
``pytest.main`` in this process (plugin autoload as usual), so pytest's own share shows too.

cProfile profiles one thread at a time; the loop thread's profiler is switched on and off from
inside the loop (``LoopThread.call``), so both halves of every start+stop or request are seen. Times
are printed per cycle (start+stop, or request), in microseconds; profiling itself inflates them
(roughly 2x), so read the shares, not the absolute figures.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import time
from typing import Callable


def _profile_both(backend: str, work: Callable[[], None]) -> tuple[pstats.Stats, pstats.Stats, float]:
    from pytest_connfault._loop import get_loop

    loop = get_loop(backend)
    caller, server = cProfile.Profile(), cProfile.Profile()
    loop.call(server.enable, timeout=5)
    caller.enable()
    began = time.perf_counter()
    work()
    elapsed = time.perf_counter() - began
    caller.disable()
    loop.call(server.disable, timeout=5)
    return pstats.Stats(caller), pstats.Stats(server), elapsed


def _report(title: str, stats: pstats.Stats, count: int, top: int) -> str:
    """The top functions by own time and by cumulative time, per cycle in microseconds."""
    rows = []
    for (filename, line, name), (_cc, calls, tottime, cumtime, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        short = filename.split("site-packages/")[-1].split("/work/main/")[-1]
        rows.append((tottime, cumtime, calls, f"{short}:{line}({name})"))
    total = sum(r[0] for r in rows)
    out = io.StringIO()
    print(f"== {title}: {total / count * 1e6:.1f} us of profiled own time per cycle", file=out)
    print(f"   {'own us':>8} {'cum us':>8} {'calls':>7}  function (per cycle)", file=out)
    for tottime, cumtime, calls, where in sorted(rows, reverse=True)[:top]:
        print(f"   {tottime / count * 1e6:8.1f} {cumtime / count * 1e6:8.1f} {calls / count:7.1f}  {where}", file=out)
    print("   -- by cumulative time:", file=out)
    for tottime, cumtime, calls, where in sorted(rows, key=lambda r: -r[1])[:top]:
        print(f"   {tottime / count * 1e6:8.1f} {cumtime / count * 1e6:8.1f} {calls / count:7.1f}  {where}", file=out)
    return out.getvalue()


def startstop(backend: str, count: int) -> tuple[pstats.Stats, pstats.Stats, float]:
    from pytest_connfault import FaultServer

    FaultServer(backend=backend).start().stop()  # the loop thread is up before profiling

    def work() -> None:
        for _ in range(count):
            FaultServer(backend=backend).start().stop()

    return _profile_both(backend, work)


def requests(backend: str, count: int) -> tuple[pstats.Stats, pstats.Stats, float]:
    """``count`` keep-alive GETs on one connection from a raw client in another process.

    The client being another process keeps the loop thread's profile free of GIL hand-offs: what
    it shows is the server's own work per request.
    """
    import subprocess

    from pytest_connfault import FaultServer

    from ._common import worker_env
    from .throughput import CPU_CLIENT

    server = FaultServer(backend=backend).start()
    try:
        command = [sys.executable, "-c", CPU_CLIENT, str(server.port), str(count)]
        return _profile_both(backend, lambda: subprocess.run(command, check=True, timeout=600, env=worker_env())
                             and None)
    finally:
        server.stop()


def pertest(backend: str, count: int) -> tuple[pstats.Stats, pstats.Stats, float]:
    """``count`` generated tests, each a fresh ``connfault_server`` and one GET, run by ``pytest.main``."""
    import tempfile
    from pathlib import Path

    import pytest

    from pytest_connfault._loop import get_loop

    from .pertest import BODIES, CLIENT

    argument, body = BODIES["connfault"]
    with tempfile.TemporaryDirectory(prefix="connfault-profile-") as name:
        directory = Path(name)
        (directory / "pytest.ini").write_text("[pytest]\n")
        path = directory / "test_profiled.py"
        path.write_text(CLIENT + "".join(f"\ndef test_{i}({argument}):\n{body}" for i in range(count)))
        loop = get_loop(backend)  # the plugin's servers run on this loop; pytest_unconfigure stops it
        caller, server = cProfile.Profile(), cProfile.Profile()
        loop.call(server.enable, timeout=5)
        caller.enable()
        began = time.perf_counter()
        code = pytest.main(["-q", "-p", "no:randomly", "-p", "no:cacheprovider", f"--connfault-backend={backend}",
                            "--rootdir", str(directory), str(path)])
        elapsed = time.perf_counter() - began
        caller.disable()
        if code != 0:
            raise RuntimeError(f"pytest exited {code}")
    return pstats.Stats(caller), pstats.Stats(server), elapsed


def commands(backend: str, count: int, size: int = 100) -> tuple[pstats.Stats, pstats.Stats, float]:
    """``count`` times: ``size`` idle connections, then ``reset_idle()`` until every client saw its RST."""
    from pytest_connfault import FaultServer
    from pytest_connfault._loop import get_loop

    from ._floor import connect, get
    from .commands import _wait_seen

    loop = get_loop(backend)
    caller, server = cProfile.Profile(), cProfile.Profile()
    elapsed = 0.0
    with FaultServer(backend=backend) as instance:
        for _ in range(count):
            socks = [connect(instance.host, instance.port) for _ in range(size)]
            for sock in socks:
                get(sock)
            loop.call(server.enable, timeout=5)
            caller.enable()
            began = time.perf_counter()
            instance.reset_idle()
            _wait_seen(socks)
            elapsed += time.perf_counter() - began
            caller.disable()
            loop.call(server.disable, timeout=5)
            for sock in socks:
                sock.close()
    return pstats.Stats(caller), pstats.Stats(server), elapsed


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profiling")
    parser.add_argument("what", choices=["startstop", "requests", "pertest", "commands"])
    parser.add_argument("--backend", default="asyncio", choices=["asyncio", "trio"])
    parser.add_argument("-n", "--count", type=int, default=2000)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args(argv)
    measure = {"startstop": startstop, "requests": requests, "pertest": pertest, "commands": commands}[args.what]
    caller, server, elapsed = measure(args.backend, args.count)
    print(f"{args.what} on {args.backend}: {args.count} cycles, {elapsed / args.count * 1e6:.1f} us per cycle "
          "under the profiler")
    print(_report("caller thread", caller, args.count, args.top))
    print(_report(f"loop thread ({args.backend})", server, args.count, args.top))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
