"""Tracing and in-process figures, without Ray and without the OpenTelemetry SDK.

Spans go through the OpenTelemetry *API*: with no SDK configured (the default) they are
no-ops, so nothing changes unless the operator opts in (``actors.telemetry``). The W3C trace
context of a message travels in ``InboundMessage.trace`` (a plain ``dict[str, str]``), so a
turn in the agent actor and the reply sent by the channel actor join the inbound message's
trace. Span attributes name things (tool, channel, session); message text and tool input never
go into a span.

:class:`Counters` keeps the same figures the Ray metrics export, small enough to answer in
``status``: named counters and gauges (a bounded number of names) and a latency histogram
with fixed buckets.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.context import Context

tracer = trace.get_tracer("moltbot")

AttrValue = str | bool | int | float


def inject(carrier: dict[str, str] | None = None) -> dict[str, str]:
    """The current trace context (W3C ``traceparent``/``tracestate``) added to ``carrier``.

    Empty when no span is recording (no SDK configured)."""
    out: dict[str, str] = dict(carrier or {})
    propagate.inject(out)
    return out


def extract(carrier: Mapping[str, str] | None) -> Context:
    """The context a carrier holds (an empty context for an empty or unreadable carrier)."""
    return propagate.extract(dict(carrier or {}))


@contextmanager
def span(
    name: str, parent_carrier: Mapping[str, str] | None = None, **attrs: AttrValue | None
) -> Iterator[trace.Span]:
    """A span made current for the block; a child of ``parent_carrier``'s context if given,
    else of the current span. ``None`` attributes are left out. Exceptions are recorded."""
    ctx = extract(parent_carrier) if parent_carrier else None
    clean = {f"moltbot.{k}": v for k, v in attrs.items() if v is not None}
    with tracer.start_as_current_span(name, context=ctx, attributes=clean) as s:
        yield s


# --- figures -------------------------------------------------------------------------------
LATENCY_BUCKETS_MS: tuple[float, ...] = (
    5,
    10,
    25,
    50,
    100,
    250,
    500,
    1000,
    2500,
    5000,
    10_000,
    30_000,
    60_000,
    120_000,
)
MAX_NAMES = 64


class Counters:
    """Named counters and gauges (at most ``max_names`` names; more are ignored) and a
    latency histogram with fixed buckets (milliseconds; the last bucket is open)."""

    def __init__(
        self, max_names: int = MAX_NAMES, buckets_ms: tuple[float, ...] = LATENCY_BUCKETS_MS
    ) -> None:
        if list(buckets_ms) != sorted(buckets_ms) or not buckets_ms:
            raise ValueError("buckets must be a non-empty ascending sequence")
        self._max = max_names
        self._values: dict[str, float] = {}
        self._buckets = tuple(float(b) for b in buckets_ms)
        self._hist = [0] * (len(self._buckets) + 1)
        self._count = 0
        self._max_ms = 0.0

    def _room(self, name: str) -> bool:
        return name in self._values or len(self._values) < self._max

    def inc(self, name: str, n: float = 1) -> None:
        if self._room(name):
            self._values[name] = self._values.get(name, 0) + n

    def set(self, name: str, value: float) -> None:
        if self._room(name):
            self._values[name] = value

    def get(self, name: str) -> float:
        return self._values.get(name, 0)

    def observe_ms(self, ms: float) -> None:
        ms = max(0.0, ms)
        self._hist[bisect.bisect_left(self._buckets, ms)] += 1
        self._count += 1
        self._max_ms = max(self._max_ms, ms)

    def percentile_ms(self, p: float) -> float:
        """The upper bound of the bucket holding the ``p``-th percentile (0 with no samples;
        the largest sample seen when it falls in the open last bucket)."""
        if self._count == 0:
            return 0.0
        rank = max(1, -(-self._count * p // 100))  # ceil, at least the first sample
        seen = 0
        for i, n in enumerate(self._hist):
            seen += n
            if seen >= rank:
                return self._buckets[i] if i < len(self._buckets) else self._max_ms
        return self._max_ms

    def snapshot(self) -> dict[str, Any]:
        return {
            "values": dict(self._values),
            "latency": {
                "count": self._count,
                "p50_ms": self.percentile_ms(50),
                "p99_ms": self.percentile_ms(99),
                "max_ms": self._max_ms,
            },
        }
