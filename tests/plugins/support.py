"""Shared bits of the plugin tests: config entries, an in-memory kv, a recording of denials."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec

from moltbot.config.schema import PluginConfig
from moltbot.plugins import jail
from moltbot.plugins.api import Services
from moltbot.plugins.broker import Broker
from moltbot.plugins.manifest import plugin_source
from moltbot.sandbox.bwrap import SandboxPolicy

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples" / "reminders"
FIXTURES = "tests.plugins.fixtures"


def entry(name: str, module: str, **kw: Any) -> PluginConfig:
    return msgspec.convert({"name": name, "module": module, **kw}, PluginConfig)


class Host:
    """What the plugin actor supplies, in memory: kv, secrets, and the denials it was told of."""

    def __init__(self, secrets: dict[str, str] | None = None) -> None:
        self.kv: dict[str, bytes] = {}
        self.secrets = dict(secrets or {})
        self.denied: list[dict[str, str]] = []

    def services(self) -> Services:
        async def kv_get(key: str) -> bytes | None:
            return self.kv.get(key)

        async def kv_put(key: str, value: bytes) -> None:
            self.kv[key] = value

        return Services(
            secret=self.secrets.__getitem__,
            kv_get=kv_get,
            kv_put=kv_put,
            denied=self.denied.append,
        )


@contextlib.asynccontextmanager
async def sandboxed(pc: PluginConfig, services: Services, **kw: Any) -> AsyncIterator[Broker]:
    """The plugin in its real bubblewrap host process, loaded and started, with a broker."""
    source = plugin_source(pc.module)
    proc = await jail.spawn(source, SandboxPolicy(workspace=source, memory_mb=1024))
    assert proc.stdout is not None and proc.stdin is not None
    broker = Broker(pc, services, proc.stdout, proc.stdin, **kw)
    try:
        async with asyncio.TaskGroup() as tg:
            serving = tg.create_task(broker.serve())
            await asyncio.wait_for(broker.load(), 60)
            await broker.start()
            yield broker
            serving.cancel()
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
