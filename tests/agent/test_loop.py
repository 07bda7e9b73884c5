"""TurnRunner end to end: real SDK → fake API over HTTP, an in-test ToolRunner, real transcripts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from moltbot.agent import trust
from moltbot.agent.loop import TurnRunner
from moltbot.agent.providers.anthropic import AnthropicProvider
from moltbot.agent.providers.offline import OfflineProvider
from moltbot.errors import ProviderOverloaded, ToolError
from moltbot.messages import ChatDelta, ChatEvent, ChatFinal, ChatTool, ToolResult
from moltbot.store.transcripts import AsyncTranscripts, TranscriptStore
from tests.fakes.anthropic_api import FakeAnthropicAPI, text_reply, tool_reply

SESSION = "cli:local:dm:me"


class Tools:
    """A small real ToolRunner: ``upper`` upper-cases, ``fail`` raises, ``crash`` is a bug."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any], str]] = []

    def specs(self) -> list[dict[str, Any]]:
        return [
            {"name": n, "description": n, "input_schema": {"type": "object"}}
            for n in ("upper", "fail", "crash")
        ]

    async def call(
        self, name: str, input: dict[str, Any], session: str, ctx: Any = None
    ) -> ToolResult:
        self.calls.append((name, input, session))
        if name == "fail":
            raise ToolError("the tool refused")
        if name == "crash":
            raise RuntimeError("secret internal detail")
        return ToolResult(text=str(input.get("text", "")).upper())


@pytest.fixture
async def api() -> AsyncIterator[FakeAnthropicAPI]:
    async with FakeAnthropicAPI() as server:
        yield server


@pytest.fixture
def transcripts(tmp_path: Path) -> AsyncTranscripts:
    return AsyncTranscripts(TranscriptStore(tmp_path / "sessions"))


async def noop_sleep(_: float) -> None:
    return None


def runner(provider: Any, transcripts: AsyncTranscripts, tools: Tools, **kw: Any) -> TurnRunner:
    return TurnRunner(
        provider,
        tools,
        transcripts,
        max_turns=kw.pop("max_turns", 5),
        max_tokens=512,
        system_prompt="You are moltbot.",
        history_tokens=4000,
        **kw,
    )


async def turn(r: TurnRunner, text: str) -> list[ChatEvent]:
    return [e async for e in r.run_turn(SESSION, text)]


async def test_multi_step_tool_loop(api: FakeAnthropicAPI, transcripts: AsyncTranscripts) -> None:
    api.script(
        tool_reply("upper", {"text": "abc"}, "Let me ", id="toolu_a"),
        text_reply("The answer ", "is ABC."),
    )
    provider = AnthropicProvider(api.api_key, ["claude-test"], base_url=api.base_url)
    tools = Tools()
    events = await turn(runner(provider, transcripts, tools), "shout abc")
    await provider.aclose()

    assert tools.calls == [("upper", {"text": "abc"}, SESSION)]
    tool_events = [e for e in events if isinstance(e, ChatTool)]
    assert [(e.name, e.status) for e in tool_events] == [("upper", "started"), ("upper", "done")]
    assert '"text":"abc"' in tool_events[0].summary
    deltas = "".join(e.text for e in events if isinstance(e, ChatDelta))
    final = events[-1]
    assert isinstance(final, ChatFinal)
    assert final.text == deltas == "Let me \n\nThe answer is ABC."
    assert final.usage["input_tokens"] > 0 and final.usage["output_tokens"] > 0

    first, second = api.requests
    assert first.system.startswith("You are moltbot.") and trust.SYSTEM_NOTE in first.system
    assert first.tools[0]["name"] == "upper"
    assert second.messages[-2]["content"][-1]["type"] == "tool_use"
    assert second.messages[-1] == {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": "toolu_a", "content": "ABC"}],
    }

    saved = await transcripts.load(SESSION)
    assert [m["role"] for m in saved] == ["user", "assistant", "user", "assistant"]
    assert saved[0]["content"] == "shout abc"
    assert saved[3]["content"] == [{"type": "text", "text": "The answer is ABC."}]


async def test_next_turn_sends_the_history(
    api: FakeAnthropicAPI, transcripts: AsyncTranscripts
) -> None:
    api.script(text_reply("one"), text_reply("two"))
    provider = AnthropicProvider(api.api_key, ["claude-test"], base_url=api.base_url)
    r = runner(provider, transcripts, Tools())
    await turn(r, "first")
    await turn(r, "second")
    await provider.aclose()
    texts = [m["content"][0]["text"] for m in api.requests[1].messages]
    assert texts == ["first", "one", "second"]


async def test_tool_errors_become_error_results_without_leaking(
    transcripts: AsyncTranscripts,
) -> None:
    r = runner(OfflineProvider(), transcripts, Tools())
    events = await turn(r, "!tool crash {}")
    statuses = [e.status for e in events if isinstance(e, ChatTool)]
    assert statuses == ["started", "error"]
    final = events[-1]
    assert isinstance(final, ChatFinal)
    assert final.text == "[offline] tool crash returned: tool crash failed unexpectedly"
    assert "secret internal detail" not in str(await transcripts.load(SESSION))
    events = await turn(r, "!tool fail {}")
    assert events[-1].text.endswith("returned: the tool refused")  # type: ignore[union-attr]


async def test_max_turns_finishes_with_a_clear_text(
    api: FakeAnthropicAPI, transcripts: AsyncTranscripts
) -> None:
    api.script(*[tool_reply("upper", {"text": str(n)}) for n in range(3)])
    provider = AnthropicProvider(api.api_key, ["claude-test"], base_url=api.base_url)
    events = await turn(runner(provider, transcripts, Tools(), max_turns=2), "loop forever")
    await provider.aclose()
    assert len(api.requests) == 2
    final = events[-1]
    assert isinstance(final, ChatFinal)
    assert "limit of 2 model calls" in final.text
    saved = await transcripts.load(SESSION)
    assert saved[-1]["role"] == "assistant"


async def test_provider_failure_propagates_and_keeps_the_seen_text(
    api: FakeAnthropicAPI, transcripts: AsyncTranscripts
) -> None:
    api.script(text_reply("partial ", "answer", " lost", fail_after=2))
    provider = AnthropicProvider(api.api_key, ["claude-test"], base_url=api.base_url)
    seen: list[ChatEvent] = []
    with pytest.raises(ProviderOverloaded):
        async for event in runner(provider, transcripts, Tools()).run_turn(SESSION, "hi"):
            seen.append(event)
    await provider.aclose()
    assert "".join(e.text for e in seen if isinstance(e, ChatDelta)) == "partial answer"
    saved = await transcripts.load(SESSION)
    assert saved[-1]["content"] == [{"type": "text", "text": "partial answer"}]
