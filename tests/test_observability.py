"""Tracing and figures without Ray: the real channel pipeline (fake Telegram) under an
in-memory OpenTelemetry SDK; the agent's part is played by a traced ``answer`` callable."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from moltbot import observability
from moltbot.agent.loop import TurnRunner
from moltbot.agent.providers.base import Done, ModelRequest, TextDelta, ToolUse
from moltbot.cli.render import figures_text, table
from moltbot.messages import ChatFinal, InboundMessage, ToolResult
from moltbot.observability import Counters
from tests.channels.service_rig import OPEN, Rig, running, until
from tests.fakes.telegram_api import FakeTelegram

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """An SDK tracer behind ``moltbot.observability.span`` (not the global provider)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(observability, "tracer", provider.get_tracer("moltbot"))
    yield exporter
    provider.shutdown()


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as f:
        yield f


def by_name(exporter: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    found = {s.name: s for s in exporter.get_finished_spans()}
    assert len(found) == len(exporter.get_finished_spans()), "one span per name expected"
    return found


def parent_id(s: ReadableSpan) -> int | None:
    return s.parent.span_id if s.parent is not None else None


async def test_inbound_turn_and_outbound_spans_share_one_trace(
    fake: FakeTelegram, spans: InMemorySpanExporter
) -> None:
    rig = Rig(fake, OPEN)
    seen: list[InboundMessage] = []

    async def traced_answer(msg: InboundMessage) -> str:  # what the agent actor does
        seen.append(msg)
        with observability.span("moltbot.turn", msg.trace, channel=msg.channel):
            return await rig.agent.answer(msg)

    rig.service.ports = dataclasses.replace(rig.service.ports, answer=traced_answer)
    fake.inject_message(chat_id=42, user_id=42, text="trace me")
    async with running(rig):
        await fake.wait_sent(1)
        await until(lambda: rig.store.done)
    got = by_name(spans)
    assert set(got) == {"moltbot.inbound", "moltbot.turn", "moltbot.outbound"}
    inbound, turn, outbound = got["moltbot.inbound"], got["moltbot.turn"], got["moltbot.outbound"]
    assert inbound.parent is None  # a fresh trace per platform message
    trace_id = inbound.context.trace_id
    assert {turn.context.trace_id, outbound.context.trace_id} == {trace_id}
    assert parent_id(turn) == parent_id(outbound) == inbound.context.span_id
    assert inbound.attributes is not None and inbound.attributes["moltbot.channel"] == "telegram"
    # the context travelled in the message: journaled with it and handed to the agent
    [journaled] = rig.store.journal.values()
    assert journaled.trace == seen[0].trace
    assert f"{trace_id:032x}" in journaled.trace["traceparent"]
    assert rig.replies() == {"[offline] you said: trace me": 1}


async def test_without_an_sdk_nothing_is_added_to_the_message(fake: FakeTelegram) -> None:
    rig = Rig(fake, OPEN)  # the API's default no-op tracer
    fake.inject_message(chat_id=42, user_id=42, text="plain")
    async with running(rig):
        await fake.wait_sent(1)
        await until(lambda: rig.store.done)
    [journaled] = rig.store.journal.values()
    assert journaled.trace == {}


def test_inject_extract_round_trip(spans: InMemorySpanExporter) -> None:
    assert observability.inject() == {}  # no current span
    with observability.span("moltbot.inbound") as outer:
        carrier = observability.inject({"keep": "me"})
    assert carrier["keep"] == "me" and "traceparent" in carrier
    ctx = trace.get_current_span(observability.extract(carrier)).get_span_context()
    assert ctx.is_remote
    assert (ctx.trace_id, ctx.span_id) == (
        outer.get_span_context().trace_id,
        outer.get_span_context().span_id,
    )
    with observability.span("moltbot.turn", carrier, session="s", skipped=None):
        pass
    turn = by_name(spans)["moltbot.turn"]
    assert parent_id(turn) == outer.get_span_context().span_id
    assert dict(turn.attributes or {}) == {"moltbot.session": "s"}
    junk = trace.get_current_span(observability.extract({"traceparent": "nonsense"}))
    assert not junk.get_span_context().is_valid


class OneToolProvider:
    """Asks for one tool call with a secret-looking input, then answers."""

    name = "scripted"

    def __init__(self) -> None:
        self.calls = 0

    async def stream(self, request: ModelRequest) -> AsyncIterator[Any]:
        self.calls += 1
        if self.calls == 1:
            yield ToolUse(id="t1", name="fetch", input={"token": "hunter2"})
            yield Done(stop_reason="tool_use", usage={"input_tokens": 7, "output_tokens": 3})
        else:
            yield TextDelta(text="done")
            yield Done(stop_reason="end_turn", usage={"input_tokens": 9, "output_tokens": 2})


class FailingTools:
    def specs(self) -> list[dict[str, Any]]:
        return [{"name": "fetch", "description": "fetch", "input_schema": {"type": "object"}}]

    async def call(
        self, name: str, input: dict[str, Any], session: str, ctx: Any = None
    ) -> ToolResult:
        return ToolResult(text="refused", is_error=True)


class MemoryTranscripts:
    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    async def load(self, session: str) -> list[dict[str, Any]]:
        return list(self.records)

    async def append(self, session: str, record: dict[str, Any]) -> None:
        self.records.append(record)


async def test_a_tool_call_is_a_child_span_with_name_and_error_but_not_its_input(
    spans: InMemorySpanExporter,
) -> None:
    runner = TurnRunner(OneToolProvider(), FailingTools(), MemoryTranscripts())  # type: ignore[arg-type]
    with observability.span("moltbot.turn"):
        events = [e async for e in runner.run_turn("s", "go")]
    final = events[-1]
    assert isinstance(final, ChatFinal) and final.usage == {"input_tokens": 16, "output_tokens": 5}
    got = by_name(spans)
    tool = got["moltbot.tool"]
    assert parent_id(tool) == got["moltbot.turn"].context.span_id
    attrs = dict(tool.attributes or {})
    assert attrs == {"moltbot.tool": "fetch", "moltbot.is_error": True, "moltbot.status": "error"}
    assert "hunter2" not in repr(attrs)


def test_counters_percentiles_and_bounds() -> None:
    c = Counters(max_names=2, buckets_ms=(10, 100, 1000))
    assert c.snapshot()["latency"] == {"count": 0, "p50_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0}
    for ms in [5] * 50 + [50] * 49 + [5000]:
        c.observe_ms(ms)
    assert c.percentile_ms(50) == 10.0  # the 50th of 100 samples is in the first bucket
    assert c.percentile_ms(51) == 100.0
    assert c.percentile_ms(99) == 100.0
    assert c.percentile_ms(100) == 5000.0  # the open bucket reports the largest sample
    c.inc("in")
    c.inc("in", 2)
    c.set("queue", 4)
    c.inc("third")  # beyond max_names: ignored, memory stays bounded
    snap = c.snapshot()
    assert snap["values"] == {"in": 3, "queue": 4}
    assert snap["latency"]["count"] == 100 and snap["latency"]["p99_ms"] == 100.0
    with pytest.raises(ValueError):
        Counters(buckets_ms=(10, 5))


def test_status_table_shows_figures() -> None:
    status = {
        "name": "moltbot",
        "strategy": "one_for_one",
        "children": [
            {
                "name": "channels/telegram:main",
                "state": "running",
                "restarts": 0,
                "uptime": 5,
                "figures": {"in": 12, "out": 12, "queue": 0},
            },
            {
                "name": "agents/agent-0",
                "state": "running",
                "restarts": 1,
                "uptime": 5,
                "figures": {
                    "turns": 5,
                    "p50_ms": 80.0,
                    "p99_ms": 250.0,
                    "tokens_in": 10,
                    "tokens_out": 4,
                },
            },
            {"name": "store", "state": "running", "restarts": 0, "uptime": 5},
        ],
    }
    text = table(status)
    lines = text.splitlines()
    assert "FIGURES" in lines[0]
    assert "in 12 out 12 q 0" in lines[2]
    assert "turns 5 p50 80ms p99 250ms tok in 10 tok out 4" in lines[3]
    assert figures_text(None) == figures_text({}) == ""
    assert lines[0].index("FIGURES") == lines[2].index("in 12")  # its own aligned column


def test_metrics_never_raise_into_the_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    from actors import metrics

    def broken(name: str) -> Any:
        raise RuntimeError("no metrics agent")

    monkeypatch.setattr(metrics, "_get", broken)
    metrics.messages_in("telegram", 2)
    metrics.messages_out("telegram", 1)
    metrics.queue_depth("telegram", 0)
    metrics.turn_latency(0.2)
    metrics.tokens("input", 5)
    metrics.restart("channels/telegram:main")


def test_tracing_export_is_opt_in(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from actors import telemetry

    before = trace.get_tracer_provider()
    monkeypatch.delenv("MOLTBOT_OTEL", raising=False)
    assert telemetry.configure_tracing() is False
    if importlib.util.find_spec("opentelemetry.exporter.otlp") is None:
        monkeypatch.setenv("MOLTBOT_OTEL", "1")  # asked for, but no exporter: warn, go on
        assert telemetry.configure_tracing() is False
    assert trace.get_tracer_provider() is before
