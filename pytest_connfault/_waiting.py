"""Waiting from a test's own event loop for something another thread signals, without blocking it.

The server runs on its own loop thread; an async test runs on asyncio or trio in the main thread.
A blocking ``threading.Event.wait`` there would freeze the test's loop (and any client request in
flight on it), and a worker thread per wait would leak threads. Instead the waiting loop hands out a
thread-safe callback that wakes it through its own entry point.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Callable

import anyio

Notify = Callable[[], None]
Wait = Callable[[float, Callable[[], bool]], Awaitable[None]]


def _current_library() -> str:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        return "asyncio"
    try:
        import trio

        trio.lowlevel.current_trio_token()
    except (ImportError, RuntimeError):
        raise RuntimeError("an awaitable form was called outside an asyncio or trio event loop") from None
    return "trio"


def callback_for_current_loop() -> tuple[Notify, Wait]:
    """A thread-safe ``notify()`` and an ``await wait(timeout, is_done)`` for the running loop.

    ``wait`` returns once ``notify`` was called (before or after ``wait`` began), or once the
    timeout has passed; the caller checks ``is_done`` to tell which.
    """
    if _current_library() == "asyncio":
        loop = asyncio.get_running_loop()
        fired = asyncio.Event()

        def notify_asyncio() -> None:
            try:
                loop.call_soon_threadsafe(fired.set)
            except RuntimeError:  # the waiting loop has closed: nobody is waiting any more
                pass

        async def wait_asyncio(timeout: float, is_done: Callable[[], bool]) -> None:
            if is_done():
                return
            with anyio.move_on_after(timeout):
                await fired.wait()

        return notify_asyncio, wait_asyncio

    import trio

    token = trio.lowlevel.current_trio_token()
    event = trio.Event()

    def notify_trio() -> None:
        try:
            token.run_sync_soon(event.set)
        except trio.RunFinishedError:
            pass

    async def wait_trio(timeout: float, is_done: Callable[[], bool]) -> None:
        if is_done():
            return
        with anyio.move_on_after(timeout):
            await event.wait()

    return notify_trio, wait_trio


async def wait_for(
    subscribe: Callable[[Notify], Callable[[], None]],
    is_done: Callable[[], bool],
    timeout: float,
) -> bool:
    """Await ``is_done()`` becoming true; ``subscribe(notify)`` registers the wake-up.

    ``subscribe`` returns a function that removes the registration. Returns ``is_done()``.
    """
    if is_done():
        return True
    notify, wait = callback_for_current_loop()
    unsubscribe = subscribe(notify)
    try:
        await wait(timeout, is_done)
    finally:
        unsubscribe()
    return is_done()
