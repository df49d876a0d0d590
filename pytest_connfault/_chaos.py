"""Seeded chaos: random faults from a chosen set, on a fraction of requests and connections.

Each decision is a pure function of the seed and a number: request N's fate is drawn from
``random.Random(f"{seed}:request:{N}")`` (connection M's, for ``on_connect`` faults, from
``...:connection:M``). So a run is replayed exactly by the same seed with the same requests in
the same order, whatever the timing, the backend or the other tests of the session, and a test
that fails under chaos names the seed that replays it (``--connfault-seed=N``).

The chaos plan wraps the server's :class:`FaultPlan`: faults armed by hand still come first, and
chaos decides only where none of them fired. Its handle (:class:`ChaosHandle`) sits in the plan
so that the connection loop consults it, but never fires itself; each firing chaos chooses is
recorded like any fault, with ``FaultFiring.chaos`` set.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Union

from ._errors import FaultSpecError
from ._faults import Fault, FaultFiring, FaultHandle, FaultPlan

if TYPE_CHECKING:
    from ._server import FaultServer, ServerCore

#: The faults chaos picks from unless told otherwise: the drops of the documented bug's family.
DEFAULT_FAULTS = (
    "reset@after_response",
    "close@after_response",
    "close@before_request",
    "reset@before_response",
    "truncate@before_response",
)

FaultLike = Union[Fault, str]

_CONNECTION_MOMENTS = frozenset({"on_connect"})


def chaos_fault(spec: FaultLike) -> Fault:
    """A fault chaos may pick: a :class:`Fault`, or ``"kind"`` / ``"kind@moment"`` (a fault label).

    Raises:
        FaultSpecError: the fault cannot be left to chance (``at="idle"`` or ``"handshake"``,
            ``request=``/``connection=`` selectors, ``times``), or is not a fault at all.
    """
    if isinstance(spec, str):
        kind, _, moment = spec.partition("@")
        fault = Fault(kind, at=moment or None)
    elif isinstance(spec, Fault):
        fault = spec
    else:
        raise FaultSpecError(
            f"a chaos fault is a Fault or a name such as 'reset@after_response', not {spec!r}"
        )
    if fault.at in ("idle", "handshake"):
        raise FaultSpecError(
            f"chaos cannot fire {fault.label}: at='idle' and at='handshake' are not left to chance"
        )
    if fault.request is not None or fault.connection is not None or fault.request_on_connection is not None:
        raise FaultSpecError(
            f"chaos picks the requests itself: {fault!r} must not select request= or connection="
        )
    if fault.times != 1:
        raise FaultSpecError(f"chaos fires each pick once: {fault!r} must not set times=")
    return fault


@dataclass(frozen=True)
class Chaos:
    """A chaos setting: how often, which faults, from which seed.

    Args:
        rate: the fraction of requests (and, for ``on_connect`` faults, connections) that get a
            fault, from 0 to 1.
        faults: what chaos picks from (uniformly): :class:`Fault` values or labels such as
            ``"reset@after_response"``; default :data:`DEFAULT_FAULTS`.
        seed: the seed; the same seed fires the same faults on the same request numbers.
    """

    rate: float
    seed: int
    faults: tuple[Fault, ...] = ()

    def __init__(self, rate: float, seed: int, faults: Iterable[FaultLike] | None = None) -> None:
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
            raise FaultSpecError(f"chaos rate= must be a number from 0 to 1, not {rate!r}")
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise FaultSpecError(f"chaos seed= must be a whole number, not {seed!r}")
        chosen = tuple(chaos_fault(f) for f in (DEFAULT_FAULTS if faults is None else faults))
        if not chosen:
            raise FaultSpecError("chaos faults= is empty: give at least one fault to pick from")
        object.__setattr__(self, "rate", float(rate))
        object.__setattr__(self, "seed", seed)
        object.__setattr__(self, "faults", chosen)

    def __str__(self) -> str:
        return f"chaos rate={self.rate} seed={self.seed} faults=[{', '.join(f.label for f in self.faults)}]"

    def decide(self, scope: str, number: int) -> Fault | None:
        """The fault for ``scope`` (``"request"`` or ``"connection"``) number ``number``, or None."""
        candidates = [f for f in self.faults if (f.at in _CONNECTION_MOMENTS) == (scope == "connection")]
        if not candidates:
            return None
        draw = random.Random(f"{self.seed}:{scope}:{number}")
        if draw.random() >= self.rate:
            return None
        return draw.choice(candidates)

    def plan(self, scope: str, count: int) -> list[Fault | None]:
        """The decisions for numbers 1 to ``count``: what a run will fire, before it runs."""
        return [self.decide(scope, n) for n in range(1, count + 1)]


class ChaosHandle(FaultHandle):
    """The chaos of one server: its setting and every fault it fired.

    This type has no public constructor; ``arm_chaos`` returns it (the marker arms one, found in
    ``server.faults``). ``firings`` and ``wait()`` are about the faults chaos fired.
    """

    def __init__(self, chaos: Chaos) -> None:
        # Its fault only tells the connection loop which moments to watch; it never fires itself.
        watch = next((f for f in chaos.faults if f.at == "before_request"), chaos.faults[0])
        super().__init__(Fault(watch.kind, at=watch.at))
        self.chaos = chaos

    def __repr__(self) -> str:
        return f"<ChaosHandle {self.chaos} fired={self.fired}>"

    def _claim(self) -> bool:
        return False


class _ChaosShot(FaultHandle):
    """One fault chaos picked for one request or connection; marks its firing as chaos's."""

    def __init__(self, fault: Fault, core: ServerCore, owner: ChaosHandle) -> None:
        super().__init__(fault)
        self._core = core
        self._owner = owner

    def _record(self, firing: FaultFiring) -> None:
        # Called by the connection loop under the server's lock, right after it put ``firing``
        # in the connection's record: replace it there with the marked copy.
        marked = dataclasses.replace(firing, chaos=True)
        state = self._core.ledger.connections[firing.connection_id - 1]
        for i in range(len(state.faults) - 1, -1, -1):
            if state.faults[i] is firing:
                state.faults[i] = marked
                break
        super()._record(marked)
        self._owner._record(marked)


class ChaosPlan(FaultPlan):
    """A server's fault plan with chaos deciding where no armed fault fires."""

    def __init__(self, handles: Sequence[FaultHandle], owner: ChaosHandle, core: ServerCore) -> None:
        super().__init__(list(handles) + [owner])
        self.owner = owner
        self._core = core
        self._spent: set[tuple[str, int]] = set()

    def take(self, moment: str, **where: Any) -> FaultHandle | None:
        handle = super().take(moment, **where)
        if handle is not None:
            return handle
        scope = "connection" if moment in _CONNECTION_MOMENTS else "request"
        number = where.get(scope)
        if number is None or (scope, number) in self._spent:
            return None
        fault = self.owner.chaos.decide(scope, number)
        if fault is None or not fault.matches(moment, **where):
            return None
        self._spent.add((scope, number))
        shot = _ChaosShot(fault, self._core, self.owner)
        shot._claim()
        return shot


def arm_chaos(server: FaultServer, chaos: Chaos) -> ChaosHandle:
    """Let ``chaos`` fire faults on ``server`` (a :class:`FaultServer` or a proxy's client side).

    Faults armed before or after keep precedence. Returns the handle that collects the firings.
    """
    core = server._core
    owner = ChaosHandle(chaos)
    with core.lock:
        armed = core.plan.owner.chaos if isinstance(core.plan, ChaosPlan) else None
        if armed is None:
            core.plan = ChaosPlan(core.plan.handles, owner, core)
    if armed is not None:
        raise FaultSpecError(f"{server!r} already has chaos armed: {armed}")
    return owner


def chaos_report(handle: ChaosHandle, nodeid: str) -> str:
    """The text of a failing test's chaos section: the setting, the firings, how to replay."""
    lines = [str(handle.chaos), f"fired {handle.fired}:"]
    lines += [f"  {firing}" for firing in handle.firings] or ["  (nothing)"]
    lines.append(f"replay: pytest '{nodeid}' --connfault-seed={handle.chaos.seed}")
    return "\n".join(lines)


def is_chaos_mark(mark: Any) -> bool:
    """Whether a ``connfault`` marker asks for chaos (``@pytest.mark.connfault("chaos", ...)``)."""
    return bool(mark.args) and mark.args[0] == "chaos"


def chaos_from_mark(mark: Any, default_seed: int) -> Chaos:
    """The :class:`Chaos` of a ``connfault("chaos", rate=0.1, faults=[...], seed=None)`` marker."""
    if len(mark.args) != 1:
        raise FaultSpecError(f"takes only 'chaos' and keyword arguments, not {mark.args!r}")
    unknown = sorted(set(mark.kwargs) - {"rate", "faults", "seed"})
    if unknown:
        raise FaultSpecError(f"unknown argument(s) {', '.join(unknown)}; chaos takes rate=, faults=, seed=")
    seed = mark.kwargs.get("seed")
    return Chaos(
        mark.kwargs.get("rate", 0.1), default_seed if seed is None else seed, mark.kwargs.get("faults")
    )
