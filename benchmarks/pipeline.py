"""The baseline: moltbot's message path in ONE asyncio process, without Ray.

The same channel adapters and ``ChannelService`` (access check → journal with fsync → agent →
send → mark done), the same ``InboundJournal`` and ``TranscriptStore`` (file I/O in threads,
fsynced, as in the store actor) and the same ``AgentService`` as ``actors.agent.AgentActor``
(commands, ``SessionGate``, idempotent turns, the configured provider). Only the
Ray hops (channel → store, channel → agent → store) are plain awaits here. ``--gateway`` also
serves the gateway's WebSocket/web page with a backend that runs turns in this process.

``python -m benchmarks.pipeline --config PATH [--gateway]``: prints READY when every adapter
is connected (and the gateway listens); runs until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec

from moltbot import paths
from moltbot.agent.agent_service import AgentPorts, AgentService
from moltbot.agent.service import approval_book, build_provider, tool_registry
from moltbot.agent.transcript_cache import CachedTranscripts
from moltbot.channels.accounts import find_account, load_pairing, make_adapter, policy_for
from moltbot.channels.service import ChannelService, Ports, ServiceOptions
from moltbot.config.refs import resolve_secret
from moltbot.config.schema import Config
from moltbot.errors import Unavailable
from moltbot.gateway.backend import BaseBackend
from moltbot.messages import ChatEvent, InboundMessage
from moltbot.store import InboundJournal
from moltbot.store.transcripts import AsyncTranscripts, TranscriptStore
from moltbot.supervision.tree import channel_ids
from moltbot.tools import ToolRegistry


def _no_vault(name: str) -> str:
    raise Unavailable(f"the benchmark baseline has no vault (asked for {name})")


def in_proc_agent(cfg: Config, home: Path) -> AgentService:
    """``AgentService`` as ``actors.agent.AgentActor`` runs it, with in-process transcripts and
    the tools' registry in this process (no sandbox, plugin or approval round trips)."""
    registry = tool_registry(cfg, approval_book(cfg))

    async def tools() -> ToolRegistry:
        return registry

    transcripts = CachedTranscripts(AsyncTranscripts(TranscriptStore(paths.sessions_dir(home))))
    ports = AgentPorts(transcripts=transcripts, tools=tools)
    return AgentService(cfg, build_provider(cfg, vault_get=_no_vault), ports, name="baseline")


class InProcBackend(BaseBackend):
    """The gateway backend of the baseline: chat turns run in this process."""

    def __init__(self, agent: AgentService) -> None:
        self.agent = agent

    async def ready(self) -> bool:
        return True

    async def health(self) -> dict[str, Any]:
        return {"ok": True}

    async def chat_send(self, session: str, text: str) -> AsyncIterator[ChatEvent]:
        key = session if ":" in session else f"web:gateway:dm:{session}"
        async with contextlib.aclosing(self.agent.turn(key, text, "")) as events:
            async for event in events:
                yield event

    async def events(self) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        await asyncio.Event().wait()
        if False:  # pragma: no cover - an async generator that never yields
            yield ("", {})


async def amain(cfg: Config, home: Path, gateway: bool) -> None:
    agent = in_proc_agent(cfg, home)
    journal = await asyncio.to_thread(InboundJournal, paths.state_dir(home))

    def secret(ref: str, at: str) -> str:
        return resolve_secret(ref, _no_vault, at=at)

    services: list[ChannelService] = []
    for _cid, kind, acct in channel_ids(cfg):
        index, acct = find_account(getattr(cfg.channels, kind), acct.account)
        adapter = make_adapter(kind, index, acct, secret)
        await adapter.connect()

        async def pending(
            ch: str = adapter.channel, ac: str = adapter.account
        ) -> list[InboundMessage]:
            msgs = await asyncio.to_thread(journal.pending)
            return [m for m in msgs if m.channel == ch and m.account == ac]

        async def noop(_data: bytes) -> None:
            return None

        async def accept_many(msgs: list[InboundMessage]) -> list[bool]:
            return await asyncio.to_thread(journal.accept_many, msgs)

        async def mark_done_many(ids: list[str]) -> list[bool]:
            return await asyncio.to_thread(journal.mark_done_many, ids)

        ports = Ports(  # the service group-commits these, as it does on Ray
            accept_many=accept_many,
            mark_done_many=mark_done_many,
            pending=pending,
            answer=agent.answer,
            save_pairing=noop,
        )
        services.append(
            ChannelService(
                adapter,
                load_pairing(None, policy_for(acct)),
                ports,
                ServiceOptions(stuck_after_s=acct.stuck_after_s),
            )
        )
    server = None
    if gateway:
        from moltbot.gateway.from_config import settings_from_config
        from moltbot.gateway.server import GatewayServer

        server = GatewayServer(settings_from_config(cfg, _no_vault), InProcBackend(agent))
        await server.start()

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print("READY", flush=True)
    try:
        async with asyncio.TaskGroup() as tg:
            tasks = [tg.create_task(s.run()) for s in services]
            if server is not None:
                tasks.append(tg.create_task(server.serve_forever()))
            await stop.wait()
            for t in tasks:
                t.cancel()
    except* asyncio.CancelledError:
        pass
    finally:
        for s in services:
            with contextlib.suppress(Exception):
                await s.adapter.close()
        if server is not None:
            with contextlib.suppress(Exception):
                await server.stop()
        close = getattr(agent.provider, "aclose", None)
        if close is not None:
            with contextlib.suppress(Exception):
                await close()


def main() -> None:
    parser = argparse.ArgumentParser(description="moltbot's message path without Ray")
    parser.add_argument("--config", required=True)
    parser.add_argument("--gateway", action="store_true")
    args = parser.parse_args()
    cfg = msgspec.convert(msgspec.json.decode(Path(args.config).read_bytes()), type=Config)
    asyncio.run(amain(cfg, paths.home(), args.gateway))
    os._exit(0)  # do not wait for idle to_thread workers


if __name__ == "__main__":
    main()
