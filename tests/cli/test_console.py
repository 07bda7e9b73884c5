"""The ``moltbot`` command (``moltbot.cli.main:console``) defers the libraries Ray imports but
no command uses, as the tree's actors do; ``main`` alone (what tests call in their own
process) does not, and ``MOLTBOT_DEFER_IMPORTS=0`` turns it off."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

from moltbot.deferred_imports import DEFERRED, SWITCH_ENV

ROOT = Path(__file__).resolve().parents[2]

# a command that imports ray, as `down` and `status` do, then tells what is still deferred
PROBE = """
import json
from moltbot.cli import main as cli

def command(argv=None):
    import ray  # noqa: F401
    from moltbot.deferred_imports import still_deferred
    print(json.dumps(still_deferred()))
    return 0

cli.main = command
raise SystemExit(cli.{entry}())
"""


def _deferred(entry: str, **env: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE.format(entry=entry)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    return list(json.loads(out.strip().splitlines()[-1]))


def test_the_command_defers_what_ray_imports_and_no_command_uses() -> None:
    assert _deferred("console") == sorted(DEFERRED)


def test_the_switch_turns_it_off() -> None:
    assert _deferred("console", **{SWITCH_ENV: "0"}) == []


def test_the_installed_command_is_the_console_entry() -> None:
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts["moltbot"] == "moltbot.cli.main:console"
