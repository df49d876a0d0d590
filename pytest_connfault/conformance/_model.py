"""The values of the conformance matrix: verdicts, one request's attempt, one cell's result.

Verdicts follow Autobahn|Testsuite's grades, so that a reader of one reads the other:

=================  ====================================================================
``OK``             the client did what HTTP asks and what its users need
``NON-STRICT``     allowed by RFC 9110/9112, but worse for users than it had to be
                   (e.g. an error where a safe retry on a new connection was possible)
``INFORMATIONAL``  recorded without judgement (the RFC leaves the choice to the client)
``FAILED``         wrong: the reason says what the client did and what it should have done
=================  ====================================================================

A cell that could not run has ``SKIPPED`` (client not installed, no TLS) and one whose harness
broke has ``ERROR``; neither is a judgement of the client.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any

OK = "OK"
NON_STRICT = "NON-STRICT"
INFORMATIONAL = "INFORMATIONAL"
FAILED = "FAILED"
SKIPPED = "SKIPPED"
ERROR = "ERROR"

#: The verdicts a scenario gives, best first.
VERDICTS = (OK, NON_STRICT, INFORMATIONAL, FAILED)
#: Every value a cell's ``verdict`` can have.
OUTCOMES = (*VERDICTS, SKIPPED, ERROR)

#: One-line meaning of each outcome (the legend of the matrix and the reports).
LEGEND: dict[str, str] = {
    OK: "the client did what HTTP asks and what its users need",
    NON_STRICT: "allowed by RFC 9110/9112, but worse for users than it had to be",
    INFORMATIONAL: "recorded, no judgement: the RFC leaves the choice to the client",
    FAILED: "wrong; the reason says what the client did and should have done",
    SKIPPED: "not run (client not installed, or the scenario needs what is missing)",
    ERROR: "the harness itself failed (a bug in pytest-connfault, not in the client)",
}


@dataclass(frozen=True)
class Verdict:
    """A scenario's judgement of one client: the grade and a one-line reason."""

    verdict: str
    reason: str

    def __post_init__(self) -> None:
        if self.verdict not in OUTCOMES:
            raise ValueError(f"verdict must be one of {', '.join(OUTCOMES)}; got {self.verdict!r}")


def ok(reason: str) -> Verdict:
    return Verdict(OK, reason)


def non_strict(reason: str) -> Verdict:
    return Verdict(NON_STRICT, reason)


def informational(reason: str) -> Verdict:
    return Verdict(INFORMATIONAL, reason)


def failed(reason: str) -> Verdict:
    return Verdict(FAILED, reason)


@dataclass(frozen=True)
class Reply:
    """What a driver returns for a request that got a response: its status and whole body."""

    status: int
    body: bytes = b""


@dataclass
class Attempt:
    """One request of a scenario, as the client saw it: a reply or an exception, and how long."""

    method: str
    path: str
    reply: Reply | None = None
    error: BaseException | None = None
    duration: float = 0.0

    @property
    def is_ok(self) -> bool:
        """Whether the client returned a response (of any status)."""
        return self.reply is not None and self.error is None

    def describe(self) -> str:
        """``"GET /x -> 200 (3 bytes) in 1.2 ms"`` or ``"GET /x -> httpx.ReadError: ..."``."""
        took = f" in {self.duration * 1000:.1f} ms"
        if self.reply is not None:
            return f"{self.method} {self.path} -> {self.reply.status} ({len(self.reply.body)} bytes){took}"
        return f"{self.method} {self.path} -> {exception_text(self.error)}{took}"


def type_name(cls: type) -> str:
    """A class's public dotted name: ``httpx.ReadError`` rather than ``httpx._exceptions.ReadError``."""
    module = cls.__module__
    if module == "builtins":
        return cls.__qualname__
    top = module.split(".", 1)[0]
    if getattr(sys.modules.get(top), cls.__qualname__, None) is cls:
        return f"{top}.{cls.__qualname__}"
    return f"{module}.{cls.__qualname__}"


def exception_text(exc: BaseException | None) -> str:
    """``"Type: message"`` on one line (the message shortened to 300 characters)."""
    if exc is None:
        return "(no exception)"
    message = " ".join(str(exc).split())
    if len(message) > 300:
        message = message[:297] + "..."
    name = type_name(type(exc))
    return f"{name}: {message}" if message else name


def exception_evidence(exc: BaseException | None) -> dict[str, Any] | None:
    """The exception as JSON: type, message, and the chain of causes below it."""
    if exc is None:
        return None
    chain: list[str] = []
    seen = {id(exc)}
    cause = exc.__cause__ or exc.__context__
    while cause is not None and id(cause) not in seen and len(chain) < 8:
        seen.add(id(cause))
        chain.append(exception_text(cause))
        cause = cause.__cause__ or cause.__context__
    return {"type": type_name(type(exc)), "message": str(exc), "chain": chain}


@dataclass
class CellResult:
    """The result of one scenario against one client: what the matrix and the reports show."""

    client: str
    scenario: str
    verdict: str
    reason: str
    duration: float = 0.0
    version: str = ""
    evidence: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The cell as plain JSON values (it crosses from xdist workers this way)."""
        return {
            "client": self.client,
            "scenario": self.scenario,
            "verdict": self.verdict,
            "reason": self.reason,
            "duration": round(self.duration, 4),
            "version": self.version,
            "evidence": self.evidence,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CellResult:
        """The inverse of :meth:`to_json`."""
        return cls(
            client=str(data["client"]),
            scenario=str(data["scenario"]),
            verdict=str(data["verdict"]),
            reason=str(data["reason"]),
            duration=float(data.get("duration", 0.0)),
            version=str(data.get("version", "")),
            evidence=dict(data.get("evidence") or {}),
        )
