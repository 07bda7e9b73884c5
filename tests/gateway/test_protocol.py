"""The gateway protocol against a real server: connect, every method, streaming, events."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from moltbot.clock import FakeClock
from moltbot.gateway.backend import BaseBackend
from moltbot.gateway.server import GatewayServer, GatewaySettings

from .conftest import TOKEN, MakeGateway, logged_in, open_client
from .echo_backend import SECRET_IN_CONFIG, EchoBackend


async def test_connect_answers_session_and_methods(gateway: GatewayServer) -> None:
    client = await open_client(gateway)
    res = await client.login()
    assert res["type"] == "res" and res["ok"] is True
    payload = res["payload"]
    assert payload["auth"] == "token"
    assert len(payload["session"]) >= 40
    assert "chat.send" in payload["methods"] and "config.get" in payload["methods"]
    assert TOKEN not in json.dumps(res)


async def test_every_method_reaches_the_backend(make_gateway: MakeGateway) -> None:
    backend = EchoBackend()
    gw = await make_gateway(backend)
    c = await logged_in(gw)

    assert (await c.call("health"))["payload"]["status"] == "ok"
    tree = (await c.call("status"))["payload"]["tree"]
    assert [n["name"] for n in tree["children"]] == ["store", "gateway", "agents", "channels"]
    history = (await c.call("chat.history", {"session": "main", "limit": 1}))["payload"]
    assert history == {"session": "main", "messages": [{"role": "user", "text": "hi"}]}
    assert (await c.call("sessions.list"))["payload"]["sessions"][0]["key"] == "web:main"
    reset = await c.call("sessions.reset", {"session": "main"})
    assert reset["payload"] == {"session": "main", "reset": True}
    assert backend.reset_sessions == ["main"]
    channels = (await c.call("channels.status"))["payload"]["channels"]
    assert channels[0]["name"] == "telegram:main"
    approvals = (await c.call("approvals.list"))["payload"]["approvals"]
    assert approvals[0]["id"] == "a1"
    resolved = await c.call("approvals.resolve", {"id": "a1", "decision": "deny"})
    assert resolved["payload"] == {"id": "a1", "approved": False}
    assert backend.resolved[0][:2] == ("a1", False)
    assert backend.resolved[0][2].startswith("gateway:127.0.0.1")
    again = await c.call("approvals.resolve", {"id": "a1", "decision": "approve"})
    assert again["ok"] is False and again["error"]["code"] == "not_found"
    assert (await c.call("pairing.list"))["payload"]["requests"][0]["code"] == "ABC123"
    paired = await c.call("pairing.approve", {"channel": "telegram", "code": "ABC123"})
    assert paired["payload"]["approved"] is True and backend.paired == [("telegram", "ABC123")]


async def test_config_get_redacts_secrets(gateway: GatewayServer) -> None:
    c = await logged_in(gateway)
    res = await c.call("config.get")
    cfg = res["payload"]["config"]
    assert SECRET_IN_CONFIG not in json.dumps(res)
    assert cfg["gateway"]["token"] == "***"
    assert cfg["channels"]["telegram"]["bot_token"] == "***"
    assert cfg["agent"]["api_key"] == "***"
    assert cfg["agent"]["max_tokens"] == 1024  # not a secret
    assert cfg["channels"]["telegram"]["api_base"] == "http://x"


async def test_chat_send_streams_tool_deltas_final_then_response(gateway: GatewayServer) -> None:
    c = await logged_in(gateway)
    res = await c.call("chat.send", {"session": "main", "text": "hello gateway"})
    assert res["ok"] is True
    assert res["payload"]["text"] == "echo: hello gateway"
    chat = [e for e in c.events if e["event"] == "chat"]
    kinds = [e["payload"]["kind"] for e in chat]
    assert kinds[0] == "tool" and kinds[-1] == "final"
    deltas = [e["payload"]["text"] for e in chat if e["payload"]["kind"] == "delta"]
    assert len(deltas) > 3
    assert "".join(deltas) == "echo: hello gateway"
    assert all(e["payload"]["req"] == "r2" for e in chat)
    seqs = [e["seq"] for e in chat]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


async def test_chat_send_carries_files_to_the_backend(make_gateway: MakeGateway) -> None:
    backend = EchoBackend()
    gw = await make_gateway(backend)
    c = await logged_in(gw)
    data = base64.b64encode(b"%PDF-1.7 a file").decode()
    res = await c.call("chat.send", {"text": "", "files": [{"name": "a.pdf", "data": data}]})
    assert res["ok"] is True and res["payload"]["text"] == "echo:  + a.pdf (15 bytes)"
    assert [(u.name, u.data) for u in backend.uploads] == [("a.pdf", b"%PDF-1.7 a file")]
    bad: list[dict[str, Any]] = [
        {"text": "x", "files": [{"name": "a.pdf", "data": "not base64!"}]},
        {"text": "x", "files": [{"name": "a.pdf"}]},
        {"text": "x", "files": [{"name": "f", "data": ""}] * 9},
    ]
    for params in bad:
        res = await c.call("chat.send", params)
        assert res["ok"] is False and res["error"]["code"] == "bad_request", params
    assert len(backend.uploads) == 1


async def test_bad_params_are_bad_request(gateway: GatewayServer) -> None:
    c = await logged_in(gateway)
    cases: list[tuple[str, dict[str, Any]]] = [
        ("chat.send", {}),
        ("chat.send", {"text": 5}),
        ("chat.send", {"text": "   "}),
        ("approvals.resolve", {"id": "a1", "decision": "maybe"}),
        ("health", {"unexpected": 1}),
    ]
    for method, params in cases:
        res = await c.call(method, params)
        assert res["ok"] is False and res["error"]["code"] == "bad_request", (method, res)
    assert (await c.call("health"))["ok"] is True


async def test_base_backend_answers_unavailable(make_gateway: MakeGateway) -> None:
    gw = await make_gateway(BaseBackend())
    c = await logged_in(gw)
    calls = [
        ("status", {}),
        ("chat.send", {"text": "hi"}),
        ("config.get", {}),
        ("plugin.reminders.list", {}),
    ]
    for method, params in calls:
        res = await c.call(method, params)
        assert res["ok"] is False
        assert res["error"]["code"] == "unavailable"
        assert "not available yet" in res["error"]["message"]


async def test_garbage_json_then_valid_request_on_same_connection(gateway: GatewayServer) -> None:
    c = await logged_in(gateway)
    for garbage in ["{not json", "[1,2]", '{"type":"req"}', '{"type":"event","event":"x"}', "null"]:
        await c.send(garbage)
        res = await c.response(None)
        assert res["ok"] is False and res["error"]["code"] == "bad_request"
    assert (await c.call("health"))["ok"] is True


async def test_unknown_method(gateway: GatewayServer) -> None:
    c = await logged_in(gateway)
    res = await c.call("files.delete_everything")
    assert res["ok"] is False and res["error"]["code"] == "unknown_method"
    assert "chat.send" in res["error"]["hint"]


async def test_plugin_methods_are_routed_and_their_errors_are_frames(
    make_gateway: MakeGateway,
) -> None:
    backend = EchoBackend()
    gw = await make_gateway(backend)
    c = await logged_in(gw)
    res = await c.call("plugin.echo.repeat", {"n": 1, "nested": {"a": [1, 2]}})
    assert res["ok"] is True
    assert res["payload"] == {"plugin": "echo", "params": {"n": 1, "nested": {"a": [1, 2]}}}
    missing = {
        "plugin.nobody.repeat": "no plugin named 'nobody'",
        "plugin.echo.nope": "plugin 'echo' has no method 'nope'",
    }
    for method, message in missing.items():
        res = await c.call(method)
        assert res["ok"] is False and res["error"]["code"] == "not_found", res
        assert res["error"]["message"] == message
    res = await c.call("plugin.echo.refuse", {"x": 1})
    assert res["error"] == {
        "code": "plugin_error",
        "message": "the echo plugin refuses",
        "hint": "ask nicely",
    }
    for malformed in ["plugin.echo", "plugin.Echo.repeat", "plugin..repeat", "plugin.echo.Bad"]:
        res = await c.call(malformed)
        assert res["error"]["code"] == "unknown_method", (malformed, res)
        assert "plugin.<plugin>.<method>" in res["error"]["hint"]
    assert [call[:2] for call in backend.plugin_calls] == [
        ("echo", "repeat"),
        ("nobody", "repeat"),
        ("echo", "nope"),
        ("echo", "refuse"),
    ]
    assert (await c.call("plugin.echo.repeat"))["payload"] == {"plugin": "echo", "params": {}}
    unknown = await c.call("files.delete_everything")
    assert "plugin.<plugin>.<method>" in unknown["error"]["hint"]


async def test_plugin_methods_need_a_login_like_every_method(make_gateway: MakeGateway) -> None:
    backend = EchoBackend()
    gw = await make_gateway(backend)
    c = await open_client(gw)
    res = await c.call("plugin.echo.repeat", {"n": 1})
    assert res["ok"] is False and res["error"]["code"] == "unauthorized", res
    assert backend.plugin_calls == []


async def test_second_connect_is_refused(gateway: GatewayServer) -> None:
    c = await logged_in(gateway)
    res = await c.login()
    assert res["ok"] is False and res["error"]["code"] == "bad_request"


async def test_rate_limit_answers_rate_limited_and_recovers(make_gateway: MakeGateway) -> None:
    clock = FakeClock()
    gw = await make_gateway(clock=clock, rate_per_second=1.0, rate_burst=3)
    c = await logged_in(gw)
    for i in range(5):
        await c.send({"type": "req", "id": f"q{i}", "method": "health", "params": {}})
    answers = [await c.response(f"q{i}") for i in range(5)]
    assert [a["ok"] for a in answers] == [True, True, True, False, False]
    assert answers[3]["error"]["code"] == "rate_limited"
    assert answers[3]["error"]["retry_after"] == pytest.approx(1.0)
    clock.advance(1.0)
    assert (await c.call("health"))["ok"] is True


async def test_server_events_fan_out_with_increasing_seq(make_gateway: MakeGateway) -> None:
    backend = EchoBackend()
    gw = await make_gateway(backend)
    a, b = await logged_in(gw), await logged_in(gw)
    for n in range(3):
        await backend.events_queue.put(("tree", {"child": "agents", "n": n}))
    for client in (a, b):
        frames = [await client.recv() for _ in range(3)]
        assert [f["payload"]["n"] for f in frames] == [0, 1, 2]
        assert all(f["event"] == "tree" for f in frames)
        assert [f["seq"] for f in frames] == [1, 2, 3]


async def test_the_backend_is_told_whether_anyone_listens(make_gateway: MakeGateway) -> None:
    """``listening`` is set while a client is logged in, so a polling backend (the tree's)
    makes no calls for events while nobody would get them."""
    backend = EchoBackend()
    gw = await make_gateway(backend)
    for _ in range(100):
        if backend.listening is not None:
            break
        await asyncio.sleep(0.01)
    listening = backend.listening
    assert listening is not None and not listening.is_set()  # started; nobody yet
    a, b = await logged_in(gw), await logged_in(gw)
    assert listening.is_set()
    await a.ws.close()
    await asyncio.sleep(0.2)
    assert listening.is_set()  # b is still there
    await b.ws.close()
    for _ in range(100):
        if not listening.is_set():
            break
        await asyncio.sleep(0.01)
    assert not listening.is_set() and gw.clients == 0
    c = await logged_in(gw)
    await backend.events_queue.put(("tree", {"n": 1}))
    assert (await c.recv())["payload"] == {"n": 1}


async def test_slow_client_is_dropped_not_blocking_others(make_gateway: MakeGateway) -> None:
    backend = EchoBackend()
    gw = await make_gateway(backend, client_queue=4)
    slow = await open_client(gw, max_size=None)
    assert (await slow.login())["ok"]
    fast = await open_client(gw, max_size=None)
    assert (await fast.login())["ok"]
    blob = "x" * 200_000
    received = 0

    async def drain_fast() -> None:
        nonlocal received
        while received < 60:
            frame = await fast.recv()
            if frame["type"] == "event":
                received += 1

    reader = asyncio.create_task(drain_fast())
    for n in range(60):
        await backend.events_queue.put(("tree", {"n": n, "blob": blob}))
        await asyncio.sleep(0.002)
    await asyncio.wait_for(reader, 10)
    assert received == 60
    with pytest.raises(ConnectionClosed) as info:
        while True:
            await slow.recv()
    assert info.value.rcvd is not None and info.value.rcvd.code == 1013


async def test_cancelling_serve_forever_closes_the_port() -> None:
    gw = GatewayServer(GatewaySettings(host="127.0.0.1", port=0, token=TOKEN), EchoBackend())
    await gw.start()
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(gw.serve_forever())
        c = await logged_in(gw)
        task.cancel()
    with pytest.raises(ConnectionClosed):
        await c.recv()
    with pytest.raises(OSError):
        await asyncio.open_connection("127.0.0.1", gw.port)
