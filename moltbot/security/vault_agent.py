"""The vault agent: the one process that holds a passphrase vault's key while a tree runs.

``moltbot up`` reads the passphrase (``MOLTBOT_VAULT_PASSPHRASE`` or a prompt), checks it, and
hands it to this agent over a pipe; Ray and its workers are started without it in their
environment. Actors that need a secret ask the agent over a Unix socket in a private folder
(``run/vault.sock``, 0600 in a 0700 folder of ours): one JSON line ``{"get": NAME}`` answered
by ``{"value": ...}`` or ``{"error": CODE, "message": ...}``. The agent checks the peer's uid
(``SO_PEERCRED``); the plugin and tool sandboxes do not see ``MOLTBOT_HOME``, so they cannot
reach the socket. The asking process audits the read, as with a vault it opened itself.

Run as ``python -m moltbot.security.vault_agent --home H --tag T --watch PID``: the passphrase
is the first line of stdin; ``ready`` on stdout once it serves; it ends (removing its socket)
on SIGTERM or when process ``PID`` (the Ray head) is gone. ``T`` names its head in the command
line, so ``moltbot down`` finds and stops it with the head's processes.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import signal
import socket
import socketserver
import struct
import sys
import threading
from pathlib import Path
from typing import Any

from moltbot import paths
from moltbot.errors import MoltbotError, SecretNotFound, VaultError
from moltbot.security.fsmodes import owned_private_dir, short_private_base
from moltbot.security.vault import ReadHook, Vault, require_name

SOCKET_NAME = "vault.sock"
SOCKET_MAX = 100  # bytes: an AF_UNIX path holds 107
MAX_REQUEST = 4096
TIMEOUT_S = 10.0


def socket_path(home: Path) -> Path:
    """The agent's socket: ``run/vault.sock``, or a short one in ``/tmp/moltbot-<uid>`` (0700,
    ours) when the home is too deep for a Unix socket path."""
    here = paths.run_dir(home) / SOCKET_NAME
    if len(str(here)) <= SOCKET_MAX:
        return here
    tag = hashlib.sha256(str(home.resolve()).encode()).hexdigest()[:12]
    return short_private_base() / f"vault-{tag}.sock"


# --- the client: what actors use instead of opening the vault ----------------------------------
class AgentVault:
    """``get`` like ``Vault.get``, answered by the agent; ``on_read`` hears each name read."""

    def __init__(self, path: Path, *, on_read: ReadHook | None = None) -> None:
        self._path = path
        self._on_read = on_read

    def get(self, name: str) -> str:
        name = require_name(name)
        reply = self._ask({"get": name})
        if "value" not in reply:
            message = str(reply.get("message", "the vault agent refused"))
            if reply.get("error") == "secret_not_found":
                raise SecretNotFound(message, hint=f"moltbot secrets set {name}")
            raise VaultError(message, hint="restart moltbot (`moltbot down`, `moltbot up`)")
        if self._on_read is not None:  # as Vault.get: a failing hook refuses the value
            self._on_read(name)
        return str(reply["value"])

    def _ask(self, request: dict[str, str]) -> dict[str, Any]:
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(TIMEOUT_S)
                s.connect(str(self._path))
                s.sendall(json.dumps(request).encode() + b"\n")
                data = s.makefile("rb").readline(MAX_REQUEST * 16)
        except OSError:
            raise VaultError(
                "the vault agent does not answer",
                hint="restart moltbot (`moltbot down`, then `moltbot up` with the passphrase)",
            ) from None
        try:
            reply = json.loads(data)
        except ValueError:
            reply = None
        if not isinstance(reply, dict):
            raise VaultError("the vault agent answered nonsense", hint="restart moltbot")
        return reply

    def __repr__(self) -> str:
        return f"AgentVault(socket={str(self._path)!r})"


# --- the agent ---------------------------------------------------------------------------------
def peer_uid(conn: socket.socket) -> int:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    return int(struct.unpack("3i", creds)[1])


def answer(vault: Vault, line: bytes) -> dict[str, str]:
    """The reply to one request line (pure but for the vault read)."""
    try:
        request = json.loads(line)
    except ValueError:
        request = None
    if not isinstance(request, dict) or not isinstance(request.get("get"), str):
        return {"error": "bad_request", "message": 'expected {"get": NAME}'}
    try:
        return {"value": vault.get(request["get"])}
    except MoltbotError as exc:
        return {"error": exc.code, "message": exc.user_message}


class _Handler(socketserver.StreamRequestHandler):
    timeout = TIMEOUT_S

    def handle(self) -> None:
        server: AgentServer = self.server  # type: ignore[assignment]
        # The request is read before any answer, a refusal too: answering first raced the
        # client's send (a broken pipe there) and closing on unread data resets the peer.
        line = self.rfile.readline(MAX_REQUEST)
        if peer_uid(self.connection) != os.geteuid():
            self.wfile.write(b'{"error": "refused", "message": "not the owner of this vault"}\n')
            return
        self.wfile.write(json.dumps(answer(server.vault, line)).encode() + b"\n")


class AgentServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True

    def __init__(self, path: Path, vault: Vault) -> None:
        self.vault = vault
        owned_private_dir(path.parent)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()  # a socket left by an agent that was killed
        old = os.umask(0o177)
        try:
            super().__init__(str(path), _Handler)
        finally:
            os.umask(old)


def _watch(pid: int, server: AgentServer) -> None:
    """End the agent when the head it serves is gone (killed without ``moltbot down``)."""
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            server.shutdown()
            return
        except PermissionError:
            pass
        threading.Event().wait(1.0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="moltbot-vault-agent")
    p.add_argument("--home", required=True)
    p.add_argument("--tag", default="", help="the head's temp dir (names this agent's head)")
    p.add_argument("--watch", type=int, default=0, help="end when this process is gone")
    args = p.parse_args(argv)
    home = Path(args.home)
    passphrase = sys.stdin.readline().rstrip("\n")
    sys.stdin.close()
    try:
        vault = Vault.open(home, passphrase)
    except MoltbotError as exc:
        print(json.dumps({"error": exc.code, "message": exc.user_message, "fix": exc.hint}))
        return 2
    del passphrase
    path = socket_path(home)
    server = AgentServer(path, vault)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    if args.watch:
        threading.Thread(target=_watch, args=(args.watch, server), daemon=True).start()
    print("ready", flush=True)
    try:
        server.serve_forever(poll_interval=0.1)  # a stop is noticed within 0.1 s
    finally:
        server.server_close()
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
