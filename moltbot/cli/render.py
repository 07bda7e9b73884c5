"""Pure rendering of the supervision tree for ``moltbot status`` (no Ray here)."""

from __future__ import annotations

from typing import Any


def _uptime(seconds: float) -> str:
    if seconds <= 0:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def rows(status: dict[str, Any], depth: int = 0) -> list[list[str]]:
    out: list[list[str]] = []
    for c in status.get("children", []):
        note = f"placeholder: {c['placeholder']}" if c.get("placeholder") else ""
        if c.get("strategy"):
            note = c["strategy"]
        if c.get("last_exit") and c.get("restarts"):
            note = (note + "; " if note else "") + f"last exit: {c['last_exit']}"
        out.append(
            [
                "  " * depth + c["name"],
                c["state"],
                str(c["restarts"]),
                (c.get("node") or "")[:8],
                str(c.get("pid") or "-"),
                _uptime(float(c.get("uptime") or 0.0)),
                note,
            ]
        )
        out.extend(rows(c, depth + 1))
    return out


def table(status: dict[str, Any]) -> str:
    head = ["NAME", "STATE", "RESTARTS", "NODE", "PID", "UPTIME", "NOTE"]
    body = [
        [status["name"], "running", "0", "", "", "", status.get("strategy", "")],
        *rows(status, 1),
    ]
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head) - 1)]
    lines = []
    for r in [head, *body]:
        cells = [r[i].ljust(widths[i]) for i in range(len(widths))] + [r[-1]]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def flatten(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every actor by name (for scripts and tests)."""
    out: dict[str, dict[str, Any]] = {}
    for c in status.get("children", []):
        out[c["name"]] = c
        out.update(flatten(c))
    return out
