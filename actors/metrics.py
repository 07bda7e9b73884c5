"""Ray metrics of the tree (``ray.util.metrics``; exported by Ray's Prometheus endpoint).

Metric objects are created lazily, once per process. Recording never raises into the caller:
a metrics failure is logged once at debug level and otherwise ignored.
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger("moltbot.metrics")

TURN_BUCKETS_S = [0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0]

_metrics: dict[str, Any] = {}
_failed = False


def _get(name: str) -> Any:
    m = _metrics.get(name)
    if m is None:
        from ray.util import metrics as rm

        if name == "moltbot_messages_in":
            m = rm.Counter(name, description="Messages accepted", tag_keys=("channel",))
        elif name == "moltbot_messages_out":
            m = rm.Counter(name, description="Replies sent", tag_keys=("channel",))
        elif name == "moltbot_turn_latency_seconds":
            m = rm.Histogram(name, description="Agent turn latency", boundaries=TURN_BUCKETS_S)
        elif name == "moltbot_restarts":
            m = rm.Counter(name, description="Child restarts", tag_keys=("child",))
        elif name == "moltbot_queue_depth":
            m = rm.Gauge(name, description="Messages waiting", tag_keys=("channel",))
        elif name == "moltbot_tokens":
            m = rm.Counter(name, description="Model tokens", tag_keys=("kind",))
        else:
            raise KeyError(name)
        _metrics[name] = m
    return m


def _safe(name: str, method: str, value: float, tags: dict[str, str] | None = None) -> None:
    global _failed
    try:
        getattr(_get(name), method)(value, tags=tags)
    except Exception as exc:
        if not _failed:
            _failed = True
            log.debug("metric %s not recorded: %s", name, type(exc).__name__)


def messages_in(channel: str, n: int = 1) -> None:
    if n > 0:
        _safe("moltbot_messages_in", "inc", n, {"channel": channel})


def messages_out(channel: str, n: int = 1) -> None:
    if n > 0:
        _safe("moltbot_messages_out", "inc", n, {"channel": channel})


def queue_depth(channel: str, depth: int) -> None:
    _safe("moltbot_queue_depth", "set", depth, {"channel": channel})


def turn_latency(seconds: float) -> None:
    _safe("moltbot_turn_latency_seconds", "observe", max(0.0, seconds))


def tokens(kind: str, n: int) -> None:
    if n > 0:
        _safe("moltbot_tokens", "inc", n, {"kind": kind})


def restart(child: str) -> None:
    _safe("moltbot_restarts", "inc", 1, {"child": child})
