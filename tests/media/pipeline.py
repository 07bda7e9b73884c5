"""A channel account's whole message path without Ray, for the media tests: a real adapter
(against its platform's fake) driven by the real ChannelService with the real MediaIntake, and
the real AgentService answering through the real Anthropic SDK against the fake Anthropic API."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec

from moltbot.agent.agent_service import AgentPorts, AgentService
from moltbot.agent.providers.anthropic import AnthropicProvider
from moltbot.agent.service import approval_book, tool_registry
from moltbot.agent.transcript_cache import CachedTranscripts
from moltbot.channels.base import ChannelAdapter
from moltbot.channels.media_step import send_file
from moltbot.channels.service import ChannelService, Ports, ServiceOptions
from moltbot.config.schema import Config
from moltbot.media.ingest import MediaIntake, Transcribes
from moltbot.media.send_tool import Deliver
from moltbot.messages import InboundMessage, OutboundFile
from moltbot.security.access import AccessPolicy, Pairing
from moltbot.store.transcripts import AsyncTranscripts, TranscriptStore
from moltbot.tools import ToolRegistry
from tests.fakes.anthropic_api import FakeAnthropicAPI

OPTS = ServiceOptions(workers=2, queue_size=4, retry_base_s=0.01, retry_cap_s=0.05)


class MemoryJournal:
    def __init__(self) -> None:
        self.journal: dict[str, InboundMessage] = {}
        self.done: set[str] = set()

    async def accept_many(self, msgs: list[InboundMessage]) -> list[bool]:
        fresh = [m.id not in self.journal for m in msgs]
        self.journal.update({m.id: m for m in msgs if m.id not in self.journal})
        return fresh

    async def mark_done_many(self, ids: list[str]) -> list[bool]:
        fresh = [i not in self.done for i in ids]
        self.done.update(ids)
        return fresh

    async def pending(self) -> list[InboundMessage]:
        return [m for i, m in self.journal.items() if i not in self.done]


def config(workspace: Path, **media: Any) -> Config:
    return msgspec.convert({"tools": {"workspace": str(workspace)}, "media": media}, type=Config)


def agent(
    cfg: Config, api: FakeAnthropicAPI, sessions: Path, deliver: Deliver | None = None
) -> AgentService:
    registry = tool_registry(cfg, approval_book(cfg))

    async def tools() -> ToolRegistry:
        return registry

    transcripts = CachedTranscripts(AsyncTranscripts(TranscriptStore(sessions)))
    provider = AnthropicProvider(api.api_key, ["claude-test"], base_url=api.base_url)
    ports = AgentPorts(transcripts=transcripts, tools=tools, deliver_file=deliver)
    return AgentService(cfg, provider, ports)


async def _ignore(data: bytes) -> None:
    return None


@asynccontextmanager
async def serving(
    adapter: ChannelAdapter,
    cfg: Config,
    api: FakeAnthropicAPI,
    tmp_path: Path,
    transcriber: Transcribes | None = None,
) -> AsyncIterator[ChannelService]:
    journal = MemoryJournal()
    services: list[ChannelService] = []

    async def deliver(out: OutboundFile) -> object:  # what the agent actor routes by name
        return await send_file(services[0].adapter, out)

    service_agent = agent(cfg, api, tmp_path / "sessions", deliver)
    ports = Ports(
        accept_many=journal.accept_many,
        mark_done_many=journal.mark_done_many,
        pending=journal.pending,
        answer=service_agent.answer,
        save_pairing=_ignore,
    )
    intake = MediaIntake(cfg.media, cfg.tools.workspace_path(), transcriber)
    service = ChannelService(
        adapter, Pairing(AccessPolicy(dm_policy="open")), ports, OPTS, media=intake
    )
    services.append(service)
    try:
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(service.run())
            yield service
            task.cancel()
    finally:
        await adapter.close()


async def until(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.01)


def user_blocks(api: FakeAnthropicAPI) -> list[dict[str, Any]]:
    """The blocks of the last user message of the last request the fake Anthropic got."""
    last = api.requests[-1].messages[-1]
    content = last["content"]
    return content if isinstance(content, list) else [{"type": "text", "text": content}]


def note_text(api: FakeAnthropicAPI) -> str:
    return "\n".join(b.get("text", "") for b in user_blocks(api) if b.get("type") == "text")
