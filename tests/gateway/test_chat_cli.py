"""``moltbot chat``: one-shot output, clear refusals, and reconnect + resend across a restart."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

import pytest

from moltbot import paths
from moltbot.cli import chat_cmd
from moltbot.errors import Unauthorized, Unavailable
from moltbot.gateway.client import Backoff, GatewayClient
from moltbot.gateway.server import GatewayServer
from moltbot.security.audit import tail, verify
from moltbot.security.vault import PASSPHRASE_ENV, Vault

from .conftest import TOKEN, MakeGateway
from .echo_backend import EchoBackend

FAST = Backoff(initial=0.05, maximum=0.2, give_up_after=10.0)


def run_cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="moltbot")
    chat_cmd.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return int(args.func(args))


async def test_one_shot_prints_streamed_reply(
    gateway: GatewayServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MOLTBOT_GATEWAY_TOKEN", TOKEN)
    code = await asyncio.to_thread(run_cli, ["chat", "hi there", "--url", gateway.ws_url])
    assert code == 0
    assert capsys.readouterr().out == "echo: hi there\n"


async def test_token_from_the_vault_is_recorded_as_a_secret_read(
    gateway: GatewayServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("MOLTBOT_HOME", str(home))
    monkeypatch.delenv("MOLTBOT_GATEWAY_TOKEN", raising=False)
    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
    Vault.create(home).set("gateway_token", TOKEN)
    code = await asyncio.to_thread(run_cli, ["chat", "from the vault", "--url", gateway.ws_url])
    assert code == 0 and capsys.readouterr().out == "echo: from the vault\n"
    audit = paths.audit_file(home)
    [rec] = tail(audit, 10)
    assert rec["kind"] == "secret_read"
    assert rec["fields"] == {"secret_name": "gateway_token", "reader": "cli:chat"}
    assert TOKEN not in audit.read_text() and verify(audit).ok


async def test_wrong_token_is_a_clear_error(gateway: GatewayServer) -> None:
    async with GatewayClient(gateway.ws_url, "wrong", backoff=FAST) as client:
        with pytest.raises(Unauthorized):
            await client.ask("hi")


async def test_gives_up_with_unavailable_when_nobody_answers() -> None:
    backoff = Backoff(initial=0.05, maximum=0.1, give_up_after=0.3)
    async with GatewayClient("ws://127.0.0.1:9", TOKEN, backoff=backoff) as client:
        with pytest.raises(Unavailable):
            await client.ask("hi")


async def test_reconnects_and_resends_across_a_gateway_restart(make_gateway: MakeGateway) -> None:
    first_backend = EchoBackend()
    first_backend.hang_first_chat = True  # the turn is stuck when the gateway goes away
    first = await make_gateway(first_backend)
    port = first.port
    notes: list[str] = []
    deltas: list[str] = []
    client = GatewayClient(first.ws_url, TOKEN, session="cli", backoff=FAST, on_retry=notes.append)
    async with client, asyncio.TaskGroup() as tg:
        ask = tg.create_task(client.ask("survive this", deltas.append))
        while first_backend.chat_calls == 0:
            await asyncio.sleep(0.01)
        await first.stop()  # the gateway actor dies mid-turn ...
        await asyncio.sleep(0.3)  # ... stays away for a few backoff rounds ...
        assert not ask.done()
        second_backend = EchoBackend()
        second = await make_gateway(second_backend, port=port)  # ... and comes back
        assert second.port == port
        reply = await asyncio.wait_for(ask, 10)
    assert reply == "echo: survive this"
    assert second_backend.chat_calls == 1  # the pending message was sent again
    assert client.reconnects >= 1 and notes
    assert "".join(deltas).endswith("echo: survive this")


async def test_repl_streams_each_line(gateway: GatewayServer) -> None:
    import os
    import sys

    env = {**os.environ, "MOLTBOT_GATEWAY_TOKEN": TOKEN}
    code = (
        "import sys; from tests.gateway.test_chat_cli import run_cli; "
        "sys.exit(run_cli(sys.argv[1:]))"
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        code,
        "chat",
        "--url",
        gateway.ws_url,
        "--session",
        "repl",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    out, err = await asyncio.wait_for(proc.communicate(b"first line\n\nsecond line\n"), 20)
    assert proc.returncode == 0, err.decode()
    text = out.decode()
    assert "echo: first line\n" in text and "echo: second line\n" in text
    assert text.index("echo: first line") < text.index("echo: second line")
