"""A bounded stress round: concurrent keep-alive clients, faults on a known fraction, ledger exact.

The same round as ``python -m stress`` (``stress/run.py``), small enough for every CI run: 12
clients (threads and asyncio tasks) and about 500 requests per backend. The negative controls
show the reconciliation reports a fault it was not told about and a client log that disagrees.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_connfault import Fault, FaultServer
from pytest_connfault._faults import FaultPlan
from stress.run import (
    MENU,
    OK,
    RST,
    ClientLog,
    RoundResult,
    Sent,
    reconcile,
    request_body,
    request_bytes,
    run_round,
)

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_ledger_agrees_exactly_with_the_clients(backend: str) -> None:
    """480 requests from 12 clients, faults on 15 % of them: no mismatch, and the faults really fired."""
    result = run_round(seed=7, backend=backend, threads=4, tasks=8, per_client=40, fault_rate=0.15)
    assert result.mismatches == []
    assert result.sent == 480
    assert result.armed == 72
    assert result.fired >= 60, "most armed faults fired (the rest were on requests never reached)"
    assert result.served > 0.7 * result.sent
    assert result.lost_on_dropped <= result.fired
    assert result.connections > 12, "faults made clients reconnect"


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_ledger_agrees_exactly_with_the_clients_over_tls(backend: str) -> None:
    """The same round over HTTPS (blocking ssl clients and asyncio TLS streams): no mismatch."""
    result = run_round(seed=11, backend=backend, threads=3, tasks=5, per_client=30, fault_rate=0.15, tls=True)
    assert result.mismatches == []
    assert result.sent == 240
    assert result.fired >= 25


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_ledger_agrees_exactly_with_commands_firing_meanwhile(backend: str) -> None:
    """Faults armed and close_idle/reset_idle/half_close_idle fired all along: still no mismatch."""
    result = run_round(seed=5, backend=backend, threads=3, tasks=5, per_client=50, fault_rate=0.1, commands=True)
    assert result.mismatches == []
    assert result.commanded > 0, "the commands found idle connections to drop"


def test_without_faults_every_request_is_served_on_one_connection_per_client() -> None:
    """No faults: every request is served, recorded once, and each client kept its one connection."""
    result = run_round(seed=1, threads=3, tasks=5, per_client=30, fault_rate=0.0)
    assert result.mismatches == []
    assert (result.sent, result.recorded, result.served, result.connections) == (240, 240, 240, 8)


def test_every_fault_of_the_menu_is_valid_and_distinct() -> None:
    """The stress menu's faults are accepted by the server and each has an expected observation."""
    assert len({choice.label for choice in MENU}) == len(MENU)
    with FaultServer() as server:
        for choice in MENU:
            server.inject(choice.kind, at=choice.at, request=1, **dict(choice.options))
            assert choice.expect


def test_many_request_faults_are_taken_in_arming_order() -> None:
    """The plan's index by moment and request= keeps the contract: the first armed fault that selects wins."""
    plan = FaultPlan()
    keyed = [plan.arm(Fault("close", at="before_response", request=n)) for n in range(1, 300)]
    general = plan.arm(Fault("reset", at="before_response", times=2))
    early = FaultPlan()
    first = early.arm(Fault("reset", at="before_response"))
    later = early.arm(Fault("close", at="before_response", request=7))
    where = {"connection": 1, "request_on_connection": 1, "path": "/", "method": "GET"}
    assert plan.take("before_response", request=5, **where) is keyed[4]
    assert plan.take("before_response", request=5, **where) is general, "request 5's own fault is spent"
    assert plan.take("after_response", request=6, **where) is None
    assert plan.take("before_response", request=None, **where) is general
    assert plan.take("before_response", request=None, **where) is None
    assert early.take("before_response", request=7, **where) is first, "armed first, so it wins"
    assert early.take("before_response", request=7, **where) is later


def test_negative_control_an_unplanned_fault_is_a_mismatch() -> None:
    """A fault the reconciliation was not told about shows up as mismatches (the check can fail)."""
    result = run_round(seed=3, threads=2, tasks=2, per_client=20, fault_rate=0.0, unplanned=5)
    assert result.mismatches, "an unplanned fault went unnoticed"
    assert any("had none armed" in m or "none armed/fired" in m for m in result.mismatches), result.mismatches


def test_negative_control_a_client_log_that_disagrees_is_a_mismatch() -> None:
    """A request the client says failed but the ledger says was served, and one never sent, are reported."""
    with FaultServer() as server:
        with socket.create_connection((server.host, server.port)) as sock:
            port = sock.getsockname()[1]
            sock.sendall(request_bytes("/c/0") + request_bytes("/c/1"))
            received = b""
            while received.count(b"HTTP/1.1 200") < 2:
                received += sock.recv(65536)
    honest = ClientLog("c", [Sent("/c/0", 1, port, OK), Sent("/c/1", 1, port, OK)], connections=1)
    assert reconcile(server, {}, [honest], RoundResult("asyncio")) == []
    lying = ClientLog("c", [Sent("/c/0", 1, port, OK), Sent("/c/1", 1, port, RST)], connections=1)
    problems = reconcile(server, {}, [lying], RoundResult("asyncio"))
    assert any("/c/1: responded" in p for p in problems), problems
    forgetful = ClientLog("c", [Sent("/c/0", 1, port, OK)], connections=1)
    problems = reconcile(server, {}, [forgetful], RoundResult("asyncio"))
    assert any("no client sent" in p for p in problems), problems


def test_negative_control_a_body_the_ledger_does_not_hold_whole_is_a_mismatch() -> None:
    """A request whose recorded body is not the one the client means to send is reported."""
    assert request_body("/c/0"), "this target carries a body"
    with FaultServer() as server:
        with socket.create_connection((server.host, server.port)) as sock:
            port = sock.getsockname()[1]
            sock.sendall(b"GET /c/0 HTTP/1.1\r\nHost: x\r\n\r\n")  # the body left out
            assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
    log = ClientLog("c", [Sent("/c/0", 1, port, OK)], connections=1)
    problems = reconcile(server, {}, [log], RoundResult("asyncio"))
    assert any("body bytes" in p for p in problems), problems


def test_the_script_runs_and_prints_its_figures() -> None:
    """``python stress/run.py`` runs a short round and prints requests, faults, mismatches, time and RSS."""
    proc = subprocess.run(
        [sys.executable, "stress/run.py", "--seconds", "0", "--threads", "2", "--tasks", "2", "--per-client", "15"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for figure in ("requests sent:", "requests served:", "faults fired:", "mismatches:        0", "wall time:", "peak RSS:"):
        assert figure in proc.stdout, proc.stdout
