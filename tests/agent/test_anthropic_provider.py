"""AnthropicProvider against the fake Messages API over real HTTP (the real SDK, no mocks)."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator

import pytest

from moltbot.agent.providers.anthropic import AnthropicProvider
from moltbot.agent.providers.base import Done, ModelRequest, ProviderEvent, TextDelta, ToolUse
from moltbot.errors import ProviderAuthError, ProviderError, ProviderOverloaded
from tests.fakes.anthropic_api import (
    FakeAnthropicAPI,
    HttpError,
    overloaded,
    rate_limited,
    server_error,
    text_reply,
    tool_reply,
)

REQUEST = ModelRequest(
    system="be brief",
    messages=[{"role": "user", "content": "hello"}],
    tools=[{"name": "bash", "description": "run", "input_schema": {"type": "object"}}],
    max_tokens=256,
)


@pytest.fixture
async def api() -> AsyncIterator[FakeAnthropicAPI]:
    async with FakeAnthropicAPI() as server:
        yield server


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def make(
    api: FakeAnthropicAPI,
    models: list[str] | None = None,
    *,
    key: str | None = None,
    attempts: int = 3,
    sleep: Sleeps | None = None,
    base_url: str | None = None,
) -> AnthropicProvider:
    return AnthropicProvider(
        api.api_key if key is None else key,
        models or ["claude-test"],
        base_url=base_url or api.base_url,
        max_attempts=attempts,
        base_s=0.01,
        max_s=0.5,
        sleep=sleep or Sleeps(),
    )


async def collect(
    provider: AnthropicProvider, request: ModelRequest = REQUEST
) -> list[ProviderEvent]:
    try:
        return [e async for e in provider.stream(request)]
    finally:
        await provider.aclose()


async def test_streamed_text_arrives_in_order_with_usage(api: FakeAnthropicAPI) -> None:
    api.script(text_reply("Hel", "lo, ", "world"))
    events = await collect(make(api))
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["Hel", "lo, ", "world"]
    done = events[-1]
    assert isinstance(done, Done) and done.stop_reason == "end_turn"
    assert done.usage["input_tokens"] > 0 and done.usage["output_tokens"] > 0
    (req,) = api.requests
    assert req.stream and req.model == "claude-test" and req.max_tokens == 256
    assert req.system == "be brief"
    assert req.messages == [{"role": "user", "content": "hello"}]
    assert req.tools[0]["name"] == "bash"
    assert api.api_key in (req.headers.get("x-api-key", "") + req.headers.get("authorization", ""))


async def test_tool_use_block_is_parsed_from_streamed_json(api: FakeAnthropicAPI) -> None:
    api.script(tool_reply("bash", {"command": "ls -la", "n": [1, 2]}, "let me look", id="toolu_1"))
    events = await collect(make(api))
    assert events[0] == TextDelta(text="let me look")
    assert events[1] == ToolUse(id="toolu_1", name="bash", input={"command": "ls -la", "n": [1, 2]})
    assert isinstance(events[2], Done) and events[2].stop_reason == "tool_use"


async def test_529_then_success_is_retried_once(api: FakeAnthropicAPI) -> None:
    sleeps = Sleeps()
    api.script(overloaded(), text_reply("ok"))
    events = await collect(make(api, sleep=sleeps))
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["ok"]
    assert len(api.requests) == 2
    assert len(sleeps.delays) == 1 and 0 < sleeps.delays[0] <= 0.5


async def test_429_retry_after_header_is_honoured(api: FakeAnthropicAPI) -> None:
    sleeps = Sleeps()
    api.script(rate_limited(retry_after=7), server_error(), text_reply("fine"))
    events = await collect(make(api, sleep=sleeps))
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["fine"]
    assert sleeps.delays[0] == 7.0  # the server asked for longer than our backoff
    assert sleeps.delays[1] <= 0.5  # the 500 has no retry-after: our own capped backoff
    assert len(api.requests) == 3


async def test_model_a_always_overloaded_fails_over_to_model_b(api: FakeAnthropicAPI) -> None:
    api.always("claude-a", overloaded())
    api.script(text_reply("from b"), model="claude-b")
    sleeps = Sleeps()
    events = await collect(make(api, ["claude-a", "claude-b"], attempts=2, sleep=sleeps))
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["from b"]
    assert len(api.requests_for("claude-a")) == 2
    assert len(api.requests_for("claude-b")) == 1
    assert len(sleeps.delays) == 1  # between the two attempts on a, none before failing over


async def test_every_model_overloaded_raises_a_safe_error(api: FakeAnthropicAPI) -> None:
    api.always("claude-a", overloaded())
    api.always("claude-b", overloaded())
    with pytest.raises(ProviderOverloaded) as info:
        await collect(make(api, ["claude-a", "claude-b"], attempts=2))
    assert len(api.requests) == 4
    assert "529" in info.value.user_message
    assert "Error code" not in str(info.value) and "{" not in str(info.value)


async def test_401_raises_auth_error_without_retry(api: FakeAnthropicAPI) -> None:
    sleeps = Sleeps()
    with pytest.raises(ProviderAuthError) as info:
        await collect(make(api, ["claude-a", "claude-b"], key="sk-ant-wrong-secret", sleep=sleeps))
    assert len(api.requests) == 1 and sleeps.delays == []
    assert "moltbot secrets set anthropic_api_key" in str(info.value)
    assert "sk-ant-wrong-secret" not in str(info.value)


async def test_error_mid_stream_is_not_retried_so_no_delta_is_duplicated(
    api: FakeAnthropicAPI,
) -> None:
    api.script(text_reply("a", "b", "c", fail_after=2), text_reply("a", "b", "c"))
    seen: list[str] = []
    provider = make(api)
    with pytest.raises(ProviderOverloaded):
        async for event in provider.stream(REQUEST):
            if isinstance(event, TextDelta):
                seen.append(event.text)
    await provider.aclose()
    assert seen == ["a", "b"]
    assert len(api.requests) == 1


async def test_stream_error_before_any_delta_is_retried(api: FakeAnthropicAPI) -> None:
    api.script(text_reply("lost", fail_after=0), text_reply("x", "y"))
    events = await collect(make(api))
    assert [e.text for e in events if isinstance(e, TextDelta)] == ["x", "y"]
    assert len(api.requests) == 2


async def test_400_is_not_retried(api: FakeAnthropicAPI) -> None:
    api.script(HttpError(400, "invalid_request_error", "messages: bad"))
    with pytest.raises(ProviderError) as info:
        await collect(make(api))
    assert not isinstance(info.value, ProviderOverloaded)
    assert len(api.requests) == 1
    assert "messages: bad" not in str(info.value)


async def test_unknown_model_fails_over_without_retry(api: FakeAnthropicAPI) -> None:
    api.always("claude-gone", HttpError(404, "not_found_error", "model: claude-gone"))
    events = await collect(make(api, ["claude-gone", "claude-b"]))
    assert any(isinstance(e, TextDelta) for e in events)
    assert [r.model for r in api.requests] == ["claude-gone", "claude-b"]


async def test_connection_refused_is_retried_then_reported(api: FakeAnthropicAPI) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sleeps = Sleeps()
    with pytest.raises(ProviderOverloaded) as info:
        await collect(make(api, base_url=f"http://127.0.0.1:{port}", attempts=3, sleep=sleeps))
    assert len(sleeps.delays) == 2
    assert "could not reach" in info.value.user_message


def test_missing_key_is_refused_with_the_fix() -> None:
    with pytest.raises(ProviderAuthError) as info:
        AnthropicProvider("", ["claude-test"])
    assert "moltbot secrets set anthropic_api_key" in str(info.value)
