"""Running one cell: a fresh server, a fresh client, one scenario, and the evidence afterwards.

The scenario runs as a coroutine on the driver's event loop (asyncio or trio) in the calling
thread; the server runs on its own loop thread, as always. A blocking client simply blocks the
cell's loop while it waits (nothing else runs on it), and its concurrent requests run on threads
that are joined before the cell ends.
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Awaitable, Sequence
from typing import Any, Callable

import anyio
import anyio.lowlevel

from .._ledger import Request
from .._server import FaultServer
from ._drivers import AsyncDriver, ClientOptions, Driver, SyncDriver
from ._model import (
    ERROR,
    FAILED,
    Attempt,
    CellResult,
    Verdict,
    exception_evidence,
    exception_text,
    failed,
    type_name,
)

#: Timeout of an ordinary request: long enough never to fire on loopback, short enough that a
#: client that hangs turns into a verdict rather than a stuck run.
REQUEST_TIMEOUT = 2.0
#: Read timeout of the stall scenarios (the matrix must finish in seconds).
STALL_TIMEOUT = 0.2
#: How long the harness waits for a fault to fire or a burst to finish before that is an error.
HARNESS_TIMEOUT = 5.0


class HarnessError(Exception):
    """The scenario could not be carried out (a fault did not fire, a thread did not finish)."""


class Cell:
    """What a scenario works with: the server, the client, and checks that read both.

    This type has no public constructor; scenarios get one as their argument.
    """

    def __init__(self, driver: Driver, server: FaultServer, client: Any) -> None:
        self.driver = driver
        self.server = server
        self.client = client
        self.attempts: list[Attempt] = []
        self._errors = driver.errors()

    # -- requests -------------------------------------------------------------------------

    def url(self, path: str) -> str:
        return self.server.url + path

    async def request(
        self, method: str, path: str, body: bytes | None = None, *, timeout: float = REQUEST_TIMEOUT
    ) -> Attempt:
        """Send one request through the client; never raises the client's exception."""
        attempt = await self._send(method, path, body, timeout)
        self.attempts.append(attempt)
        return attempt

    async def get(self, path: str, *, timeout: float = REQUEST_TIMEOUT) -> Attempt:
        return await self.request("GET", path, timeout=timeout)

    async def _send(self, method: str, path: str, body: bytes | None, timeout: float) -> Attempt:
        attempt = Attempt(method, path)
        started = time.monotonic()
        try:
            if isinstance(self.driver, AsyncDriver):
                attempt.reply = await self.driver.request(self.client, method, self.url(path), body, timeout)
            else:
                assert isinstance(self.driver, SyncDriver)
                attempt.reply = self.driver.request(self.client, method, self.url(path), body, timeout)
        except Exception as exc:  # noqa: BLE001 - any exception is the client's answer, judged later
            attempt.error = exc
        attempt.duration = time.monotonic() - started
        return attempt

    async def burst(
        self,
        requests: Sequence[tuple[str, str]],
        during: Callable[[], Awaitable[None]] | None = None,
        *,
        timeout: float = REQUEST_TIMEOUT,
    ) -> list[Attempt]:
        """Send ``(method, path)`` requests concurrently; run ``during()`` while they are in flight."""
        attempts = [Attempt(m, p) for m, p in requests]
        if isinstance(self.driver, AsyncDriver):

            async def one(index: int) -> None:
                method, path = requests[index]
                attempts[index] = await self._send(method, path, None, timeout)

            async with anyio.create_task_group() as tg:
                for index in range(len(requests)):
                    tg.start_soon(one, index)
                if during is not None:
                    await during()
        else:
            attempts = await self._burst_threads(requests, during, timeout)
        self.attempts.extend(attempts)
        return attempts

    async def _burst_threads(
        self,
        requests: Sequence[tuple[str, str]],
        during: Callable[[], Awaitable[None]] | None,
        timeout: float,
    ) -> list[Attempt]:
        driver = self.driver
        assert isinstance(driver, SyncDriver)
        attempts = [Attempt(m, p) for m, p in requests]

        def one(index: int) -> None:
            method, path = requests[index]
            attempt = attempts[index]
            started = time.monotonic()
            try:
                attempt.reply = driver.request(self.client, method, self.url(path), None, timeout)
            except Exception as exc:  # noqa: BLE001 - judged by the scenario
                attempt.error = exc
            attempt.duration = time.monotonic() - started

        threads = [
            threading.Thread(target=one, args=(i,), name=f"connfault-burst-{i}") for i in range(len(requests))
        ]
        for thread in threads:
            thread.start()
        try:
            if during is not None:
                await during()
        finally:
            deadline = time.monotonic() + timeout + HARNESS_TIMEOUT
            for thread in threads:
                thread.join(max(0.0, deadline - time.monotonic()))
        if any(thread.is_alive() for thread in threads):
            raise HarnessError(f"a request of the burst did not finish within {timeout + HARNESS_TIMEOUT} s")
        return attempts

    # -- judging --------------------------------------------------------------------------

    def is_clear(self, exc: BaseException | None) -> bool:
        """Whether ``exc`` is one of the client's documented exceptions (not an internal one)."""
        return exc is not None and isinstance(exc, self._errors)

    def unclear(self, attempt: Attempt) -> Verdict | None:
        """FAILED when the attempt raised an internal exception rather than the client's own."""
        if attempt.error is None or self.is_clear(attempt.error) or not self._errors:
            return None
        names = ", ".join(type_name(e) for e in self._errors)
        return failed(
            f"{attempt.method} {attempt.path} raised an internal {exception_text(attempt.error)}; "
            f"a clear error ({names}) was due"
        )

    def arrivals(self, path: str, method: str | None = None) -> list[Request]:
        """The requests for ``path`` the server read, in order."""
        return [r for r in self.server.requests if r.path == path and (method is None or r.method == method)]

    async def reused(self, handle: Any) -> bool:
        """Whether the client sent its 2nd request on connection 1 (so ``handle`` fires there).

        Read from the ledger, which has the request (or its unread bytes) before the fault's
        first byte goes out; the handle itself is set only once the fault is complete on the
        wire, which a fast client can beat. When reused, waits for the handle.
        """
        if not handle.fired:
            first = self.server.connections[:1]
            if not first or (len(first[0].requests) < 2 and not first[0].unread):
                return False
        await self.wait_fired(handle, f"{handle.fault!r} on the reused connection")
        return True

    async def wait_fired(self, handle: Any, what: str, timeout: float = HARNESS_TIMEOUT) -> None:
        """Wait until an armed fault is on the wire, then let the client's loop see it."""
        try:
            await handle.wait_async(timeout)
        except Exception as exc:
            raise HarnessError(f"{what}: {exc}") from exc
        await self.settle()

    async def settle(self) -> None:
        """Give an async client's event loop turns to process what already arrived.

        Not a timed sleep: zero-second yields. An asyncio client (aiohttp) learns of a FIN only
        when its loop runs the transport's read callback, which the selector queues *behind* the
        task that was already runnable; two turns let it run before the scenario's next step (three
        leave one to spare). A
        drop and a request within one loop turn would be the keep-alive race, which the ``race-*``
        scenarios test on purpose; the idle scenarios give the client its chance to notice.
        """
        for _ in range(3):
            await anyio.lowlevel.checkpoint()


def _pool_evidence(driver: Driver, client: Any) -> tuple[Any, dict[str, Any]]:
    try:
        snap = driver.pool(client)
    except Exception as exc:  # noqa: BLE001 - an unreadable pool is evidence, not a crash
        return None, {"unavailable": exception_text(exc)}
    return snap, {
        "client": str(getattr(snap, "client", "")),
        "active": snap.active,
        "idle": snap.idle,
        "total": snap.total,
        "summary": snap.summary() if hasattr(snap, "summary") else f"{snap.active} active, {snap.idle} idle",
        "connections": [
            {
                "local_port": c.local_port,
                "state": c.state,
                "key": list(c.key) if c.key is not None else None,
            }
            for c in snap.connections
        ],
    }


def check_pool(snap: Any, server: FaultServer) -> Verdict | None:
    """FAILED when the pool, after every request finished, leaks or keeps a dead connection."""
    if snap is None:
        return None
    if snap.active:
        return failed(
            f"the pool still counts {snap.active} active connection(s) after every request finished: a leak"
        )
    latest = {c.client_port: c for c in server.connections}  # a reused port: its newest connection
    for pooled in snap.connections:
        conn = latest.get(pooled.local_port) if pooled.state == "idle" else None
        if conn is not None and not conn.is_open:
            return failed(
                f"the pool keeps connection {conn.id} (port {pooled.local_port}) idle, which the server "
                f"closed ({conn.ended_by}); it should have been discarded"
            )
    return None


async def _run(
    driver: Driver, scenario: Any, server: FaultServer, options: ClientOptions, box: list[Cell]
) -> tuple[Verdict, dict[str, Any]]:
    if isinstance(driver, AsyncDriver):
        client = await driver.open(options)
    else:
        assert isinstance(driver, SyncDriver)
        client = driver.open(options)
    cell = Cell(driver, server, client)
    box.append(cell)
    try:
        verdict = await scenario.run(cell)
        snap, pool = _pool_evidence(driver, client)
        if verdict.verdict != FAILED:
            verdict = check_pool(snap, server) or verdict
        if snap is None:
            verdict = Verdict(verdict.verdict, f"{verdict.reason} (pool not checked: {pool['unavailable']})")
    finally:
        if isinstance(driver, AsyncDriver):
            await driver.close(client)
        else:
            assert isinstance(driver, SyncDriver)
            driver.close(client)
        # Let the loop run the transports' close callbacks, so no socket outlives the cell.
        for _ in range(3):
            await anyio.lowlevel.checkpoint()
    return verdict, pool


def run_cell(
    driver: Driver, scenario: Any, make_server: Callable[[], tuple[FaultServer, ClientOptions]]
) -> CellResult:
    """Run ``scenario`` against ``driver`` with a fresh server and client; judge and keep evidence."""
    started = time.monotonic()
    server, options = make_server()
    box: list[Cell] = []
    pool: dict[str, Any] = {}
    error: BaseException | None = None
    try:
        try:
            verdict, pool = anyio.run(_run, driver, scenario, server, options, box, backend=driver.backend)
        except HarnessError as exc:
            verdict, error = Verdict(ERROR, f"the harness could not run the scenario: {exc}"), exc
        except Exception as exc:  # noqa: BLE001 - a driver's bug is the cell's ERROR, not a crash of the run
            verdict, error = Verdict(ERROR, f"the driver or the harness raised {exception_text(exc)}"), exc
    finally:
        server.stop()
    cell = box[0] if box else None
    if server.errors:
        verdict = Verdict(ERROR, "the connfault server failed: " + server.errors[0].strip().splitlines()[-1])
    attempts = cell.attempts if cell is not None else []
    errors = [a.error for a in attempts if a.error is not None]
    evidence: dict[str, Any] = {
        "exception": exception_evidence(error if error is not None else errors[-1] if errors else None),
        "attempts": [a.describe() for a in attempts],
        "ledger": server.timeline(),
        "pool": pool,
    }
    if error is not None and not isinstance(error, HarnessError):
        evidence["traceback"] = traceback.format_exception(type(error), error, error.__traceback__)
    return CellResult(
        client=driver.name,
        scenario=scenario.id,
        verdict=verdict.verdict,
        reason=verdict.reason,
        duration=time.monotonic() - started,
        version=driver.version(),
        evidence=evidence,
    )
