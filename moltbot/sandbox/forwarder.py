"""Runs inside a network-granted bash sandbox, before the command (stdlib only, no moltbot).

``python3 -I -S forwarder.py SOCKET PORT -- COMMAND...``: listens on ``127.0.0.1:PORT`` in the
sandbox's own network namespace and relays every connection to the Unix socket ``SOCKET``,
where moltbot's egress proxy decides; then runs COMMAND (stdin/stdout/stderr inherited) and
exits with its status. Nothing here decides anything: it is a pipe.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

FILE_NAME = "forwarder.py"
_CHUNK = 65536


def source() -> str:
    """This file's text (copied next to the socket, where the sandbox user can read it)."""
    return Path(__file__).read_text()


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while chunk := src.recv(_CHUNK):
            dst.sendall(chunk)
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass


def _relay(client: socket.socket, path: str) -> None:
    upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        upstream.connect(path)
    except OSError:
        client.close()
        upstream.close()
        return
    back = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
    back.start()
    _pump(client, upstream)
    back.join()
    client.close()
    upstream.close()


def _serve(listener: socket.socket, path: str) -> None:
    while True:
        client, _ = listener.accept()
        threading.Thread(target=_relay, args=(client, path), daemon=True).start()


def main(argv: list[str]) -> int:
    path, port, sep, command = argv[1], int(argv[2]), argv[3], argv[4:]
    if sep != "--" or not command:
        sys.stderr.write("usage: forwarder.py SOCKET PORT -- COMMAND...\n")
        return 125
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(64)
    threading.Thread(target=_serve, args=(listener, path), daemon=True).start()
    proc = subprocess.Popen(command, close_fds=True)
    code = proc.wait()
    return 128 - code if code < 0 else code


if __name__ == "__main__":
    os._exit(main(sys.argv))
