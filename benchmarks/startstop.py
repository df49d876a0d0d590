"""(1) Start+stop of a server alone, no request: connfault (asyncio, trio), the floor, pytest-httpserver.

Each sample is a fresh process that times one cold start+stop (the first: for connfault it also
starts the process's loop thread) and then ``count`` warm ones. Bars: median warm start+stop at most
0.5 ms (issue 7) and at most 1 ms (issue 3), on both backends.

Also, in fresh processes with pytest imported: what loading each plugin costs (paid by every session
of a suite where it is installed), and, for connfault, what its first server costs on top (importing
the server's modules and starting the loop thread: paid once by a session that uses the fixtures).
"""

from __future__ import annotations

import time
from typing import Any, Callable

from ._common import Config, Section, interleaved, median, run_worker, spread

VARIANTS = ("connfault-asyncio", "connfault-trio", "floor", "pytest-httpserver")


def _factory(kind: str) -> Callable[[], Any]:
    if kind.startswith("connfault-"):
        from pytest_connfault import FaultServer

        backend = kind.split("-", 1)[1]
        return lambda: FaultServer(backend=backend)
    if kind == "floor":
        from ._floor import FloorServer

        return FloorServer
    if kind == "pytest-httpserver":
        from pytest_httpserver import HTTPServer

        return lambda: HTTPServer(host="127.0.0.1", port=0)
    raise ValueError(kind)


def sample(kind: str, count: int) -> dict[str, Any]:
    """Worker: one cold and ``count`` warm start+stop cycles, in seconds."""
    make = _factory(kind)
    began = time.perf_counter()
    server = make()
    server.start()
    server.stop()
    cold = time.perf_counter() - began
    warm = []
    for _ in range(count):
        began = time.perf_counter()
        server = make()
        server.start()
        server.stop()
        warm.append(time.perf_counter() - began)
    return {"cold": cold, "warm": warm}


def sample_import(kind: str) -> dict[str, float]:
    """Worker: the plugin's import time after pytest's, then (connfault) its first start+stop."""
    import pytest  # noqa: F401 - already imported in any session; not part of the plugin's cost

    began = time.perf_counter()
    if kind == "pytest-httpserver":
        import pytest_httpserver.pytest_plugin  # noqa: F401
    else:
        import pytest_connfault.plugin  # noqa: F401
    loaded = time.perf_counter() - began
    if kind == "pytest-httpserver":
        return {"plugin": loaded, "first": 0.0}
    began = time.perf_counter()
    from pytest_connfault import FaultServer

    FaultServer().start().stop()
    return {"plugin": loaded, "first": time.perf_counter() - began}


def run(config: Config) -> Section:
    section = Section("1. start+stop, no request (fresh process per sample)")
    counts = {"pytest-httpserver": 1 if config.quick else 3}
    default = 20 if config.quick else 300

    def one(kind: str) -> dict[str, Any]:
        return run_worker("startstop.sample", kind=kind, count=counts.get(kind, default))

    results = interleaved(config, VARIANTS, one, rounds=config.rounds + (0 if config.quick else 2))
    warm = {k: [t for r in results[k] for t in r["warm"]] for k in VARIANTS}
    cold = {k: [r["cold"] for r in results[k]] for k in VARIANTS}
    floor = median(warm["floor"])
    fresh = median(warm["pytest-httpserver"])
    for kind in VARIANTS:
        value = median(warm[kind]) * 1000
        detail = f"{spread(warm[kind], 1000, 3)} ms; cold first {median(cold[kind]) * 1000:.2f} ms"
        if kind.startswith("connfault"):
            detail += f"; {median(warm[kind]) / floor:.1f}x floor, {fresh / median(warm[kind]):,.0f}x cheaper than pytest-httpserver"
            section.add(f"{kind} start+stop", value, "ms", detail, "<= 0.5 ms (issue 7)", value <= 0.5)
            section.add(f"{kind} start+stop", value, "ms", "the same figure", "<= 1 ms (issue 3)", value <= 1.0)
        else:
            section.add(f"{kind} start+stop", value, "ms", detail)
    plugins = ("pytest-connfault", "pytest-httpserver")
    loads = interleaved(config, plugins, lambda kind: run_worker("startstop.sample_import", kind=kind),
                        rounds=config.rounds + (0 if config.quick else 2))
    for kind in plugins:
        times = [r["plugin"] for r in loads[kind]]
        section.add(f"{kind}: loading the plugin (every session it is installed in)", median(times) * 1000, "ms",
                    f"{spread(times, 1000, 1)} ms; after pytest's own import")
    first = [r["first"] for r in loads["pytest-connfault"]]
    section.add("pytest-connfault: its first server in a session (asyncio)", median(first) * 1000, "ms",
                f"{spread(first, 1000, 1)} ms; imports the server's modules (asyncio, h11, ssl) and starts the "
                "loop thread: once per session that uses a server")
    section.notes.append(
        "warm = every cycle after the first in a process; 'cold first' includes starting connfault's "
        "loop thread (once per process and backend)."
    )
    return section
