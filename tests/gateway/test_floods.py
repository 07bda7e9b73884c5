"""Floods against a real gateway on 127.0.0.1, from many real source addresses (Linux routes
all of 127.0.0.0/8 to lo): unauthenticated sockets are capped per address and in total, a
locked address stays locked through an address flood, and a global failure budget holds."""

from __future__ import annotations

from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidStatus

from moltbot.clock import FakeClock
from moltbot.gateway.server import GatewayServer
from moltbot.security.ratelimit import Lockout, client_key

from .conftest import TOKEN, Client, MakeGateway

pytestmark = pytest.mark.timeout(60)


async def upgrade(gw: GatewayServer, source: str) -> ClientConnection:
    """A WebSocket from ``source`` that has not logged in (yet)."""
    return await connect(gw.ws_url + "ws", local_addr=(source, 0), open_timeout=5)


async def login_from(gw: GatewayServer, source: str, **auth: Any) -> dict[str, Any]:
    client = Client(await upgrade(gw, source))
    try:
        return await client.login(**auth)
    finally:
        await client.ws.close()


async def refused(gw: GatewayServer, source: str) -> int:
    with pytest.raises(InvalidStatus) as info:
        await upgrade(gw, source)
    return info.value.response.status_code


async def test_unauthenticated_sockets_are_capped_per_address_and_in_total(
    make_gateway: MakeGateway,
) -> None:
    audited: list[tuple[str, dict[str, Any]]] = []

    async def audit(kind: str, fields: dict[str, Any]) -> None:
        audited.append((kind, fields))

    gw = await make_gateway(unauth_max=5, unauth_per_client=3, audit=audit)
    idle = [await upgrade(gw, "127.0.0.2") for _ in range(3)]  # never send connect
    assert await refused(gw, "127.0.0.2") == 503  # the 4th from that address
    assert await refused(gw, "127.0.0.2") == 503
    # another address still gets in and logs in (its place is freed by the login)
    assert (await login_from(gw, "127.0.0.3"))["ok"] is True
    idle += [await upgrade(gw, "127.0.0.4"), await upgrade(gw, "127.0.0.5")]  # 5 waiting
    assert await refused(gw, "127.0.0.6") == 503  # the total cap
    await idle.pop().close()  # one leaves: a place is free again
    for _ in range(50):
        try:
            assert (await login_from(gw, "127.0.0.6"))["ok"] is True
            break
        except InvalidStatus:  # the server has not seen the close yet
            continue
    else:
        raise AssertionError("a freed place was never given back")
    records = [f for kind, f in audited if f.get("reason") == "too_many_unauthenticated"]
    assert [r["address"] for r in records] == ["127.0.0.2", "127.0.0.6"]  # one per client
    for ws in idle:
        await ws.close()


async def test_a_locked_address_stays_locked_through_an_address_flood(
    make_gateway: MakeGateway,
) -> None:
    gw = await make_gateway(lockout_max=2, lockout_clients=4, lockout_global_max=0)
    for _ in range(2):
        assert (await login_from(gw, "127.0.0.2", token="wrong"))["ok"] is False
    locked = await login_from(gw, "127.0.0.2")  # the right token, but locked out
    assert locked["error"]["code"] == "rate_limited"
    for i in range(3, 15):  # a flood of fresh addresses, each failing once
        await login_from(gw, f"127.0.0.{i}", token="wrong")
    assert (await login_from(gw, "127.0.0.2"))["error"]["code"] == "rate_limited"


async def test_a_table_full_of_locked_addresses_fails_closed() -> None:
    clock = FakeClock()
    lockout = Lockout(clock, max_failures=1, max_addresses=3, global_max=0, base_s=60)
    for i in range(3):
        assert lockout.failure(f"10.0.0.{i}") == 60
    assert lockout.retry_after("10.0.0.9") > 0  # no room to track it: it waits too
    clock.advance(61)
    assert lockout.retry_after("10.0.0.9") == 0


async def test_the_global_failure_budget_locks_every_login(make_gateway: MakeGateway) -> None:
    clock = FakeClock()
    gw = await make_gateway(clock=clock, lockout_global_max=5, lockout_global_s=30)
    for i in range(2, 7):  # five addresses, one failure each: no address is locked
        assert (await login_from(gw, f"127.0.0.{i}", token="wrong"))["ok"] is False
    fresh = await login_from(gw, "127.0.0.50", token=TOKEN)
    assert fresh["error"]["code"] == "rate_limited"  # loopback and a new address included
    clock.advance(31)
    assert (await login_from(gw, "127.0.0.50"))["ok"] is True


def test_ipv6_is_counted_per_64_and_mapped_ipv4_as_ipv4() -> None:
    assert (
        client_key("2001:db8:1:2::1") == client_key("2001:db8:1:2:ffff::7") == ("2001:db8:1:2::/64")
    )
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key("::ffff:192.0.2.7") == "192.0.2.7"
    assert client_key("192.0.2.7") == "192.0.2.7"
    clock = FakeClock()
    lockout = Lockout(clock, max_failures=3, global_max=0)
    for host in ("2001:db8::1", "2001:db8::2", "2001:db8::ffff:3"):  # one /64, three hosts
        lockout.failure(host)
    assert lockout.retry_after("2001:db8::99") > 0
    assert lockout.retry_after("2001:db8:0:1::1") == 0


async def test_an_ipv6_client_is_capped_by_its_64(make_gateway: MakeGateway) -> None:
    gw = await make_gateway(host="::1", unauth_per_client=2)
    url = f"ws://[::1]:{gw.port}/ws"
    idle = [await connect(url, open_timeout=5) for _ in range(2)]
    with pytest.raises(InvalidStatus):
        await connect(url, open_timeout=5)
    for ws in idle:
        await ws.close()
