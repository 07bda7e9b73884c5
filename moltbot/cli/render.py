"""Pure rendering of the supervision tree for ``moltbot status`` (no Ray here)."""

from __future__ import annotations

import time
from typing import Any

from moltbot.channels.link import describe, traffic


def _uptime(seconds: float) -> str:
    if seconds <= 0:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


FIGURE_LABELS = {
    "in": "in",
    "out": "out",
    "queue": "q",
    "turns": "turns",
    "p50_ms": "p50",
    "p99_ms": "p99",
    "tokens_in": "tok in",
    "tokens_out": "tok out",
    "pipe_in": "pipe in",
    "pipe_out": "pipe out",
}


def figures_text(figures: dict[str, Any] | None) -> str:
    """A compact line of an actor's figures: ``in 12 out 12 q 0``, ``turns 5 p50 80ms``."""
    parts = []
    for key, value in (figures or {}).items():
        if key == "link":  # a channel's connection: its own column (see ``rows``)
            continue
        label = FIGURE_LABELS.get(key, key)
        if key.endswith("_ms") and isinstance(value, int | float):
            parts.append(f"{label} {value:.0f}ms")
        else:
            parts.append(f"{label} {value}")
    return " ".join(parts)


def rows(status: dict[str, Any], depth: int = 0) -> list[list[str]]:
    out: list[list[str]] = []
    for c in status.get("children", []):
        note = c.get("strategy") or ""
        if c.get("last_exit") and c.get("restarts"):
            note = (note + "; " if note else "") + f"last exit: {c['last_exit']}"
        if c.get("standby"):
            note = (note + "; " if note else "") + f"standby {c['standby']}"
        state = c["state"]
        link = (c.get("figures") or {}).get("link")
        if isinstance(link, dict) and state == "running":
            state = "failed" if link.get("state") == "rejected" else state
            line = f"{describe(link)}; {traffic(link, time.time())}"
            note = line + ("; " + note if note else "")
        out.append(
            [
                "  " * depth + c["name"],
                state,
                str(c["restarts"]),
                (c.get("node") or "")[:8],
                str(c.get("pid") or "-"),
                _uptime(float(c.get("uptime") or 0.0)),
                figures_text(c.get("figures")),
                note,
            ]
        )
        out.extend(rows(c, depth + 1))
    return out


def table(status: dict[str, Any]) -> str:
    head = ["NAME", "STATE", "RESTARTS", "NODE", "PID", "UPTIME", "FIGURES", "NOTE"]
    body = [
        [status["name"], "running", "0", "", "", "", "", status.get("strategy", "")],
        *rows(status, 1),
    ]
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head) - 1)]
    lines = []
    for r in [head, *body]:
        cells = [r[i].ljust(widths[i]) for i in range(len(widths))] + [r[-1]]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def nodes_table(nodes: list[dict[str, Any]]) -> str:
    """The cluster's nodes (``control.nodes()``): id, address, head or not, labels, resources."""
    head = ["NODE", "ADDRESS", "STATE", "ROLE", "LABELS", "RESOURCES"]
    body = [
        [
            n["node"][:8],
            n["address"],
            "alive" if n["alive"] else "gone",
            "head" if n["head"] else "worker",
            ",".join(f"{k}={v}" for k, v in sorted(n.get("labels", {}).items())) or "-",
            " ".join(
                f"{k}={v:g}"
                for k, v in sorted(n["resources"].items())
                if k not in ("memory", "object_store_memory")
            ),
        ]
        for n in nodes
    ]
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(len(head) - 1)]
    return "\n".join(
        "  ".join([*(r[i].ljust(widths[i]) for i in range(len(widths))), r[-1]]).rstrip()
        for r in [head, *body]
    )


def flatten(status: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every actor by name (for scripts and tests)."""
    out: dict[str, dict[str, Any]] = {}
    for c in status.get("children", []):
        out[c["name"]] = c
        out.update(flatten(c))
    return out
