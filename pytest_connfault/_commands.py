"""The fire-now commands of a server: drop every idle keep-alive connection, end every stall.

Each runs on the loop thread, under the server's lock, and returns once the kernel has acted
(the RST or FIN is on the wire); each has an awaitable form for asyncio and trio tests.
``FaultServer`` (``_server.py``) inherits them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._errors import ConnfaultError
from ._faults import FaultFiring, now
from ._ledger import Connection, EndedBy
from ._wire import Wire

if TYPE_CHECKING:
    from ._loop import LoopThread
    from ._server import ServerCore

#: How long ``stop()`` and the commands may take before that is an error (they take well under
#: a millisecond; this only bounds a broken loop).
COMMAND_TIMEOUT = 5.0


class IdleCommands:
    """``reset_idle``, ``close_idle``, ``half_close_idle`` and ``release``, with their async forms."""

    _core: ServerCore
    _loop: LoopThread | None
    _state: str

    def _drop_idle(self, kind: str) -> list[Connection]:
        """On the loop thread: drop every idle keep-alive connection, under the lock."""
        core = self._core
        dropped = []
        detail = f"server.{kind}_idle()"
        with core.lock:
            fired_at = now()  # one instant for the whole command
            for state in list(core.live.values()):
                if state.phase != "idle":
                    continue
                wire: Wire = state.wire  # type: ignore[assignment]
                if kind == "reset":
                    wire.reset()
                elif kind == "close":
                    state.unread += wire.fin_close()
                else:
                    wire.half_close()
                state.phase = "half_closed" if kind == "half_close" else "closed"
                state.ended_by = EndedBy.SERVER_FAULT
                if kind != "half_close":  # the socket is closed: the records returned say so
                    state.closed_at = fired_at
                firing = FaultFiring(kind, "idle", state.id, None, fired_at, detail, True)
                state.faults.append(firing)
                dropped.append(state.snapshot())
        return dropped

    def reset_idle(self) -> list[Connection]:
        """Reset (RST) every idle keep-alive connection now; return their records.

        Returns once the kernel has sent every RST. Idle means: it has answered at least one
        request and waits for the next, with nothing unread buffered.
        """
        return self._command("reset")

    def close_idle(self) -> list[Connection]:
        """Close (FIN, with no ``Connection: close`` warning) every idle keep-alive connection now."""
        return self._command("close")

    def half_close_idle(self) -> list[Connection]:
        """Half-close (send FIN, keep reading) every idle keep-alive connection now."""
        return self._command("half_close")

    def _command(self, kind: str) -> list[Connection]:
        self._require_running()
        assert self._loop is not None
        return self._loop.call(self._drop_idle, kind, timeout=COMMAND_TIMEOUT)

    async def reset_idle_async(self) -> list[Connection]:
        """The awaitable form of :meth:`reset_idle`."""
        return await self._command_async("reset")

    async def close_idle_async(self) -> list[Connection]:
        """The awaitable form of :meth:`close_idle`."""
        return await self._command_async("close")

    async def half_close_idle_async(self) -> list[Connection]:
        """The awaitable form of :meth:`half_close_idle`."""
        return await self._command_async("half_close")

    async def _command_async(self, kind: str) -> list[Connection]:
        self._require_running()
        assert self._loop is not None
        return await self._loop.call_async(self._drop_idle, kind, timeout=COMMAND_TIMEOUT)

    def _release(self) -> int:
        core = self._core
        with core.lock:
            stalled = sum(1 for c in core.live.values() if c.phase == "stalled")
            if core.release_event is not None:
                core.release_event.set()
                core.release_event = None
        return stalled

    def release(self) -> int:
        """End every stall now (the stalled connections go on normally); return how many."""
        self._require_running()
        assert self._loop is not None
        return self._loop.call(self._release, timeout=COMMAND_TIMEOUT)

    async def release_async(self) -> int:
        """The awaitable form of :meth:`release`."""
        self._require_running()
        assert self._loop is not None
        return await self._loop.call_async(self._release, timeout=COMMAND_TIMEOUT)

    def _require_running(self) -> None:
        if self._state != "running":
            raise ConnfaultError(f"the server is {self._state}; start it first")
