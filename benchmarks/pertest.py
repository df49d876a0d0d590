"""(2) Per-test cost through pytest: generated test files, one ``http.client`` GET per test.

Each sample is one ``pytest`` subprocess on one generated file in a temporary directory (its own
``pytest.ini``, so the project's settings do not apply; plugin autoload off, pytest-connfault and
pytest-httpserver loaded in every variant, with both servers' modules imported and connfault's loop
threads started before the tests: see ``CONFTEST``). The cost of a variant per test is
``(wall - wall of as many empty tests) / tests``: one-time costs cancel out, and connfault's are
reported beside it (what its warm-up took, and the per-test figure with it spread over the tests). A fresh pytest-httpserver costs up to half a
second per test, so it runs ``fresh_tests`` tests, against its own empty baseline of the same size.
A whole pytest run's start-up varies by a few hundred milliseconds on a shared machine, so this
comparison takes ``pertest_rounds`` rounds (7; ``--rounds`` overrides) of 500 tests; a fresh
pytest-httpserver, whose cost varies from process to process, twice as many runs of its 30 tests.

The ratio to the shared ``httpserver`` is taken within each round (both over that round's empty
tests), and the figure is the median of those ratios: the machine's speed drifts by up to a quarter
over minutes, which moves every variant of a round alike, so a round's own ratio cancels it where a
ratio of medians taken across rounds does not (on 16 rounds here, its spread over any 5 of them was
0.07 against 0.11). The medians' ratio is shown beside it.

Bars: a fresh ``connfault_server`` costs at most what the shared session ``httpserver`` costs
(ratio <= 1.0), and at least 100x less than a fresh pytest-httpserver ``HTTPServer``.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ._common import Config, Section, by_round, interleaved, median, ratios_within_rounds, spread, worker_env

CLIENT = '''\
import http.client


def get(host, port):
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request("GET", "/")
        response = conn.getresponse()
        body = response.read()
        assert response.status == 200, (response.status, body)
    finally:
        conn.close()

'''

CONFTEST = '''\
import json
import os
import time

import pytest

# pytest-httpserver's plugin imports its server (werkzeug) as it loads; pytest-connfault's imports its
# server's modules when the first server starts. Both are imported here, in every variant, so that no
# variant's per-test figure carries either one-time import (section 1 reports them).
import pytest_connfault._server  # noqa: F401


def pytest_sessionstart(session):
    # The rest of connfault's one-time cost, paid here in every variant (the empty baseline too), so
    # that the per-test figures are per test: each backend's loop thread, and for trio the import of
    # trio and of anyio's trio backend. What it took is reported beside the per-test figures.
    from pytest_connfault import FaultServer

    took = {}
    for backend in ("asyncio", "trio"):
        began = time.perf_counter()
        FaultServer(backend=backend).start().stop()
        took[backend] = time.perf_counter() - began
    with open(os.environ["CONNFAULT_BENCH_WARMUP"], "w") as out:
        json.dump(took, out)


@pytest.fixture(scope="session")
def httpserver_listen_address():
    return ("127.0.0.1", 0)


@pytest.fixture
def fresh_httpserver():
    from pytest_httpserver import HTTPServer

    server = HTTPServer(host="127.0.0.1", port=0)
    server.start()
    yield server
    server.clear()
    if server.is_running():
        server.stop()
'''

#: werkzeug's ``serve_forever`` poll interval, which a fresh pytest-httpserver's stop may wait out.
WERKZEUG_POLL = 0.5

#: Only the plugins the variants use are loaded (autoload off): the start-up of unrelated plugins
#: (hypothesis alone takes about a second here) would only add noise to what cancels out anyway.
PLUGINS = ["-p", "pytest_connfault.plugin", "-p", "pytest_httpserver.pytest_plugin"]

BODIES = {
    "empty": ("", "    pass\n"),
    "connfault": ("connfault_server", "    get(connfault_server.host, connfault_server.port)\n"),
    "connfault-idle": ("connfault_server", "    pass\n"),
    "httpserver-shared": (
        "httpserver",
        '    httpserver.expect_request("/").respond_with_data("ok\\n")\n'
        "    get(httpserver.host, httpserver.port)\n",
    ),
    "httpserver-fresh": (
        "fresh_httpserver",
        '    fresh_httpserver.expect_request("/").respond_with_data("ok\\n")\n'
        "    get(fresh_httpserver.host, fresh_httpserver.port)\n",
    ),
}


def write_suite(directory: Path, tests: int, fresh_tests: int) -> dict[str, tuple[Path, list[str]]]:
    """The generated files: variant -> (file, extra pytest arguments)."""
    (directory / "pytest.ini").write_text("[pytest]\n")
    (directory / "conftest.py").write_text(CONFTEST)
    files: dict[str, tuple[Path, list[str]]] = {}
    plan = {
        "empty": ("empty", tests, []),
        "empty-small": ("empty", fresh_tests, []),
        "connfault-asyncio": ("connfault", tests, ["--connfault-backend=asyncio"]),
        "connfault-trio": ("connfault", tests, ["--connfault-backend=trio"]),
        "connfault-asyncio-norequest": ("connfault-idle", tests, ["--connfault-backend=asyncio"]),
        "httpserver-shared": ("httpserver-shared", tests, []),
        "httpserver-fresh": ("httpserver-fresh", fresh_tests, []),
    }
    for variant, (body_kind, count, args) in plan.items():
        argument, body = BODIES[body_kind]
        path = directory / f"test_{variant.replace('-', '_')}.py"
        parts = [CLIENT]
        for number in range(count):
            parts.append(f"\ndef test_{number}({argument}):\n{body}")
        path.write_text("".join(parts))
        files[variant] = (path, args)
    return files


def run_pytest(directory: Path, path: Path, args: list[str], timeout: float = 300) -> tuple[float, float, dict[str, float]]:
    """Wall and CPU time (user+sys) of one pytest run of ``path``, and what the conftest's warm-up of
    each backend took (seconds); raises unless every test passed."""
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *PLUGINS, *args, path.name]
    env = worker_env()
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    warmup = directory / "warmup.json"
    warmup.unlink(missing_ok=True)
    env["CONNFAULT_BENCH_WARMUP"] = str(warmup)
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    began = time.perf_counter()
    proc = subprocess.run(command, cwd=str(directory), capture_output=True, text=True, timeout=timeout, env=env)
    wall = time.perf_counter() - began
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - usage.ru_utime) + (after.ru_stime - usage.ru_stime)
    if proc.returncode != 0:
        raise RuntimeError(f"pytest {path.name} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}")
    return wall, cpu, json.loads(warmup.read_text())


def cost_ratios(rounds: dict[str, list[tuple[int, Any]]], variant: str, which: int) -> list[float]:
    """Each round's own ratio of ``variant``'s cost per test to the shared httpserver's, both over
    that round's empty tests (``which``: 0 wall time, 1 CPU time). Rounds missing one of the three
    samples are left out, and so is a round whose shared httpserver came out no dearer than its
    empty tests (noise so large that its ratio means nothing)."""

    def over_empty(name: str) -> dict[int, float]:
        empty = {number: sample[which] for number, sample in rounds["empty"]}
        return {number: sample[which] - empty[number] for number, sample in rounds[name] if number in empty}

    return ratios_within_rounds(over_empty(variant), over_empty("httpserver-shared"))


def run(config: Config) -> Section:
    section = Section(f"2. per test through pytest ({config.tests} tests; fresh pytest-httpserver: "
                      f"{config.fresh_tests})")
    with tempfile.TemporaryDirectory(prefix="connfault-bench-") as name:
        directory = Path(name)
        files = write_suite(directory, config.tests, config.fresh_tests)
        run_pytest(directory, *files["empty-small"])  # warm the bytecode caches once
        rounds = by_round(config, list(files), lambda v: run_pytest(directory, *files[v]),
                          rounds=config.pertest_rounds)
        times = {variant: [value for _, value in samples] for variant, samples in rounds.items()}
        # A fresh pytest-httpserver's cost depends on the process more than on the test (see below):
        # twice the processes for it (and its baseline), so that its mean rests on ten of them.
        more = interleaved(config, ["httpserver-fresh", "empty-small"], lambda v: run_pytest(directory, *files[v]),
                           rounds=config.pertest_rounds)
        for variant, samples in more.items():
            times[variant].extend(samples)
    walls = {v: [t[0] for t in samples] for v, samples in times.items()}
    cpus = {v: [t[1] for t in samples] for v, samples in times.items()}
    warmups = {b: median([t[2][b] for samples in times.values() for t in samples]) for b in ("asyncio", "trio")}
    empty = median(walls["empty"])

    def per_test(variant: str, which: dict[str, list[float]] = walls) -> list[float]:
        small = variant == "httpserver-fresh"
        base = median(which["empty-small" if small else "empty"])
        count = config.fresh_tests if small else config.tests
        return [(value - base) / count for value in which[variant]]

    shared = median(per_test("httpserver-shared"))
    # A fresh pytest-httpserver's cost is bimodal, and which mode a test lands in varies from process
    # to process (some samples have no test waiting out the poll, others a third of them): the median
    # of the samples picks one mode, the mean over every test is the cost a test can expect.
    fresh_samples = per_test("httpserver-fresh")
    fresh = sum(fresh_samples) / len(fresh_samples)
    section.add("empty tests (the baseline)", empty / config.tests * 1000, "ms/test",
                f"whole run {empty:.2f} s; {spread(walls['empty'])} s")
    for backend, took in warmups.items():
        section.add(f"connfault's one-time cost per session ({backend}), paid before the tests", took * 1000, "ms",
                    "the loop thread" + (", importing trio and anyio's trio backend" if backend == "trio" else "")
                    + f"; spread over {config.tests} tests it would add {took / config.tests * 1000:.3f} ms/test")
    for variant in ("connfault-asyncio", "connfault-trio"):
        cost = median(per_test(variant))
        took = warmups[variant.split("-")[1]]
        detail = (f"{spread(per_test(variant), 1000)} ms; CPU {median(per_test(variant, cpus)) * 1000:.2f} ms/test; "
                  f"{(cost + took / config.tests) * 1000:.2f} ms/test with the one-time cost spread over the tests")
        section.add(f"fresh connfault_server ({variant.split('-')[1]}) + GET", cost * 1000, "ms/test", detail)
        cpu, shared_cpu = median(per_test(variant, cpus)), median(per_test("httpserver-shared", cpus))
        for label, which, ours, theirs, unit in (("ratio to shared httpserver", 0, cost, shared, "ms"),
                                                 ("the same by CPU time", 1, cpu, shared_cpu, "ms CPU")):
            ratios = cost_ratios(rounds, variant, which)
            ratio = median(ratios)
            medians = f"the medians: {ours * 1000:.2f} / {theirs * 1000:.2f} {unit} = {ours / theirs:.3f}"
            if ratios:
                section.add(f"  {label} ({variant.split('-')[1]})", ratio, "x",
                            f"the median of the rounds' own ratios ({spread(ratios)}); {medians}", "<= 1.0",
                            ratio <= 1.0)
            else:  # only in a run too short to tell (--quick): not judged
                section.add(f"  {label} ({variant.split('-')[1]})", None, "x",
                            f"no round to judge by: in each, the shared httpserver came out no dearer than "
                            f"the empty tests; {medians}", "<= 1.0")
        cheaper = fresh / cost if cost > 0 else float("inf")
        section.add(f"  cheaper than fresh pytest-httpserver ({variant.split('-')[1]})", cheaper, "x",
                    f"{fresh * 1000:.0f} / {cost * 1000:.2f} ms", ">= 100x", cheaper >= 100)
    for label, variant in (("fresh connfault_server (asyncio), no request", "connfault-asyncio-norequest"),
                           ("shared session httpserver + GET", "httpserver-shared"),
                           ("fresh pytest-httpserver HTTPServer + GET", "httpserver-fresh")):
        detail = f"{spread(per_test(variant), 1000)} ms; CPU {median(per_test(variant, cpus)) * 1000:.2f} ms/test"
        if variant == "httpserver-fresh":
            # Each test's stop either returns at once or waits out most of werkzeug's 0.5 s poll.
            waited = sum(max(0, round(cost * config.fresh_tests / WERKZEUG_POLL)) for cost in per_test(variant))
            total = config.fresh_tests * len(per_test(variant))
            detail += (f"; about {waited} of {total} tests waited out the 0.5 s poll; the figure is the mean "
                       f"over every test (the median of the samples: {median(per_test(variant)) * 1000:.1f} ms)")
            section.add(label, fresh * 1000, "ms/test", detail)
            continue
        section.add(label, median(per_test(variant)) * 1000, "ms/test", detail)
    section.notes.append(
        "a fresh pytest-httpserver's stop() returns at once when the test's teardown wins the race against "
        "werkzeug still finishing the request (logging it, closing the socket), else it waits out werkzeug's "
        "0.5 s poll: its per-test cost is bimodal (about 0 or 500 ms), and how often a test waits varies "
        "from one pytest process to the next (from none of 30 to most), hence the spread of its samples: "
        "it runs twice as many processes as the others, and its figure is the mean over all their tests "
        "(every other variant's is the median of its samples)."
    )
    section.notes.append(
        "ms/test is wall time over empty tests of the same count: pytest's start-up and every one-time "
        "cost cancel out (both tools' imports, and connfault's loop threads and trio import, paid before "
        "the tests in every variant and shown above; pytest-httpserver's shared server starts in the first "
        "test, about 1 ms); CPU is "
        "user+sys of the pytest process (both threads), far less sensitive to other load on the machine: on "
        "a busy machine trust the CPU rows. Plugin autoload is "
        "off; only pytest-connfault and pytest-httpserver are loaded, in every variant."
    )
    return section
