"""PluginAPI: every entry point checks its capability; denials are reported; kv is private."""

from __future__ import annotations

import pickle
from collections.abc import Callable

import httpx
import msgspec
import pytest

from moltbot.errors import BadRequest, CapabilityDenied, ConfigError, NotFound, PluginError
from moltbot.messages import OutboundMessage, ToolResult
from moltbot.plugins.api import PluginAPI
from tests.plugins.support import Host


class Args(msgspec.Struct, forbid_unknown_fields=True):
    n: int


def api_with(*caps: str, secrets: tuple[str, ...] = (), host: Host | None = None) -> PluginAPI:
    host = host or Host()
    return PluginAPI(
        "demo",
        capabilities=frozenset(caps),
        secrets=frozenset(secrets),
        services=host.services(),
    )


async def _send(msg: OutboundMessage) -> None:
    return None


@pytest.mark.parametrize(
    ("capability", "use"),
    [
        ("tools", lambda api: api.register_tool("t", "d", Args, lambda a, s: "x")),
        ("gateway_methods", lambda api: api.register_gateway_method("m", lambda p: {})),
        ("channel", lambda api: api.register_channel("matrix", _send)),
        ("network", lambda api: api.http()),
        ("secrets", lambda api: api.secret("tok")),
    ],
)
def test_each_entry_point_needs_its_capability(capability: str, use: object) -> None:
    host = Host({"tok": "v"})
    api = api_with(
        *({"tools", "gateway_methods", "channel", "network", "secrets"} - {capability}),
        secrets=("tok",),
        host=host,
    )
    with pytest.raises(CapabilityDenied) as err:
        use(api)  # type: ignore[operator]
    assert err.value.code == "capability_denied"
    assert f"plugin 'demo' was not granted the '{capability}' capability" in str(err.value)
    assert "plugins[demo]" in err.value.hint
    assert host.denied == [{"plugin": "demo", "capability": capability}]


async def test_storage_needs_its_capability() -> None:
    host = Host()
    api = api_with("tools", host=host)
    with pytest.raises(CapabilityDenied):
        await api.kv_get("k")
    with pytest.raises(CapabilityDenied):
        await api.kv_put("k", b"v")
    assert [d["capability"] for d in host.denied] == ["storage", "storage"]


def test_a_secret_not_listed_in_config_is_denied_and_reported_by_name_only() -> None:
    host = Host({"tok": "granted-value", "other": "forbidden-value"})
    api = api_with("secrets", secrets=("tok",), host=host)
    assert api.secret("tok") == "granted-value"
    with pytest.raises(CapabilityDenied) as err:
        api.secret("other")
    assert "may not read secret 'other'" in str(err.value)
    assert "forbidden-value" not in str(err.value)
    assert host.denied == [{"plugin": "demo", "capability": "secrets", "secret_name": "other"}]


def test_a_failing_denial_reporter_does_not_hide_the_denial() -> None:
    def broken(fields: dict[str, str]) -> None:
        raise OSError("audit down")

    from moltbot.plugins.api import Services

    api = PluginAPI("demo", capabilities=frozenset(), services=Services(denied=broken))
    with pytest.raises(CapabilityDenied):
        api.http()


async def test_kv_is_namespaced_per_plugin_and_keys_are_checked() -> None:
    host = Host()
    api = api_with("storage", host=host)
    assert await api.kv_get("state") is None
    await api.kv_put("state", b"1")
    assert await api.kv_get("state") == b"1"
    assert host.kv == {"plugin.demo.state": b"1"}
    for bad in ["", "../x", "a/b", ".hidden", "x" * 49, "a..b"]:
        with pytest.raises(PluginError, match="invalid storage key"):
            await api.kv_put(bad, b"")


async def test_tools_are_validated_and_errors_become_safe_results() -> None:
    api = api_with("tools")

    async def double(args: Args, session: str) -> str:
        return f"{session}: {args.n * 2}"

    def boom(args: Args, session: str) -> str:
        raise ValueError("secret internals")

    api.register_tool("double", "Double n.", Args, double)
    api.register_tool("boom", "Fails.", Args, boom)
    api.register_tool("sync", "Sync.", Args, lambda a, s: ToolResult(text="no", is_error=True))
    tools = api.registered.tools
    assert [s["name"] for s in tools.specs()] == ["double", "boom", "sync"]
    assert tools.specs()[0]["input_schema"]["required"] == ["n"]
    assert await tools.call("double", {"n": 21}, "s1") == ToolResult(text="s1: 42")
    bad = await tools.call("double", {"n": "x"}, "s1")
    assert bad.is_error and "invalid input for double" in bad.text
    failed = await tools.call("boom", {"n": 1}, "s1")
    assert failed == ToolResult(text="the boom tool failed unexpectedly", is_error=True)
    assert await tools.call("sync", {"n": 1}, "s") == ToolResult(text="no", is_error=True)
    with pytest.raises(PluginError, match="registered twice"):
        api.register_tool("double", "again", Args, double)
    with pytest.raises(PluginError, match="invalid tool name"):
        api.register_tool("no spaces", "x", Args, double)
    with pytest.raises(PluginError, match=r"must be a msgspec\.Struct"):
        api.register_tool("raw", "x", dict, double)  # type: ignore[arg-type]


async def test_gateway_methods_sync_and_async() -> None:
    api = api_with("gateway_methods")

    async def status(params: dict[str, object]) -> dict[str, object]:
        return {"ok": True, **params}

    api.register_gateway_method("status", status)
    api.register_gateway_method("count", lambda params: {"n": len(params)})
    api.register_gateway_method("bad", lambda params: ["not", "a", "dict"])  # type: ignore[arg-type,return-value]
    assert await api.call_method("status", {"a": 1}) == {"ok": True, "a": 1}
    assert await api.call_method("count", {"a": 1, "b": 2}) == {"n": 2}
    with pytest.raises(NotFound, match="has no method 'nope'"):
        await api.call_method("nope", {})
    with pytest.raises(PluginError, match="did not return an object"):
        await api.call_method("bad", {})
    with pytest.raises(PluginError, match="invalid or repeated"):
        api.register_gateway_method("status", status)


async def test_method_errors_reach_callers_safe_and_plain() -> None:
    api = api_with("gateway_methods")

    def raiser(exc: Exception) -> Callable[[dict[str, object]], dict[str, object]]:
        def handler(params: dict[str, object]) -> dict[str, object]:
            raise exc

        return handler

    async def crash(params: dict[str, object]) -> dict[str, object]:
        raise ValueError("connection string postgres://u:hunter2@db")

    api.register_gateway_method("crash", crash)
    api.register_gateway_method("bad", raiser(BadRequest("give a date", hint="YYYY-MM-DD")))
    api.register_gateway_method("config", raiser(ConfigError("$.x", "wrong", "fix x")))
    with pytest.raises(PluginError) as info:
        await api.call_method("crash", {})
    assert type(info.value) is PluginError and "hunter2" not in str(info.value)
    assert info.value.user_message == "plugin 'demo': method crash failed"
    with pytest.raises(BadRequest) as bad:  # one of ours, of a plain type: passed as it is
        await api.call_method("bad", {})
    assert bad.value.user_message == "give a date" and bad.value.hint == "YYYY-MM-DD"
    with pytest.raises(PluginError) as other:  # another of ours: its safe text, a plain type
        await api.call_method("config", {})
    assert type(other.value) is PluginError
    assert other.value.user_message == "config error at $.x: wrong"
    assert other.value.hint == "fix x"
    for exc in (info.value, bad.value, other.value):  # they cross to the gateway's process
        again = pickle.loads(pickle.dumps(exc))
        assert (type(again), again.user_message) == (type(exc), exc.user_message)


def test_channels_are_recorded_and_builtin_names_refused() -> None:
    api = api_with("channel")
    api.register_channel("matrix", _send, "Matrix rooms")
    assert api.registered.channels["matrix"].description == "Matrix rooms"
    for taken in ["telegram", "discord", "web", "matrix"]:
        with pytest.raises(PluginError):
            api.register_channel(taken, _send)


async def test_http_client_with_the_network_capability() -> None:
    api = api_with("network")
    async with api.http(base_url="http://127.0.0.1:9") as client:
        assert isinstance(client, httpx.AsyncClient)
        assert client.timeout.read == 15.0
