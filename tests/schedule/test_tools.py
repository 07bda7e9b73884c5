"""The schedule tools over the real scheduler service (kv and journal in a temp folder), as the
model calls them: only the owner's turns see or set jobs, a session holding web or file
content cannot add one, and a heartbeat answered HEARTBEAT_OK sends nothing."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

import msgspec

from moltbot.agent.agent_service import AgentPorts, AgentService
from moltbot.agent.providers.base import Done, ModelRequest, ProviderEvent, TextDelta, ToolUse
from moltbot.agent.transcript_cache import CachedTranscripts
from moltbot.clock import FakeClock
from moltbot.messages import InboundMessage, ToolContext
from moltbot.schedule.fires import HEARTBEAT_OK, fire_message
from moltbot.schedule.jobs import Fire
from moltbot.schedule.service import JobRequest, SchedulerService, job_view
from moltbot.schedule.tools import NOT_OWNER, UNTRUSTED, WithScheduleTools, schedule_tools
from moltbot.store.transcripts import AsyncTranscripts, TranscriptStore
from moltbot.tools import ToolRegistry
from tests.schedule.test_service import OWNER, START, Store, config

OWNER_SENDER = f"telegram:main:{OWNER}"
LATER = json.dumps({"kind": "once", "spec": "2026-12-04T09:00", "text": "stand up"})


class ServiceJobs:
    """The ``Jobs`` port over the service itself (the actor's is the same, over Ray)."""

    def __init__(self, svc: SchedulerService) -> None:
        self.svc = svc

    async def add(self, request: dict[str, Any]) -> dict[str, Any]:
        return job_view(await self.svc.add(msgspec.convert(request, JobRequest)))

    async def list(self) -> list[dict[str, Any]]:
        return [job_view(j) for j in self.svc.jobs()]

    async def remove(self, job_id: str) -> dict[str, Any]:
        return job_view(await self.svc.remove(job_id))


async def rig(tmp_path: Path) -> tuple[SchedulerService, WithScheduleTools]:
    clock = FakeClock(start=0.0, wall=START)
    svc = SchedulerService(config(), Store(tmp_path).ports(), clock=clock)
    await svc.load()
    tools = WithScheduleTools(ToolRegistry(), schedule_tools(ServiceJobs(svc), config(), clock))
    return svc, tools


async def test_only_the_owner_sees_or_sets_jobs(tmp_path: Path) -> None:
    svc, tools = await rig(tmp_path)
    names = [s["name"] for s in tools.specs()]
    assert names == ["schedule_add", "schedule_list", "schedule_remove"]
    await svc.add(JobRequest(kind="cron", spec="0 9 * * *", text="secret plans", id="plans"))
    for who in ("telegram:main:77", "telegram:main:-100500", "slack:main:42"):  # not owners
        ctx = ToolContext(sender=who)
        for name, args in (
            ("schedule_list", {}),
            ("schedule_add", json.loads(LATER)),
            ("schedule_remove", {"id": "plans"}),
        ):
            result = await tools.call(name, args, "s", ctx)
            assert result.is_error and result.code == "access_denied" and NOT_OWNER in result.text
            assert "secret plans" not in result.text
    assert [j.id for j in svc.jobs()] == ["plans"]

    owner = ToolContext(sender=OWNER_SENDER)
    added = await tools.call("schedule_add", {**json.loads(LATER), "id": "standup"}, "s", owner)
    assert not added.is_error and "scheduled standup" in added.text
    assert svc.schedule.jobs["standup"].deliver_to == OWNER_SENDER  # the owner's own DM
    listed = await tools.call("schedule_list", {}, "s", owner)
    assert "now: 2026-12-04T08:00:00Z" in listed.text and '"id": "standup"' in listed.text
    gone = await tools.call("schedule_remove", {"id": "standup"}, "s", owner)
    assert gone.text == "removed standup" and "standup" not in svc.schedule.jobs
    bad = await tools.call(
        "schedule_add", {"kind": "cron", "spec": "nope", "text": "x"}, "s", owner
    )
    assert bad.is_error and "not a cron expression" in bad.text
    heart = await tools.call("schedule_remove", {"id": "heartbeat"}, "s", owner)
    assert heart.is_error and "config" in heart.text


async def test_a_session_holding_web_content_cannot_add_a_job(tmp_path: Path) -> None:
    svc, tools = await rig(tmp_path)
    tainted = ToolContext(sender=OWNER_SENDER, untrusted=True)
    result = await tools.call("schedule_add", json.loads(LATER), "s", tainted)
    assert result.is_error and result.text == UNTRUSTED and svc.jobs() == []
    assert not (await tools.call("schedule_list", {}, "s", tainted)).is_error  # reading is fine


class Says:
    """A provider whose every answer is ``text`` (the model's side of the heartbeat)."""

    name = "says"

    def __init__(self, text: str) -> None:
        self.text = text

    async def stream(self, request: ModelRequest) -> AsyncGenerator[ProviderEvent, None]:
        yield TextDelta(text=self.text)
        yield Done(stop_reason="end_turn")


async def test_a_heartbeat_with_nothing_to_say_sends_nothing(tmp_path: Path) -> None:
    svc = SchedulerService(
        config(heartbeat_minutes=30),
        Store(tmp_path).ports(),
        clock=FakeClock(start=0.0, wall=START),
    )
    await svc.load()
    beat = svc.schedule.jobs["heartbeat"]
    msg = fire_message(config(heartbeat_minutes=30), beat, Fire(job="heartbeat", at=START), START)
    store = CachedTranscripts(AsyncTranscripts(TranscriptStore(tmp_path / "sessions")))

    async def no_tools() -> ToolRegistry:
        return ToolRegistry()

    def agent(says: str) -> AgentService:
        return AgentService(config(), Says(says), AgentPorts(transcripts=store, tools=no_tools))

    assert await agent(f"{HEARTBEAT_OK}.").answer(msg) == ""  # the channel sends nothing
    news = msgspec.structs.replace(msg, id=f"cron:heartbeat:{int(START) + 1800}")
    assert await agent("Your train leaves in an hour.").answer(news) == (
        "Your train leaves in an hour."
    )
    plain = InboundMessage(
        id="telegram:main:42:9",
        channel="telegram",
        account="main",
        chat_id=OWNER,
        sender_id=OWNER,
        text="hi",
    )
    assert await agent(HEARTBEAT_OK).answer(plain) == HEARTBEAT_OK  # only a heartbeat's


class AddsAReminder:
    """A model that asks for ``schedule_add`` once, then says it is done."""

    name = "adds"

    def __init__(self) -> None:
        self.calls = 0

    async def stream(self, request: ModelRequest) -> AsyncGenerator[ProviderEvent, None]:
        self.calls += 1
        if self.calls % 2 == 0:  # the tool's result came back
            yield TextDelta(text="Done.")
            yield Done(stop_reason="end_turn")
            return
        yield ToolUse(id="t1", name="schedule_add", input={**json.loads(LATER), "id": "later"})
        yield Done(stop_reason="tool_use")


async def test_a_reminder_asked_for_in_a_direct_chat_is_answered_in_that_chat(
    tmp_path: Path,
) -> None:
    """On Discord or iMessage a direct chat's id is not the sender's id: the reminder goes to
    the chat the owner asked in. Asked in a group, it goes to the owner's own DM, not the group."""
    svc, tools = await rig(tmp_path)
    store = CachedTranscripts(AsyncTranscripts(TranscriptStore(tmp_path / "sessions")))

    async def with_tools() -> WithScheduleTools:
        return tools

    agent = AgentService(config(), AddsAReminder(), AgentPorts(transcripts=store, tools=with_tools))
    dm = InboundMessage(
        id="telegram:main:dm-chat-7:1",
        channel="telegram",
        account="main",
        chat_id="dm-chat-7",  # a direct chat whose id is not the sender's
        sender_id=OWNER,
        text="remind me to stand up",
    )
    assert await agent.answer(dm) == "Done."
    assert svc.schedule.jobs["later"].deliver_to == "telegram:main:dm-chat-7"
    await svc.remove("later")
    group = msgspec.structs.replace(
        dm, id="telegram:main:-100:2", chat_id="-100", is_group=True, mentioned=True
    )
    assert await agent.answer(group) == "Done."
    assert svc.schedule.jobs["later"].deliver_to == OWNER_SENDER  # the owner's DM, not the group
