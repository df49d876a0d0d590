"""The matrix's verdicts against broken toy clients, and its JSON and HTML reports."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from conformance_toys import warm_up

from pytest_connfault.conformance import SCENARIOS
from pytest_connfault.conformance._model import OUTCOMES

TOYS_CONFTEST = "from conformance_toys import pytest_connfault_drivers  # noqa: F401\n"
#: Options of every inner run: a fixed order, and no hypothesis plugin (its terminal summary
#: imports all of hypothesis, which pytester's module snapshot then drops again after each test).
NO_RANDOM = ("-p", "no:randomly", "-p", "no:hypothesispytest")


@pytest.fixture(autouse=True, scope="module")
def _clients_imported() -> None:
    """Every client's lazy imports done before pytester's first module snapshot (see warm_up)."""
    warm_up()


def run_toys(pytester: pytest.Pytester, clients: str, scenarios: str) -> dict[str, Any]:
    """Run the toys' cells and return the JSON report's results."""
    pytester.makeconftest(TOYS_CONFTEST)
    pytester.runpytest(f"--connfault={clients}", f"--connfault-scenario={scenarios}", "--connfault-report=r.json", *NO_RANDOM)
    results: dict[str, Any] = json.loads((pytester.path / "r.json").read_text())["results"]
    return results


@pytest.mark.parametrize(
    ("toy", "scenario", "reason"),
    [
        ("toy-dead-reuse", "idle-fin-reuse", "*GET /second raised *ToyError*it never opened a new connection*reconnected"),
        ("toy-dead-reuse", "idle-rst-reuse", "*GET /second raised *ToyError*it never opened a new connection*reconnected"),
        ("toy-dead-reuse", "burst-after-partial-drop", "wrote GET /next* onto connection * after the server had half-closed it*"),
        ("toy-replay", "read-reset-post", "replayed the POST silently: the server read it 2 times (ledger)*"),
        ("toy-leak", "truncated-length", "the pool still counts 1 active connection(s) after every request finished: a leak"),
        ("toy-leak", "reset-mid-body", "the pool still counts 1 active connection(s) after every request finished: a leak"),
        ("toy-forget", "idle-half-close-reuse", "reconnected, but never closed connection 1 after the server half-closed it*CLOSE_WAIT*"),
    ],
)
def test_broken_toys_are_failed_with_the_right_reason(pytester: pytest.Pytester, toy: str, scenario: str, reason: str) -> None:
    """A client with a known bug, plugged in through the hook, gets FAILED for it and says why."""
    cell = run_toys(pytester, toy, scenario)[toy][scenario]
    assert cell["verdict"] == "FAILED"
    assert fnmatch_one(cell["reason"], reason), cell["reason"]


def test_a_correct_toy_passes_the_same_scenarios(pytester: pytest.Pytester) -> None:
    """The control: the toy without bugs is OK where its broken siblings fail."""
    chosen = ["idle-fin-reuse", "idle-rst-reuse", "idle-half-close-reuse", "read-reset-post", "truncated-length", "reset-mid-body"]
    results = run_toys(pytester, "toy-good", ",".join(chosen))
    assert {sid: cell["verdict"] for sid, cell in results["toy-good"].items()} == dict.fromkeys(chosen, "OK")


def test_each_bug_fails_only_its_own_scenarios(pytester: pytest.Pytester) -> None:
    """The replaying toy is fine on idle drops and the leaking one on a clean reuse: verdicts are specific."""
    results = run_toys(pytester, "toy-replay,toy-leak", "idle-fin-reuse,read-reset-get")
    assert results["toy-replay"]["idle-fin-reuse"]["verdict"] == "OK"
    assert results["toy-leak"]["idle-fin-reuse"]["verdict"] == "OK"
    assert results["toy-replay"]["read-reset-get"]["verdict"] == "OK"  # a replayed GET is allowed


def fnmatch_one(text: str, pattern: str) -> bool:
    import fnmatch

    return fnmatch.fnmatchcase(text, pattern)


def test_json_report_has_the_documented_shape(pytester: pytest.Pytester) -> None:
    """The JSON report is {client: {scenario: {verdict, reason, duration, evidence}}} plus versions and scenarios."""
    pytester.makeconftest(TOYS_CONFTEST)
    pytester.runpytest(
        "--connfault=httpx-sync,toy-dead-reuse,toy-missing", "--connfault-scenario=idle-fin-reuse,race-get,tls-framed-cut",
        "--connfault-report=out/report.json", *NO_RANDOM,
    )
    report = json.loads((pytester.path / "out" / "report.json").read_text())
    assert report["format"] == "pytest-connfault/1"
    assert set(report) == {"format", "created", "results", "clients", "scenarios", "summary", "legend", "environment"}
    assert set(report["results"]) == {"httpx-sync", "toy-dead-reuse", "toy-missing"}
    for client, cells in report["results"].items():
        assert set(cells) == {"idle-fin-reuse", "race-get", "tls-framed-cut"}, client
        for cell in cells.values():
            assert set(cell) == {"verdict", "reason", "duration", "evidence"}
            assert cell["verdict"] in OUTCOMES
            assert cell["reason"]
            assert isinstance(cell["duration"], float)
            assert cell["duration"] >= 0
    ran = report["results"]["httpx-sync"]["race-get"]["evidence"]
    assert set(ran) >= {"exception", "attempts", "ledger", "pool"}
    assert ran["exception"]["type"] == "httpx.RemoteProtocolError"
    assert isinstance(ran["exception"]["chain"], list)
    assert any("request 1: GET /first" in line for line in ran["ledger"])
    assert ran["pool"]["active"] == 0
    assert isinstance(ran["pool"]["connections"], list)
    assert report["results"]["toy-dead-reuse"]["idle-fin-reuse"]["verdict"] == "FAILED"
    assert report["results"]["toy-missing"]["race-get"]["verdict"] == "SKIPPED"
    assert report["clients"]["httpx-sync"]["version"].startswith("httpx ")
    assert report["clients"]["toy-missing"] == {
        "version": "", "label": "missing", "status": "not run",
        "reason": report["clients"]["toy-missing"]["reason"],
    }
    assert "no_such_client_module_connfault" in report["clients"]["toy-missing"]["reason"]
    assert report["scenarios"]["race-get"] == {
        "title": SCENARIOS["race-get"].title, "source": SCENARIOS["race-get"].source, "needs": "",
    }
    assert report["scenarios"]["tls-framed-cut"]["needs"] == "tls"
    assert sum(report["summary"].values()) == 9
    assert set(report["environment"]) == {"python", "platform", "pytest", "pytest-connfault"}


class _Page(HTMLParser):
    """Collects what the tests look at in the HTML report."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.cells: list[dict[str, str]] = []
        self.summaries: list[str] = []
        self.external: list[str] = []
        self.tags: set[str] = set()
        self.tables: set[str] = set()
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = {k: v or "" for k, v in attrs}
        self.tags.add(tag)
        self.stack.append(tag)
        if tag == "td" and "cell" in values.get("class", "").split():
            self.cells.append(values)
        if tag == "table" and "id" in values:
            self.tables.add(values["id"])
        for name in ("src", "href"):
            if name in values and not values[name].startswith("#"):
                self.external.append(values[name])

    def handle_endtag(self, tag: str) -> None:
        if self.stack and self.stack[-1] == tag:
            self.stack.pop()

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        if self.stack and self.stack[-1] == "summary":
            self.summaries.append(data)


def test_html_report_is_one_self_contained_page(pytester: pytest.Pytester) -> None:
    """The HTML page holds the coloured matrix with expandable evidence, the scenarios and the environment, offline."""
    pytester.makeconftest(TOYS_CONFTEST)
    pytester.runpytest(
        "--connfault=httpx-sync,toy-dead-reuse", "--connfault-scenario=idle-fin-reuse,race-get",
        "--connfault-report=report.html", *NO_RANDOM,
    )
    page = _Page()
    page.feed((pytester.path / "report.html").read_text(encoding="utf-8"))
    page.close()
    assert {"script", "link", "img", "iframe"}.isdisjoint(page.tags)
    assert page.external == []
    assert {"matrix", "legend", "scenarios", "clients", "environment"} <= page.tables
    verdicts = {(c["data-client"], c["data-verdict"]) for c in page.cells}
    assert verdicts == {
        ("httpx-sync", "OK"), ("httpx-sync", "NON-STRICT"), ("toy-dead-reuse", "FAILED"), ("toy-dead-reuse", "NON-STRICT"),
    }
    assert all("v-" in c["class"] for c in page.cells), "each cell is coloured by its verdict class"
    assert sorted(page.summaries) == ["FAILED", "NON-STRICT", "NON-STRICT", "OK"]
    text = "".join(page.text)
    assert SCENARIOS["race-get"].title in text
    assert SCENARIOS["race-get"].source in text
    assert "httpx.RemoteProtocolError" in text, "the evidence holds the exception"
    assert "server ledger" in text
    assert "conn 1  request 1: GET /first" in text
    assert "pool after" in text


def test_report_lands_where_asked_relative_to_the_invocation(pytester: pytest.Pytester, tmp_path: Path) -> None:
    """--connfault-report makes missing directories and says where it wrote."""
    target = tmp_path / "deep" / "dir" / "m.json"
    result = pytester.runpytest("--connfault=httpx-sync", "--connfault-scenario=idle-rst-reuse", f"--connfault-report={target}", *NO_RANDOM)
    result.stdout.fnmatch_lines([f"connfault report written to {target}"])
    assert json.loads(target.read_text())["results"]["httpx-sync"]["idle-rst-reuse"]["verdict"] == "OK"
