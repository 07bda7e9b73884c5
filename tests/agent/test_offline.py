"""The offline provider: deterministic echo and the ``!tool NAME {json}`` syntax."""

from __future__ import annotations

from typing import Any

from moltbot.agent.providers.base import Done, ModelRequest, ProviderEvent, TextDelta, ToolUse
from moltbot.agent.providers.offline import OfflineProvider


async def run(messages: list[dict[str, Any]]) -> list[ProviderEvent]:
    request = ModelRequest(system="", messages=messages)
    return [e async for e in OfflineProvider(chunk_chars=5).stream(request)]


def text_of(events: list[ProviderEvent]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


async def test_echo_is_labelled_streamed_in_pieces_and_deterministic() -> None:
    msgs = [{"role": "user", "content": "hello there"}]
    events = await run(msgs)
    assert text_of(events) == "[offline] you said: hello there"
    assert sum(isinstance(e, TextDelta) for e in events) > 2
    assert isinstance(events[-1], Done) and events[-1].stop_reason == "end_turn"
    assert events == await run(msgs)


async def test_echo_uses_the_last_text_block_of_the_last_message() -> None:
    msgs = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "[Summary ...]"},
                {"type": "text", "text": "ping"},
            ],
        }
    ]
    assert text_of(await run(msgs)) == "[offline] you said: ping"


async def test_tool_syntax_emits_a_tool_use_with_that_input() -> None:
    events = await run([{"role": "user", "content": 'please\n!tool bash {"command": "ls"}'}])
    call = events[0]
    assert isinstance(call, ToolUse)
    assert call.name == "bash" and call.input == {"command": "ls"}
    assert call.id.startswith("toolu_offline_")
    assert isinstance(events[-1], Done) and events[-1].stop_reason == "tool_use"


async def test_tool_syntax_without_json_means_empty_input() -> None:
    events = await run([{"role": "user", "content": "!tool status"}])
    assert events[0] == ToolUse(id=events[0].id, name="status", input={})  # type: ignore[union-attr]


async def test_bad_tool_json_is_explained_not_called() -> None:
    events = await run([{"role": "user", "content": "!tool bash {nope}"}])
    assert not any(isinstance(e, ToolUse) for e in events)
    assert "not a JSON object" in text_of(events)


async def test_after_a_tool_result_it_reports_the_first_200_chars() -> None:
    long = "x" * 500
    msgs: list[dict[str, Any]] = [
        {"role": "user", "content": "!tool files {}"},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "t1", "name": "files", "input": {}}],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "t1", "content": long}],
        },
    ]
    assert text_of(await run(msgs)) == "[offline] tool files returned: " + "x" * 200
