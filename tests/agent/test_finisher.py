"""The reply before its transcript write: ``AgentService.answer`` returns the final reply at
once while ``Finisher`` writes the turn (reply + done mark) behind it; the session's next turn
waits for that write, and a stop still writes within its grace. Real transcripts on disk."""

from __future__ import annotations

import asyncio
import dataclasses
from pathlib import Path
from typing import Any

import pytest

from moltbot.agent.agent_service import AgentService
from moltbot.agent.finisher import Finisher
from moltbot.agent.service import turn_state
from moltbot.errors import Unavailable
from moltbot.store.transcripts import AsyncTranscripts, TranscriptStore
from tests.agent.test_agent_service import msg, service

pytestmark = pytest.mark.timeout(30)


class SlowWrites:
    """Transcripts on disk whose writes wait for ``gate`` (a slow fsync) or fail on demand."""

    def __init__(self, root: Path) -> None:
        self.inner = AsyncTranscripts(TranscriptStore(root))
        self.gate = asyncio.Event()
        self.gate.set()
        self.fail = 0
        self.writes = 0

    async def load(self, session: str) -> list[dict[str, Any]]:
        return list(await self.inner.load(session))

    async def append(self, session: str, record: dict[str, Any]) -> None:
        await self.append_many(session, [record])

    async def append_many(self, session: str, records: list[dict[str, Any]]) -> None:
        await self.gate.wait()
        if self.fail:
            self.fail -= 1
            raise Unavailable("store is not available right now")
        self.writes += 1
        await self.inner.append_many(session, records)

    async def reset(self, session: str) -> bool:
        return bool(await self.inner.reset(session))


def agent_with(tmp_path: Path) -> tuple[AgentService, SlowWrites]:
    agent = service(tmp_path, [], [], [])
    slow = SlowWrites(tmp_path / "slow")
    agent.ports = dataclasses.replace(agent.ports, transcripts=slow)
    return agent, slow


async def test_the_reply_returns_before_its_write_and_the_next_turn_waits(tmp_path: Path) -> None:
    agent, slow = agent_with(tmp_path)
    first, second = msg("one", "1"), msg("two", "2")
    async with asyncio.TaskGroup() as tg:
        runner = tg.create_task(agent.finisher.run())
        await asyncio.sleep(0)
        slow.gate.clear()  # the store is slow to write
        async with asyncio.timeout(2):
            assert await agent.answer(first) == "[offline] you said: one"  # not held by it
        await asyncio.sleep(0.05)
        assert slow.writes == 0 and agent.finisher.busy == 1
        nxt = tg.create_task(agent.answer(second))
        await asyncio.sleep(0.2)
        assert not nxt.done()  # the session's next turn waits for the write before it
        slow.gate.set()
        assert await nxt == "[offline] you said: two"
        runner.cancel()
    records = await slow.load(first.session_key)
    assert turn_state(records, first.id).status == "done"
    assert turn_state(records, second.id).status == "done"
    texts = [r.get("content") for r in records if r.get("role") in ("user", "assistant")]
    assert texts[0] == "one" and texts[2] == "two"  # in order: the first turn's write first


async def test_without_a_running_finisher_the_answer_waits_for_its_write(tmp_path: Path) -> None:
    agent, slow = agent_with(tmp_path)
    slow.gate.clear()
    answer = asyncio.ensure_future(agent.answer(msg("hold", "1")))
    await asyncio.sleep(0.2)
    assert not answer.done()
    slow.gate.set()
    assert await answer == "[offline] you said: hold" and slow.writes == 1


async def test_a_stop_still_writes_what_was_answered_within_the_grace(tmp_path: Path) -> None:
    agent, slow = agent_with(tmp_path)
    agent.finisher = Finisher(grace_s=2.0)
    runner = asyncio.ensure_future(agent.finisher.run())
    await asyncio.sleep(0)
    slow.gate.clear()
    m = msg("at the stop", "1")
    assert await agent.answer(m) == "[offline] you said: at the stop"
    runner.cancel()  # the actor stops while the write waits
    await asyncio.sleep(0.1)
    slow.gate.set()
    with pytest.raises(asyncio.CancelledError):
        await runner
    assert turn_state(await slow.load(m.session_key), m.id).status == "done"


async def test_a_failed_write_keeps_the_reply_and_the_next_turn_goes_on(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    agent, slow = agent_with(tmp_path)
    slow.fail = 1
    async with asyncio.TaskGroup() as tg:
        runner = tg.create_task(agent.finisher.run())
        await asyncio.sleep(0)
        assert await agent.answer(msg("lost", "1")) == "[offline] you said: lost"
        assert await agent.answer(msg("kept", "2")) == "[offline] you said: kept"
        runner.cancel()
    assert "transcript write failed after its reply: unavailable" in caplog.text
    assert "store is not available" not in caplog.text  # a code, never the text
    records = await slow.load(msg("x", "0").session_key)
    assert turn_state(records, "telegram:main:7:2").status == "done"
