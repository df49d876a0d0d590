"""What every measurement shares: the run's settings, table rows, statistics, and fresh-process workers."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent

#: Longest a single worker process may run before the harness gives up on it.
WORKER_TIMEOUT = 300.0


@dataclass
class Config:
    """Sizes of one run. ``quick`` shrinks every count and duration to a smoke test."""

    quick: bool = False
    #: Interleaved repetitions of every side-by-side comparison (each in fresh processes).
    rounds: int = 3
    #: Duration of one throughput or scaling sample, in seconds.
    seconds: float = 3.0
    #: Generated tests per pytest run (fresh pytest-httpserver runs use ``fresh_tests``).
    tests: int = 500
    fresh_tests: int = 30
    #: Rounds of the per-test comparison: each sample is a whole pytest run, whose start-up varies
    #: by a few hundred milliseconds on a shared machine, so it takes more rounds than the others.
    pertest_rounds: int = 7
    #: Requests on one connection for the memory measurement.
    memory_requests: int = 100_000
    backends: tuple[str, ...] = ("asyncio", "trio")
    verbose: bool = True
    #: Samples that failed (the run goes on without them; the exit status reports them).
    errors: list[str] = field(default_factory=list)

    @classmethod
    def make(cls, quick: bool, **overrides: Any) -> Config:
        if quick:
            base = cls(quick=True, rounds=1, seconds=0.3, tests=30, fresh_tests=2, memory_requests=5_000,
                       pertest_rounds=1)
        else:
            base = cls()
        for key, value in overrides.items():
            if value is not None:
                setattr(base, key, value)
        if overrides.get("rounds") is not None:  # --rounds N asks for N rounds everywhere
            base.pertest_rounds = overrides["rounds"]
        return base

    def log(self, text: str) -> None:
        if self.verbose:
            print(f"  .. {text}", file=sys.stderr, flush=True)


@dataclass
class Row:
    """One line of the table: a figure, what it is compared with, and its bar."""

    section: str
    label: str
    value: float | None
    unit: str
    detail: str = ""
    bar: str = ""
    ok: bool | None = None

    @property
    def verdict(self) -> str:
        if self.ok is None:
            return "-" if not self.bar else "n/a"
        if self.value is None and not self.ok:
            return "ERROR"
        return "PASS" if self.ok else "MISS"


@dataclass
class Section:
    """The rows of one measurement, with notes printed under the table."""

    title: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, label: str, value: float | None, unit: str, detail: str = "", bar: str = "",
            ok: bool | None = None) -> Row:
        row = Row(self.title, label, value, unit, detail, bar, ok)
        self.rows.append(row)
        return row


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def spread(values: Sequence[float], scale: float = 1.0, digits: int = 2) -> str:
    """``n=.., min..max`` of ``values`` times ``scale``, for the detail column."""
    if not values:
        return "n=0"
    return f"n={len(values)}, {min(values) * scale:.{digits}f}..{max(values) * scale:.{digits}f}"


def fmt(value: float | None) -> str:
    if value is None or value != value:  # None or NaN
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def render_table(sections: Sequence[Section]) -> str:
    """One Markdown table for every section, then the notes."""
    lines = [
        "| measurement | figure | unit | compared / detail | bar | verdict |",
        "|---|---:|---|---|---|---|",
    ]
    for section in sections:
        lines.append(f"| **{section.title}** | | | | | |")
        for row in section.rows:
            lines.append(
                f"| {row.label} | {fmt(row.value)} | {row.unit} | {row.detail} | {row.bar} | {row.verdict} |"
            )
    notes = [f"- {s.title}: {note}" for s in sections for note in s.notes]
    if notes:
        lines += ["", "Notes:", *notes]
    return "\n".join(lines)


def run_worker(task: str, timeout: float = WORKER_TIMEOUT, **kwargs: Any) -> Any:
    """Run ``benchmarks._worker`` ``task(**kwargs)`` in a fresh interpreter; return its JSON result.

    A failed worker is tried once more (the tree may be mid-edit for a moment) before it raises.
    """
    try:
        return _run_worker_once(task, timeout, kwargs)
    except RuntimeError:
        time.sleep(2)
        return _run_worker_once(task, timeout, kwargs)


def _run_worker_once(task: str, timeout: float, kwargs: dict[str, Any]) -> Any:
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks._worker", task, json.dumps(kwargs)],
        cwd=str(ROOT),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=worker_env(),
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        raise RuntimeError(
            f"worker {task} {kwargs} failed (exit {proc.returncode}):\n{proc.stdout[-2000:]}\n{proc.stderr[-4000:]}"
        )
    return json.loads(lines[-1][len("RESULT "):])


def worker_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    env.pop("PYTEST_ADDOPTS", None)
    return env


def interleaved(
    config: Config, variants: Sequence[str], sample: Callable[[str], Any], rounds: int | None = None
) -> dict[str, list[Any]]:
    """``sample(variant)`` for every variant, ``rounds`` times, the order rotated each round.

    A sample that raises is left out and recorded in ``config.errors``; the others go on.
    """
    return {v: [value for _, value in samples] for v, samples in by_round(config, variants, sample, rounds).items()}


def by_round(
    config: Config, variants: Sequence[str], sample: Callable[[str], Any], rounds: int | None = None
) -> dict[str, list[tuple[int, Any]]]:
    """:func:`interleaved`, each sample with the number of its round, so that a comparison can be
    made within each round (a failed sample leaves its round out of the comparisons that need it)."""
    results: dict[str, list[tuple[int, Any]]] = {v: [] for v in variants}
    count = config.rounds if rounds is None else rounds
    for number in range(count):
        shift = number % len(variants)
        for variant in list(variants[shift:]) + list(variants[:shift]):
            config.log(f"round {number + 1}/{count}: {variant}")
            try:
                results[variant].append((number, sample(variant)))
            except Exception as exc:  # noqa: BLE001 - reported in the table's notes and the exit status
                config.errors.append(f"{variant}, round {number + 1}: {str(exc).strip()[:2000]}")
                config.log(f"FAILED: {variant}: {str(exc).strip()[-300:]}")
    return results


def ratios_within_rounds(ours: dict[int, float], theirs: dict[int, float]) -> list[float]:
    """``ours / theirs`` in every round that has both (round number -> figure), in round order.

    A comparison's figure is the median of these rather than the ratio of two medians taken across
    rounds: this machine's speed drifts by up to a quarter over minutes, which moves the samples of
    one round alike and cancels out of that round's own ratio.
    """
    return [ours[number] / theirs[number] for number in sorted(ours.keys() & theirs.keys()) if theirs[number] > 0]


def rss_kb() -> int:
    """This process's resident set size, in KiB (Linux)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/self/status")


def raise_fd_limit(wanted: int = 8192) -> None:
    """Raise the soft open-file limit toward ``wanted`` (the hard limit permitting)."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))


def unlimited_server(backend: str, **options: Any) -> Any:
    """A ``FaultServer`` without the connection limit (if this version has one): the commands and
    memory measurements hold 1000 connections open at once."""
    from pytest_connfault import FaultServer

    try:
        return FaultServer(backend=backend, max_connections=None, **options)
    except TypeError:  # a version without max_connections
        return FaultServer(backend=backend, **options)
