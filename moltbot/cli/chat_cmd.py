"""``moltbot chat [MESSAGE]``: talk to the assistant through the gateway's WebSocket.

With MESSAGE it prints the streamed reply and exits; without, it is a REPL. The client itself
(reconnecting, resending) is ``moltbot.gateway.client.GatewayClient``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from typing import Any

from moltbot.gateway.client import DEFAULT_URL, GatewayClient

_ENV_VAR = "MOLTBOT_GATEWAY_TOKEN"


def _token() -> str:
    token = os.environ.get(_ENV_VAR)
    if token:
        return token
    from moltbot.cli.trail import reads_by
    from moltbot.security.vault import Vault

    return Vault.open(on_read=reads_by("cli:chat")).get("gateway_token")


def _print_delta(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _note(text: str) -> None:
    print(f"\n[{text}]", file=sys.stderr)


async def _one_shot(client: GatewayClient, message: str) -> int:
    streamed: list[str] = []

    def on_delta(text: str) -> None:
        streamed.append(text)
        _print_delta(text)

    reply = await client.ask(message, on_delta)
    if not streamed:
        _print_delta(reply)
    print()
    return 0


class _StdinLines:
    """Lines from stdin without a blocking thread (so Ctrl-C never waits for Enter)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._buf = b""
        self._eof = False

    async def _readable(self) -> None:
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()

        def wake() -> None:
            if not ready.done():
                ready.set_result(None)

        try:
            loop.add_reader(self._fd, wake)
        except (PermissionError, ValueError, OSError):  # a regular file: always readable
            return
        try:
            await ready
        finally:
            loop.remove_reader(self._fd)

    async def readline(self) -> str | None:
        """The next line without its newline; None at end of input."""
        while b"\n" not in self._buf and not self._eof:
            await self._readable()
            chunk = os.read(self._fd, 65536)
            self._eof = not chunk
            self._buf += chunk
        if not self._buf:
            return None
        line, _, self._buf = self._buf.partition(b"\n")
        return line.decode("utf-8", errors="replace")


async def _repl(client: GatewayClient) -> int:
    print(f"moltbot chat on {client.url} (session {client.session}); Ctrl-D to quit")
    lines = _StdinLines(sys.stdin.fileno())
    while True:
        print("you> ", end="", flush=True)
        line = await lines.readline()
        if line is None:
            print()
            return 0
        if not line.strip():
            continue
        if line.strip() in ("/quit", "/exit"):
            return 0
        await _one_shot(client, line)


async def _run(args: argparse.Namespace) -> int:
    token = _token()
    async with GatewayClient(args.url, token, session=args.session, on_retry=_note) as client:
        if args.message:
            return await _one_shot(client, args.message)
        return await _repl(client)


def _cmd(args: argparse.Namespace) -> int:
    return asyncio.run(_run(args))


def register(sub: Any) -> None:
    p = sub.add_parser("chat", help="chat with the assistant through the gateway")
    p.add_argument("message", nargs="?", help="send one message and exit (default: a REPL)")
    p.add_argument("--url", default=DEFAULT_URL, help=f"gateway URL (default {DEFAULT_URL})")
    p.add_argument("--session", default="main", help="session name (default: main)")
    p.set_defaults(func=_cmd)
