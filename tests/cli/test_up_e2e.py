"""Issue acceptance, end to end through the real ``moltbot`` command and a real Ray head:
init → up --detach → status → kill a channel child → status shows the restart, others untouched
→ down leaves no Ray process behind. And a foreground ``up`` stops cleanly on Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest

from moltbot.plugins.manifest import source_digest
from moltbot.supervision.tree import account_resource

MOLTBOT = [sys.executable, "-m", "moltbot.cli.main"]
ROOT = Path(__file__).resolve().parents[2]
CRON_OWNER = "7"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def home(tmp_path: Path) -> Iterator[dict[str, str]]:
    env = {**os.environ, "MOLTBOT_HOME": str(tmp_path / "home"), "PYTHONPATH": str(ROOT)}
    # a fake Telegram Bot API for the channel child
    port = free_port()
    fake = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.telegram_api", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    line = fake.stdout.readline() if fake.stdout else ""
    token = json.loads(line)["token"]
    env["TG_TEST_TOKEN"] = token
    env["FAKE_TG_BASE"] = f"http://127.0.0.1:{port}"
    try:
        yield env
    finally:
        fake.terminate()
        fake.wait(10)
        subprocess.run([*MOLTBOT, "down"], env=env, capture_output=True, timeout=120)


def run(env: dict[str, str], *args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*MOLTBOT, *args], env=env, capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


def write_config(env: dict[str, str], *, standby: bool = False, plugins: bool = True) -> None:
    cfg_path = Path(env["MOLTBOT_HOME"]) / "config.json"
    cfg: dict[str, Any] = {
        "gateway": {"port": free_port()},
        "agent": {"workers": 1},
        "channels": {
            "telegram": [
                {
                    "account": "main",
                    "token": "env:TG_TEST_TOKEN",
                    "api_base": env["FAKE_TG_BASE"],
                    "poll_timeout_s": 1,
                    "owners": [CRON_OWNER],  # who scheduled jobs run as (`moltbot cron`)
                }
            ]
        },
        "cluster": {"dashboard": False},
        # a plugin with a channel of its own (its pairing goes through `moltbot pairing` too)
        "plugins": [
            {
                "name": "relay",
                "module": "tests.plugins.fixtures.relay",
                "capabilities": ["channel", "storage", "gateway_methods"],
                "sha256": source_digest("tests.plugins.fixtures.relay"),  # not bundled: pinned
            }
        ],
    }
    if standby:
        cfg["supervision"] = {"channels": {"standby": True}}
    if not plugins:
        cfg["plugins"] = []
    cfg_path.write_text(json.dumps(cfg))


def gateway_call(env: dict[str, str], method: str, params: dict[str, Any]) -> dict[str, Any]:
    """One request over the gateway's WebSocket, after connect with the vault's token."""
    from websockets.sync.client import connect

    from moltbot.security.vault import Vault

    home = Path(env["MOLTBOT_HOME"])
    port = json.loads((home / "config.json").read_text())["gateway"]["port"]
    token = Vault.open(home).get("gateway_token")
    with connect(f"ws://127.0.0.1:{port}") as ws:
        auth = {"auth": {"token": token}}
        ws.send(json.dumps({"type": "req", "id": "c", "method": "connect", "params": auth}))
        assert json.loads(ws.recv(timeout=10))["ok"]
        ws.send(json.dumps({"type": "req", "id": "r", "method": method, "params": params}))
        while True:
            frame: dict[str, Any] = json.loads(ws.recv(timeout=30))
            if frame.get("type") == "res" and frame.get("id") == "r":
                return frame


def accounts(env: dict[str, str]) -> dict[str, Any]:
    out = run(env, "status", "--json")
    assert out.returncode == 0, out.stderr
    held: dict[str, Any] = json.loads(out.stdout)["accounts"]
    return held


def status(env: dict[str, str]) -> dict[str, Any]:
    out = run(env, "status", "--json")
    assert out.returncode == 0, out.stderr
    flat: dict[str, Any] = {}

    def walk(node: dict[str, Any]) -> None:
        for c in node.get("children", []):
            flat[c["name"]] = c
            walk(c)

    walk(json.loads(out.stdout)["tree"])
    return flat


def head_alive(env: dict[str, str]) -> list[psutil.Process]:
    sys.path.insert(0, str(ROOT))
    from actors.control import head_processes, read_head

    head = read_head(Path(env["MOLTBOT_HOME"]))
    return head_processes(head) if head else []


def temp_dir_processes(temp_dir: str) -> list[int]:
    pids = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        try:
            if temp_dir in " ".join(p.info["cmdline"] or []):
                pids.append(p.pid)
        except psutil.Error:
            continue
    return pids


def test_init_up_status_kill_status_down(home: dict[str, str]) -> None:
    init = run(home, "init")
    assert init.returncode == 0, init.stderr
    write_config(home)
    up = run(home, "up", "--detach")
    assert up.returncode == 0, up.stdout + up.stderr
    assert "gateway:" in up.stdout and "provider: offline" in up.stdout
    head = json.loads((Path(home["MOLTBOT_HOME"]) / "run" / "ray.json").read_text())

    before = status(home)
    channel = "moltbot.channels.telegram:main"
    assert before[channel]["state"] == "running" and before[channel]["restarts"] == 0
    # every actor process starts with actors/boot first on its path (deferred imports)
    environ = psutil.Process(before[channel]["pid"]).environ()
    assert environ["PYTHONPATH"].split(os.pathsep)[:2] == [str(ROOT / "actors" / "boot"), str(ROOT)]
    # the account is a cluster-wide singleton: the head offers 1 unit and its actor holds it
    account = account_resource("telegram", "main")
    assert accounts(home) == {account: {"total": 1.0, "available": 0.0}}
    table = run(home, "status")
    assert table.returncode == 0 and channel in table.stdout and "RESTARTS" in table.stdout

    # the account crashes: it restarts alone, inside its type's process
    killed = run(home, "kill", "channels/telegram:main")
    assert killed.returncode == 0, killed.stderr
    after = wait_status(
        home, channel, lambda n: n["restarts"] == 1 and n["state"] == "running", whole=True
    )
    assert after[channel]["restarts"] == 1 and after[channel]["state"] == "running"
    assert after[channel]["pid"] == before[channel]["pid"]
    assert after[channel]["last_exit"] == "killed"
    untouched(before, after, changed=channel)

    # its process dies: a new one, the account inside it again, nothing else touched
    process = "moltbot.channels.telegram"
    assert before[process]["kind"] == "host" and before[process]["pid"] == before[channel]["pid"]
    killed = run(home, "kill", "channels/telegram")
    assert killed.returncode == 0, killed.stderr
    again = wait_status(
        home, process, lambda n: n["restarts"] == 1 and n["state"] == "running", whole=True
    )
    assert again[process]["last_exit"] == "process died"
    assert again[process]["pid"] != before[process]["pid"]
    assert again[channel]["state"] == "running" and again[channel]["pid"] == again[process]["pid"]
    assert accounts(home) == {account: {"total": 1.0, "available": 0.0}}  # the new one holds it
    untouched(before, again, changed=process)

    # pairing end to end: a stranger writes, gets a code; the owner approves it with the CLI
    import httpx

    base = home["FAKE_TG_BASE"]

    def sent_to(chat: int) -> list[str]:
        sent = httpx.get(f"{base}/_fake/sent").json()
        return [m["text"] for m in sent if str(m["chat_id"]) == str(chat)]

    httpx.post(f"{base}/_fake/inject", json={"chat_id": 4242, "user_id": 4242, "text": "hi bot"})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not sent_to(4242):  # the code reply
        time.sleep(0.5)
    listed = run(home, "pairing", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    pending = json.loads(listed.stdout)
    assert [p["sender_id"] for p in pending] == ["4242"]
    code = pending[0]["code"]
    assert code in sent_to(4242)[0]  # the stranger got the code, not an answer
    approved = run(home, "pairing", "approve", "telegram", code)
    assert approved.returncode == 0, approved.stderr
    httpx.post(f"{base}/_fake/inject", json={"chat_id": 4242, "user_id": 4242, "text": "now?"})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any("now?" in t for t in sent_to(4242)):
        time.sleep(0.5)
    assert any("[offline] you said: now?" in t for t in sent_to(4242)), sent_to(4242)
    bad = run(home, "pairing", "approve", "telegram", "ZZZZZZZZ")
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    # a stranger on the plugin's channel: listed and approved with the same command
    stranger = {"sender": "mallory", "chat": "dm-mallory", "text": "let me in", "id": "r1"}
    res = gateway_call(home, "plugin.relay.inject", stranger)
    assert res["ok"], res
    listed = run(home, "pairing", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    [entry] = [p for p in json.loads(listed.stdout) if p["channel"] == "relay:relay"]
    assert entry["sender_id"] == "mallory"
    approved = run(home, "pairing", "approve", "relay:relay", entry["code"])
    assert approved.returncode == 0, approved.stderr
    assert "approved: mallory on relay:relay" in approved.stdout
    # scheduled jobs: `moltbot cron` against the running tree
    when = time.strftime("%Y-%m-%dT%H:%M", time.gmtime(time.time() + 3 * 3600))
    nowhere = run(home, "cron", "add", "--at", when, "stretch")  # no --to, no default
    assert nowhere.returncode == 1 and "schedule.deliver_to" in nowhere.stderr, nowhere.stderr
    to = f"--to=telegram:main:{CRON_OWNER}"
    added = run(home, "cron", "add", "--at", when, "--id", "stretch", to, "stretch")
    assert added.returncode == 0 and "added stretch" in added.stdout, added.stderr
    jobs = json.loads(run(home, "cron", "list", "--json").stdout)
    assert [(j["id"], j["kind"], j["spec"]) for j in jobs] == [("stretch", "once", when)]
    assert run(home, "cron", "rm", "stretch").stdout.strip() == "removed stretch"
    assert "no scheduled jobs" in run(home, "cron", "list").stdout

    down = run(home, "down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert "moltbot is down" in down.stdout
    time.sleep(1)
    assert temp_dir_processes(head["temp_dir"]) == []
    assert not (Path(home["MOLTBOT_HOME"]) / "run" / "ray.json").exists()
    again = run(home, "status")
    assert again.returncode == 1 and "not running" in again.stderr


def wait_status(
    env: dict[str, str], name: str, ok: Any, timeout: float = 90, *, whole: bool = False
) -> dict[str, Any]:
    """The status of ``name`` once ``ok`` holds for it (or the time is up); ``whole``: the
    whole tree's, flattened by name."""
    deadline = time.monotonic() + timeout
    while True:
        flat = status(env)
        if ok(flat[name]) or time.monotonic() > deadline:
            return flat if whole else dict(flat[name])
        time.sleep(0.5)


def untouched(before: dict[str, Any], after: dict[str, Any], *, changed: str) -> None:
    """Every actor but ``changed`` (and the children inside it) kept its process and had no
    restart."""
    for name, node in before.items():
        if name != changed and not name.startswith(changed + ":"):
            assert after[name]["pid"] == node["pid"], name
            assert after[name]["restarts"] == 0, name


def test_standby_promotes_a_warm_spare_found_by_path(home: dict[str, str]) -> None:
    """supervision.channels.standby: the Telegram accounts' process keeps a spare; a kill
    promotes it (its pid, its Ray name), the CLI still finds the channel by path, it answers on
    Telegram, and down removes the spares."""
    assert run(home, "init").returncode == 0
    write_config(home, standby=True, plugins=False)
    up = run(home, "up", "--detach")
    assert up.returncode == 0, up.stdout + up.stderr
    head = json.loads((Path(home["MOLTBOT_HOME"]) / "run" / "ray.json").read_text())
    process = "moltbot.channels.telegram"  # the accounts' process, telegram:main inside it
    before = wait_status(home, process, lambda n: n.get("standby") == "warm")
    assert before.get("standby") == "warm", before
    spare = before["standby_name"]
    assert spare.startswith(process + "@")
    # live + spare each hold a unit of the account: the head offers two
    account = account_resource("telegram", "main")
    assert accounts(home) == {account: {"total": 2.0, "available": 0.0}}
    assert "standby warm" in run(home, "status").stdout

    killed = run(home, "kill", "channels/telegram")
    assert killed.returncode == 0, killed.stderr
    after = wait_status(home, process, lambda n: n["restarts"] == 1 and n["state"] == "running")
    assert after["restarts"] == 1 and after["state"] == "running", after
    assert after["ray_name"] == spare and after["pid"] != before["pid"]
    inside = wait_status(home, "moltbot.channels.telegram:main", lambda n: n["state"] == "running")
    assert inside["pid"] == after["pid"]

    import httpx

    base = home["FAKE_TG_BASE"]
    httpx.post(f"{base}/_fake/inject", json={"chat_id": 77, "user_id": 77, "text": "hello"})
    deadline = time.monotonic() + 30
    codes: list[str] = []
    while time.monotonic() < deadline and not codes:  # the promoted spare polls and answers
        sent = httpx.get(f"{base}/_fake/sent").json()
        codes = [m["text"] for m in sent if str(m["chat_id"]) == "77"]
        time.sleep(0.3)
    assert codes, "the promoted channel did not answer"
    listed = run(home, "pairing", "list", "--json")  # found by path, under the spare's name
    assert listed.returncode == 0, listed.stderr
    assert [p["sender_id"] for p in json.loads(listed.stdout)] == ["77"]
    again = wait_status(home, process, lambda n: n.get("standby") == "warm")
    assert again.get("standby") == "warm" and again["standby_name"] != spare
    assert run(home, "kill", process).returncode == 0  # its full name, via the alias too
    last = wait_status(home, process, lambda n: n["restarts"] == 2 and n["state"] == "running")
    assert last["ray_name"] == again["standby_name"], last

    assert run(home, "down").returncode == 0
    time.sleep(1)
    assert temp_dir_processes(head["temp_dir"]) == []


def test_foreground_up_stops_cleanly_on_ctrl_c(home: dict[str, str]) -> None:
    assert run(home, "init").returncode == 0
    write_config(home)
    proc = subprocess.Popen(
        [*MOLTBOT, "up"], env=home, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert proc.stdout is not None
    lines = []
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        lines.append(line)
        if "Ctrl-C stops it" in line or not line:
            break
    assert any("moltbot is up" in line for line in lines), "".join(lines)
    head = json.loads((Path(home["MOLTBOT_HOME"]) / "run" / "ray.json").read_text())
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=180)
    assert proc.returncode == 0, rest
    assert "stopping (reverse order)" in rest
    time.sleep(1)
    assert temp_dir_processes(head["temp_dir"]) == []


def test_typo_in_config_names_the_key(home: dict[str, str]) -> None:
    assert run(home, "init").returncode == 0
    (Path(home["MOLTBOT_HOME"]) / "config.json").write_text('{"gateway": {"prot": 18789}}')
    up = run(home, "up", "--detach")
    assert up.returncode == 1
    assert "$.gateway.prot" in up.stderr and "did you mean 'port'" in up.stderr
    assert "Traceback" not in up.stderr
