"""Store, agent and sandbox actors in a real tree on the session's Ray.

One tree for the module: store, tools → sandbox-0, agents → agent-0 (offline provider) and
agent-1 (anthropic provider against the fake Messages API). Its ``MOLTBOT_HOME`` is a temp folder
passed to every actor through the root's runtime env. The pure parts (chat commands, turn
idempotency bookkeeping, provider construction) are tested without Ray at the end.
"""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest
import ray

from actors import routing
from actors.supervisor import Supervisor
from moltbot.agent.service import (
    Command,
    TurnLog,
    build_provider,
    done_marker,
    parse_command,
    turn_state,
    without_turn,
)
from moltbot.config.schema import Config
from moltbot.errors import BadRequest, ProviderAuthError
from moltbot.messages import ChatDelta, ChatEvent, ChatFinal, ChatTool
from tests.actors.helpers import (
    FAST,
    child,
    home_with_workspace,
    inbound,
    incarnation_of,
    kill,
    node,
    pid_of,
    supervisor,
    tree,
    wait_for,
    worker,
)
from tests.fakes.anthropic_api import FakeAnthropicAPI

KEY_ENV = "ANTHROPIC_TEST_KEY"
USAGE = "usage: /approve ID (the id in the approval request)"


@dataclass
class Tree:
    root: Any
    ns: str
    home: Path
    workspace: Path
    api: FakeAnthropicAPI


class ApiThread:
    """The fake Anthropic API served from its own event loop thread (Ray calls block ours)."""

    def __init__(self, api: FakeAnthropicAPI) -> None:
        self.api = api
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> FakeAnthropicAPI:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.api.start(), self.loop).result(10)
        return self.api

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.api.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


def config(workspace: Path, **agent: Any) -> Config:
    return msgspec.convert(
        {
            "agent": {"workers": 1, **agent},
            "tools": {"workers": 1, "workspace": str(workspace)},
        },
        Config,
    )


@pytest.fixture(scope="module")
def live(ray_cluster: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tree]:
    home, workspace = home_with_workspace(tmp_path_factory.mktemp("store-agent"))
    with ApiThread(FakeAnthropicAPI(chunk_delay_s=0.2)) as api:
        offline = config(workspace)
        claude = config(
            workspace,
            provider="anthropic",
            api_key=f"env:{KEY_ENV}",
            base_url=api.base_url,
            models=["claude-test"],
            retries={"max_attempts": 1},
        )
        children = [
            worker("store", "store", offline),
            supervisor("tools", [worker("sandbox-0", "sandbox", offline)]),
            supervisor(
                "agents",
                [worker("agent-0", "agent", offline), worker("agent-1", "agent", claude, index=1)],
            ),
        ]
        ns = f"t-{uuid.uuid4().hex[:8]}"
        env = {"MOLTBOT_HOME": str(home), KEY_ENV: api.api_key}
        root = Supervisor.options(  # type: ignore[attr-defined]
            name="moltbot", namespace=ns, num_cpus=0, runtime_env={"env_vars": env}
        ).remote(path="", flags=FAST, children=children, namespace=ns)
        try:
            ray.get(root.start_detached.remote())
            ray.get(root.ready.remote(), timeout=120)
            yield Tree(root=root, ns=ns, home=home, workspace=workspace, api=api)
        finally:
            try:
                ray.get(root.stop.remote(), timeout=60)
            finally:
                ray.kill(root)


async def store(t: Tree, method: str, *args: Any) -> Any:
    return await routing.call(t.ns, "store", method, *args, deadline_s=60)


async def chat(t: Tree, agent: str, session: str, text: str) -> list[ChatEvent]:
    events: list[ChatEvent] = []
    async for ref in child(t.ns, agent).chat.remote(session, text):
        events.append(await ref)
    return events


async def say(t: Tree, session: str, text: str) -> str:
    """The final text of one chat turn on agent-0."""
    events = await chat(t, "agents/agent-0", session, text)
    final = events[-1]
    assert isinstance(final, ChatFinal)
    return final.text


# --- the actors ------------------------------------------------------------------------------
async def test_offline_answer_chat_stream_tool_call_and_commands(live: Tree) -> None:
    msg = inbound("hello moltbot")
    reply = await routing.call(live.ns, "agents/agent-0", "answer", msg)
    assert reply == "[offline] you said: hello moltbot"
    records = await store(live, "transcript_load", msg.session_key)
    assert [(r["role"], r.get("msg_id")) for r in records] == [
        ("user", msg.id),
        ("assistant", msg.id),
        ("meta", msg.id),
    ]
    assert (live.home / "state" / "inbound.jsonl").exists() is False  # answer does not journal
    assert list((live.home / "sessions").glob("*.jsonl")), "transcripts under MOLTBOT_HOME"
    history = await store(live, "history", msg.session_key)
    assert [r["role"] for r in history] == ["user", "assistant"]

    # streaming: several deltas, then one final equal to their concatenation
    events = await chat(live, "agents/agent-0", "web:s1", "stream this reply please")
    assert isinstance(events[-1], ChatFinal)
    deltas = [e for e in events if isinstance(e, ChatDelta)]
    assert len(deltas) >= 2
    assert "".join(d.text for d in deltas) == events[-1].text
    assert events[-1].text == "[offline] you said: stream this reply please"

    # a tool call runs in the sandbox actor and the reply carries its result
    events = await chat(live, "agents/agent-0", "web:s1", "!tool list_dir {}")
    tools = [e for e in events if isinstance(e, ChatTool)]
    assert [t.status for t in tools] == ["started", "done"] and tools[0].name == "list_dir"
    final = events[-1]
    assert isinstance(final, ChatFinal)
    assert "tool list_dir returned" in final.text and "hello.txt" in final.text

    # /status and /reset are answered before the model
    status = await say(live, "web:s1", "/status")
    assert "provider offline" in status
    assert "6 messages" in status  # 2 plain + user, tool_use, tool_result, reply
    sessions = {s["key"] for s in await store(live, "sessions_list")}
    assert {"web:s1", msg.session_key} <= sessions
    assert await say(live, "web:s1", "/reset") == "Started a new conversation."
    assert await store(live, "transcript_load", "web:s1") == []
    assert "web:s1" not in {s["key"] for s in await store(live, "sessions_list")}

    # a bash command needs approval: the turn waits, and goes on once it is answered (here by
    # the operator: web chats act for the gateway, which may always answer)
    asked = asyncio.create_task(say(live, "web:s2", '!tool bash {"command": "echo hi"}'))
    pending: list[dict[str, Any]] = []
    for _ in range(100):
        pending = await routing.call(live.ns, "tools/sandbox-0", "approvals_list")
        if pending:
            break
        await asyncio.sleep(0.1)
    assert [(p["session"], p["command"]) for p in pending] == [("web:s2", "echo hi")]
    aid = pending[0]["id"]
    assert not asked.done()
    assert (await say(live, "web:s3", f"/approve {aid}")).startswith(f"Approved {aid}")
    done = await asyncio.wait_for(asked, 60)
    assert done.startswith("[offline] tool bash returned: hi") and "[exit code 0]" in done
    assert await say(live, "web:s2", f"/deny {aid}") == (
        f"There is no pending approval with id {aid} (it may have expired)."
    )
    assert await say(live, "web:s2", "/approve") == USAGE
    assert await routing.call(live.ns, "tools/sandbox-0", "approvals_list") == []


async def test_store_journal_kv_and_survival_of_a_crash(live: Tree) -> None:
    m1 = inbound("one", channel="slack", account="team")
    m2 = inbound("two")
    assert await store(live, "accept_many", [m1]) == [True]
    assert await store(live, "accept_many", [m1]) == [False]  # duplicate platform id
    assert await store(live, "accept_many", [m2]) == [True]
    assert [m.id for m in await store(live, "pending")] == [m1.id, m2.id]
    assert [m.id for m in await store(live, "pending", "slack", "team")] == [m1.id]
    assert await store(live, "pending", "slack", "other") == []
    assert await store(live, "mark_done_many", [m2.id]) == [True]
    assert await store(live, "mark_done_many", [m2.id]) == [False]
    assert (live.home / "state" / "inbound.jsonl").is_file()
    await store(live, "kv_put", "pairing.telegram.main", b'{"codes": []}')
    assert await store(live, "kv_get", "pairing.telegram.main") == b'{"codes": []}'
    assert await store(live, "kv_get", "never.written") is None
    with pytest.raises(BadRequest):
        await store(live, "kv_put", "../escape", b"x")
    kept = [("web:durable", [{"role": "user", "content": "kept"}])]
    assert await store(live, "transcript_append_batch", kept) == [None]

    before = incarnation_of(live.ns, "store")
    kill(live.ns, "store")  # inside the root's process: its run is cancelled, a new one starts
    # the next calls ride through the restart and see everything acknowledged before it
    assert await store(live, "accept_many", [m1, m2]) == [False, False]
    assert incarnation_of(live.ns, "store") > before
    assert [m.id for m in await store(live, "pending")] == [m1.id]
    assert await store(live, "kv_get", "pairing.telegram.main") == b'{"codes": []}'
    assert [r["content"] for r in await store(live, "transcript_load", "web:durable")] == ["kept"]
    assert node(tree(live.root), "store")["restarts"] == 1


async def test_agent_killed_mid_turn_gives_exactly_one_answer(live: Tree) -> None:
    api = live.api
    text = "please count one two three four five six seven eight"
    msg = inbound(text, sender="bob")
    sent = len(api.requests)
    before = pid_of(live.ns, "agents/agent-1")
    started = time.monotonic()
    call = asyncio.ensure_future(routing.call(live.ns, "agents/agent-1", "answer", msg))
    await asyncio.to_thread(wait_for, lambda: len(api.requests) > sent, 30.0, "the model request")
    await asyncio.sleep(0.6)  # mid-stream: a few deltas are out, the reply is not complete
    assert not call.done()
    ray.kill(child(live.ns, "agents/agent-1"), no_restart=True)
    reply = await asyncio.wait_for(call, 60)
    took = time.monotonic() - started
    assert reply == f"echo: {text}"
    assert pid_of(live.ns, "agents/agent-1") != before
    assert len(api.requests) == sent + 2  # the interrupted call and the one re-run
    rerun = api.requests[-1].messages
    assert [m["role"] for m in rerun] == ["user"]  # the user message was not duplicated
    records = await store(live, "transcript_load", msg.session_key)
    mine = [r for r in records if r.get("msg_id") == msg.id]
    assert [r["role"] for r in mine] == ["user", "assistant", "meta"]
    assert mine[1]["content"] == [{"type": "text", "text": f"echo: {text}"}]
    # asking again (a replay after the reply was sent) costs no model call
    assert await routing.call(live.ns, "agents/agent-1", "answer", msg) == reply
    assert len(api.requests) == sent + 2
    assert took < 30


# --- the pure parts --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("/reset", Command(name="reset")),
        ("  /new  ", Command(name="reset")),
        ("/reset@moltbot_bot", Command(name="reset")),
        ("/STATUS", Command(name="status")),
        ("/approve a1b2c3d4", Command(name="approve", arg="a1b2c3d4")),
        ("/deny  a1b2c3d4 ", Command(name="deny", arg="a1b2c3d4")),
        ("/approve", Command(name="approve", problem=USAGE)),
        ("/approve a b", Command(name="approve", problem=USAGE)),
        ("/approve ../x", Command(name="approve", problem=USAGE)),
        ("/reset now", Command(name="reset", problem="/reset takes no arguments")),
        ("/etc/hosts what is this?", None),
        ("/unknown", None),
        ("please /reset", None),
        ("hello", None),
    ],
)
def test_parse_command(text: str, expected: Command | None) -> None:
    assert parse_command(text) == expected


async def test_turn_state_and_turn_log_for_idempotent_turns() -> None:
    class Log:
        def __init__(self) -> None:
            self.records: list[dict[str, Any]] = []
            self.writes = 0

        async def load(self, session: str) -> list[dict[str, Any]]:
            return list(self.records)

        async def append(self, session: str, record: dict[str, Any]) -> None:
            await self.append_many(session, [record])

        async def append_many(self, session: str, records: list[dict[str, Any]]) -> None:
            self.writes += 1
            self.records.extend(records)

    inner = Log()
    assert turn_state([], "m1").status == "new"
    fresh = TurnLog(inner, [], msg_id="m1")
    await fresh.append("s", {"role": "user", "content": "hi"})
    await fresh.append("s", {"role": "assistant", "content": []})
    assert inner.records == []  # a plain turn is written at finish(), in one call
    await fresh.finish("s")
    assert [r["msg_id"] for r in inner.records] == ["m1", "m1"] and inner.writes == 1
    assert turn_state(inner.records, "m1").status == "interrupted"
    assert without_turn(inner.records, "m1") == []

    rerun = TurnLog(inner, without_turn(inner.records, "m1"), msg_id="m1", skip_user=True)
    assert await rerun.load("s") == []
    writes = inner.writes
    await rerun.append("s", {"role": "user", "content": "hi"})  # already recorded: skipped
    tool_use = {"type": "tool_use", "id": "t", "name": "bash", "input": {}}
    await rerun.append("s", {"role": "assistant", "content": [tool_use]})  # before the tool
    assert inner.writes - writes == 1
    await rerun.append("s", {"role": "user", "content": [{"type": "tool_result"}]})
    await rerun.append("s", {"role": "assistant", "content": [{"type": "text", "text": "yo"}]})
    await rerun.finish("s", done_marker("m1", "yo", 1.0))  # result, reply and mark together
    assert inner.writes - writes == 2
    roles = [r["role"] for r in inner.records]
    assert roles == ["user", "assistant", "assistant", "user", "assistant", "meta"]
    state = turn_state(inner.records, "m1")
    assert state.status == "done" and state.final_text == "yo"
    assert turn_state(inner.records, "m2").status == "new"


def test_build_provider_resolves_the_key_or_fails_clearly(tmp_path: Path) -> None:
    offline = config(tmp_path)
    assert build_provider(offline).name == "offline"
    claude = config(tmp_path, provider="anthropic", api_key="env:K", models=["m"])
    assert build_provider(claude, environ={"K": "sk-test"}).name == "anthropic"
    with pytest.raises(ProviderAuthError) as info:
        build_provider(claude, environ={})
    assert "'K' is not set" in info.value.user_message and "export K" in info.value.hint
    vaulted = config(tmp_path, provider="anthropic", api_key="secret:anthropic_api_key")

    def missing(name: str) -> str:
        raise KeyError(name)

    with pytest.raises(ProviderAuthError) as info:
        build_provider(vaulted, vault_get=missing)
    assert "not in the vault" in info.value.user_message
    assert "moltbot secrets set anthropic_api_key" in info.value.hint
