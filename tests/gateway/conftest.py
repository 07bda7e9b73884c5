"""Fixtures for the gateway tests: a real GatewayServer on 127.0.0.1 and a small WS client."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from websockets.asyncio.client import ClientConnection, connect

from moltbot.gateway.backend import Backend
from moltbot.gateway.server import GatewayServer, GatewaySettings

from .echo_backend import EchoBackend

TOKEN = "test-token-0123456789-abcdefghijklmnopqrstuv"

MakeGateway = Callable[..., Awaitable[GatewayServer]]


@pytest.fixture
async def make_gateway() -> AsyncIterator[MakeGateway]:
    running: list[tuple[GatewayServer, asyncio.Task[None]]] = []

    async def make(
        backend: Backend | None = None,
        *,
        ssl_context: Any = None,
        clock: Any = None,
        audit: Any = None,
        **overrides: Any,
    ) -> GatewayServer:
        fields: dict[str, Any] = {
            "host": "127.0.0.1",
            "port": 0,
            "token": TOKEN,
            "connect_timeout_s": 2.0,
        }
        fields.update(overrides)
        kwargs: dict[str, Any] = {"ssl_context": ssl_context, "audit": audit}
        if clock is not None:
            kwargs["clock"] = clock
        gw = GatewayServer(GatewaySettings(**fields), backend or EchoBackend(), **kwargs)
        await gw.start()
        running.append((gw, asyncio.create_task(gw.serve_forever())))
        return gw

    yield make
    for gw, task in running:
        await gw.stop()
        await asyncio.wait_for(task, 5)


@pytest.fixture
async def gateway(make_gateway: MakeGateway) -> GatewayServer:
    return await make_gateway()


class Client:
    """A test client over a real WebSocket: frames as dicts, events kept aside."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.events: list[dict[str, Any]] = []
        self.unclaimed: dict[str | None, dict[str, Any]] = {}
        self._n = 0

    async def send(self, frame: dict[str, Any] | str) -> None:
        await self.ws.send(frame if isinstance(frame, str) else json.dumps(frame))

    async def recv(self, timeout: float = 5) -> dict[str, Any]:
        return json.loads(await asyncio.wait_for(self.ws.recv(), timeout))

    async def response(self, req_id: str | None, timeout: float = 5) -> dict[str, Any]:
        if req_id in self.unclaimed:
            return self.unclaimed.pop(req_id)
        while True:
            frame = await self.recv(timeout)
            if frame["type"] == "event":
                self.events.append(frame)
            elif frame["id"] == req_id:
                return frame
            else:
                self.unclaimed[frame["id"]] = frame

    async def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        self._n += 1
        req_id = f"r{self._n}"
        await self.send({"type": "req", "id": req_id, "method": method, "params": params or {}})
        return await self.response(req_id)

    async def login(self, **auth: str) -> dict[str, Any]:
        return await self.call("connect", {"auth": auth or {"token": TOKEN}})


async def open_client(gw: GatewayServer, path: str = "/ws", **kwargs: Any) -> Client:
    url = gw.ws_url.rstrip("/") + path
    return Client(await connect(url, **kwargs))


async def logged_in(gw: GatewayServer, **auth: str) -> Client:
    client = await open_client(gw)
    res = await client.login(**auth)
    assert res["ok"], res
    return client
