"""The private epoll that connections wait through (``_poller.py``), on real socket pairs.

A wait ends in exactly one of three ways, with a value rather than an exception: READY (the socket
can be read), WOKEN (``interrupt``: a fault was armed), CLOSED (``forget``: the server closed the
socket). A wait that is cancelled (the server stops) leaves no waiter behind, or a later event
would be handed to a task that no longer waits.
"""

from __future__ import annotations

import asyncio
import select
import socket
from collections.abc import Awaitable, Iterator
from typing import Any, Callable

import pytest
import trio

from pytest_connfault._poller import CLOSED, READY, WOKEN, Poller, TrioPoller

pytestmark = pytest.mark.skipif(not hasattr(select, "epoll"), reason="the private poller needs epoll")

Scenario = Callable[[Any, socket.socket, socket.socket], Awaitable[None]]


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A connected pair of non-blocking sockets: the server's side first."""
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    try:
        yield ours, theirs
    finally:
        ours.close()
        theirs.close()


def run_asyncio(scenario: Scenario, ours: socket.socket, theirs: socket.socket) -> None:
    async def main() -> None:
        poller = Poller(asyncio.get_running_loop())
        try:
            await scenario(poller, ours, theirs)
        finally:
            poller.close()

    asyncio.run(main())


def run_trio(scenario: Scenario, ours: socket.socket, theirs: socket.socket) -> None:
    async def main() -> None:
        poller = TrioPoller()
        async with trio.open_nursery() as nursery:
            await nursery.start(poller.watch)
            await scenario(poller, ours, theirs)
            nursery.cancel_scope.cancel()

    trio.run(main)


BACKENDS = {"asyncio": run_asyncio, "trio": run_trio}


async def next_turns(poller: Any) -> None:
    """Let the loop run its other tasks a few times (the waiter parks, the poller dispatches)."""
    for _ in range(5):
        if isinstance(poller, TrioPoller):
            await trio.lowlevel.checkpoint()
        else:
            await asyncio.sleep(0)


async def outcome_of(poller: Any, ours: socket.socket, act: Callable[[], None]) -> str:
    """Wait for ``ours`` to be readable in a task, ``act`` while it waits; what the wait returned."""
    result: list[str] = []

    async def waiter() -> None:
        result.append(await poller.wait(ours.fileno(), True))

    if isinstance(poller, TrioPoller):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(waiter)
            await next_turns(poller)
            act()
            with trio.fail_after(5):
                while not result:
                    await trio.lowlevel.checkpoint()
    else:
        task = asyncio.ensure_future(waiter())
        await next_turns(poller)
        act()
        await asyncio.wait_for(task, 5)
    return result[0]


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_wait_ends_ready_when_bytes_arrive(backend: str, pair: tuple[socket.socket, socket.socket]) -> None:
    """Bytes from the peer: the wait returns READY."""

    async def scenario(poller: Any, ours: socket.socket, theirs: socket.socket) -> None:
        assert await outcome_of(poller, ours, lambda: theirs.send(b"x")) == READY

    BACKENDS[backend](scenario, *pair)


@pytest.mark.parametrize("backend", BACKENDS)
def test_interrupt_ends_a_wait_woken(backend: str, pair: tuple[socket.socket, socket.socket]) -> None:
    """``interrupt`` (a fault armed meanwhile): the wait returns WOKEN with nothing to read."""

    async def scenario(poller: Any, ours: socket.socket, theirs: socket.socket) -> None:
        assert await outcome_of(poller, ours, lambda: poller.interrupt(ours.fileno(), True, WOKEN)) == WOKEN

    BACKENDS[backend](scenario, *pair)


@pytest.mark.parametrize("backend", BACKENDS)
def test_forget_ends_a_wait_closed_and_unregisters(backend: str, pair: tuple[socket.socket, socket.socket]) -> None:
    """``forget`` (the server closes the socket): the wait returns CLOSED and the socket is no longer watched."""

    async def scenario(poller: Any, ours: socket.socket, theirs: socket.socket) -> None:
        assert await outcome_of(poller, ours, lambda: poller.forget(ours.fileno(), CLOSED)) == CLOSED
        assert ours.fileno() not in poller.waiters
        with pytest.raises(FileNotFoundError):  # epoll no longer has it
            poller.epoll.unregister(ours.fileno())

    BACKENDS[backend](scenario, *pair)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_cancelled_wait_leaves_no_waiter_behind(backend: str, pair: tuple[socket.socket, socket.socket]) -> None:
    """A wait cancelled by its task's cancellation is forgotten: bytes arriving later wake nobody."""

    async def scenario(poller: Any, ours: socket.socket, theirs: socket.socket) -> None:
        fd = ours.fileno()
        if isinstance(poller, TrioPoller):
            with trio.CancelScope() as scope:
                scope.deadline = trio.current_time() + 0.01
                await poller.wait(fd, True)
            assert scope.cancelled_caught
        else:
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(poller.wait(fd, True), 0.01)
        assert poller.waiters[fd] == [None, None], "the cancelled wait is still registered as waiting"
        theirs.send(b"x")  # an event for nobody: dispatched and ignored
        await next_turns(poller)
        assert poller.waiters[fd] == [None, None]

    BACKENDS[backend](scenario, *pair)


async def readable_twice_with(poller: Any, ours: socket.socket, theirs: socket.socket, answers: list[bool]) -> tuple[str | None, int]:
    """Wait with an ``inline`` callback answering ``answers`` in turn (each call reads one byte);
    bytes arrive one at a time. What the wait returned (None: still waiting) and the calls made."""
    calls: list[int] = []
    result: list[str] = []

    def inline() -> bool:
        calls.append(len(ours.recv(1)))
        return answers[len(calls) - 1]

    async def waiter() -> None:
        result.append(await poller.wait(ours.fileno(), True, inline))

    async def feed() -> None:
        for count in range(1, len(answers) + 1):
            theirs.send(b"x")
            for _ in range(200):  # bounded: each byte is seen within a few turns
                if len(calls) == count or result:
                    break
                await next_turns(poller)

    if isinstance(poller, TrioPoller):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(waiter)
            await next_turns(poller)
            await feed()
            await next_turns(poller)
            if not result:
                nursery.cancel_scope.cancel()
    else:
        task = asyncio.ensure_future(waiter())
        await next_turns(poller)
        await feed()
        await next_turns(poller)
        if not result:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
    return (result[0] if result else None), len(calls)


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_inline_callback_that_handles_readiness_keeps_the_wait_going(
    backend: str, pair: tuple[socket.socket, socket.socket]
) -> None:
    """``inline`` returning True consumed the readiness: the waiter waits on, and the registration is
    re-armed, so the next bytes call ``inline`` again."""

    async def scenario(poller: Any, ours: socket.socket, theirs: socket.socket) -> None:
        outcome, calls = await readable_twice_with(poller, ours, theirs, [True, True])
        assert outcome is None, "the wait ended although the inline callback handled every readiness"
        assert calls == 2, "the registration was not re-armed after the inline callback handled the first bytes"
        assert ours.fileno() not in poller.inline, "the cancelled wait left its inline callback behind"

    BACKENDS[backend](scenario, *pair)


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_inline_callback_that_declines_hands_readiness_to_the_waiter(
    backend: str, pair: tuple[socket.socket, socket.socket]
) -> None:
    """``inline`` returning False: the wait ends READY, and the callback is forgotten with it."""

    async def scenario(poller: Any, ours: socket.socket, theirs: socket.socket) -> None:
        outcome, calls = await readable_twice_with(poller, ours, theirs, [True, False])
        assert (outcome, calls) == (READY, 2)
        assert ours.fileno() not in poller.inline

    BACKENDS[backend](scenario, *pair)
