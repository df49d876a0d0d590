"""The event-loop threads that servers run on, and calls into them from other threads or loops.

One daemon thread per backend ("asyncio", "trio") runs an anyio event loop for the whole process;
servers' connections are tasks on it. Starting a server is then a socket registered with the loop's
acceptor (``_acceptor.py``) from the caller's thread: no thread start, no loop start, not even a
wake-up of the loop, which is what keeps a fresh server per test cheap. Work enters the loop through the
backend's own thread-safe entry point (``call_soon_threadsafe`` / ``TrioToken.run_sync_soon``).
"""

from __future__ import annotations

import contextvars
import os
import threading
from collections.abc import Awaitable
from typing import Any, Callable, TypeVar

from ._acceptor import Acceptor
from ._errors import ConnfaultError

T = TypeVar("T")

BACKENDS = ("asyncio", "trio")

#: How long a loop thread may take to start or to stop before that is an error.
LOOP_START_TIMEOUT = 10.0


class _Call:
    """One function call handed to the loop thread, with its result."""

    __slots__ = ("fn", "args", "result", "error", "done", "notify")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> None:
        self.fn = fn
        self.args = args
        self.result: Any = None
        self.error: BaseException | None = None
        self.done = threading.Event()
        self.notify: Callable[[], None] | None = None

    def run(self) -> None:
        try:
            self.result = self.fn(*self.args)
        except BaseException as exc:  # noqa: BLE001 - handed back to the caller, who re-raises it
            self.error = exc
        self.done.set()
        if self.notify is not None:
            self.notify()

    def outcome(self) -> Any:
        if self.error is not None:
            raise self.error
        return self.result


class LoopThread:
    """An anyio event loop on a daemon thread, with thread-safe ways in.

    This type has no public constructor use in tests; servers get theirs from :func:`get_loop`.
    """

    def __init__(self, backend: str) -> None:
        if backend not in BACKENDS:
            raise ConnfaultError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
        self.backend = backend
        self._ready = threading.Event()
        self._stopped = threading.Event()
        self._schedule: Callable[[Callable[[], None]], object] | None = None
        self._task_group: Any = None
        self._asyncio_loop: Any = None
        self._trio_nursery: Any = None
        #: Tasks started with ``start_task`` on asyncio (kept referenced until done).
        self._asyncio_tasks: set[Any] = set()
        #: The servers' listeners (see ``_acceptor.py``), made with the loop.
        self.acceptor: Any = None
        self._stop: Callable[[], None] | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"connfault-loop-{backend}", daemon=True)
        before = _socket_inodes()
        self._thread.start()
        ready = self._ready.wait(LOOP_START_TIMEOUT)
        #: The loop's own sockets (its wake-up pipes), for leak checks that must not count them.
        self.own_sockets = _socket_inodes() - before
        if not ready:
            raise ConnfaultError(f"the {backend} loop thread did not start")
        if self._error is not None:
            raise ConnfaultError(f"the {backend} loop thread failed to start") from self._error

    @property
    def thread(self) -> threading.Thread:
        """The thread the loop runs on."""
        return self._thread

    @property
    def is_running(self) -> bool:
        """Whether the loop still accepts work."""
        return self._schedule is not None and not self._stopped.is_set()

    def _run(self) -> None:
        try:
            # Imported here, on the loop thread: the plugin imports this module, and an older anyio
            # imports much (ssl among it) as it loads, which a session without servers never needs.
            import anyio

            anyio.run(self._main, backend=self.backend)
        except BaseException as exc:  # noqa: BLE001 - reported by the starting thread
            self._error = exc
        finally:
            self._schedule = None
            self._stopped.set()
            self._ready.set()

    async def _main(self) -> None:
        import anyio

        stop = anyio.Event()
        if self.backend == "trio":
            import trio

            raw: Callable[[Callable[[], object]], object] = trio.lowlevel.current_trio_token().run_sync_soon
        else:
            import asyncio

            raw = asyncio.get_running_loop().call_soon_threadsafe
        self._stop = stop.set
        # Callbacks run in a copy of this task's context, so that anyio (through sniffio) knows
        # which event loop it is on even outside a task.
        context = contextvars.copy_context()
        self._schedule = lambda fn: raw(lambda: context.run(fn))
        acceptor = self.acceptor = Acceptor()
        try:
            async with anyio.create_task_group() as tg:
                self._task_group = tg
                if self.backend == "trio":
                    import trio

                    # Connection tasks go straight into a trio nursery (cheaper than anyio's).
                    async with trio.open_nursery() as nursery:
                        self._trio_nursery = nursery
                        nursery.start_soon(acceptor.watch_trio)
                        from ._poller import new_trio_poller

                        poller = new_trio_poller()
                        if poller is not None:
                            await nursery.start(poller.watch)
                        self._ready.set()
                        await stop.wait()
                        nursery.cancel_scope.cancel()
                else:
                    import asyncio

                    self._asyncio_loop = asyncio.get_running_loop()
                    acceptor.watch_asyncio(self._asyncio_loop)
                    self._ready.set()
                    await stop.wait()
                    for task in list(self._asyncio_tasks):  # none once every server has stopped
                        task.cancel()
                tg.cancel_scope.cancel()
        finally:
            acceptor.close(self._asyncio_loop)
            if self._asyncio_loop is not None:
                from ._poller import close_poller

                close_poller(self._asyncio_loop)

    def in_loop_thread(self) -> bool:
        """Whether the caller is running on this loop's thread."""
        return threading.current_thread() is self._thread

    def call_soon(self, fn: Callable[..., Any], *args: Any) -> None:
        """Run the plain function ``fn(*args)`` on the loop thread soon; do not wait for it."""
        schedule = self._schedule
        if schedule is None:
            raise ConnfaultError(f"the {self.backend} loop thread is not running")
        if args:
            schedule(lambda: fn(*args))
        else:
            schedule(fn)

    def spawn(self, async_fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        """Start ``async_fn(*args)`` as a task on the loop; do not wait for it."""
        self.call_soon(self._task_group.start_soon, async_fn, *args)

    def start_task(self, async_fn: Callable[..., Awaitable[Any]], *args: Any) -> None:
        """On the loop thread: start ``async_fn(*args)`` as a task now.

        A bare ``create_task`` on asyncio, a trio nursery's ``start_soon`` on trio (through anyio's
        task group a connection's task costs a good part of a request); the task must handle its
        own exceptions.
        """
        if self._asyncio_loop is not None:
            task = self._asyncio_loop.create_task(async_fn(*args))
            self._asyncio_tasks.add(task)
            task.add_done_callback(self._asyncio_tasks.discard)
        else:
            self._trio_nursery.start_soon(async_fn, *args)

    def call(self, fn: Callable[..., T], *args: Any, timeout: float) -> T:
        """Run the plain function ``fn(*args)`` on the loop thread and return its result.

        Raises:
            TimeoutError: the loop did not run it within ``timeout`` seconds.
        """
        if self.in_loop_thread():
            return fn(*args)
        call = _Call(fn, args)
        self.call_soon(call.run)
        if not call.done.wait(timeout):
            raise TimeoutError(f"the {self.backend} loop did not answer within {timeout} s")
        return call.outcome()  # type: ignore[no-any-return]

    async def call_async(self, fn: Callable[..., T], *args: Any, timeout: float) -> T:
        """Like :meth:`call`, awaited from an asyncio or trio loop (not this one) without blocking it."""
        if self.in_loop_thread():
            return fn(*args)
        call = _Call(fn, args)
        from ._waiting import callback_for_current_loop  # asyncio: imported when first needed

        notify, wait = callback_for_current_loop()
        call.notify = notify
        self.call_soon(call.run)
        await wait(timeout, lambda: call.done.is_set())
        if not call.done.is_set():
            raise TimeoutError(f"the {self.backend} loop did not answer within {timeout} s")
        return call.outcome()  # type: ignore[no-any-return]

    def stop(self) -> None:
        """Stop the loop and join its thread (bounded)."""
        stop = self._stop
        if stop is not None and self._schedule is not None:
            try:
                self.call_soon(stop)
            except Exception:  # noqa: BLE001 - the loop may be finishing on its own
                pass
        self._thread.join(LOOP_START_TIMEOUT)


_loops: dict[str, LoopThread] = {}
_loops_lock = threading.Lock()


def get_loop(backend: str) -> LoopThread:
    """The process's loop thread for ``backend``, started on first use."""
    loop = _loops.get(backend)
    if loop is not None and loop.is_running:
        return loop
    with _loops_lock:
        loop = _loops.get(backend)
        if loop is None or not loop.is_running:
            loop = _loops[backend] = LoopThread(backend)
        return loop


_users = 0


def retain_loops() -> None:
    """Count one more user of the loop threads (a pytest session; nested ones in pytester too)."""
    global _users
    with _loops_lock:
        _users += 1


def release_loops() -> None:
    """Count one user less; the last one stops the loop threads."""
    global _users
    with _loops_lock:
        _users = max(0, _users - 1)
        last = _users == 0
    if last:
        stop_loops()


def stop_loops() -> None:
    """Stop every loop thread this process started (servers on them must be stopped first)."""
    with _loops_lock:
        loops = list(_loops.values())
        _loops.clear()
    for loop in loops:
        loop.stop()


def loop_threads() -> list[threading.Thread]:
    """The threads of the running loops (for leak checks that must not count them)."""
    return [loop.thread for loop in list(_loops.values())]


def loop_sockets() -> set[str]:
    """The sockets the running loops hold themselves (for leak checks that must not count them)."""
    return {inode for loop in list(_loops.values()) for inode in loop.own_sockets}


def _socket_inodes() -> set[str]:
    """The process's sockets as ``socket:[inode]`` strings (empty where /proc is missing)."""
    found: set[str] = set()
    try:
        fds = os.listdir("/proc/self/fd")
    except OSError:
        return found
    for fd in fds:
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:"):
            found.add(target)
    return found
