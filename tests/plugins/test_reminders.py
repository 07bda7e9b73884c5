"""The example reminders plugin (examples/reminders), loaded like any plugin, in memory."""

from __future__ import annotations

from collections.abc import Iterator

import msgspec
import pytest

from moltbot.errors import PluginError
from moltbot.plugins.loader import LoadedPlugin, activate, prepare
from moltbot.plugins.manifest import source_digest
from tests.plugins.support import EXAMPLES, Host, entry

GRANT = ["tools", "storage"]


@pytest.fixture
def on_path(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.syspath_prepend(str(EXAMPLES))
    yield


async def load(host: Host, **config: object) -> LoadedPlugin:
    pc = entry("reminders", "reminders_plugin", capabilities=GRANT, config=config)
    loaded = prepare(pc, host.services())
    await activate(loaded)
    return loaded


@pytest.mark.usefixtures("on_path")
async def test_remind_list_and_fire() -> None:
    import reminders_plugin as rp

    host = Host()
    loaded = await load(host, tick_s=0.1)
    tools = loaded.api.registered.tools
    assert [s["name"] for s in tools.specs()] == ["remind", "list_reminders"]
    set_ = await tools.call("remind", {"in_seconds": 5, "text": "tea"}, "telegram:main:dm:1")
    assert not set_.is_error and "set for 5s from now: tea" in set_.text
    await tools.call("remind", {"in_seconds": 3600, "text": "later"}, "telegram:main:dm:1")
    await tools.call("remind", {"in_seconds": 0, "text": "bob's"}, "telegram:main:dm:2")
    assert list(host.kv) == ["plugin.reminders.reminders"]  # its private key in the store
    listed = (await tools.call("list_reminders", {}, "telegram:main:dm:1")).text
    assert "[pending] tea" in listed and "[pending] later" in listed and "bob" not in listed

    items = await rp.load(loaded.api)
    fired = await rp.fire_due(loaded.api, now=items[0].created + 10)
    assert sorted(r.text for r in fired) == ["bob's", "tea"]
    assert await rp.fire_due(loaded.api, now=items[0].created + 10) == []  # once only
    listed = (await tools.call("list_reminders", {}, "telegram:main:dm:1")).text
    assert "[fired] tea" in listed and "[pending] later" in listed
    pending = await tools.call("list_reminders", {"include_fired": False}, "telegram:main:dm:1")
    assert pending.text.endswith("[pending] later") and "tea" not in pending.text
    assert (await tools.call("list_reminders", {}, "web:nobody")).text == "no reminders"


@pytest.mark.usefixtures("on_path")
async def test_bad_input_limits_and_config() -> None:
    host = Host()
    tools = (await load(host, max_pending=1)).api.registered.tools
    assert (await tools.call("remind", {"in_seconds": -1, "text": "x"}, "s")).is_error
    assert (await tools.call("remind", {"in_seconds": 1, "text": ""}, "s")).is_error
    assert not (await tools.call("remind", {"in_seconds": 1, "text": "one"}, "s")).is_error
    full = await tools.call("remind", {"in_seconds": 1, "text": "two"}, "s")
    assert full.text.startswith("too many pending reminders (1)")
    with pytest.raises(PluginError, match="plugin 'reminders': invalid config"):
        await load(Host(), tick_s=0)


@pytest.mark.usefixtures("on_path")
async def test_reminders_without_storage_is_denied_at_first_use() -> None:
    host = Host()
    pc = entry("reminders", "reminders_plugin", capabilities=["tools"])
    loaded = prepare(pc, host.services())
    await activate(loaded)
    result = await loaded.api.registered.tools.call("remind", {"in_seconds": 1, "text": "x"}, "s")
    assert result.is_error and "'storage' capability" in result.text
    assert host.denied == [{"plugin": "reminders", "capability": "storage"}]


@pytest.mark.usefixtures("on_path")
def test_the_example_can_be_pinned() -> None:
    digest = source_digest("reminders_plugin")
    pc = entry("reminders", "reminders_plugin", capabilities=GRANT, sha256=digest)
    assert prepare(pc).digest == digest
    assert msgspec.convert(
        {"name": "reminders", "module": "reminders_plugin", "sha256": "0" * 64}, type(pc)
    )
    with pytest.raises(PluginError, match="does not match the pinned 000000000000"):
        prepare(entry("reminders", "reminders_plugin", sha256="0" * 64))
