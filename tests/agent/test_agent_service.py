"""``AgentService`` without Ray: real transcripts on disk (``TranscriptStore``), the offline
provider, the built-in tool registry; ports for what the actor wires to other actors."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import msgspec

from moltbot.agent.agent_service import NOT_OWNER, AgentPorts, AgentService
from moltbot.agent.service import approval_book, build_provider, tool_registry
from moltbot.agent.transcript_cache import CachedTranscripts
from moltbot.config.schema import Config
from moltbot.messages import ChatFinal, InboundMessage
from moltbot.store.transcripts import AsyncTranscripts, TranscriptStore
from moltbot.tools import ToolRegistry

OWNER = "42"


def service(
    tmp_path: Path,
    resolved: list[tuple[str, bool, str]],
    audit: list[tuple[str, dict[str, Any]]],
    turns: list[float],
) -> AgentService:
    cfg = msgspec.convert(
        {
            "agent": {"provider": "offline"},
            "tools": {"workspace": str(tmp_path)},
            "channels": {"telegram": [{"account": "main", "token": "env:X", "owners": [OWNER]}]},
        },
        type=Config,
    )
    registry = tool_registry(cfg, approval_book(cfg))

    async def tools() -> ToolRegistry:
        return registry

    async def resolve(aid: str, approve: bool, who: str) -> dict[str, Any] | None:
        resolved.append((aid, approve, who))
        return {"id": aid, "tool": "bash", "summary": "ls"} if aid == "abcd1234" else None

    transcripts = CachedTranscripts(AsyncTranscripts(TranscriptStore(tmp_path / "sessions")))
    ports = AgentPorts(
        transcripts=transcripts,
        tools=tools,
        resolve_approval=resolve,
        audit=lambda kind, fields: audit.append((kind, fields)),
        on_turn=lambda seconds, usage: turns.append(seconds),
    )
    return AgentService(cfg, build_provider(cfg, vault_get=lambda n: ""), ports, name="a0")


def msg(text: str, mid: str, sender: str = "7") -> InboundMessage:
    return InboundMessage(
        id=f"telegram:main:{sender}:{mid}",
        channel="telegram",
        account="main",
        chat_id=sender,
        sender_id=sender,
        text=text,
    )


async def test_answers_once_per_message_commands_and_owner_only_approvals(tmp_path: Path) -> None:
    resolved: list[tuple[str, bool, str]] = []
    audit: list[tuple[str, dict[str, Any]]] = []
    turns: list[float] = []
    agent = service(tmp_path, resolved, audit, turns)
    first = await agent.answer(msg("hello", "1"))
    assert first == "[offline] you said: hello"
    assert await agent.answer(msg("hello", "1")) == first  # the same message: no second turn
    assert len(turns) == 1 and agent.figures()["turns"] == 1

    status = await agent.answer(msg("/status", "2"))
    assert "a0" in status and "offline" in status
    assert await agent.answer(msg("/approve abcd1234", "3")) == NOT_OWNER  # not an owner
    assert resolved == [] and audit[-1][1]["action"] == "refused"
    owner = await agent.answer(msg("/approve abcd1234", "4", sender=OWNER))
    assert resolved == [("abcd1234", True, f"owner:telegram:main:{OWNER}")]
    assert "abcd1234" in owner and audit[-1][1]["action"] == "resolved"
    missing = await agent.answer(msg("/deny ffff0000", "5", sender=OWNER))
    assert "no pending approval with id ffff0000" in missing


async def test_status_is_answered_while_the_session_runs_a_turn(tmp_path: Path) -> None:
    agent = service(tmp_path, [], [], [])
    session = msg("x", "1").session_key
    async with agent.gate.hold(session):  # a turn of this session is running
        events = [e async for e in agent.turn(session, "/status", "", "telegram:main:7")]
        assert isinstance(events[-1], ChatFinal) and "a0" in events[-1].text
        reset = asyncio.ensure_future(agent.reset(session))  # waits for the running turn
        await asyncio.sleep(0.05)
        assert not reset.done()
    assert await reset is False  # nothing recorded yet in that session
