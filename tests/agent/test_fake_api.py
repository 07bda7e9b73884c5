"""The fake Messages API itself: non-streamed answers, per-model scripts, delay, defaults."""

from __future__ import annotations

import time

import anthropic

from tests.fakes.anthropic_api import FakeAnthropicAPI, text_reply, tool_reply


async def test_non_streamed_create_and_per_model_scripts() -> None:
    async with FakeAnthropicAPI() as api:
        api.script(text_reply("for ", "b"), model="claude-b")
        api.script(tool_reply("bash", {"command": "ls"}, "hm", id="toolu_9"))
        client = anthropic.AsyncAnthropic(api_key=api.api_key, base_url=api.base_url, max_retries=0)
        user = [{"role": "user", "content": "hi"}]
        b = await client.messages.create(model="claude-b", max_tokens=50, messages=user)  # type: ignore[arg-type]
        a = await client.messages.create(model="claude-a", max_tokens=50, messages=user)  # type: ignore[arg-type]
        echo = await client.messages.create(model="claude-a", max_tokens=50, messages=user)  # type: ignore[arg-type]
        await client.close()
    assert b.content[0].type == "text" and b.content[0].text == "for b"
    assert a.stop_reason == "tool_use"
    assert a.content[1].type == "tool_use" and a.content[1].input == {"command": "ls"}
    assert echo.content[0].type == "text" and echo.content[0].text == "echo: hi"
    assert [r.stream for r in api.requests] == [False, False, False]


async def test_chunk_delay_spaces_the_deltas() -> None:
    async with FakeAnthropicAPI(chunk_delay_s=0.02) as api:
        api.script(text_reply("a", "b", "c", "d"))
        client = anthropic.AsyncAnthropic(api_key=api.api_key, base_url=api.base_url, max_retries=0)
        user = [{"role": "user", "content": "hi"}]
        started = time.monotonic()
        async with client.messages.stream(model="m", max_tokens=9, messages=user) as stream:  # type: ignore[arg-type]
            text = await stream.get_final_text()
        await client.close()
    assert text == "abcd" and time.monotonic() - started >= 0.08
