"""Every refusal of the gateway, against a real server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from moltbot.clock import FakeClock
from moltbot.errors import ConfigError
from moltbot.gateway.server import GatewayServer, GatewaySettings, check_bind

from .conftest import TOKEN, MakeGateway, logged_in, open_client
from .echo_backend import EchoBackend


async def _closed_code(client_ws: object, timeout: float = 5) -> int | None:
    with pytest.raises(ConnectionClosed) as info:
        while True:
            await asyncio.wait_for(client_ws.recv(), timeout)  # type: ignore[attr-defined]
    return info.value.rcvd.code if info.value.rcvd else None


async def test_wrong_token_is_refused_and_closed(gateway: GatewayServer) -> None:
    c = await open_client(gateway)
    res = await c.login(token="wrong-token")
    assert res["ok"] is False and res["error"]["code"] == "unauthorized"
    assert "wrong-token" not in json.dumps(res)
    assert await _closed_code(c.ws) == 1008


async def test_password_login(make_gateway: MakeGateway) -> None:
    gw = await make_gateway(token=None, password="correct horse battery staple, and more")
    c = await open_client(gw)
    assert (await c.login(password="nope"))["error"]["code"] == "unauthorized"
    c = await open_client(gw)
    assert (await c.login(password="correct horse battery staple, and more"))["ok"] is True
    c = await open_client(gw)
    assert (await c.login(token=TOKEN))["ok"] is False  # no token configured


async def test_no_connect_within_timeout_closes(make_gateway: MakeGateway) -> None:
    gw = await make_gateway(connect_timeout_s=0.3)
    c = await open_client(gw)
    started = time.monotonic()
    assert await _closed_code(c.ws) == 1008
    assert 0.25 < time.monotonic() - started < 3


async def test_request_before_connect_is_refused(gateway: GatewayServer) -> None:
    c = await open_client(gateway)
    res = await c.call("status")
    assert res["ok"] is False and res["error"]["code"] == "unauthorized"
    assert "connect" in res["error"]["message"]
    assert await _closed_code(c.ws) == 1008


async def test_oversized_frame_closes_with_1009(make_gateway: MakeGateway) -> None:
    gw = await make_gateway(max_frame_bytes=4096)
    c = await logged_in(gw)
    big = json.dumps(
        {"type": "req", "id": "big", "method": "chat.send", "params": {"text": "x" * 5000}}
    )
    await c.send(big)
    assert await _closed_code(c.ws) == 1009


async def test_default_frame_cap_is_one_mib(gateway: GatewayServer) -> None:
    assert gateway.settings.max_frame_bytes == 1 << 20
    c = await logged_in(gateway)
    await c.send("x" * ((1 << 20) + 1))
    assert await _closed_code(c.ws) == 1009


async def test_bad_origin_gets_403_before_upgrade(make_gateway: MakeGateway) -> None:
    gw = await make_gateway(allowed_origins=("https://chat.example.org",))
    for origin in (
        "http://evil.example",
        "null",
        f"http://127.0.0.1:{gw.port + 1}",
        "http://localhost.evil.example",
    ):
        with pytest.raises(InvalidStatus) as info:
            await connect(gw.ws_url + "ws", origin=origin)  # type: ignore[arg-type]
        assert info.value.response.status_code == 403, origin
    for origin in (
        f"http://127.0.0.1:{gw.port}",
        f"http://localhost:{gw.port}",
        "https://chat.example.org",
    ):
        c = await open_client(gw, origin=origin)
        assert (await c.login())["ok"] is True, origin
        await c.ws.close()


async def test_token_in_url_is_refused(gateway: GatewayServer) -> None:
    for query in (f"?token={TOKEN}", "?password=x", "?session=abc", "?a=1&Token=x"):
        with pytest.raises(InvalidStatus) as info:
            await connect(gateway.ws_url + "ws" + query)
        assert info.value.response.status_code == 403
        assert b"never accepted in URLs" in info.value.response.body


async def test_lockout_after_ten_failures_with_increasing_backoff(
    make_gateway: MakeGateway,
) -> None:
    clock = FakeClock()
    gw = await make_gateway(clock=clock)

    async def attempt(token: str) -> dict[str, object]:
        c = await open_client(gw)
        res = await c.login(token=token)
        await c.ws.close()
        return res

    codes = [(await attempt(f"bad-{i}"))["error"]["code"] for i in range(10)]  # type: ignore[index]
    assert codes[:9] == ["unauthorized"] * 9
    assert codes[9] == "rate_limited"  # the tenth failure locks the address out
    locked = await attempt(TOKEN)  # even the right token
    assert locked["ok"] is False
    error = locked["error"]
    assert error["code"] == "rate_limited" and "locked out" in error["message"]  # type: ignore[index]
    assert 0 < error["retry_after"] <= 60  # type: ignore[index]
    clock.advance(61)
    assert (await attempt(TOKEN))["ok"] is True  # success resets the level

    for i in range(10):
        await attempt(f"bad-{i}")
    clock.advance(61)
    for i in range(10):  # a second lockout in a row lasts twice as long
        await attempt(f"bad-again-{i}")
    clock.advance(61)
    assert (await attempt(TOKEN))["error"]["code"] == "rate_limited"  # type: ignore[index]
    clock.advance(60)
    assert (await attempt(TOKEN))["ok"] is True


async def test_failures_spread_over_more_than_the_window_do_not_lock(
    make_gateway: MakeGateway,
) -> None:
    clock = FakeClock()
    gw = await make_gateway(clock=clock)
    for i in range(15):
        c = await open_client(gw)
        assert (await c.login(token=f"bad-{i}"))["error"]["code"] == "unauthorized"
        clock.advance(7)
    c = await open_client(gw)
    assert (await c.login())["ok"] is True


async def test_web_session_rotates_on_every_login(make_gateway: MakeGateway) -> None:
    clock = FakeClock()
    gw = await make_gateway(clock=clock)
    first = (await (await open_client(gw)).login())["payload"]["session"]
    second = (await (await open_client(gw)).login())["payload"]["session"]
    assert first != second  # a fresh id per token login
    res = await (await open_client(gw)).login(session=first)
    assert res["ok"] is True and res["payload"]["auth"] == "session"
    rotated = res["payload"]["session"]
    assert rotated not in (first, second)
    stale = await (await open_client(gw)).login(session=first)  # the old id is gone
    assert stale["ok"] is False and stale["error"]["code"] == "unauthorized"
    assert (await (await open_client(gw)).login(session=rotated))["ok"] is True


async def test_web_session_idle_expiry(make_gateway: MakeGateway) -> None:
    clock = FakeClock()
    gw = await make_gateway(clock=clock, idle_minutes=30)
    session = (await (await open_client(gw)).login())["payload"]["session"]
    clock.advance(29 * 60)
    res = await (await open_client(gw)).login(session=session)
    assert res["ok"] is True
    session = res["payload"]["session"]
    clock.advance(30 * 60 + 1)
    res = await (await open_client(gw)).login(session=session)
    assert res["ok"] is False and res["error"]["code"] == "unauthorized"


async def test_web_session_absolute_expiry(make_gateway: MakeGateway) -> None:
    clock = FakeClock()
    gw = await make_gateway(clock=clock, idle_minutes=30, absolute_hours=24)
    res = await (await open_client(gw)).login()
    assert res["payload"]["expires_in_s"] == pytest.approx(24 * 3600)
    session = res["payload"]["session"]
    for _ in range(71):  # used every 20 min: never idle, but 24 h after the login it is over
        clock.advance(20 * 60)
        res = await (await open_client(gw)).login(session=session)
        assert res["ok"] is True
        session = res["payload"]["session"]
    clock.advance(20 * 60)  # 24 h since the token login
    res = await (await open_client(gw)).login(session=session)
    assert res["ok"] is False and res["error"]["code"] == "unauthorized"


async def test_open_session_connection_closes_when_session_expires(
    make_gateway: MakeGateway,
) -> None:
    clock = FakeClock()
    gw = await make_gateway(clock=clock)
    session = (await (await open_client(gw)).login())["payload"]["session"]
    c = await logged_in(gw, session=session)
    assert (await c.call("health"))["ok"] is True
    clock.advance(31 * 60)
    res = await c.call("health")
    assert res["ok"] is False and res["error"]["message"] == "session expired"
    assert await _closed_code(c.ws) == 1008


def test_non_loopback_bind_refused_without_auth_and_tls() -> None:
    import ssl

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    for settings, tls in [
        (GatewaySettings(host="0.0.0.0"), None),
        (GatewaySettings(host="0.0.0.0", token=TOKEN), None),
        (GatewaySettings(host="192.168.1.10"), ctx),
    ]:
        with pytest.raises(ConfigError) as info:
            check_bind(settings, tls)
        assert info.value.path == "$.gateway.bind"
        assert "gateway.bind" in info.value.user_message
    check_bind(GatewaySettings(host="0.0.0.0", token=TOKEN), ctx)
    check_bind(GatewaySettings(host="127.0.0.1"), None)
    check_bind(GatewaySettings(host="::1"), None)


async def test_server_refuses_to_start_on_non_loopback_without_tls() -> None:

    gw = GatewayServer(GatewaySettings(host="0.0.0.0", port=0, token=TOKEN), EchoBackend())
    with pytest.raises(ConfigError, match=r"gateway\.bind"):
        await gw.start()


@pytest.mark.parametrize(
    ("token", "password", "path"),
    [
        (None, None, "$.gateway.auth"),
        ("x" * 31, None, "$.gateway.auth.token"),
        (None, "pw", "$.gateway.auth.password"),
    ],
)
async def test_the_gateway_never_starts_without_a_strong_secret(
    token: str | None, password: str | None, path: str
) -> None:
    """Even on loopback: no "open" gateway, and no short token or password."""
    gw = GatewayServer(
        GatewaySettings(host="127.0.0.1", port=0, token=token, password=password), EchoBackend()
    )
    with pytest.raises(ConfigError) as info:
        await gw.start()
    assert info.value.path == path
    assert token is None or token not in str(info.value)
