"""Loading real plugin modules (tests/plugins/fixtures) into a PluginAPI and calling them."""

from __future__ import annotations

import uuid
from pathlib import Path

import msgspec
import pytest

from moltbot.config.schema import Config
from moltbot.errors import CapabilityDenied, PluginError
from moltbot.messages import ToolResult
from moltbot.plugins.loader import activate, plugin_config, prepare
from tests.plugins.support import FIXTURES, Host, entry

PROBE_CAPS = ["tools", "secrets", "gateway_methods"]


async def test_a_granted_plugin_loads_registers_and_answers() -> None:
    host = Host({"probe_token": "abcdef", "admin_password": "hunter22"})
    pc = entry(
        "probe", f"{FIXTURES}.secret_probe", capabilities=PROBE_CAPS, secrets=["probe_token"]
    )
    loaded = prepare(pc, host.services())
    await activate(loaded)
    info = loaded.describe()
    assert info["capabilities"] == ["gateway_methods", "secrets", "tools"]
    assert info["requested"] == ["gateway_methods", "network", "secrets", "storage", "tools"]
    assert info["tools"] == ["peek"] and info["methods"] == ["whoami"]
    assert info["version"] == "2.0" and len(info["sha256"]) == 64 and not info["pinned"]
    tools = loaded.api.registered.tools
    ok = await tools.call("peek", {"name": "probe_token"}, "s")
    assert ok == ToolResult(text="probe_token has 6 characters")
    denied = await tools.call("peek", {"name": "admin_password"}, "s")
    assert denied.is_error and "may not read secret 'admin_password'" in denied.text
    assert "hunter22" not in denied.text
    assert host.denied == [
        {"plugin": "probe", "capability": "secrets", "secret_name": "admin_password"}
    ]
    who = await loaded.api.call_method("whoami", {"echo": "hi"})
    assert who == {"plugin": "probe", "echo": "hi", "caps": info["capabilities"]}


async def test_requested_but_ungranted_capabilities_are_denied_at_use() -> None:
    host = Host()
    pc = entry("probe", f"{FIXTURES}.secret_probe", capabilities=["tools", "gateway_methods"])
    loaded = prepare(pc, host.services())
    await activate(loaded)
    denied = await loaded.api.registered.tools.call("peek", {"name": "x"}, "s")
    assert denied.is_error and "not granted the 'secrets' capability" in denied.text
    with pytest.raises(CapabilityDenied):
        loaded.api.http()
    with pytest.raises(CapabilityDenied):
        await loaded.api.kv_get("k")
    assert [d["capability"] for d in host.denied] == ["secrets", "network", "storage"]


async def test_a_plugin_using_an_ungranted_capability_in_setup_fails_to_activate() -> None:
    host = Host()
    loaded = prepare(
        entry("greedy", f"{FIXTURES}.greedy", capabilities=["channel"]), host.services()
    )
    with pytest.raises(CapabilityDenied, match="'tools' capability"):
        await activate(loaded)
    assert host.denied == [{"plugin": "greedy", "capability": "tools"}]


async def test_plugin_config_reaches_the_plugin_validated() -> None:
    pc = entry("configured", f"{FIXTURES}.configured", config={"every_s": 0.5, "label": "y"})
    loaded = prepare(pc)
    await activate(loaded)
    assert loaded.api.config.every_s == 0.5 and loaded.api.config.label == "y"
    with pytest.raises(PluginError, match="plugin 'configured': invalid config"):
        prepare(entry("configured", f"{FIXTURES}.configured", config={"every_s": -1}))


def test_the_plugin_entry_is_found_by_name_in_the_config() -> None:
    cfg = msgspec.convert({"plugins": [{"name": "a", "module": "m"}]}, Config)
    assert plugin_config(cfg, "a").module == "m"
    with pytest.raises(PluginError, match="no plugin named 'b' in config"):
        plugin_config(cfg, "b")


@pytest.mark.parametrize(
    ("source", "needle"),
    [
        ("raise RuntimeError('at import: token=abc')\n", "failed to import (RuntimeError)"),
        ("MANIFEST = {'name': 'bad', 'version': '1'}\n", "has no setup(api) function"),
        (
            "MANIFEST = {'name': 'bad', 'version': '1'}\n"
            "def setup(api): pass\ndef run(api): pass\n",
            "run must be an async function",
        ),
    ],
)
def test_broken_modules_are_refused_with_a_safe_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str, needle: str
) -> None:
    name = f"broken_{uuid.uuid4().hex[:8]}"
    (tmp_path / f"{name}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(PluginError) as err:
        prepare(entry("bad", name))
    assert needle in str(err.value)
    assert "token=abc" not in str(err.value)


async def test_a_bug_in_the_plugins_own_setup_propagates_as_itself() -> None:
    loaded = prepare(entry("setup-bug", f"{FIXTURES}.raises_in_setup"))
    with pytest.raises(KeyError):  # not a refusal: the actor crashes and is restarted
        await activate(loaded)
