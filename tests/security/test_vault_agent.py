"""The vault agent: the passphrase-derived key lives in one process; readers ask over a private
Unix socket. The attacks: a wrong passphrase, another user on the socket, a dead head."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from moltbot.errors import SecretNotFound, VaultError
from moltbot.security.vault import PASSPHRASE_ENV, Vault, lazy_get
from moltbot.security.vault_agent import AgentServer, AgentVault, socket_path

PASS = "correct horse battery staple"  # a test passphrase
FAST_N = 2**10  # scrypt cost for tests


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
    home = tmp_path / "h"
    vault = Vault.create(home, PASS, scrypt_n=FAST_N)
    vault.set("tg_token", "123:abc")
    return home


def start_agent(home: Path, passphrase: str, watch: int = 0) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != PASSPHRASE_ENV}
    argv = [sys.executable, "-m", "moltbot.security.vault_agent", "--home", str(home)]
    if watch:
        argv += ["--watch", str(watch)]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
    assert proc.stdin is not None
    proc.stdin.write(passphrase + "\n")
    proc.stdin.close()
    return proc


@pytest.fixture
def agent(home: Path) -> Iterator[subprocess.Popen[str]]:
    proc = start_agent(home, PASS)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    yield proc
    proc.terminate()
    proc.wait(10)


def test_a_wrong_passphrase_is_refused_with_the_fix(home: Path) -> None:
    proc = start_agent(home, "not it")
    assert proc.stdout is not None
    out = proc.stdout.read()
    assert proc.wait(30) == 2
    problem = json.loads(out)
    assert problem["error"] == "vault_bad_key" and "passphrase" in problem["message"]
    assert PASSPHRASE_ENV in problem["fix"]
    assert not socket_path(home).exists()


def test_readers_get_secrets_from_the_agent_and_audit_each_read(
    home: Path, agent: subprocess.Popen[str]
) -> None:
    path = socket_path(home)
    assert path.is_socket() and (path.stat().st_mode & 0o777) == 0o600
    assert (path.parent.stat().st_mode & 0o777) == 0o700
    heard: list[str] = []
    # a worker: no passphrase in its environment, the vault is a passphrase vault
    get = lazy_get(home, on_read=heard.append)
    assert get("tg_token") == "123:abc"
    assert heard == ["tg_token"]
    with pytest.raises(SecretNotFound) as missing:
        get("nope")
    assert missing.value.hint == "moltbot secrets set nope"
    with pytest.raises(VaultError):
        get("../vault.key")  # names are checked before they are sent


def test_without_the_agent_a_worker_cannot_open_the_vault(home: Path) -> None:
    get = lazy_get(home)
    with pytest.raises(VaultError) as refused:
        get("tg_token")
    assert PASSPHRASE_ENV in refused.value.hint


def test_a_bad_request_gets_an_error_and_the_agent_keeps_serving(
    home: Path, agent: subprocess.Popen[str]
) -> None:
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(socket_path(home)))
        s.sendall(b"GET /vault.key\n")
        reply = json.loads(s.makefile().readline())
    assert reply["error"] == "bad_request" and "value" not in reply
    assert AgentVault(socket_path(home)).get("tg_token") == "123:abc"


def test_another_user_is_refused_by_peer_credentials(home: Path) -> None:
    """Even with the folder opened up, a process of another uid gets no secret."""
    vault = Vault.open(home, PASS)
    private = Path(tempfile.mkdtemp(prefix="moltbot-peer-"))  # reachable by nobody
    server = AgentServer(private / "v.sock", vault)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        os.chmod(private, 0o711)
        os.chmod(private / "v.sock", 0o666)
        read, write = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: become nobody, ask for the secret
            os.close(read)
            try:
                os.setgid(65534)
                os.setuid(65534)
                with socket.socket(socket.AF_UNIX) as s:
                    s.connect(str(private / "v.sock"))
                    s.sendall(b'{"get": "tg_token"}\n')
                    os.write(write, s.makefile("rb").readline())
            except BaseException as exc:
                os.write(write, f"child failed: {exc!r}".encode())
            os._exit(0)
        os.close(write)
        os.waitpid(pid, 0)
        with os.fdopen(read, "rb") as f:
            answer = f.read()
    finally:
        server.shutdown()
        server.server_close()
        shutil.rmtree(private)
    assert b"123:abc" not in answer
    assert json.loads(answer)["error"] == "refused", answer


def test_the_agent_ends_with_its_head_and_removes_its_socket(home: Path) -> None:
    head = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    proc = start_agent(home, PASS, watch=head.pid)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
    assert socket_path(home).is_socket()
    head.kill()
    head.wait(5)
    assert proc.wait(15) == 0
    assert not socket_path(home).exists()


def test_a_deep_home_gets_a_short_private_socket(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    path = socket_path(deep)
    assert len(str(path)) < 108 and path.parent.name == f"moltbot-{os.geteuid()}"
    assert (path.parent.stat().st_mode & 0o777) == 0o700
    assert socket_path(deep) == path and socket_path(tmp_path / "x" / ("d" * 60) / "e") != path
