"""A passphrase vault end to end through the real ``moltbot`` command: ``up --detach`` with
``MOLTBOT_VAULT_PASSPHRASE`` set → the Telegram channel reads its token (a ``secret:``) and
answers through the fake Telegram; no process left running holds the passphrase in its
environment (every ``/proc/*/environ`` is scanned); the vault agent runs, named by the head's
temp dir; ``down`` ends it and removes its socket. A wrong passphrase is refused before Ray
starts."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import httpx
import psutil

from moltbot.security.vault import PASSPHRASE_ENV
from moltbot.security.vault_agent import socket_path
from tests.cli.test_up_e2e import MOLTBOT, ROOT, free_port, home, run, status

__all__ = ["home"]  # the fixture: a MOLTBOT_HOME and a fake Telegram
PASS = "a long passphrase for the e2e test 7f3a"


def environ_holding(secret: bytes) -> list[int]:
    found = []
    for pid in psutil.pids():
        try:
            if secret in Path(f"/proc/{pid}/environ").read_bytes():
                found.append(pid)
        except OSError:
            continue
    return found


def test_workers_never_see_the_passphrase(home: dict[str, str]) -> None:
    env = {k: v for k, v in home.items() if k != PASSPHRASE_ENV}
    mb = Path(env["MOLTBOT_HOME"])
    init = run_in(env, "init", "--passphrase-stdin", stdin=PASS + "\n")
    assert init.returncode == 0, init.stdout + init.stderr
    with_pass = {**env, PASSPHRASE_ENV: PASS}
    stored = run_in(with_pass, "secrets", "set", "tg_token", stdin=env["TG_TEST_TOKEN"] + "\n")
    assert stored.returncode == 0, stored.stderr
    cfg = dict(
        gateway={"port": free_port()},
        agent={"workers": 1},
        channels={
            "telegram": [
                {
                    "account": "main",
                    "token": "secret:tg_token",
                    "api_base": env["FAKE_TG_BASE"],
                    "poll_timeout_s": 1,
                    "dm_policy": "open",
                }
            ]
        },
        cluster={"dashboard": False},
    )
    (mb / "config.json").write_text(json.dumps(cfg))

    wrong = run(  # refused before Ray starts, with the fix
        {**env, PASSPHRASE_ENV: "not the passphrase"}, "up", "--detach", timeout=60
    )
    assert wrong.returncode != 0 and "passphrase" in wrong.stderr, wrong.stdout + wrong.stderr
    assert "Traceback" not in wrong.stderr and not (mb / "run" / "ray.json").exists()
    missing = run(env, "up", "--detach", timeout=60)
    assert missing.returncode != 0 and PASSPHRASE_ENV in missing.stderr, missing.stderr

    up = run(with_pass, "up", "--detach")
    assert up.returncode == 0, up.stdout + up.stderr
    head = json.loads((mb / "run" / "ray.json").read_text())
    channel = "moltbot.channels.telegram:main"
    assert status(env)[channel]["state"] == "running"  # status needs no passphrase either

    # the channel works: its token came from the vault, through the agent
    base = env["FAKE_TG_BASE"]
    httpx.post(f"{base}/_fake/inject", json={"chat_id": 77, "user_id": 77, "text": "ping"})
    deadline = time.monotonic() + 60
    replies: list[str] = []
    while time.monotonic() < deadline and not replies:
        sent = httpx.get(f"{base}/_fake/sent").json()
        replies = [m["text"] for m in sent if str(m["chat_id"]) == "77"]
        time.sleep(0.5)
    assert any("you said: ping" in r for r in replies), replies

    # no process holds the passphrase in its environment: not Ray, not a worker, not the agent
    assert environ_holding(PASS.encode()) == []
    agents = [
        p
        for p in psutil.process_iter(["cmdline"])
        if "moltbot.security.vault_agent" in " ".join(p.info["cmdline"] or [])
        and head["temp_dir"] in " ".join(p.info["cmdline"] or [])
    ]
    assert len(agents) == 1
    sock = socket_path(mb)
    assert sock.is_socket() and os.stat(sock).st_mode & 0o777 == 0o600

    down = run(env, "down")
    assert down.returncode == 0, down.stdout + down.stderr
    psutil.wait_procs(agents, timeout=10)
    assert not agents[0].is_running()
    assert not sock.exists()


def run_in(env: dict[str, str], *args: str, stdin: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*MOLTBOT, *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )
