"""pytest wiring of the conformance matrix: ``pytest --connfault[=CLIENTS]``.

Registered through its own ``pytest11`` entry point (``connfault_conformance``). With
``--connfault`` the session collects no test files: it collects one item per scenario x client,
``connfault::conformance[<scenario>-<client>]``, so ``-k``, ``-x``, ``--junitxml`` and xdist work
as for any test. Each cell's result rides on its report (the ``connfault`` attribute, plain JSON,
which survives xdist's serialisation), and the controller assembles the matrix from the reports.
"""

from __future__ import annotations

import fnmatch
import inspect
import ssl
from collections.abc import Generator, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from .._server import FaultServer
from . import hookspec
from ._cell import run_cell
from ._drivers import BUILTIN_DRIVERS, ClientOptions, Driver
from ._matrix import ClientColumn, Matrix, ScenarioRow, render
from ._model import ERROR, FAILED, NON_STRICT, SKIPPED, CellResult
from ._reports import write
from ._scenarios import SCENARIOS, Scenario

GROUP = ("connfault", "connection-drop fault injection (pytest-connfault)")
REPORT_SUFFIXES = (".json", ".html", ".htm")

CLIENTS_HELP = (
    "run the conformance matrix (the built-in scenarios) against every installed client, or the "
    "comma-separated CLIENTS (names, families such as 'httpx', or globs); collects no test files"
)
SCENARIO_HELP = "only the scenarios with these comma-separated IDs (globs allowed); implies --connfault"
LIST_HELP = "list the conformance scenarios and clients, with descriptions and sources, and exit"
STRICT_HELP = (
    "fail the NON-STRICT cells too (like h2spec --strict): for a client that means to do better than allowed"
)
REPORT_HELP = (
    "write the matrix to PATH: JSON (.json) or a self-contained HTML page (.html); implies --connfault"
)


class Conformance:
    """The session's matrix run: the chosen clients and scenarios, and the results so far."""

    def __init__(self, drivers: list[Driver], scenarios: list[Scenario], report: str | None) -> None:
        self.drivers = drivers
        self.scenarios = scenarios
        self.report = report
        self.written: Path | None = None
        self.ca_bundle: Any = None
        self.matrix = Matrix(
            [ScenarioRow(s.id, s.title, s.source, s.needs) for s in scenarios],
            [ClientColumn(d.name, d.column, unavailable=d.unavailable(load=False)) for d in drivers],
        )

    def server_for(self, scenario: Scenario) -> tuple[FaultServer, ClientOptions]:
        """A started server for one cell, and what the client needs to talk to it."""
        if scenario.needs != "tls":
            return FaultServer().start(), ClientOptions()
        from .._tls import CaBundle

        if self.ca_bundle is None:
            self.ca_bundle = CaBundle()
        server_context, client_context = _tls_contexts()
        server = FaultServer(tls=server_context).start()
        return server, ClientOptions(ssl_context=client_context, ca_file=self.ca_bundle.path)


_key = pytest.StashKey[Conformance]()
_contexts: tuple[ssl.SSLContext, ssl.SSLContext] | None = None


def _tls_contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """One server and one client context for every TLS cell of the process (made once: ~ms each)."""
    global _contexts
    if _contexts is None:
        from .._tls import client_context, server_context

        _contexts = (server_context(), client_context())
    return _contexts


def tls_missing() -> str | None:
    """Why the TLS scenarios cannot run here, or None when they can."""
    if "tls" not in inspect.signature(FaultServer.__init__).parameters:
        return "this pytest-connfault has no TLS server (FaultServer(tls=...))"
    return None


# -- options --------------------------------------------------------------------------------


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspec)


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup(*GROUP)
    group.addoption(
        "--connfault",
        nargs="?",
        const="all",
        default=None,
        metavar="CLIENTS",
        dest="connfault",
        help=CLIENTS_HELP,
    )
    group.addoption(
        "--connfault-scenario", default=None, metavar="ID,...", dest="connfault_scenario", help=SCENARIO_HELP
    )
    group.addoption(
        "--connfault-list", action="store_true", default=False, dest="connfault_list", help=LIST_HELP
    )
    group.addoption(
        "--connfault-report", default=None, metavar="PATH", dest="connfault_report", help=REPORT_HELP
    )
    group.addoption(
        "--connfault-strict", action="store_true", default=False, dest="connfault_strict", help=STRICT_HELP
    )


def all_drivers(config: pytest.Config) -> list[Driver]:
    """The built-in drivers, then those the ``pytest_connfault_drivers`` hook adds."""
    drivers: list[Driver] = list(BUILTIN_DRIVERS)
    for extra in config.hook.pytest_connfault_drivers(config=config):
        for driver in extra or ():
            if not isinstance(driver, Driver) or not driver.name:
                raise pytest.UsageError(
                    f"pytest_connfault_drivers returned {driver!r}: not a named "
                    "pytest_connfault.conformance.SyncDriver or AsyncDriver"
                )
            if any(d.name == driver.name for d in drivers):
                raise pytest.UsageError(
                    f"two conformance drivers are named {driver.name!r}; names must be unique"
                )
            drivers.append(driver)
    return drivers


def _split(value: str) -> list[str]:
    return [part.strip() for part in value.split(",") if part.strip()]


def select_clients(spec: str | None, drivers: Sequence[Driver]) -> list[Driver]:
    """The drivers ``--connfault=CLIENTS`` names (every one for ``all`` or no value)."""
    if spec is None or spec.strip() in ("", "all"):
        return list(drivers)
    chosen: set[str] = set()
    unknown = []
    for word in _split(spec):
        found = {d.name for d in drivers if d.family == word or fnmatch.fnmatchcase(d.name, word)}
        if not found:
            unknown.append(word)
        chosen |= found
    if unknown:
        families = sorted({d.family for d in drivers if d.family})
        hint = ""
        if any("/" in word or word.endswith(".py") for word in unknown):
            hint = "; to name clients write --connfault=CLIENTS (--connfault collects no test paths)"
        raise pytest.UsageError(
            f"--connfault: unknown client {', '.join(map(repr, unknown))}; the known clients are: "
            f"{', '.join(d.name for d in drivers)} (families: {', '.join(families)}; globs allowed){hint}"
        )
    return [d for d in drivers if d.name in chosen]


def select_scenarios(spec: str | None) -> list[Scenario]:
    """The scenarios ``--connfault-scenario=ID,...`` names (all of them without it)."""
    if spec is None or not spec.strip():
        return list(SCENARIOS.values())
    chosen: set[str] = set()
    unknown = []
    for word in _split(spec):
        found = {sid for sid in SCENARIOS if fnmatch.fnmatchcase(sid, word)}
        if not found:
            unknown.append(word)
        chosen |= found
    if unknown:
        raise pytest.UsageError(
            f"--connfault-scenario: unknown scenario {', '.join(map(repr, unknown))}; the known scenarios "
            f"are: {', '.join(SCENARIOS)} (globs allowed; --connfault-list describes them)"
        )
    return [s for s in SCENARIOS.values() if s.id in chosen]


def _is_active(config: pytest.Config) -> bool:
    option = config.option
    return any(
        getattr(option, name, None) for name in ("connfault", "connfault_scenario", "connfault_report")
    )


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def pytest_cmdline_main(config: pytest.Config) -> int | None:
    if not getattr(config.option, "connfault_list", False):
        return None
    drivers = select_clients(config.option.connfault, all_drivers(config))
    scenarios = select_scenarios(config.option.connfault_scenario)
    missing = tls_missing()
    lines = [f"connfault conformance scenarios ({len(scenarios)}):", ""]
    for s in scenarios:
        needs = (
            f" [needs {s.needs}{': ' + missing if s.needs == 'tls' and missing else ''}]" if s.needs else ""
        )
        lines += [f"{s.id}{needs}", f"    {s.title}", f"    source: {s.source}"]
    lines += ["", f"clients ({len(drivers)}):"]
    for d in drivers:
        why = d.unavailable()
        lines.append(f"  {d.name:<22} {'not installed: ' + why if why else d.version()}")
    print("\n".join(lines))
    return 0


def pytest_configure(config: pytest.Config) -> None:
    if not _is_active(config):
        return
    report = config.option.connfault_report
    if report is not None and Path(report).suffix.lower() not in REPORT_SUFFIXES:
        raise pytest.UsageError(
            f"--connfault-report={report}: the file name must end in .json (JSON) or .html (HTML page)"
        )
    drivers = select_clients(config.option.connfault, all_drivers(config))
    scenarios = select_scenarios(config.option.connfault_scenario)
    state = config.stash[_key] = Conformance(drivers, scenarios, report)
    config.pluginmanager.register(ConformanceSession(config, state), "connfault-conformance-session")


def pytest_unconfigure(config: pytest.Config) -> None:
    state = config.stash.get(_key, None)
    if state is not None and state.ca_bundle is not None:
        state.ca_bundle.remove()


# -- collection -----------------------------------------------------------------------------


class ConformanceItem(pytest.Item):
    """One cell of the matrix: one scenario against one client."""

    def __init__(self, *, scenario: Scenario, driver: Driver, state: Conformance, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.scenario = scenario
        self.driver = driver
        self.state = state
        self.result: CellResult | None = None

    def _skip(self, reason: str) -> None:
        self.result = CellResult(self.driver.name, self.scenario.id, SKIPPED, reason)
        pytest.skip(reason)

    def runtest(self) -> None:
        why = self.driver.unavailable()
        if why is not None:
            self._skip(f"{self.driver.name}: {why}")
        if self.scenario.needs == "tls":
            missing = tls_missing() or (
                None if self.driver.supports_tls else f"{self.driver.name} has no TLS support"
            )
            if missing:
                self._skip(f"{self.scenario.id} needs TLS: {missing}")
        self.result = result = run_cell(
            self.driver, self.scenario, lambda: self.state.server_for(self.scenario)
        )
        self.user_properties.append(("connfault_verdict", result.verdict))
        failing = (FAILED, ERROR, NON_STRICT) if self.config.option.connfault_strict else (FAILED, ERROR)
        if result.verdict in failing:
            raise CellFailed(result)

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        if isinstance(excinfo.value, CellFailed):
            return excinfo.value.explain()
        return super().repr_failure(excinfo, style=style)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"connfault {self.scenario.id} x {self.driver.name}"


class CellFailed(Exception):
    """A cell judged FAILED (or whose harness broke): the failure report shows the evidence."""

    def __init__(self, result: CellResult) -> None:
        super().__init__(f"{result.verdict}: {result.reason}")
        self.result = result

    def explain(self) -> str:
        r = self.result
        ev = r.evidence
        lines = [f"{r.verdict}: {r.scenario} x {r.client} ({r.version})", f"  {r.reason}", ""]
        scenario = SCENARIOS.get(r.scenario)
        if scenario is not None:
            lines += [f"scenario: {scenario.title}", f"source:   {scenario.source}", ""]
        exc = ev.get("exception")
        if exc:
            lines.append(f"exception: {exc['type']}: {exc['message']}")
            lines += [f"  caused by {c}" for c in exc.get("chain", [])]
        if ev.get("traceback"):
            lines += ["traceback:"] + [
                f"  {line}" for chunk in ev["traceback"] for line in chunk.rstrip().splitlines()
            ]
        lines += ["requests:"] + [f"  {a}" for a in ev.get("attempts", [])]
        lines += ["server ledger:"] + [f"  {e}" for e in ev.get("ledger", [])]
        pool = ev.get("pool") or {}
        if "unavailable" in pool:
            lines.append(f"pool after: unavailable ({pool['unavailable']})")
        elif pool:
            lines.append(f"pool after: {pool.get('summary', '')}")
            lines += [f"  port {c['local_port']}  {c['state']}" for c in pool.get("connections", [])]
        return "\n".join(lines)


class ConformanceSuite(pytest.Collector):
    """The collector of the matrix's cells, in scenario order, each scenario against every client."""

    def collect(self) -> Iterator[ConformanceItem]:
        state = self.config.stash[_key]
        for scenario in state.scenarios:
            for driver in state.drivers:
                yield ConformanceItem.from_parent(
                    self,
                    name=f"conformance[{scenario.id}-{driver.name}]",
                    scenario=scenario,
                    driver=driver,
                    state=state,
                )


class ConformanceSession:
    """The per-session side of the matrix, registered in ``pytest_configure`` with ``--connfault``.

    An object rather than module-level hooks, so that a pytester session inside a session keeps
    its own matrix.
    """

    def __init__(self, config: pytest.Config, state: Conformance) -> None:
        self.config = config
        self.state = state

    def pytest_collection(self, session: pytest.Session) -> bool | None:
        """Collect the matrix's cells instead of test files."""
        config = session.config
        if config.pluginmanager.has_plugin("dsession"):
            return None  # the xdist controller collects nothing: its workers do
        suite = ConformanceSuite.from_parent(session, name="connfault", nodeid="connfault")
        session.items = list(session.genitems(suite))
        config.hook.pytest_collection_modifyitems(session=session, config=config, items=session.items)
        config.hook.pytest_collection_finish(session=session)
        session.testscollected = len(session.items)
        return True

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        report = yield
        if isinstance(item, ConformanceItem) and call.when == "call" and item.result is not None:
            report.connfault = item.result.to_json()  # type: ignore[attr-defined]
        return report

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        data = getattr(report, "connfault", None)
        if isinstance(data, dict):
            self.state.matrix.add(CellResult.from_json(data))

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        if self.state.report is not None and not _is_worker(self.config):
            self.state.written = write(self.state.matrix, self.state.report)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if _is_worker(self.config) or self.config.option.collectonly:
            return
        tr = terminalreporter
        tr.write_sep("=", "connfault conformance matrix")
        for line in render(self.state.matrix):
            for text, markup in line:
                if text:
                    tr.write(text, **markup)
            tr.line("")
        if self.state.written is not None:
            tr.line(f"connfault report written to {self.state.written}")
