"""Each actor kind's process imports only the SDKs its kind needs (issue 21: memory). A fresh
interpreter does what the kind's actor process does before it serves (import its actor module,
its preloads, and for a channel build its adapter and media intake from the config) and reports
which platform and model SDKs it holds. No Ray cluster is started: importing ``ray`` is all."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
LOCAL = "http://127.0.0.1:1/v1"  # an OpenAI-compatible local model server
SDKS = ("aiogram", "slack_sdk", "discord", "neonize", "anthropic", "openai", "playwright")

PROBE = """
import json, sys
import msgspec
from actors.registry import KINDS

kind, channel = sys.argv[1], sys.argv[2]
__import__(KINDS[kind][0])
if channel:
    from moltbot.channels import accounts
    from moltbot.config import schema
    from moltbot.config.schema import Config
    from moltbot.media.build import media_intake
    fields = {
        "telegram": (schema.TelegramAccount, {"token": "env:T"}),
        "slack": (schema.SlackAccount, {"bot_token": "env:B", "app_token": "env:A"}),
        "signal": (schema.SignalAccount, {"number": "+15550100"}),
        "discord": (schema.DiscordAccount, {"token": "env:T"}),
        "imessage": (schema.IMessageAccount, {"api_base": "http://h:1", "password": "env:P"}),
        "whatsapp": (schema.WhatsAppAccount, {"mode": "cloud", "phone_number_id": "12345",
                     "access_token": "env:A", "app_secret": "env:S", "verify_token": "env:V"}),
    }
    cls, extra = fields[channel]
    acct = msgspec.convert({"account": "a", **extra}, cls)
    accounts.make_adapter(channel, 0, acct, lambda ref, at: "x:" + "y" * 40)
    media_intake(Config(), lambda ref, at: "k")
    __import__(f"moltbot.channels.{channel}")  # the actor's preload
elif kind == "agent":
    from actors.agent import build_provider
    from moltbot.config.schema import Config
    agent = json.loads(sys.argv[3])
    cfg = msgspec.convert({"agent": agent}, Config)
    build_provider(cfg, vault_get=lambda name: None, environ={"K": "sk-test"})
print(json.dumps(sorted({m.split(".")[0] for m in sys.modules})))
"""


def _sdks_loaded(kind: str, channel: str = "", agent: str = "{}") -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", PROBE, kind, channel, agent],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return set(json.loads(out.stdout)) & set(SDKS)


@pytest.mark.parametrize(
    ("channel", "own"),
    [
        ("telegram", {"aiogram"}),
        ("slack", {"slack_sdk"}),
        ("signal", set()),
        ("imessage", set()),
        ("discord", {"discord"}),
        ("whatsapp", set()),  # the Cloud API: no linked-device client (neonize)
    ],
)
def test_a_channel_actor_loads_only_its_platforms_sdk(channel: str, own: set[str]) -> None:
    assert _sdks_loaded("channel", channel) == own


@pytest.mark.parametrize("kind", ["store", "scheduler", "gateway", "sandbox", "supervisor"])
def test_kinds_without_a_platform_load_no_sdk(kind: str) -> None:
    assert _sdks_loaded(kind) == set()


@pytest.mark.parametrize(
    ("agent", "own"),
    [
        ({}, set()),  # the default: the offline provider
        ({"provider": "anthropic", "api_key": "env:K"}, {"anthropic"}),
        ({"providers": [{"kind": "openai", "base_url": LOCAL, "models": ["m"]}]}, {"openai"}),
    ],
)
def test_the_agent_loads_only_its_providers_sdk(agent: dict[str, Any], own: set[str]) -> None:
    assert _sdks_loaded("agent", "", json.dumps(agent)) == own
