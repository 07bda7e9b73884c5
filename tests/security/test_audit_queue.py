"""The one audit forwarder (pure): bounded, in order, never blocking its caller, drops and
logs when full, survives a failing sender, flushes on close."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest

from moltbot.errors import PlatformUnavailable
from moltbot.security.audit import AuditLog, tail, verify
from moltbot.security.audit_queue import AuditQueue


async def test_records_reach_the_log_in_order_and_close_flushes_them(tmp_path: Any) -> None:
    log = AuditLog(tmp_path / "audit.jsonl")

    async def send(kind: str, fields: dict[str, Any]) -> None:
        await asyncio.sleep(0)
        log.append(kind, fields)

    queue = AuditQueue(send, source="gateway")
    for n in range(20):
        queue.record("login", {"n": n})
    queue.secret_reader()("gateway_token")
    await queue.aclose()
    recs = tail(tmp_path / "audit.jsonl", 100)
    assert [r["fields"].get("n") for r in recs[:20]] == list(range(20))
    assert recs[20]["kind"] == "secret_read" and recs[20]["fields"]["reader"] == "gateway"
    assert verify(tmp_path / "audit.jsonl").ok


async def test_a_full_queue_drops_and_logs_instead_of_blocking(
    caplog: pytest.LogCaptureFixture,
) -> None:
    release = asyncio.Event()
    sent: list[int] = []

    async def slow(kind: str, fields: dict[str, Any]) -> None:
        await release.wait()
        sent.append(fields["n"])

    queue = AuditQueue(slow, source="a/b", maxsize=3)
    with caplog.at_level(logging.WARNING, "moltbot.audit"):
        for n in range(10):
            queue.record("tool_call", {"n": n})  # returns at once, full or not
        await asyncio.sleep(0)
        dropped = [r for r in caplog.records if "audit queue full" in r.getMessage()]
    assert dropped and all("a/b" in r.getMessage() for r in dropped)
    release.set()
    await queue.aclose()
    assert sent == sorted(sent) and 3 <= len(sent) <= 4 and sent[0] == 0


async def test_a_failing_sender_is_logged_and_later_records_still_go(
    caplog: pytest.LogCaptureFixture,
) -> None:
    sent: list[str] = []

    async def flaky(kind: str, fields: dict[str, Any]) -> None:
        if kind == "bad":
            raise PlatformUnavailable("store down")
        sent.append(kind)

    queue = AuditQueue(flaky, source="gateway")
    with caplog.at_level(logging.WARNING, "moltbot.audit"):
        queue.record("bad", {})
        queue.record("login", {})
        await queue.aclose()
    assert sent == ["login"]
    assert any("bad record not audited" in r.getMessage() for r in caplog.records)
