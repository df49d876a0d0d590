"""The ledger as a short timeline: one line per event, for failure reports."""

from __future__ import annotations

from collections.abc import Iterable

from ._ledger import Connection

#: Lines shown at most; a long ledger keeps its first and last events.
MAX_LINES = 60


def timeline(connections: Iterable[Connection], started_at: float, limit: int = MAX_LINES) -> list[str]:
    """Every connection's events in time order, as ``"+  1.234 ms  conn 1  ..."`` lines."""
    events: list[tuple[float, int, str]] = []
    for conn in connections:
        tls = ", TLS" if conn.tls else ""
        events.append((conn.opened_at, 0, f"conn {conn.id}  opened (client port {conn.client_port}{tls})"))
        for req in conn.requests:
            events.append(
                (
                    req.received_at,
                    1,
                    f"conn {conn.id}  request {req.index}: {req.method} {req.target} -> {req.outcome}",
                )
            )
        for firing in conn.faults:
            how = "commanded" if firing.commanded else "fired"
            detail = f" ({firing.detail})" if firing.detail else ""
            events.append(
                (firing.fired_at, 2, f"conn {conn.id}  fault {firing.kind}@{firing.at} {how}{detail}")
            )
        if conn.closed_at is not None:
            unread = f", {len(conn.unread)} bytes unread" if conn.unread else ""
            if conn.tls_error:
                unread += f", {conn.tls_error}"
            events.append((conn.closed_at, 3, f"conn {conn.id}  closed, ended by {conn.ended_by}{unread}"))
    events.sort(key=lambda e: (e[0], e[1]))
    lines = [f"+{(at - started_at) * 1000:9.3f} ms  {text}" for at, _, text in events]
    if len(lines) > limit:
        head = limit // 2
        skipped = len(lines) - limit
        lines = lines[:head] + [f"... {skipped} events left out ..."] + lines[-(limit - head) :]
    return lines
