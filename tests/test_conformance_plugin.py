"""``pytest --connfault``: options, collection, selection, and how the cells behave as pytest items."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest
from conformance_toys import warm_up

from pytest_connfault.conformance import BUILTIN_DRIVERS, SCENARIOS
from pytest_connfault.conformance.plugin import select_clients, select_scenarios

TOYS_CONFTEST = "from conformance_toys import pytest_connfault_drivers  # noqa: F401\n"
#: Options of every inner run: a fixed order, and no hypothesis plugin (its terminal summary
#: imports all of hypothesis, which pytester's module snapshot then drops again after each test).
NO_RANDOM = ("-p", "no:randomly", "-p", "no:hypothesispytest")


@pytest.fixture(autouse=True, scope="module")
def _clients_imported() -> None:
    """Every client's lazy imports done before pytester's first module snapshot (see warm_up)."""
    warm_up()


def test_list_prints_every_scenario_with_description_and_source(pytester: pytest.Pytester) -> None:
    """--connfault-list prints each scenario, its one-line description and its source, and runs nothing."""
    result = pytester.runpytest("--connfault-list")
    assert result.ret == 0
    for sid, scenario in SCENARIOS.items():
        result.stdout.fnmatch_lines([f"{sid}*", f"    {scenario.title}", f"    source: {scenario.source}"])
    result.stdout.fnmatch_lines(["clients (6):", "  httpx-sync * httpx *", "  aiohttp * aiohttp *"])
    result.stdout.no_fnmatch_line("*passed*")


def test_list_narrows_to_selected_scenarios_and_plugged_in_clients(pytester: pytest.Pytester) -> None:
    """--connfault-list honours --connfault-scenario globs and lists clients from the hook."""
    pytester.makeconftest(TOYS_CONFTEST)
    result = pytester.runpytest("--connfault-list", "--connfault-scenario=idle-*", "--connfault=toy-*")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["connfault conformance scenarios (3):"])
    result.stdout.fnmatch_lines(["  toy-good * toy 0.1", "  toy-missing * not installed: *"])
    assert "race-get" not in result.stdout.str()
    assert "httpx-sync" not in result.stdout.str()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--connfault=nosuchclient"], "*unknown client 'nosuchclient'; the known clients are: httpx-sync, *aiohttp*"),
        (["--connfault", "--connfault-scenario=nope*"], "*unknown scenario 'nope*'; the known scenarios are: idle-fin-reuse,*"),
        (["--connfault-report=matrix.txt"], "*--connfault-report=matrix.txt: the file name must end in .json*"),
    ],
)
def test_bad_names_are_usage_errors(pytester: pytest.Pytester, args: list[str], message: str) -> None:
    """Unknown clients or scenarios, or a report of no known format, stop pytest with a usage error."""
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_client_selection_by_name_family_and_glob() -> None:
    """A family name picks all its drivers, a glob its matches, in the matrix's order."""
    names = [d.name for d in select_clients("requests,httpx", BUILTIN_DRIVERS)]
    assert names == ["httpx-sync", "httpx-async-asyncio", "httpx-async-trio", "requests"]
    assert [d.name for d in select_clients("*trio", BUILTIN_DRIVERS)] == ["httpx-async-trio"]
    assert len(select_clients(None, BUILTIN_DRIVERS)) == len(select_clients("all", BUILTIN_DRIVERS)) == 6
    assert [s.id for s in select_scenarios("race-*,idle-rst-reuse")] == ["idle-rst-reuse", "race-get", "race-post"]


def test_collects_one_item_per_cell_and_no_test_files(pytester: pytest.Pytester) -> None:
    """In a directory with a failing test file, --connfault collects only the cells, with stable ids."""
    pytester.makepyfile(test_other="def test_other():\n    assert False\n")
    result = pytester.runpytest("--connfault=httpx-sync,urllib3", "--connfault-scenario=idle-*", "--collect-only", "-q", *NO_RANDOM)
    assert result.ret == 0
    result.stdout.fnmatch_lines(
        [
            "connfault::conformance[[]idle-fin-reuse-httpx-sync[]]",
            "connfault::conformance[[]idle-fin-reuse-urllib3[]]",
            "connfault::conformance[[]idle-rst-reuse-httpx-sync[]]",
            "*6 tests collected*",
        ]
    )
    assert "test_other" not in result.stdout.str()
    assert "connfault conformance matrix" not in result.stdout.str(), "nothing ran: no matrix"


def test_runs_in_an_empty_directory(pytester: pytest.Pytester) -> None:
    """With no tests of its own, the directory still runs the matrix and ends with it."""
    result = pytester.runpytest("--connfault=httpx-sync", "--connfault-scenario=idle-fin-reuse", *NO_RANDOM)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*connfault conformance matrix*", "scenario * httpx-sync", "idle-fin-reuse * OK"])


def test_keyword_selects_cells_and_the_rest_show_as_not_run(pytester: pytest.Pytester) -> None:
    """-k works on cell ids; deselected cells are '-' in the matrix, not failures."""
    result = pytester.runpytest(
        "--connfault=httpx-sync,requests", "--connfault-scenario=idle-fin-reuse,idle-rst-reuse",
        "-k", "idle-rst-reuse and requests", *NO_RANDOM,
    )
    result.assert_outcomes(passed=1, deselected=3)
    result.stdout.fnmatch_lines(["idle-fin-reuse * -  * -", "idle-rst-reuse * -  * OK"])


def test_matrix_fits_100_columns_with_a_legend(pytester: pytest.Pytester) -> None:
    """The summary's matrix and legend stay within 100 columns, even with eleven clients."""
    pytester.makeconftest(TOYS_CONFTEST)
    result = pytester.runpytest("--connfault", "--connfault-scenario=idle-fin-reuse", *NO_RANDOM)
    text = result.stdout.str()
    matrix = text[text.index("connfault conformance matrix") :].splitlines()[1:]
    # pytest's own short summary follows (untruncated where CI is set): not part of the matrix.
    end = next((i for i, line in enumerate(matrix) if "short test summary" in line), None)
    matrix = matrix[:end]
    assert len(matrix) > 20
    assert max(len(line) for line in matrix) <= 100, max(matrix, key=len)
    headers = [line for line in matrix if line.startswith("scenario ")]
    assert len(headers) == 2, "eleven clients take two blocks of columns"
    result.stdout.fnmatch_lines(["legend:", "  OK * the client did what HTTP asks*", "  FAILED *"])
    result.stdout.fnmatch_lines(["  missing    toy-missing: not run: no_such_client_module_connfault is not installed*"])


def test_uninstalled_client_is_skipped_with_the_reason(pytester: pytest.Pytester) -> None:
    """A driver whose module does not import yields skipped cells, with the reason, not failures."""
    pytester.makeconftest(TOYS_CONFTEST)
    result = pytester.runpytest("--connfault=toy-missing", "--connfault-scenario=idle-*", "-rs", *NO_RANDOM)
    result.assert_outcomes(skipped=3)
    result.stdout.fnmatch_lines(["SKIPPED *toy-missing: no_such_client_module_connfault is not installed*"])
    result.stdout.fnmatch_lines(["idle-fin-reuse * skipped"])


def test_exitfirst_and_junitxml(pytester: pytest.Pytester) -> None:
    """-x stops after the first FAILED cell; --junitxml names each cell and carries its verdict."""
    pytester.makeconftest(TOYS_CONFTEST)
    result = pytester.runpytest(
        "--connfault=toy-good,toy-dead-reuse", "--connfault-scenario=idle-*", "-x", "--junitxml=junit.xml", *NO_RANDOM
    )
    result.assert_outcomes(passed=1, failed=1)
    cases = ET.parse(pytester.path / "junit.xml").getroot().iter("testcase")
    seen = {case.get("name"): case for case in cases}
    assert set(seen) == {"conformance[idle-fin-reuse-toy-good]", "conformance[idle-fin-reuse-toy-dead-reuse]"}
    verdicts = {
        name: [p.get("value") for p in case.iter("property") if p.get("name") == "connfault_verdict"]
        for name, case in seen.items()
    }
    assert verdicts == {"conformance[idle-fin-reuse-toy-good]": ["OK"], "conformance[idle-fin-reuse-toy-dead-reuse]": ["FAILED"]}


def test_failed_cell_report_shows_the_evidence(pytester: pytest.Pytester) -> None:
    """A FAILED cell's failure text has the reason, the exception, the requests, the ledger and the pool."""
    pytester.makeconftest(TOYS_CONFTEST)
    result = pytester.runpytest("--connfault=toy-dead-reuse", "--connfault-scenario=idle-fin-reuse", *NO_RANDOM)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "FAILED: idle-fin-reuse x toy-dead-reuse (toy 0.1)",
            "*it never opened a new connection*",
            "source:   encode/httpx#327*",
            "exception: conformance_toys.ToyError: GET /second: *",
            "requests:",
            "  GET /first -> 200 *",
            "server ledger:",
            "*conn 1  fault close@idle commanded*",
            "pool after: 0 active, 0 idle",
        ]
    )


def test_xdist_assembles_the_same_matrix(pytester: pytest.Pytester) -> None:
    """With -n 2 the controller builds the matrix from the workers' reports: every cell is there."""
    args = ("--connfault=httpx-sync,urllib3", "--connfault-scenario=idle-*,race-get", *NO_RANDOM)
    result = pytester.runpytest_subprocess(*args, "-n", "2", "--connfault-report=xdist.json")
    result.assert_outcomes(passed=8)
    result.stdout.fnmatch_lines(["*connfault conformance matrix*", "race-get *NON-STRICT*OK", "8 cells: 7 OK, 1 NON-STRICT"])
    report = json.loads((pytester.path / "xdist.json").read_text())
    assert {c: sorted(cells) for c, cells in report["results"].items()} == {
        "httpx-sync": ["idle-fin-reuse", "idle-half-close-reuse", "idle-rst-reuse", "race-get"],
        "urllib3": ["idle-fin-reuse", "idle-half-close-reuse", "idle-rst-reuse", "race-get"],
    }
    assert report["clients"]["urllib3"]["version"].startswith("urllib3 ")


BROKEN_DRIVER_CONFTEST = '''
from pytest_connfault.conformance import SyncDriver

class BrokenDriver(SyncDriver):
    name = family = label = "broken"
    module = distribution = "h11"

    def open(self, options):
        raise RuntimeError("the driver cannot make a client")

def pytest_connfault_drivers(config):
    return [BrokenDriver()]
'''


def test_a_driver_that_raises_is_an_error_cell_with_its_traceback(pytester: pytest.Pytester) -> None:
    """A plugged-in driver's own exception marks its cell ERROR (not the client's verdict) with the traceback."""
    pytester.makeconftest(BROKEN_DRIVER_CONFTEST)
    result = pytester.runpytest("--connfault=broken", "--connfault-scenario=idle-fin-reuse", *NO_RANDOM)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "ERROR: idle-fin-reuse x broken (h11 *)",
            "  the driver or the harness raised RuntimeError: the driver cannot make a client",
            "traceback:",
            "*raise RuntimeError*",
            "idle-fin-reuse * ERROR",
        ]
    )


def test_a_hook_returning_no_driver_is_a_usage_error(pytester: pytest.Pytester) -> None:
    """The drivers hook must return drivers; anything else, or a clashing name, is a usage error."""
    pytester.makeconftest(
        "from pytest_connfault.conformance import BUILTIN_DRIVERS\n"
        "def pytest_connfault_drivers(config):\n    return [BUILTIN_DRIVERS[0], 'httpx']\n"
    )
    result = pytester.runpytest("--connfault", *NO_RANDOM)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*two conformance drivers are named 'httpx-sync'; names must be unique*"])


def test_strict_fails_the_non_strict_cells(pytester: pytest.Pytester) -> None:
    """--connfault-strict turns NON-STRICT cells into failures; the verdict itself stays NON-STRICT."""
    args = ("--connfault=httpx-sync", "--connfault-scenario=race-get,idle-fin-reuse", *NO_RANDOM)
    pytester.runpytest(*args).assert_outcomes(passed=2)
    result = pytester.runpytest(*args, "--connfault-strict")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines(["NON-STRICT: race-get x httpx-sync *", "race-get * NON-STRICT"])
