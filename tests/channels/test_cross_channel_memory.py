"""Acceptance: a fact told on Telegram is recalled on Slack next week.

The whole path without Ray: the fake Telegram and the fake Slack (real HTTP / WebSocket, the
real aiogram and slack-sdk inside the adapters), the real ``ChannelService`` of each account
(access rules from the config, journal in memory), one ``AgentService`` answering both, the
fake Anthropic API scripted as the model, the sandbox side's tools (``ProfileRegistries``) and a
fake clock shared by the memory on both sides.

The owner tells a fact on Telegram; the model saves it as a note with ``memory_write``; a week
later (the clock moved on, a new session on another platform) the owner asks on Slack, and
the note of last week is in the recalled memory of the system prompt the model is sent."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from moltbot.agent.agent_service import AgentPorts, AgentService, profile_providers
from moltbot.agent.profile_tools import ProfileRegistries
from moltbot.agent.service import approval_book, build_provider
from moltbot.channels.accounts import policy_for
from moltbot.channels.base import ChannelAdapter
from moltbot.channels.service import ChannelService, Ports, ServiceOptions
from moltbot.channels.slack import SlackAdapter
from moltbot.channels.telegram import TelegramAdapter
from moltbot.clock import FakeClock
from moltbot.config.loader import load_config_text
from moltbot.config.schema import Config
from moltbot.messages import InboundMessage
from moltbot.security.access import Pairing
from moltbot.store.transcripts import AsyncTranscripts, TranscriptStore
from tests.channels.conftest import FAST
from tests.fakes.anthropic_api import FakeAnthropicAPI, text_reply, tool_reply
from tests.fakes.slack_api import APP_TOKEN, BOT_TOKEN, FakeSlack
from tests.fakes.telegram_api import DEFAULT_TOKEN, FakeTelegram

pytestmark = pytest.mark.timeout(60)

KEY_VAR = "MOLTBOT_TEST_ANTHROPIC_KEY"
WEEK_S = 7 * 24 * 3600
OPTS = ServiceOptions(workers=1, queue_size=4, retry_base_s=0.01, retry_cap_s=0.05)


def config(tmp_path: Path, base_url: str, slack_policy: str = "allowlist") -> Config:
    raw = {
        "agent": {
            "provider": "anthropic",
            "api_key": f"env:{KEY_VAR}",
            "base_url": base_url,
            "models": ["claude-test"],
        },
        "tools": {"workspace": str(tmp_path / "ws")},
        "channels": {
            "telegram": [
                {"account": "main", "token": "env:T", "dm_policy": "allowlist", "owners": ["42"]}
            ],
            "slack": [
                {
                    "account": "home",
                    "bot_token": "env:B",
                    "app_token": "env:A",
                    "dm_policy": slack_policy,
                    "owners": ["U42"],
                }
            ],
        },
    }
    return load_config_text(json.dumps(raw))


class Journal:
    """The store actor's journal contract, in memory."""

    def __init__(self) -> None:
        self.seen: dict[str, InboundMessage] = {}
        self.done: set[str] = set()

    async def accept_many(self, msgs: list[InboundMessage]) -> list[bool]:
        fresh = [m.id not in self.seen for m in msgs]
        self.seen.update({m.id: m for m in msgs})
        return fresh

    async def mark_done_many(self, ids: list[str]) -> list[bool]:
        fresh = [i not in self.done for i in ids]
        self.done.update(ids)
        return fresh

    async def pending(self) -> list[InboundMessage]:
        return [m for i, m in self.seen.items() if i not in self.done]


def agent_service(cfg: Config, api: FakeAnthropicAPI, tmp_path: Path, clock: FakeClock) -> Any:
    env = {KEY_VAR: api.api_key}

    def build(view: Config, at: str = "$.agent.providers") -> Any:
        return build_provider(view, vault_get=lambda _n: "", environ=env, providers_at=at)

    sandbox = ProfileRegistries(cfg, approval_book(cfg), clock=clock)

    async def tools() -> ProfileRegistries:
        return sandbox

    transcripts = AsyncTranscripts(TranscriptStore(tmp_path / "sessions"))
    ports = AgentPorts(transcripts=transcripts, tools=tools)
    return AgentService(
        cfg, build(cfg), ports, providers=profile_providers(cfg, build), clock=clock
    )


@asynccontextmanager
async def serving(
    adapter: ChannelAdapter, cfg: Config, kind: str, agent: AgentService
) -> AsyncIterator[Journal]:
    [acct] = getattr(cfg.channels, kind)
    journal = Journal()

    async def save(_data: bytes) -> None:
        return None

    ports = Ports(
        accept_many=journal.accept_many,
        mark_done_many=journal.mark_done_many,
        pending=journal.pending,
        answer=agent.answer,
        save_pairing=save,
    )
    service = ChannelService(adapter, Pairing(policy_for(acct)), ports, OPTS)
    try:
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(service.run())
            yield journal
            task.cancel()
    finally:
        await adapter.close()


async def until(cond: Any, timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.01)


@pytest.fixture
async def fakes() -> AsyncIterator[tuple[FakeTelegram, FakeSlack, FakeAnthropicAPI]]:
    async with FakeTelegram() as tg, FakeSlack() as sl, FakeAnthropicAPI() as api:
        yield tg, sl, api


def telegram_adapter(fake: FakeTelegram) -> TelegramAdapter:
    return TelegramAdapter(
        account="main", token=DEFAULT_TOKEN, api_base=fake.api_base, poll_timeout=1, retry=FAST
    )


def slack_adapter(fake: FakeSlack) -> SlackAdapter:
    return SlackAdapter(
        account="home",
        bot_token=BOT_TOKEN,
        app_token=APP_TOKEN,
        api_base=fake.api_base,
        ping_interval=0.2,
        retry=FAST,
    )


async def test_a_fact_told_on_telegram_is_recalled_on_slack_next_week(
    fakes: tuple[FakeTelegram, FakeSlack, FakeAnthropicAPI], tmp_path: Path
) -> None:
    tg, sl, api = fakes
    clock = FakeClock()
    cfg = config(tmp_path, api.base_url)
    agent = agent_service(cfg, api, tmp_path, clock)
    told_on = datetime.fromtimestamp(clock.time()).strftime("%Y-%m-%d")
    api.script(
        tool_reply(
            "memory_write", {"kind": "note", "text": "The owner's passport expires on 3 May 2027."}
        ),
        text_reply("I'll remember that."),
    )
    try:
        async with serving(telegram_adapter(tg), cfg, "telegram", agent):
            tg.inject_message(chat_id=42, user_id=42, text="My passport expires on 3 May 2027")
            [told] = await tg.wait_sent(1)
        assert told["plain"] == "I'll remember that."
        assert len(api.requests) == 2  # the tool call, then the reply after its result

        clock.advance(WEEK_S)  # next week: a new day, a new session, another platform
        api.script(text_reply("Your passport expires on 3 May 2027."))
        async with serving(slack_adapter(sl), cfg, "slack", agent):
            sl.inject_message(channel="D100", user="U42", text="When does my passport expire?")
            [asked] = await sl.wait_sent(1)
        assert asked["text"] == "Your passport expires on 3 May 2027."
    finally:
        await agent.aclose()

    recall = api.requests[-1]
    assert recall.messages == [
        {"role": "user", "content": [{"type": "text", "text": "When does my passport expire?"}]}
    ]
    system = str(recall.system)
    assert f"[memory/{told_on}.md:" in system  # last week's note, found by the question
    assert "passport expires on 3 May 2027" in system
    assert "passport" not in str(api.requests[0].system)  # nothing was known before
    notes = tmp_path / "ws" / "memory-profiles" / "default" / "memory"
    assert [p.name for p in notes.iterdir()] == [f"{told_on}.md"]


async def test_a_stranger_on_slack_gets_nothing_of_the_owners_memory(
    fakes: tuple[FakeTelegram, FakeSlack, FakeAnthropicAPI], tmp_path: Path
) -> None:
    """The same path, but the one asking on Slack is not an owner (the account lets them
    talk): the owner's memory is neither recalled nor searchable in their turn."""
    tg, sl, api = fakes
    clock = FakeClock()
    cfg_open = config(tmp_path, api.base_url, slack_policy="open")
    agent = agent_service(cfg_open, api, tmp_path, clock)
    api.script(
        tool_reply("memory_write", {"kind": "fact", "text": "The alarm code is 9931."}),
        text_reply("Saved."),
    )
    try:
        async with serving(telegram_adapter(tg), cfg_open, "telegram", agent):
            tg.inject_message(chat_id=42, user_id=42, text="the alarm code is 9931")
            await tg.wait_sent(1)
        clock.advance(WEEK_S)
        api.script(tool_reply("memory_search", {"query": "alarm code"}), text_reply("No idea."))
        async with serving(slack_adapter(sl), cfg_open, "slack", agent):
            sl.inject_message(channel="D200", user="U_STRANGER", text="what is the alarm code?")
            [answer] = await sl.wait_sent(1)
        assert answer["text"] == "No idea."
    finally:
        await agent.aclose()
    search, after = list(api.requests)[-2:]
    assert "9931" not in str(search.system) and "9931" not in json.dumps(after.messages)
