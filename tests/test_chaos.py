"""Seeded chaos: random faults on a fraction of requests, replayed exactly from the seed."""

from __future__ import annotations

import re
from typing import Any, Callable

# httpx 0.28 imports httpcore lazily: if that first happened inside a pytester run below, the
# run's sys.modules cleanup would leave httpx mapping the errors of a dropped httpcore module,
# and later tests in this process would get httpcore's exceptions instead of httpx's.
import httpcore  # noqa: F401
import httpx
import pytest

from pytest_connfault import Fault, FaultServer, FaultSpecError
from pytest_connfault._chaos import DEFAULT_FAULTS, Chaos, arm_chaos, chaos_fault

Factory = Callable[..., FaultServer]
REQUESTS = 40


def get_with_retries(client: httpx.Client, path: str, attempts: int = 10) -> httpx.Response:
    """The retry wrapper under test: retry a GET on any transport error (the request is idempotent)."""
    for attempt in range(attempts):
        try:
            return client.get(path)
        except httpx.TransportError:
            if attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def fired(server: FaultServer) -> list[tuple[str, str, int | None]]:
    """Every fault in the ledger as (kind, moment, request index), in firing order."""
    firings = [f for conn in server.connections for f in conn.faults]
    return [(f.kind, f.at, f.request_index) for f in sorted(firings, key=lambda f: f.fired_at)]


def run_with_retries(factory: Factory, chaos: Chaos) -> FaultServer:
    server = factory()
    arm_chaos(server, chaos)
    with httpx.Client(base_url=server.url) as client:
        for i in range(REQUESTS):
            assert get_with_retries(client, f"/r{i}").text == "ok\n"
    return server


def test_decisions_are_a_function_of_the_seed() -> None:
    """The same seed decides the same faults for the same request numbers; another seed does not."""
    one = Chaos(0.3, seed=7).plan("request", 500)
    assert one == Chaos(0.3, seed=7).plan("request", 500)
    assert one != Chaos(0.3, seed=8).plan("request", 500)
    hits = sum(1 for f in one if f is not None)
    assert 100 <= hits <= 200, "about 30 % of 500 requests get a fault"
    assert {f.label for f in one if f is not None} == set(DEFAULT_FAULTS)


@pytest.mark.parametrize(("rate", "expected"), [(0, 0), (1, 50)])
def test_rate_bounds(rate: float, expected: int) -> None:
    """Rate 0 fires nothing; rate 1 gives every request a fault."""
    assert sum(1 for f in Chaos(rate, seed=1).plan("request", 50) if f is not None) == expected


def test_connection_faults_are_decided_per_connection() -> None:
    """on_connect faults are drawn per connection number, request faults per request number."""
    chaos = Chaos(1, seed=3, faults=["reset@on_connect", "close"])
    assert chaos.decide("connection", 1) == Fault("reset", at="on_connect")
    assert chaos.decide("request", 1) == Fault("close")


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ("reset@idle", "not left to chance"),
        (Fault("reset", request=2), "must not select"),
        (Fault("reset", times=2), "must not set times"),
        ("explode", "unknown fault"),
        (42, "a chaos fault is"),
    ],
)
def test_chaos_faults_are_validated(spec: Any, match: str) -> None:
    """Faults chaos cannot pick by itself are refused with a message that says why."""
    with pytest.raises(FaultSpecError, match=match):
        chaos_fault(spec)


@pytest.mark.parametrize(
    ("kwargs", "match"), [({"rate": 1.5}, "rate="), ({"rate": 0.1, "faults": []}, "is empty"), ({"rate": 0.1, "seed": "x"}, "seed=")]
)
def test_chaos_settings_are_validated(kwargs: dict[str, Any], match: str) -> None:
    """A rate outside 0..1, an empty fault set or a non-integer seed is refused."""
    kwargs.setdefault("seed", 1)
    with pytest.raises(FaultSpecError, match=match):
        Chaos(**kwargs)


def test_same_seed_fires_identical_faults(connfault_server_factory: Factory) -> None:
    """Two runs with the same seed fire the same faults on the same requests, all marked as chaos."""
    first = run_with_retries(connfault_server_factory, Chaos(0.3, seed=2024))
    second = run_with_retries(connfault_server_factory, Chaos(0.3, seed=2024))
    other = run_with_retries(connfault_server_factory, Chaos(0.3, seed=2025))
    assert len(fired(first)) >= 5
    assert fired(first) == fired(second)
    assert fired(first) != fired(other)
    firings = [f for conn in first.connections for f in conn.faults]
    assert all(f.chaos for f in firings)
    assert all(str(f).endswith("[chaos]") for f in firings)


def test_retry_wrapper_survives_and_naive_client_fails(connfault_server_factory: Factory) -> None:
    """At rate 0.3 a naive client fails within 40 requests; the retry wrapper gets all 40 answers."""
    survivor = run_with_retries(connfault_server_factory, Chaos(0.3, seed=99))
    assert fired(survivor), "chaos fired nothing: the test would prove nothing"
    naive = connfault_server_factory()
    arm_chaos(naive, Chaos(0.3, seed=99))
    with httpx.Client(base_url=naive.url) as client, pytest.raises(httpx.TransportError):  # noqa: PT012
        for i in range(REQUESTS):
            client.get(f"/r{i}")


def test_armed_faults_come_before_chaos(connfault_server_factory: Factory) -> None:
    """A fault armed by hand fires where it selects; chaos only decides elsewhere."""
    server = connfault_server_factory()
    handle = server.inject("delay", seconds=0, request=1)
    owner = arm_chaos(server, Chaos(1, seed=5, faults=["reset@after_response"]))
    with httpx.Client(base_url=server.url) as client:
        assert client.get("/").status_code == 200
        owner.wait(5)
    assert handle.fired == 1
    assert [(f.kind, f.chaos) for f in server.connections[0].faults] == [("delay", False), ("reset", True)]
    assert owner.fired == 1
    assert owner in server.faults


def test_chaos_twice_is_refused(connfault_server_factory: Factory) -> None:
    """A server takes one chaos setting."""
    server = connfault_server_factory()
    arm_chaos(server, Chaos(0.1, seed=1))
    with pytest.raises(FaultSpecError, match="already has chaos"):
        arm_chaos(server, Chaos(0.1, seed=1))


CHAOS_TEST = """
import httpx
import pytest

@pytest.mark.connfault("chaos", rate=0.5, faults=["close@before_response"]{seed})
def test_naive(connfault_server):
    with httpx.Client(base_url=connfault_server.url) as client:
        for i in range(20):
            client.get(f"/r{{i}}")
"""


def _seed_and_firings(output: str) -> tuple[int, list[str]]:
    seed = int(re.search(r"--connfault-seed=(\d+)", output).group(1))  # type: ignore[union-attr]
    firings = re.findall(r"^  (close@before_response on connection \d+, request \d+.*)$", output, re.M)
    return seed, firings


def test_failing_report_prints_the_seed_and_it_replays(pytester: pytest.Pytester) -> None:
    """A failing chaos test's report names the seed; --connfault-seed=N replays exactly those faults."""
    pytester.makepyfile(CHAOS_TEST.format(seed=""))
    first = pytester.runpytest("-p", "no:randomly")
    first.assert_outcomes(failed=1)
    first.stdout.fnmatch_lines(["*connfault chaos*", "chaos rate=0.5 seed=* faults=[[]close@before_response[]]", "replay: pytest*"])
    seed, firings = _seed_and_firings(first.stdout.str())
    assert firings
    replay = pytester.runpytest("-p", "no:randomly", f"--connfault-seed={seed}")
    replay.assert_outcomes(failed=1)
    assert _seed_and_firings(replay.stdout.str()) == (seed, firings)


def test_marker_seed_wins_over_the_command_line(pytester: pytest.Pytester) -> None:
    """seed= in the marker fixes the seed whatever --connfault-seed says."""
    pytester.makepyfile(CHAOS_TEST.format(seed=", seed=11"))
    result = pytester.runpytest("-p", "no:randomly", "--connfault-seed=12")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["chaos rate=0.5 seed=11 *"])


def test_command_line_chaos_applies_to_every_server(pytester: pytest.Pytester) -> None:
    """--connfault-chaos=1 arms chaos on connfault_server without any marker; 0 leaves tests alone."""
    pytester.makepyfile(
        """
        import httpx

        def test_plain(connfault_server):
            with httpx.Client(base_url=connfault_server.url) as client:
                for i in range(5):
                    assert client.get("/").status_code == 200
        """
    )
    pytester.runpytest("-p", "no:randomly", "--connfault-chaos=0").assert_outcomes(passed=1)
    result = pytester.runpytest("-p", "no:randomly", "--connfault-chaos=1", "--connfault-seed=3")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["chaos rate=1.0 seed=3 *"])


def test_bad_chaos_options_are_usage_errors(pytester: pytest.Pytester) -> None:
    """--connfault-chaos outside 0..1 stops the run with a message; a bad chaos marker fails collection."""
    pytester.makepyfile(
        """
        import pytest

        @pytest.mark.connfault("chaos", rate=0.1, faults=["reset@idle"])
        def test_x(connfault_server):
            pass
        """
    )
    result = pytester.runpytest("--connfault-chaos=3")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--connfault-chaos=3.0 is not a rate*"])
    result = pytester.runpytest("-p", "no:randomly")
    result.stdout.fnmatch_lines(["*connfault('chaos'): chaos cannot fire reset@idle*"])


def test_usage_error_leaves_the_loop_threads_to_the_outer_session(pytester: pytest.Pytester) -> None:
    """A run refused in pytest_configure releases only what it retained: the outer session's loops live on."""
    from pytest_connfault import _loop

    before = _loop._users
    pytester.makepyfile("def test_x():\n    pass\n")
    assert pytester.runpytest("--connfault-chaos=3").ret == pytest.ExitCode.USAGE_ERROR
    assert _loop._users == before


def test_connection_chaos_fires_at_connect(connfault_server_factory: Factory) -> None:
    """An on_connect fault in the set is drawn per connection: at rate 1 every new connection is reset."""
    server = connfault_server_factory()
    owner = arm_chaos(server, Chaos(1, seed=4, faults=["reset@on_connect"]))
    for _ in range(3):
        with httpx.Client(base_url=server.url) as client, pytest.raises(httpx.TransportError):
            client.get("/")
    owner.wait(5)
    firings = [f for conn in server.connections for f in conn.faults]
    assert [(f.kind, f.at, f.request_index, f.chaos) for f in firings] == [("reset", "on_connect", None, True)] * 3
    assert server.requests == []
