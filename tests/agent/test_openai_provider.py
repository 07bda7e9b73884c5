"""OpenAICompatProvider and FailoverProvider against fake OpenAI-compatible servers over real
HTTP (the real ``openai`` SDK, no mocks), and through the real TurnRunner."""

from __future__ import annotations

import json
import socket
from collections.abc import AsyncGenerator, AsyncIterator
from pathlib import Path
from typing import Any

import openai
import pytest

from moltbot.agent.loop import TurnRunner
from moltbot.agent.providers.base import (
    Done,
    ModelRequest,
    Provider,
    ProviderEvent,
    TextDelta,
    ToolUse,
)
from moltbot.agent.providers.failover import FailoverProvider
from moltbot.agent.providers.openai_compat import OpenAICompatProvider
from moltbot.agent.providers.openai_format import to_messages
from moltbot.errors import ProviderAuthError, ProviderError, ProviderRateLimited
from moltbot.messages import ChatEvent, ChatFinal, ChatTool, ToolResult
from moltbot.store.transcripts import AsyncTranscripts, TranscriptStore
from tests.fakes.openai_api import Call, FakeOpenAIAPI, Reply, http_error, text, tool_call

SESSION = "cli:local:dm:me"
REQUEST = ModelRequest(
    system="be brief",
    messages=[{"role": "user", "content": "hello"}],
    tools=[{"name": "bash", "description": "run", "input_schema": {"type": "object"}}],
    max_tokens=256,
)


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


class Upper:
    """A real ToolRunner: ``upper`` upper-cases its ``text``."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def specs(self) -> list[dict[str, Any]]:
        schema = {"type": "object", "properties": {"text": {"type": "string"}}}
        return [{"name": "upper", "description": "upper-case", "input_schema": schema}]

    async def call(
        self, name: str, input: dict[str, Any], session: str, ctx: Any = None
    ) -> ToolResult:
        self.calls.append(input)
        return ToolResult(text=str(input.get("text", "")).upper())


@pytest.fixture
async def api() -> AsyncIterator[FakeOpenAIAPI]:
    async with FakeOpenAIAPI(api_key="sk-local-test") as server:
        yield server


@pytest.fixture
async def backup() -> AsyncIterator[FakeOpenAIAPI]:
    async with FakeOpenAIAPI(models=("llama-backup",)) as server:
        yield server


def make(
    api: FakeOpenAIAPI,
    models: list[str] | None = None,
    *,
    key: str | None = "sk-local-test",
    attempts: int = 3,
    sleep: Sleeps | None = None,
    base_url: str | None = None,
    label: str = "openai",
) -> OpenAICompatProvider:
    return OpenAICompatProvider(
        base_url or api.base_url,
        models or ["llama-test"],
        api_key=key,
        label=label,
        key_hint="set the key with `moltbot secrets set local_key`",
        max_attempts=attempts,
        base_s=0.01,
        max_s=0.5,
        sleep=sleep or Sleeps(),
    )


async def collect(provider: Provider, request: ModelRequest = REQUEST) -> list[ProviderEvent]:
    return [e async for e in provider.stream(request)]


def texts(events: list[ProviderEvent]) -> list[str]:
    return [e.text for e in events if isinstance(e, TextDelta)]


async def test_streamed_text_arrives_in_order_with_usage(api: FakeOpenAIAPI) -> None:
    api.script(text("Hel", "lo, ", "world"))
    provider = make(api)
    events = await collect(provider)
    await provider.aclose()
    assert texts(events) == ["Hel", "lo, ", "world"]
    done = events[-1]
    assert isinstance(done, Done) and done.stop_reason == "end_turn"
    assert done.usage["input_tokens"] > 0 and done.usage["output_tokens"] > 0
    (req,) = api.requests
    assert req.body["stream"] is True and req.body["stream_options"] == {"include_usage": True}
    assert req.model == "llama-test" and req.body["max_tokens"] == 256
    assert req.messages == [
        {"role": "system", "content": "be brief"},
        {"role": "user", "content": "hello"},
    ]
    assert req.tools == [
        {
            "type": "function",
            "function": {"name": "bash", "description": "run", "parameters": {"type": "object"}},
        }
    ]
    assert req.headers["authorization"] == "Bearer sk-local-test"


async def test_tool_call_arguments_split_over_chunks_are_joined_and_parsed(
    api: FakeOpenAIAPI,
) -> None:
    arguments = {"command": "ls -la /tmp", "n": [1, 2], "deep": {"ok": True}}
    api.script(tool_call("bash", arguments, "let me look", id="call_1"))
    provider = make(api)
    events = await collect(provider)
    await provider.aclose()
    assert events[0] == TextDelta(text="let me look")
    assert events[1] == ToolUse(id="call_1", name="bash", input=arguments)
    assert isinstance(events[2], Done) and events[2].stop_reason == "tool_use"


async def test_tool_round_trip_through_the_turn_loop_sends_a_tool_message(
    api: FakeOpenAIAPI, tmp_path: Path
) -> None:
    api.script(
        tool_call("upper", {"text": "abc"}, "Let me ", id="call_a"),
        text("The answer ", "is ABC."),
    )
    provider = make(api)
    tools = Upper()
    transcripts = AsyncTranscripts(TranscriptStore(tmp_path / "sessions"))
    runner = TurnRunner(provider, tools, transcripts, max_turns=4, system_prompt="You are moltbot.")
    events: list[ChatEvent] = [e async for e in runner.run_turn(SESSION, "shout abc")]
    await provider.aclose()

    assert tools.calls == [{"text": "abc"}]
    assert [(e.name, e.status) for e in events if isinstance(e, ChatTool)] == [
        ("upper", "started"),
        ("upper", "done"),
    ]
    final = events[-1]
    assert isinstance(final, ChatFinal) and final.text == "Let me \n\nThe answer is ABC."
    assert final.usage["input_tokens"] > 0

    first, second = api.requests
    assert first.messages[0]["role"] == "system"
    assert first.messages[0]["content"].startswith("You are moltbot.")
    assert first.tools[0]["function"]["name"] == "upper"
    assert second.messages[-2] == {
        "role": "assistant",
        "content": "Let me ",
        "tool_calls": [
            {
                "id": "call_a",
                "type": "function",
                "function": {"name": "upper", "arguments": '{"text": "abc"}'},
            }
        ],
    }
    assert second.messages[-1] == {"role": "tool", "tool_call_id": "call_a", "content": "ABC"}
    saved = await transcripts.load(SESSION)
    assert [m["role"] for m in saved] == ["user", "assistant", "user", "assistant"]


async def test_wrong_key_is_an_auth_error_with_the_fix_and_no_retry(api: FakeOpenAIAPI) -> None:
    sleeps = Sleeps()
    provider = make(api, ["a", "b"], key="sk-wrong-secret", sleep=sleeps)
    with pytest.raises(ProviderAuthError) as info:
        await collect(provider)
    await provider.aclose()
    assert len(api.requests) == 1 and sleeps.delays == []
    assert "HTTP 401" in info.value.user_message
    assert "moltbot secrets set local_key" in info.value.hint
    assert "sk-wrong-secret" not in str(info.value) and "Incorrect" not in str(info.value)


async def test_503_then_success_is_retried(api: FakeOpenAIAPI) -> None:
    sleeps = Sleeps()
    api.script(http_error(503), text("fine"))
    provider = make(api, sleep=sleeps)
    events = await collect(provider)
    await provider.aclose()
    assert texts(events) == ["fine"]
    assert len(api.requests) == 2
    assert len(sleeps.delays) == 1 and 0 < sleeps.delays[0] <= 0.5


async def test_429_honours_retry_after_then_gives_up_rate_limited(api: FakeOpenAIAPI) -> None:
    sleeps = Sleeps()
    api.always("llama-test", http_error(429, retry_after=7))
    provider = make(api, attempts=2, sleep=sleeps)
    with pytest.raises(ProviderRateLimited) as info:
        await collect(provider)
    await provider.aclose()
    assert sleeps.delays == [7.0] and len(api.requests) == 2
    assert info.value.retry_after == 7.0


async def test_unknown_model_moves_to_the_next_model_at_once(api: FakeOpenAIAPI) -> None:
    api.always("gone", http_error(404))
    provider = make(api, ["gone", "llama-test"])
    events = await collect(provider)
    await provider.aclose()
    assert texts(events) == ["echo: ", "hello"]
    assert [r.model for r in api.requests] == ["gone", "llama-test"]


async def test_local_server_without_a_key_gets_no_authorization_header(
    backup: FakeOpenAIAPI,
) -> None:
    provider = make(backup, ["llama-backup"], key=None)
    events = await collect(provider)
    await provider.aclose()
    assert texts(events) == ["echo: ", "hello"]
    assert "authorization" not in backup.requests[-1].headers


async def test_unreachable_server_is_retried_then_reported(api: FakeOpenAIAPI) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    sleeps = Sleeps()
    provider = make(api, base_url=f"http://127.0.0.1:{port}/v1", sleep=sleeps)
    with pytest.raises(ProviderError) as info:
        await collect(provider)
    await provider.aclose()
    assert len(sleeps.delays) == 2
    assert info.value.user_message == f"could not reach the model server at 127.0.0.1:{port}"


async def test_failover_to_the_second_provider_and_back_on_the_next_turn(
    api: FakeOpenAIAPI, backup: FakeOpenAIAPI
) -> None:
    api.always("llama-test", http_error(500))
    primary = make(api, attempts=2, label="primary")
    secondary = make(backup, ["llama-backup"], key=None, label="local")
    failover = FailoverProvider([primary, secondary])
    assert failover.name == "primary, then local"

    events = await collect(failover)
    assert texts(events) == ["echo: ", "hello"]
    assert len(api.requests) == 2  # its own retries first
    assert len(backup.requests) == 1

    api.heal("llama-test")
    api.script(text("primary is back"))
    events = await collect(failover)
    await failover.aclose()
    assert texts(events) == ["primary is back"]
    assert len(api.requests) == 3 and len(backup.requests) == 1


async def test_failover_on_auth_refusal_but_never_after_text_was_streamed(
    backup: FakeOpenAIAPI,
) -> None:
    class Flaky:
        """A provider that streams some text, then fails (a connection lost mid-answer)."""

        name = "flaky"

        async def stream(self, request: ModelRequest) -> AsyncGenerator[ProviderEvent, None]:
            yield TextDelta(text="half an ans")
            raise ProviderError("the model server failed mid-answer")

    async with FakeOpenAIAPI(api_key="sk-right") as locked:
        refused = make(locked, key="sk-wrong")
        secondary = make(backup, ["llama-backup"], key=None)
        events = await collect(FailoverProvider([refused, secondary]))
        assert texts(events) == ["echo: ", "hello"]  # the refusal moved on to the next

        seen: list[str] = []
        with pytest.raises(ProviderError):
            async for event in FailoverProvider([Flaky(), secondary]).stream(REQUEST):
                if isinstance(event, TextDelta):
                    seen.append(event.text)
        await refused.aclose()
        await secondary.aclose()
    assert seen == ["half an ans"]  # no second answer glued to the first
    assert len(backup.requests) == 1


async def test_every_provider_down_raises_the_first_ones_error(
    api: FakeOpenAIAPI, backup: FakeOpenAIAPI
) -> None:
    api.always("llama-test", http_error(502))
    backup.always("llama-backup", http_error(503))
    failover = FailoverProvider(
        [make(api, attempts=1), make(backup, ["llama-backup"], key=None, attempts=1)]
    )
    with pytest.raises(ProviderError) as info:
        await collect(failover)
    await failover.aclose()
    assert "HTTP 502" in info.value.user_message
    assert len(api.requests) == 1 and len(backup.requests) == 1


async def test_error_mid_stream_is_retried_only_before_any_text(api: FakeOpenAIAPI) -> None:
    api.script(Reply(chunks=("lost",), fail_after=0), text("x", "y"))
    provider = make(api)
    assert texts(await collect(provider)) == ["x", "y"]  # nothing was shown: retried
    assert len(api.requests) == 2

    api.script(Reply(chunks=("a", "b", "c"), fail_after=2), text("a", "b", "c"))
    seen: list[str] = []
    with pytest.raises(ProviderError) as info:
        async for event in provider.stream(REQUEST):
            if isinstance(event, TextDelta):
                seen.append(event.text)
    await provider.aclose()
    assert seen == ["a", "b"] and len(api.requests) == 3  # not asked again: no duplicate text
    assert "failed mid-answer" in info.value.user_message
    assert "crashed" not in str(info.value)


async def test_the_fake_also_answers_without_streaming_and_lists_models(
    backup: FakeOpenAIAPI,
) -> None:
    client = openai.AsyncOpenAI(api_key="anything", base_url=backup.base_url, max_retries=0)
    backup.script(tool_call("upper", {"text": "x"}, "on it", id="call_9"))
    reply = await client.chat.completions.create(
        model="llama-backup", messages=[{"role": "user", "content": "hi"}]
    )
    models = await client.models.list()
    await client.close()
    message = reply.choices[0].message
    assert message.content == "on it" and reply.choices[0].finish_reason == "tool_calls"
    assert message.tool_calls is not None
    call = message.tool_calls[0]
    assert call.id == "call_9" and call.type == "function"
    assert json.loads(call.function.arguments) == {"text": "x"}
    assert reply.usage is not None and reply.usage.prompt_tokens > 0
    assert [m.id for m in models.data] == ["llama-backup"]


def test_history_with_errors_and_mixed_blocks_translates_in_the_order_openai_wants() -> None:
    request = ModelRequest(
        system="",
        messages=[
            {"role": "user", "content": [{"type": "text", "text": "run two"}]},
            {
                "role": "assistant",
                "content": [
                    {"type": "tool_use", "id": "c1", "name": "a", "input": {}},
                    {"type": "tool_use", "id": "c2", "name": "b", "input": {"q": "é"}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "and hurry"},
                    {"type": "tool_result", "tool_use_id": "c1", "content": "fine"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "c2",
                        "content": [{"type": "text", "text": "no such thing"}],
                        "is_error": True,
                    },
                ],
            },
        ],
    )
    assert to_messages(request) == [
        {"role": "user", "content": "run two"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "c1", "type": "function", "function": {"name": "a", "arguments": "{}"}},
                {
                    "id": "c2",
                    "type": "function",
                    "function": {"name": "b", "arguments": '{"q": "é"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "c1", "content": "fine"},
        {"role": "tool", "tool_call_id": "c2", "content": "[error] no such thing"},
        {"role": "user", "content": "and hurry"},
    ]


async def test_arguments_that_are_not_json_become_an_empty_input(api: FakeOpenAIAPI) -> None:
    api.script(tool_call("upper", {"text": "x"}, id="call_1"))
    broken = Reply(calls=(Call("upper", {}, "call_2", raw='{"text": "x"'),))
    provider = make(api)
    good = [e for e in await collect(provider) if isinstance(e, ToolUse)]
    api.script(broken)
    bad = [e for e in await collect(provider) if isinstance(e, ToolUse)]
    await provider.aclose()
    assert good == [ToolUse(id="call_1", name="upper", input={"text": "x"})]
    assert bad == [ToolUse(id="call_2", name="upper", input={})]


async def test_an_image_block_goes_to_a_vision_model_as_a_data_uri(api: FakeOpenAIAPI) -> None:
    api.script(text("a red square"))
    provider = make(api)
    image = {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="},
    }
    request = ModelRequest(
        system="",
        messages=[{"role": "user", "content": [{"type": "text", "text": "what is it?"}, image]}],
        tools=[],
        max_tokens=64,
    )
    assert texts(await collect(provider, request)) == ["a red square"]
    await provider.aclose()
    assert api.requests[0].messages == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "what is it?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
            ],
        }
    ]
