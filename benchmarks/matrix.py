"""(6) Wall time of the built-in conformance matrix: ``pytest --connfault``, serial and with ``-n 2``.

Runs in an empty temporary directory (nothing but the built-in suite is collected). Skipped, with a
note, while the installed plugin has no ``--connfault`` option. Bar: under 10 s each.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ._common import Config, Section, interleaved, median, spread, worker_env

BAR_SECONDS = 10.0


def available(directory: Path) -> bool:
    """Whether ``pytest --help`` lists ``--connfault`` itself (not only ``--connfault-*``)."""
    proc = subprocess.run([sys.executable, "-m", "pytest", "--help"], cwd=str(directory),
                          capture_output=True, text=True, timeout=120, env=worker_env())
    return re.search(r"--connfault(?![-\w])", proc.stdout) is not None


def run_matrix(directory: Path, workers: int) -> float:
    command = [sys.executable, "-m", "pytest", "--connfault", "-q", "-p", "no:randomly", "-p", "no:cacheprovider"]
    if workers:
        command += ["-n", str(workers)]
    began = time.perf_counter()
    proc = subprocess.run(command, cwd=str(directory), capture_output=True, text=True, timeout=600,
                          env=worker_env())
    wall = time.perf_counter() - began
    # Exit 1 means some client failed a scenario: that is a finding of the matrix, not a broken run.
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"pytest --connfault exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}")
    return wall


def run(config: Config) -> Section:
    section = Section("6. conformance matrix: pytest --connfault")
    with tempfile.TemporaryDirectory(prefix="connfault-matrix-") as name:
        directory = Path(name)
        (directory / "pytest.ini").write_text("[pytest]\n")
        if not available(directory):
            section.add("pytest --connfault", None, "s", "skipped: this build has no --connfault option yet",
                        f"< {BAR_SECONDS:g} s")
            section.notes.append("skipped: the installed pytest-connfault has no --connfault option yet.")
            return section
        variants = ["serial"] if config.quick else ["serial", "-n 2"]
        walls = interleaved(config, variants, lambda v: run_matrix(directory, 0 if v == "serial" else 2))
    for variant in variants:
        value = median(walls[variant])
        section.add(f"pytest --connfault ({variant})", value, "s", spread(walls[variant]) + " s",
                    f"< {BAR_SECONDS:g} s", value < BAR_SECONDS)
    if config.quick:
        section.notes.append("--quick runs the matrix serially only.")
    return section
