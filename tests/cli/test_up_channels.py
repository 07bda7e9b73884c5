"""A channel account that cannot work never holds up the tree, end to end through ``moltbot up``:
a Signal number signal-cli does not know (the fake signal-cli-rest-api serves another one)
beside a working Telegram account. ``up`` succeeds, the Telegram account answers, and ``status``
shows the Signal account ``failed`` with the platform's reason and the fix. And a start that
does fail (the gateway's port is taken) names the child, the reason and the fix."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.cli.test_up_e2e import ROOT, free_port, home, run, status

__all__ = ["home"]
UNKNOWN = "+15557770000"  # the fake serves tests.fakes.signal_api.NUMBER only


@pytest.fixture
def signal_api() -> Iterator[str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.signal_api", "--port", str(port)], cwd=ROOT
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        time.sleep(0.1)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def test_an_account_that_cannot_connect_does_not_hold_up_the_tree(
    home: dict[str, str], signal_api: str
) -> None:
    assert run(home, "init").returncode == 0
    cfg = {
        "gateway": {"port": free_port()},
        "agent": {"workers": 1},
        "channels": {
            "telegram": [
                {
                    "account": "main",
                    "token": "env:TG_TEST_TOKEN",
                    "dm_policy": "open",
                    "api_base": home["FAKE_TG_BASE"],
                    "poll_timeout_s": 1,
                }
            ],
            "signal": [{"account": "phone", "number": UNKNOWN, "api_base": signal_api}],
        },
        "cluster": {"dashboard": False},
    }
    (Path(home["MOLTBOT_HOME"]) / "config.json").write_text(json.dumps(cfg))
    up = run(home, "up", "--detach")
    assert up.returncode == 0, up.stdout + up.stderr
    # its progress: each child as it came up, and the account that cannot work, with the fix
    assert "  ✓ store  (" in up.stdout and "  ✓ channels/telegram:main  (" in up.stdout
    [parked] = [ln for ln in up.stdout.splitlines() if "channels/signal:phone" in ln]
    assert parked.startswith("  ✗ ") and "is not registered with signal-cli" in parked
    assert "fix: register or link it first" in parked

    table = run(home, "status")
    assert table.returncode == 0, table.stderr
    [line] = [ln for ln in table.stdout.splitlines() if "signal:phone" in ln]
    assert " failed " in line, line
    assert f"Signal number {UNKNOWN} is not registered with signal-cli" in line
    assert "fix: register or link it first" in line
    tg = status(home)["moltbot.channels.telegram:main"]
    assert tg["state"] == "running" and tg["figures"]["link"]["state"] == "connected"
    sig = status(home)["moltbot.channels.signal:phone"]
    assert sig["figures"]["link"]["state"] == "rejected" and sig["restarts"] == 0

    base = home["FAKE_TG_BASE"]  # the sibling works
    httpx.post(f"{base}/_fake/inject", json={"chat_id": 5, "user_id": 5, "text": "still here?"})
    deadline = time.monotonic() + 60
    texts: list[str] = []
    while time.monotonic() < deadline and not any("still here?" in t for t in texts):
        time.sleep(0.5)
        texts = [m["text"] for m in httpx.get(f"{base}/_fake/sent").json()]
    assert any("you said: still here?" in t for t in texts), texts
    down = run(home, "down")
    assert down.returncode == 0, down.stdout + down.stderr


@pytest.mark.parametrize("activated", [True, False])
def test_a_start_that_fails_names_the_child_the_reason_and_the_fix(
    home: dict[str, str], activated: bool
) -> None:
    """The gateway's port taken: the root holds a socket-activated gateway's port, so ``up``
    fails before anything starts; an always-on gateway (``idle_stop_s: 0``) fails its own
    start, after the children before it."""
    assert run(home, "init").returncode == 0
    with socket.socket() as taken:  # another program holds the gateway's port
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        gateway = {"port": port} if activated else {"port": port, "idle_stop_s": 0}
        cfg = {"gateway": gateway, "agent": {"workers": 1}, "cluster": {"dashboard": False}}
        (Path(home["MOLTBOT_HOME"]) / "config.json").write_text(json.dumps(cfg))
        up = run(home, "up", "--detach")
    assert up.returncode == 1, up.stdout + up.stderr
    why = f"config error at $.gateway.port: 127.0.0.1:{port} is already in use"
    if activated:
        assert "  ✓ store  (" not in up.stdout  # nothing started
        assert why in up.stderr, up.stderr
    else:
        assert "  ✓ store  (" in up.stdout  # the progress up to the failure
        assert f"gateway did not start: {why}" in up.stderr, up.stderr
    assert "fix: stop that program, or choose another gateway.port" in up.stderr
    assert "Traceback" not in up.stderr
    assert not (Path(home["MOLTBOT_HOME"]) / "run" / "ray.json").exists()  # nothing left up
