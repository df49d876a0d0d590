"""``python -m benchmarks [--quick] [--write-results] [--only NAMES]``: every measurement, one table.

The full run takes several minutes on 2 cores; ``--quick`` shrinks it to a smoke run (its figures
mean nothing and no bar is asserted). Progress goes to stderr, the table to stdout.
"""

from __future__ import annotations

import argparse
import compileall
import datetime
import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Callable

from . import commands, matrix, memory, pertest, startstop, throughput
from ._common import ROOT, Config, Section, render_table

MEASUREMENTS: dict[str, Callable[[Config], Section]] = {
    "startstop": startstop.run,
    "pertest": pertest.run,
    "throughput": throughput.run,
    "commands": commands.run,
    "memory": memory.run,
    "matrix": matrix.run,
    "scaling": throughput.run_scaling,
}

RESULTS = ROOT / "benchmarks" / "RESULTS.md"

PACKAGES = ("pytest-connfault", "pytest", "h11", "anyio", "trio", "httpx", "httpcore", "requests",
            "urllib3", "pytest-httpserver", "werkzeug", "pytest-xdist")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a reduced smoke run (no figure is meaningful)")
    parser.add_argument("--write-results", nargs="?", const=str(RESULTS), default=None, metavar="PATH",
                        help="write the table with the machine and versions to PATH "
                        "(default benchmarks/RESULTS.md)")
    parser.add_argument("--only", default="",
                        help=f"comma-separated measurements to run, of: {', '.join(MEASUREMENTS)}")
    parser.add_argument("--rounds", type=int, help="interleaved repetitions of each comparison")
    parser.add_argument("--seconds", type=float, help="duration of one throughput/scaling sample")
    parser.add_argument("--tests", type=int, help="generated tests per pytest run")
    parser.add_argument("--backends", help="comma-separated connfault backends (default: asyncio,trio)")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    return parser.parse_args(argv)


def environment() -> list[str]:
    versions = []
    for name in PACKAGES:
        try:
            versions.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            versions.append(f"{name} (not installed)")
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=str(ROOT), capture_output=True,
                                text=True, timeout=10).stdout.strip()
    except OSError:
        commit = ""
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    return [
        f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
        f"- machine: {os.cpu_count()} cores, {platform.machine()}, {platform.system()} {platform.release()}; "
        f"load average at the start {load}",
        f"- Python {platform.python_version()} ({platform.python_implementation()})",
        f"- {', '.join(versions)}",
        f"- git HEAD {commit or '?'} (plus uncommitted changes, if any)",
    ]


def compile_package() -> None:
    """Bring the package's bytecode up to date, as installing it does.

    The workers import pytest-connfault from this source tree. Where ``PYTHONDONTWRITEBYTECODE`` is
    set (as on some CI machines and sandboxes), a module edited since its last ``.pyc`` would
    otherwise be compiled again in every worker: 6 ms more for loading the plugin, and more for the
    first server and the matrix, none of which an installed package pays.
    """
    compileall.compile_dir(str(ROOT / "pytest_connfault"), quiet=1)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    backends = tuple(b.strip() for b in args.backends.split(",")) if args.backends else None
    config = Config.make(args.quick, rounds=args.rounds, seconds=args.seconds, tests=args.tests,
                         backends=backends, verbose=not args.quiet)
    names = [n.strip() for n in args.only.split(",") if n.strip()] or list(MEASUREMENTS)
    unknown = [n for n in names if n not in MEASUREMENTS]
    if unknown:
        print(f"unknown measurement(s) {unknown}; choose from {', '.join(MEASUREMENTS)}", file=sys.stderr)
        return 2
    env = environment()
    compile_package()
    began = time.perf_counter()
    sections = []
    for name in names:
        config.log(f"{name} ...")
        started = time.perf_counter()
        failed_before = len(config.errors)
        try:
            section = MEASUREMENTS[name](config)
        except Exception as exc:  # noqa: BLE001 - one broken measurement must not lose the others
            config.errors.append(f"{name}: {exc!r}")
            section = Section(f"{name}: failed")
            section.add(name, None, "", f"failed: {str(exc).strip()[:200]}", "", False)
        for error in config.errors[failed_before:]:
            section.notes.append("sample failed: " + error.splitlines()[0][:300])
        sections.append(section)
        config.log(f"{name} took {time.perf_counter() - started:.1f} s")
    elapsed = time.perf_counter() - began
    table = render_table(sections)
    kind = "quick smoke run (figures not meaningful)" if config.quick else "full run"
    header = [f"pytest-connfault benchmarks: {kind}, {config.rounds} interleaved round(s), "
              f"took {elapsed:.0f} s", *env, ""]
    print("\n".join(header))
    print(table)
    missed = [f"{row.section.split('.')[0]}. {row.label.strip()}" for s in sections for row in s.rows if row.ok is False]
    print(f"\n{sum(r.ok is True for s in sections for r in s.rows)} bars met, {len(missed)} missed"
          + (": " + "; ".join(missed) if missed else ""))
    if config.errors:
        print(f"\n{len(config.errors)} sample(s) failed; first:\n{config.errors[0]}", file=sys.stderr)
    if args.write_results:
        path = Path(args.write_results)
        text = [
            "# Benchmark results",
            "",
            "Written by `python -m benchmarks --write-results`; medians of interleaved samples, fresh processes",
            "where start-up matters. Ratios hold better than absolute figures across machines.",
            "",
            f"Run: {kind}, {config.rounds} round(s), {elapsed:.0f} s.",
            "",
            *env,
            "",
            table,
            "",
        ]
        path.write_text("\n".join(text))
        print(f"\nwrote {path}")
    return 1 if config.errors else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
