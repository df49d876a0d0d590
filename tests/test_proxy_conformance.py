"""The conformance checks run unchanged against a FaultProxy, with the same verdicts as against a FaultServer."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from upstreams import Upstream

from pytest_connfault import FaultProxy, FaultServer
from pytest_connfault.conformance._cell import run_cell
from pytest_connfault.conformance._drivers import ClientOptions, HttpxSyncDriver, RequestsDriver
from pytest_connfault.conformance._scenarios import SCENARIOS

CHOSEN = ["idle-fin-reuse", "idle-rst-reuse", "idle-half-close-reuse", "race-get", "read-reset-get", "limit-silent"]


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    with Upstream() as server:
        yield server


@pytest.mark.parametrize("driver", [HttpxSyncDriver(), RequestsDriver()], ids=lambda d: d.name)
@pytest.mark.parametrize("scenario_id", CHOSEN)
def test_same_verdict_through_the_proxy(upstream: Upstream, driver: object, scenario_id: str) -> None:
    """A scenario judged against a proxied real server gets the verdict it gets against the server itself."""
    scenario = SCENARIOS[scenario_id]

    def direct() -> tuple[FaultServer, ClientOptions]:
        return FaultServer().start(), ClientOptions()

    def proxied() -> tuple[FaultServer, ClientOptions]:
        proxy = FaultProxy(upstream.url)
        proxy.start()
        return proxy, ClientOptions()

    expected = run_cell(driver, scenario, direct)  # type: ignore[arg-type]
    got = run_cell(driver, scenario, proxied)  # type: ignore[arg-type]
    assert (got.verdict, got.reason) == (expected.verdict, expected.reason), got.evidence.get("ledger")
    assert got.verdict != "ERROR"
