"""The matrix written to a file: JSON for CI scripts, or one self-contained HTML page.

The JSON document (``format`` ``"pytest-connfault/1"``)::

    {
      "format": "pytest-connfault/1",
      "created": "2026-01-01T12:00:00+00:00",
      "results": {client: {scenario: {"verdict", "reason", "duration", "evidence"}}},
      "clients": {client: {"version", "label", "status": "ran" | "not run", "reason"}},
      "scenarios": {scenario: {"title", "source", "needs"}},
      "summary": {verdict: count},
      "legend": {verdict: meaning},
      "environment": {"python", "platform", "pytest", "pytest-connfault"}
    }

``verdict`` is one of OK, NON-STRICT, INFORMATIONAL, FAILED, SKIPPED, ERROR; ``duration`` is in
seconds; ``evidence`` has ``exception`` (``{type, message, chain}`` or null), ``attempts`` (one
line per request), ``ledger`` (the server's timeline) and ``pool`` (the snapshot after the
scenario, or ``{"unavailable": why}``). A CI gate reads ``results[client][scenario]["verdict"]``.

The HTML page has no script, no stylesheet link and no image: everything is inline, so it opens
offline and can be attached to a CI run as is.
"""

from __future__ import annotations

import datetime
import html
import json
import platform
from importlib import metadata
from pathlib import Path
from typing import Any

from ._matrix import SHORT, Matrix
from ._model import ERROR, FAILED, INFORMATIONAL, LEGEND, NON_STRICT, OK, OUTCOMES, SKIPPED

FORMAT = "pytest-connfault/1"


def environment() -> dict[str, str]:
    def version(name: str) -> str:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            return "unknown"

    return {
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "pytest": version("pytest"),
        "pytest-connfault": version("pytest-connfault"),
    }


def document(matrix: Matrix) -> dict[str, Any]:
    """The JSON report as a dict (see the module docstring for its shape)."""
    counts = matrix.counts()
    return {
        "format": FORMAT,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "results": matrix.to_json(),
        "clients": {
            c.name: {
                "version": c.version,
                "label": c.label,
                "status": "ran" if c.version else "not run",
                "reason": c.unavailable or "",
            }
            for c in matrix.clients
        },
        "scenarios": {
            s.id: {"title": s.title, "source": s.source, "needs": s.needs} for s in matrix.scenarios
        },
        "summary": {o: counts[o] for o in OUTCOMES if counts[o]},
        "legend": dict(LEGEND),
        "environment": environment(),
    }


def write(matrix: Matrix, path: str | Path) -> Path:
    """Write the report as JSON (``.json``) or HTML (``.html``/``.htm``); returns the path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    data = document(matrix)
    if target.suffix.lower() == ".json":
        target.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n", encoding="utf-8")
    else:
        target.write_text(to_html(data), encoding="utf-8")
    return target


_COLOURS = {
    OK: "#2e7d32",
    NON_STRICT: "#b26a00",
    INFORMATIONAL: "#1565c0",
    FAILED: "#c62828",
    SKIPPED: "#757575",
    ERROR: "#6a1b9a",
}

_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 4px 8px; vertical-align: top; text-align: left; }
th { background: #f4f4f4; }
td.cell { min-width: 7em; }
td.cell summary { cursor: pointer; font-weight: bold; color: #fff; padding: 2px 6px; border-radius: 3px; }
td.cell details[open] { min-width: 40em; }
pre { white-space: pre-wrap; font-size: 12px; background: #fafafa; border: 1px solid #eee; padding: 6px; }
.reason { margin: 6px 0; }
""" + "".join(
    f"\n.v-{v.lower()} summary, tr.v-{v.lower()} th {{ background: {colour}; color: #fff; }}"
    for v, colour in _COLOURS.items()
)


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _evidence(cell: dict[str, Any]) -> str:
    evidence = cell.get("evidence") or {}
    parts = [
        f'<p class="reason">{_e(cell["reason"])}</p>',
        f"<p>duration: {cell['duration'] * 1000:.1f} ms</p>",
    ]
    exc = evidence.get("exception")
    if exc:
        chain = "".join(f"\n  caused by {line}" for line in exc.get("chain", []))
        parts.append(f"<p>exception</p><pre>{_e(exc['type'])}: {_e(exc['message'])}{_e(chain)}</pre>")
    if evidence.get("attempts"):
        parts.append(f"<p>requests</p><pre>{_e(chr(10).join(evidence['attempts']))}</pre>")
    if evidence.get("ledger"):
        parts.append(f"<p>server ledger</p><pre>{_e(chr(10).join(evidence['ledger']))}</pre>")
    pool = evidence.get("pool")
    if pool:
        if "unavailable" in pool:
            text = f"unavailable: {pool['unavailable']}"
        else:
            rows = [f"{pool.get('client', '')}: {pool.get('summary', '')}"]
            rows += [f"  port {c['local_port']}  {c['state']}" for c in pool.get("connections", [])]
            text = "\n".join(rows)
        parts.append(f"<p>pool after</p><pre>{_e(text)}</pre>")
    return "".join(parts)


def to_html(data: dict[str, Any]) -> str:
    """The report as one self-contained HTML page."""
    clients = list(data["clients"])
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>pytest-connfault conformance matrix</title>",
        f"<style>{_STYLE}</style></head><body>",
        "<h1>pytest-connfault conformance matrix</h1>",
        f"<p>{_e(data['created'])} &middot; "
        + _e(", ".join(f"{n} {v}" for v, n in data["summary"].items()) or "no cells ran")
        + "</p>",
        '<table id="matrix"><thead><tr><th>scenario</th>',
    ]
    out += [
        f'<th data-client="{_e(c)}">{_e(c)}<br><small>{_e(data["clients"][c]["version"])}</small></th>'
        for c in clients
    ]
    out.append("</tr></thead><tbody>")
    for sid in data["scenarios"]:
        out.append(f'<tr data-scenario="{_e(sid)}"><th><a href="#s-{_e(sid)}">{_e(sid)}</a></th>')
        for client in clients:
            cell = data["results"].get(client, {}).get(sid)
            if cell is None:
                out.append('<td class="cell" data-verdict="">-</td>')
                continue
            verdict = cell["verdict"]
            out.append(
                f'<td class="cell v-{_e(verdict.lower())}" data-client="{_e(client)}" data-verdict="{_e(verdict)}">'
                f"<details><summary>{_e(SHORT.get(verdict, verdict))}</summary>{_evidence(cell)}</details></td>"
            )
        out.append("</tr>")
    out.append("</tbody></table>")
    out.append('<h2>Legend</h2><table id="legend">')
    out += [
        f'<tr class="v-{_e(v.lower())}"><th>{_e(v)}</th><td>{_e(text)}</td></tr>'
        for v, text in data["legend"].items()
    ]
    out.append(
        '</table><h2>Scenarios</h2><table id="scenarios"><tr><th>id</th><th>description</th><th>source</th></tr>'
    )
    for sid, about in data["scenarios"].items():
        needs = f" (needs {about['needs']})" if about["needs"] else ""
        out.append(
            f'<tr id="s-{_e(sid)}"><td>{_e(sid)}</td><td>{_e(about["title"])}{_e(needs)}</td><td>{_e(about["source"])}</td></tr>'
        )
    out.append(
        '</table><h2>Clients</h2><table id="clients"><tr><th>client</th><th>version</th><th>status</th></tr>'
    )
    for name, about in data["clients"].items():
        status = about["status"] + (f": {about['reason']}" if about["reason"] else "")
        out.append(f"<tr><td>{_e(name)}</td><td>{_e(about['version'])}</td><td>{_e(status)}</td></tr>")
    out.append('</table><h2>Environment</h2><table id="environment">')
    out += [f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in data["environment"].items()]
    out.append("</table></body></html>")
    return "\n".join(out) + "\n"
