"""What ``moltbot up`` prints while the tree starts (the rendering; ``up`` itself prints it in
tests/cli/test_up_channels.py)."""

from __future__ import annotations

import io
from typing import Any

from moltbot.cli.progress import StartProgress


def tree(*children: dict[str, Any]) -> dict[str, Any]:
    return {"name": "moltbot", "children": list(children)}


def test_each_child_once_as_it_comes_up_and_a_parked_account_with_its_fix() -> None:
    out, now = io.StringIO(), [0.0]
    show = StartProgress(out, tty=False, clock=lambda: now[0])
    rejected = {
        "state": "rejected",
        "reason": "Slack refused the bot token",
        "fix": "check channels.slack bot_token",
    }
    show(
        tree(
            {"name": "moltbot.store", "state": "running"},
            {
                "name": "moltbot.channels",
                "state": "starting",
                "children": [{"name": "moltbot.channels.slack:work", "state": "starting"}],
            },
        )
    )
    now[0] = 2.5
    show(
        tree(
            {"name": "moltbot.store", "state": "running"},
            {
                "name": "moltbot.channels",
                "state": "running",
                "children": [
                    {
                        "name": "moltbot.channels.slack:work",
                        "state": "running",
                        "figures": {"link": rejected},
                    },
                    {"name": "moltbot.tools.sandbox-0", "state": "waiting"},
                    {"name": "moltbot.tools.sandbox-1", "state": "idle"},
                ],
            },
        )
    )
    assert out.getvalue().splitlines() == [
        "  ✓ store  (0.0s)",
        "  ✓ channels  (2.5s)",
        "  ✗ channels/slack:work  failed: rejected: Slack refused the bot token "
        "(fix: check channels.slack bot_token)",
        "  … tools/sandbox-0  waiting for a node with its resources",
        "  · tools/sandbox-1  starts when first used",  # on demand: not waited for
    ]


def test_a_terminal_gets_a_spinner_line_that_is_cleared_before_each_line() -> None:
    out = io.StringIO()
    show = StartProgress(out, tty=True, clock=lambda: 1.0)
    show(tree({"name": "moltbot.agents", "state": "starting"}))
    assert out.getvalue().startswith("\r") and "starting agents" in out.getvalue()
    show(tree({"name": "moltbot.agents", "state": "running"}))
    show.done()
    assert out.getvalue().endswith("\r\x1b[K  ✓ agents  (0.0s)\n")


def test_status_table_says_each_accounts_connection_and_traffic() -> None:
    import time

    from moltbot.cli.render import table

    now = time.time()
    link = {"state": "connected", "since": now - 600, "last_in": now - 12, "last_out": now - 3}
    retry = {
        "state": "retrying",
        "attempt": 3,
        "next_in_s": 4.0,
        "since": now,
        "reason": "Telegram is unavailable right now",
        "last_in": None,
        "last_out": None,
    }
    status = {
        "name": "moltbot",
        "children": [
            {
                "name": "moltbot.channels.telegram:main",
                "state": "running",
                "restarts": 0,
                "figures": {"in": 5, "out": 5, "queue": 0, "link": link},
            },
            {
                "name": "moltbot.channels.slack:work",
                "state": "running",
                "restarts": 0,
                "figures": {"in": 0, "out": 0, "queue": 2, "link": retry},
            },
        ],
    }
    text = table(status)
    [tg] = [ln for ln in text.splitlines() if "telegram:main" in ln]
    [sl] = [ln for ln in text.splitlines() if "slack:work" in ln]
    assert "in 5 out 5 q 0" in tg and "connected; in 12s ago, out 3s ago" in tg
    assert "q 2" in sl and "retrying 3, next in 4.0s: Telegram is unavailable right now" in sl
    assert "nothing in or out yet" in sl and "link" not in tg.split("connected")[0]
