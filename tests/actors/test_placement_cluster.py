"""Home-lab placement on a real multi-node Ray (several nodes on this machine): actors land on
the node whose custom resource they need (an agent profile's pool on the node serving its
local model, from the profile's ``placement``); when that node leaves they wait (shown as
``waiting``) and come back when a node with the resource joins; nothing else is touched."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_placement_waiting_and_rejoin() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "tests.actors.cluster_scenario"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
    assert lines, out.stdout[-3000:] + out.stderr[-3000:]
    r = json.loads(lines[-1][len("RESULT ") :])
    nodes, placed = r["nodes"], r["placed"]
    assert placed["moltbot.channels.signal:phone"] == nodes["signal"]
    assert placed["moltbot.tools.sandbox-0"] == nodes["sandbox"]
    assert placed["moltbot.agents.profile:local-0"] == nodes["gpu"]  # beside its local model
    assert placed["moltbot.store"] == nodes["head"]  # durable state stays on the head
    assert all(state == "running" for state in r["states"].values())
    assert r["after_removal"]["signal"] == "waiting" and r["after_removal"]["restarts"] >= 1
    assert r["untouched"] and all(r["untouched"].values()), r["untouched"]
    assert all(m == ["running", True] for m in r["moved"].values()), r["moved"]
    assert r["after_rejoin"] == {"state": "running", "node": r["new_node"]}
