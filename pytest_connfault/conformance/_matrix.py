"""The matrix: scenario rows x client columns, gathered from the cells' reports.

The terminal form fits 100 columns: each client column is 11 characters wide, under its driver's
short label; when there are more clients than fit, the matrix is printed in blocks of columns.
The full client names and versions, the legend and every non-OK reason follow below it.
"""

from __future__ import annotations

import textwrap
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ._model import ERROR, FAILED, INFORMATIONAL, LEGEND, NON_STRICT, OK, OUTCOMES, SKIPPED, CellResult

WIDTH = 100
COLUMN = 11
#: What a cell shows in the terminal (INFORMATIONAL is shortened to fit a column).
SHORT = {
    OK: "OK",
    NON_STRICT: "NON-STRICT",
    INFORMATIONAL: "INFO",
    FAILED: "FAILED",
    SKIPPED: "skipped",
    ERROR: "ERROR",
}
#: Terminal colours (TerminalWriter markup) of each outcome.
MARKUP: dict[str, dict[str, bool]] = {
    OK: {"green": True},
    NON_STRICT: {"yellow": True},
    INFORMATIONAL: {"cyan": True},
    FAILED: {"red": True, "bold": True},
    SKIPPED: {},
    ERROR: {"purple": True},
}
NOT_RUN = "-"

Segment = tuple[str, dict[str, bool]]


@dataclass
class ClientColumn:
    """One client of the matrix: its name, column label, and version (or why it did not run)."""

    name: str
    label: str
    version: str = ""
    unavailable: str | None = None


@dataclass
class ScenarioRow:
    """One scenario of the matrix."""

    id: str
    title: str
    source: str
    needs: str = ""


@dataclass
class Matrix:
    """Every cell of one run, keyed by ``(scenario, client)``."""

    scenarios: list[ScenarioRow]
    clients: list[ClientColumn]
    cells: dict[tuple[str, str], CellResult] = field(default_factory=dict)

    def add(self, cell: CellResult) -> None:
        self.cells[(cell.scenario, cell.client)] = cell
        for column in self.clients:
            if column.name == cell.client and cell.version and cell.verdict != SKIPPED:
                column.version = cell.version

    def counts(self) -> Counter[str]:
        return Counter(cell.verdict for cell in self.cells.values())

    def notable(self) -> list[CellResult]:
        """The cells that are not OK or skipped, in matrix order."""
        found = []
        for row in self.scenarios:
            for column in self.clients:
                cell = self.cells.get((row.id, column.name))
                if cell is not None and cell.verdict not in (OK, SKIPPED):
                    found.append(cell)
        return found

    def to_json(self) -> dict[str, Any]:
        """``{client: {scenario: {verdict, reason, duration, evidence}}}`` for the cells that ran."""
        results: dict[str, Any] = {}
        for column in self.clients:
            row: dict[str, Any] = {}
            for scenario in self.scenarios:
                cell = self.cells.get((scenario.id, column.name))
                if cell is not None:
                    row[scenario.id] = {
                        "verdict": cell.verdict,
                        "reason": cell.reason,
                        "duration": round(cell.duration, 4),
                        "evidence": cell.evidence,
                    }
            results[column.name] = row
        return results


def _blocks(clients: list[ClientColumn], first: int) -> list[list[ClientColumn]]:
    per_block = max(1, (WIDTH - first) // COLUMN)
    return [clients[i : i + per_block] for i in range(0, len(clients), per_block)] or [[]]


def render(matrix: Matrix) -> list[list[Segment]]:
    """The matrix as terminal lines (each a list of ``(text, markup)`` segments), <= 100 columns."""
    first = min(max([len(r.id) for r in matrix.scenarios] + [len("scenario")]) + 2, 40)
    lines: list[list[Segment]] = []
    for block in _blocks(matrix.clients, first):
        header = "scenario".ljust(first) + "".join(c.label[: COLUMN - 1].ljust(COLUMN) for c in block)
        lines.append([(header.rstrip(), {"bold": True})])
        for row in matrix.scenarios:
            segments: list[Segment] = [(row.id[: first - 1].ljust(first), {})]
            for column in block:
                cell = matrix.cells.get((row.id, column.name))
                text = SHORT[cell.verdict] if cell is not None else NOT_RUN
                markup = MARKUP[cell.verdict] if cell is not None else {}
                segments.append((text, markup))
                segments.append((" " * (COLUMN - len(text)), {}))
            segments[-1] = ("", {})
            lines.append(segments)
        lines.append([])
    lines.append([("clients:", {"bold": True})])
    for column in matrix.clients:
        about = column.version or (f"not run: {column.unavailable}" if column.unavailable else "not run")
        lines.extend([(text, {})] for text in _wrap(f"  {column.label:<10} {column.name}: {about}", 4))
    lines.append([("legend:", {"bold": True})])
    for outcome in OUTCOMES:
        lines.append([(f"  {SHORT[outcome]:<10} ", MARKUP[outcome]), (LEGEND[outcome], {})])
    lines.append([(f"  {NOT_RUN:<10} ", {}), ("not collected (deselected, or the run stopped early)", {})])
    notable = matrix.notable()
    if notable:
        lines.append([("not OK:", {"bold": True})])
        # Clients with the same verdict and reason for a scenario share one entry.
        groups: dict[tuple[str, str, str], list[str]] = {}
        for cell in notable:
            groups.setdefault((cell.scenario, cell.verdict, cell.reason), []).append(cell.client)
        for (scenario, verdict, reason), clients in groups.items():
            text = f"  {SHORT[verdict]:<10} {scenario} x {', '.join(clients)}: {reason}"
            wrapped = _wrap(text, 13)
            lines.append([(wrapped[0][:13], MARKUP[verdict]), (wrapped[0][13:], {})])
            lines.extend([(more, {})] for more in wrapped[1:])
    counts = matrix.counts()
    total = sum(counts.values())
    summary = ", ".join(f"{counts[o]} {o}" for o in OUTCOMES if counts[o])
    lines.append([(f"{total} cells: {summary}" if total else "no cells ran", {"bold": True})])
    return lines


def _wrap(text: str, indent: int) -> list[str]:
    return textwrap.wrap(text, WIDTH, subsequent_indent=" " * indent, break_on_hyphens=False) or [""]


def plain(lines: list[list[Segment]]) -> str:
    """The rendered lines without colours."""
    return "\n".join("".join(text for text, _ in line) for line in lines)
