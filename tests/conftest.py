"""The project's own test run: leak checks after every test, and shared client helpers."""

from __future__ import annotations

import gc
import os
import threading
from collections.abc import Iterator

import httpcore  # noqa: F401 - imported before any pytester run: see below
import pytest

import pytest_connfault._tls  # noqa: F401 - see below
from pytest_connfault._loop import loop_sockets, loop_threads

# pytest_connfault._tls imports trustme, hence cryptography, which breaks when imported twice in
# one process. pytester's in-process runs drop the modules they imported when they end, so a
# TLS fixture used first inside one would re-import it in the next: importing it here prevents that.

# In-process pytester runs drop the modules first imported inside them; httpx imports httpcore
# lazily and caches its exception map, so httpcore must be imported before the first such run.

# On Python 3.9 the importlib_metadata backport (a dependency of some clients there) removes the
# standard library's distribution finder when first imported and puts its own on sys.meta_path.
# First imported inside an in-process pytester run, its finder is dropped when the run restores
# sys.meta_path, and from then on no distribution (so no entry-point plugin) is found at all.
try:
    import importlib_metadata  # noqa: F401
except ImportError:
    pass
pytest_plugins = ["pytester"]


def _open_sockets() -> dict[str, str]:
    """The process's socket file descriptors: fd -> inode (so a reused number still counts)."""
    sockets = {}
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:"):
            sockets[fd] = target
    return sockets


def _our_threads() -> set[threading.Thread]:
    # trio's thread cache keeps a finished worker idle for 10 s for reuse (anyio's trio test runner
    # starts one for its guest run): named "Trio thread N", it is not a leak of the test.
    return {
        t
        for t in threading.enumerate()
        if t not in loop_threads() and t is not threading.main_thread() and not t.name.startswith("Trio thread ")
    }


@pytest.fixture(autouse=True)
def no_leaks(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test that leaves a thread or a socket behind (the session's loop threads excepted)."""
    if request.node.get_closest_marker("leaks_allowed"):
        yield
        return
    threads = _our_threads()
    sockets = _open_sockets()
    yield
    left_threads = {t for t in _our_threads() - threads if t.is_alive()}
    for thread in left_threads:
        thread.join(1.0)
    left_threads = {t for t in left_threads if t.is_alive()}
    def new_sockets() -> dict[str, str]:
        ours = loop_sockets()
        return {fd: i for fd, i in _open_sockets().items() if sockets.get(fd) != i and i not in ours}

    left = new_sockets()
    if left:
        gc.collect()
        left = new_sockets()
    problems = []
    if left_threads:
        problems.append(f"threads left running: {sorted(t.name for t in left_threads)}")
    if left:
        problems.append(f"sockets left open: {sorted(left.values())}")
    if problems:
        pytest.fail("leak after the test: " + "; ".join(problems), pytrace=False)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "leaks_allowed: skip the leak check (a test that checks the check)")
