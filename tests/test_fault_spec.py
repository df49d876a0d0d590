"""Fault values without sockets: validation, defaults, matching, and the plan's times/always."""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

import pytest

from pytest_connfault import KINDS, MOMENTS, Fault, FaultNotFired, FaultSpecError
from pytest_connfault._faults import _ARGUMENTS, APPLIES, DEFAULT_AT, FaultPlan

# -- construction and validation ------------------------------------------------------------


def test_unknown_kind_names_it_and_lists_every_kind() -> None:
    """A wrong fault name fails with the name and every valid kind in the message."""
    with pytest.raises(FaultSpecError, match="'resett'") as info:
        Fault("resett")
    for kind in KINDS:
        assert repr(kind) in str(info.value), f"{kind} missing from: {info.value}"


def test_unknown_moment_names_it_and_lists_every_moment() -> None:
    """A wrong at= fails with the value and every valid moment in the message."""
    with pytest.raises(FaultSpecError, match="at='after_body'") as info:
        Fault("reset", at="after_body")
    for moment in MOMENTS:
        assert repr(moment) in str(info.value), f"{moment} missing from: {info.value}"


@pytest.mark.parametrize(
    ("kind", "moment"),
    [(k, m) for k in KINDS for m in MOMENTS if m not in APPLIES[k]],
)
def test_kind_at_a_moment_where_it_cannot_apply_lists_where_it_can(kind: str, moment: str) -> None:
    """A kind armed at a moment it cannot act at is refused, listing the moments it can."""
    with pytest.raises(FaultSpecError, match=f"{kind!r} cannot fire at={moment!r}") as info:
        Fault(kind, at=moment)
    for allowed in APPLIES[kind]:
        assert repr(allowed) in str(info.value)


@pytest.mark.parametrize(("kind", "moment"), [(k, m) for k in KINDS for m in MOMENTS if m in APPLIES[k]])
def test_every_applicable_kind_and_moment_can_be_made(kind: str, moment: str) -> None:
    """Every (kind, moment) pair the table allows builds a fault that reports them back."""
    fault = Fault(kind, at=moment)
    assert (fault.kind, fault.at) == (kind, moment)
    assert fault.label == f"{kind}@{moment}"


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_default_moment_per_kind(kind: str) -> None:
    """Without at=, drops fire after_response and everything else before_response."""
    expected = "after_response" if kind in ("reset", "close", "half_close") else "before_response"
    assert DEFAULT_AT[kind] == expected
    assert Fault(kind).at == expected


@pytest.mark.parametrize("selector", ["request", "connection", "request_on_connection"])
@pytest.mark.parametrize("value", [0, -1, 1.5, "1", True])
def test_bad_numeric_selector_is_refused(selector: str, value: Any) -> None:
    """request=/connection=/request_on_connection= accept only whole numbers from 1."""
    with pytest.raises(FaultSpecError, match=f"{selector}= must be a whole number"):
        Fault("reset", **{selector: value})


@pytest.mark.parametrize("times", [0, -2, 1.0, "twice", "ALWAYS", True, None])
def test_bad_times_is_refused(times: Any) -> None:
    """times= accepts a positive whole number or 'always', and says so."""
    with pytest.raises(FaultSpecError, match="times= must be a whole number from 1 up or 'always'"):
        Fault("reset", times=times)


@pytest.mark.parametrize(
    ("kind", "moment", "selector"),
    [
        ("reset", "on_connect", "request"),
        ("reset", "on_connect", "request_on_connection"),
        ("reset", "on_connect", "path"),
        ("reset", "on_connect", "method"),
        ("close", "before_request", "path"),
        ("close", "before_request", "method"),
    ],
)
def test_selector_not_known_yet_at_the_moment_is_refused(kind: str, moment: str, selector: str) -> None:
    """A selector the server cannot know yet at that moment (no request parsed) is refused."""
    value: Any = "/x" if selector == "path" else "GET" if selector == "method" else 1
    with pytest.raises(FaultSpecError, match=f"{selector}= cannot select a fault at={moment!r}") as info:
        Fault(kind, at=moment, **{selector: value})
    assert "'connection'" in str(info.value), "the message should list the selectors that work there"


@pytest.mark.parametrize(
    ("kind", "parameter", "value"),
    [
        ("reset", "seconds", 1.0),
        ("reset", "chunk_size", 2),
        ("close", "interval", 0.1),
        ("stall", "body_bytes", 3),
        ("delay", "then", "reset"),
        ("drip", "data", b"x"),
        ("empty", "data", b"x"),
    ],
)
def test_parameter_of_another_kind_is_refused(kind: str, parameter: str, value: Any) -> None:
    """A parameter the kind does not use is refused, naming the kinds that use it."""
    with pytest.raises(FaultSpecError, match=f"{parameter}= does not apply to fault {kind!r}"):
        Fault(kind, **{parameter: value})


@pytest.mark.parametrize(
    ("kind", "arguments", "message"),
    [
        ("delay", {"seconds": -1}, "seconds= must be a number of seconds >= 0"),
        ("delay", {"seconds": float("nan")}, "seconds= must be a number of seconds >= 0"),
        ("delay", {"seconds": "1"}, "seconds= must be a number of seconds >= 0"),
        ("drip", {"interval": -0.1}, "interval= must be a number of seconds >= 0"),
        ("drip", {"chunk_size": 0}, "chunk_size= must be a whole number of bytes"),
        ("truncate", {"body_bytes": -1}, "body_bytes= must be a whole number of bytes"),
        ("truncate", {"then": "fin"}, "then= must be 'close' or 'reset'"),
        ("garbage", {"data": "text"}, "data= must be bytes"),
        ("reset", {"path": 3}, "path= must be a str"),
    ],
)
def test_bad_parameter_value_is_refused(kind: str, arguments: dict[str, Any], message: str) -> None:
    """Out-of-range or wrongly typed parameters are refused with what was expected."""
    with pytest.raises(FaultSpecError, match=message):
        Fault(kind, **arguments)


def test_parameters_that_apply_to_a_moment_are_accepted() -> None:
    """seconds= sets the idle time at='idle', body_bytes= the cut at='mid_body', for any kind."""
    assert Fault("reset", at="idle", seconds=0.5).seconds == 0.5
    assert Fault("close", at="mid_body", body_bytes=7).body_bytes == 7


def test_fault_spec_error_is_a_value_error() -> None:
    """FaultSpecError is also a ValueError, so generic handlers catch it."""
    assert issubclass(FaultSpecError, ValueError)


def test_defaults_are_filled_in() -> None:
    """Defaults: once, garbage data, drip 1 byte every 5 ms, truncate then close, delay 0.1 s."""
    assert Fault("reset").times == 1
    assert Fault("delay").seconds == 0.1
    assert Fault("reset", at="idle").seconds == 0.05
    drip = Fault("drip")
    assert (drip.chunk_size, drip.interval) == (1, 0.005)
    assert Fault("truncate").then == "close"
    assert Fault("truncate").body_bytes is None
    assert Fault("garbage").data
    assert not Fault("garbage").data.startswith(b"HTTP/")
    assert Fault("reset", method="post").method == "POST", "methods compare upper-case"


def test_fault_is_frozen_and_has_a_readable_repr() -> None:
    """Faults are immutable values whose repr states what was armed."""
    fault = Fault("reset", at="after_response", request=2, path="/a", times="always")
    with pytest.raises(dataclasses.FrozenInstanceError):
        fault.kind = "close"  # type: ignore[misc]
    assert repr(fault) == "Fault('reset', at='after_response', request=2, path='/a', times='always')"
    assert Fault("reset", request=2) == Fault("reset", request=2)


# -- matching -------------------------------------------------------------------------------


def _matches(fault: Fault, moment: str = "before_response", **where: Any) -> bool:
    where.setdefault("connection", 1)
    return fault.matches(moment, **where)


def test_matches_only_its_own_moment() -> None:
    """A fault is never selected at another moment."""
    fault = Fault("reset", at="before_response")
    assert _matches(fault, "before_response")
    assert not _matches(fault, "after_response")


@pytest.mark.parametrize(
    ("selector", "value", "hit", "miss"),
    [
        ("request", 2, {"request": 2}, {"request": 3}),
        ("connection", 2, {"connection": 2}, {"connection": 1}),
        ("request_on_connection", 3, {"request_on_connection": 3}, {"request_on_connection": 1}),
        ("method", "post", {"method": "POST"}, {"method": "GET"}),
        ("path", "/a", {"path": "/a"}, {"path": "/a/b"}),
        ("path", "/a/*", {"path": "/a/b/c"}, {"path": "/b/a"}),
        ("path", "/item?", {"path": "/item7"}, {"path": "/item77"}),
        ("path", "/v[12]/x", {"path": "/v2/x"}, {"path": "/v3/x"}),
    ],
)
def test_selector_selects_and_excludes(selector: str, value: Any, hit: dict[str, Any], miss: dict[str, Any]) -> None:
    """Each selector selects what equals it (paths: or matches it as a glob) and nothing else."""
    fault = Fault("reset", at="before_response", **{selector: value})
    assert _matches(fault, **hit)
    assert not _matches(fault, **miss)


def test_path_selector_never_matches_a_moment_without_a_request() -> None:
    """A path selector does not match where no path is known."""
    assert not _matches(Fault("reset", at="after_response", path="/a"), "after_response", path=None)


def test_glob_is_case_sensitive_and_plain_paths_are_exact() -> None:
    """Paths compare exactly (a plain '/a' does not match '/a/'; globs are case-sensitive)."""
    assert not _matches(Fault("reset", at="before_response", path="/a"), path="/a/")
    assert not _matches(Fault("reset", at="before_response", path="/A*"), path="/abc")


def test_selectors_combine_with_and() -> None:
    """Several selectors must all hold."""
    fault = Fault("reset", at="before_response", connection=2, method="GET", path="/x")
    assert _matches(fault, connection=2, method="GET", path="/x")
    assert not _matches(fault, connection=1, method="GET", path="/x")
    assert not _matches(fault, connection=2, method="POST", path="/x")
    assert not _matches(fault, connection=2, method="GET", path="/y")


# -- the plan: once, N times, always, arming order ------------------------------------------


def _take_count(plan: FaultPlan, tries: int) -> int:
    return sum(plan.take("before_response", connection=1) is not None for _ in range(tries))


@pytest.mark.parametrize(("times", "expected"), [(1, 1), (3, 3), ("always", 50)])
def test_plan_fires_a_fault_as_many_times_as_armed(times: Any, expected: int) -> None:
    """times=N is taken N times, then never; 'always' never runs out."""
    plan = FaultPlan()
    handle = plan.arm(Fault("reset", at="before_response", times=times))
    assert _take_count(plan, 50) == expected
    assert handle.is_exhausted == (times != "always")


def test_plan_takes_faults_in_arming_order_and_falls_through() -> None:
    """The first armed fault that matches wins; once spent, the next one is taken."""
    plan = FaultPlan()
    first = plan.arm(Fault("reset", at="before_response"))
    second = plan.arm(Fault("close", at="before_response"))
    assert plan.take("before_response", connection=1) is first
    assert plan.take("before_response", connection=1) is second
    assert plan.take("before_response", connection=1) is None


def test_plan_has_reports_only_faults_that_can_still_fire() -> None:
    """has(moment) is true while a fault for that moment has firings left."""
    plan = FaultPlan()
    plan.arm(Fault("reset", at="after_response"))
    assert plan.has("after_response")
    assert not plan.has("before_response")
    plan.take("after_response", connection=1)
    assert not plan.has("after_response")


def test_unfired_handle_wait_times_out_with_a_clear_error() -> None:
    """Waiting on a fault that never fired raises FaultNotFired naming the fault, within the bound."""
    handle = FaultPlan().arm(Fault("reset", at="after_response", request=9))
    with pytest.raises(FaultNotFired, match=r"Fault\('reset', at='after_response', request=9\) had not fired"):
        handle.wait(timeout=0.01)
    assert handle.fired == 0
    assert handle.firings == ()


def test_unknown_argument_names_it_and_lists_every_argument() -> None:
    """A misspelt keyword is a FaultSpecError (not a bare TypeError) listing every argument a fault takes."""
    with pytest.raises(FaultSpecError, match="unknown argument flavour=") as info:
        Fault("reset", flavour="x")
    for name in ("at", "request", "path", "times", "body_bytes", "close_notify"):
        assert repr(name) in str(info.value)


def test_argument_list_in_messages_matches_the_signature() -> None:
    """The list of arguments quoted in messages is exactly the keyword arguments Fault takes."""
    parameters = inspect.signature(Fault.__init__).parameters
    keywords = [n for n, p in parameters.items() if p.kind is inspect.Parameter.KEYWORD_ONLY]
    assert list(_ARGUMENTS) == keywords


@pytest.mark.parametrize("kind", [3, None, ["reset"]])
def test_kind_that_is_not_a_name_is_refused(kind: Any) -> None:
    """A kind that is not a str gets the same message as a wrong name."""
    with pytest.raises(FaultSpecError, match="unknown fault"):
        Fault(kind)


def test_method_that_is_not_a_str_is_refused() -> None:
    """method= must be a str."""
    with pytest.raises(FaultSpecError, match="method= must be a str, not int"):
        Fault("reset", method=3)  # type: ignore[arg-type]


def test_idle_fault_matches_only_once_its_own_idle_time_has_passed() -> None:
    """An idle fault does not match a pause shorter than its seconds, and matches one as long or longer."""
    fault = Fault("reset", at="idle", seconds=0.5)
    assert not fault.matches("idle", connection=1, idle_for=0.1)
    assert fault.matches("idle", connection=1, idle_for=0.5)
    assert fault.matches("idle", connection=1, idle_for=2.0)
