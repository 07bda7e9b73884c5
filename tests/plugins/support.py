"""Shared bits of the plugin tests: config entries, an in-memory kv, a recording of denials."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec

from moltbot.config.schema import PluginConfig
from moltbot.plugins.api import Services

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
