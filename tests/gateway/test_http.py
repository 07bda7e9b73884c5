"""HTTP on the gateway port: routes, refusals and security headers on every response."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from websockets.asyncio.client import connect

from moltbot.gateway.http import CSP
from moltbot.gateway.server import GatewayServer

from .conftest import MakeGateway
from .echo_backend import EchoBackend

EXPECTED_HEADERS = {
    "content-security-policy": CSP,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cache-control": "no-store",
}


def assert_secure(headers: httpx.Headers | dict[str, str]) -> None:
    lowered = {k.lower(): v for k, v in headers.items()}
    for name, value in EXPECTED_HEADERS.items():
        assert lowered.get(name) == value, (name, lowered)


async def raw_request(port: int, head: str) -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head.encode() + b"\r\n")
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    header_block, _, body = data.partition(b"\r\n\r\n")
    lines = header_block.decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers = dict(line.split(": ", 1) for line in lines[1:])
    return status, headers, body


def upgrade_head(port: int, host: str, origin: str | None = None, path: str = "/ws") -> str:
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
        "Sec-WebSocket-Version: 13",
    ]
    if origin:
        lines.append(f"Origin: {origin}")
    return "\r\n".join(lines) + "\r\n"


async def test_static_page_and_assets(gateway: GatewayServer) -> None:
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        page = await http.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"] == "text/html; charset=utf-8"
        assert '<script src="/app.js" defer></script>' in page.text
        assert "<script>" not in page.text and " style=" not in page.text
        assert " on" not in page.text.replace(" one", "")  # no inline handlers (onclick=...)
        js = await http.get("/app.js")
        assert js.status_code == 200 and js.headers["content-type"].startswith("text/javascript")
        for sink in (".innerHTML", ".outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            assert sink not in js.text, sink
        css = await http.get("/style.css")
        assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
        for response in (page, js, css):
            assert_secure(response.headers)


async def test_healthz_and_readyz(make_gateway: MakeGateway) -> None:
    backend = EchoBackend()
    gw = await make_gateway(backend)
    async with httpx.AsyncClient(base_url=gw.url) as http:
        health = await http.get("/healthz")
        assert (health.status_code, health.text) == (200, "ok")
        assert (await http.get("/readyz")).status_code == 200
        backend.is_ready = False
        not_ready = await http.get("/readyz")
        assert not_ready.status_code == 503
        assert_secure(health.headers)
        assert_secure(not_ready.headers)


async def test_readyz_is_503_without_a_backend(make_gateway: MakeGateway) -> None:
    from moltbot.gateway.backend import BaseBackend

    gw = await make_gateway(BaseBackend())
    async with httpx.AsyncClient(base_url=gw.url) as http:
        assert (await http.get("/readyz")).status_code == 503
        assert (await http.get("/healthz")).status_code == 200


async def test_unknown_path_404_and_non_get_405(gateway: GatewayServer) -> None:
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        missing = await http.get("/etc/passwd")
        assert missing.status_code == 404
        assert_secure(missing.headers)
        for method in ("POST", "PUT", "DELETE", "HEAD"):
            refused = await http.request(method, "/")
            assert refused.status_code == 405, method
            assert refused.headers["allow"] == "GET"
            assert_secure(refused.headers)


async def test_foreign_host_is_refused(gateway: GatewayServer) -> None:
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        for host in (
            "evil.example",
            f"evil.example:{gateway.port}",
            f"127.0.0.1:{gateway.port + 1}",
        ):
            refused = await http.get("/", headers={"Host": host})
            assert refused.status_code == 421, host
            assert_secure(refused.headers)
        ok = await http.get("/healthz", headers={"Host": f"localhost:{gateway.port}"})
        assert ok.status_code == 200
    status, headers, _ = await raw_request(
        gateway.port, upgrade_head(gateway.port, f"rebind.evil.example:{gateway.port}")
    )
    assert status == 421
    assert_secure(headers)


async def test_refused_upgrades_carry_security_headers(gateway: GatewayServer) -> None:
    port = gateway.port
    cases = [
        (upgrade_head(port, f"127.0.0.1:{port}", origin="http://evil.example"), 403),
        (upgrade_head(port, f"127.0.0.1:{port}", path="/ws?token=abc"), 403),
        (upgrade_head(port, f"127.0.0.1:{port}", path="/elsewhere"), 404),
    ]
    for head, expected in cases:
        status, headers, _ = await raw_request(port, head)
        assert status == expected
        assert_secure(headers)
    async with httpx.AsyncClient(base_url=gateway.url) as http:
        refused = await http.get("/?token=abc")
        assert refused.status_code == 403
        assert_secure(refused.headers)


async def test_accepted_upgrade_carries_security_headers(gateway: GatewayServer) -> None:
    async with connect(gateway.ws_url + "ws") as ws:
        assert ws.response is not None and ws.response.status_code == 101
        assert_secure(dict(ws.response.headers.raw_items()))
        assert "Server" not in ws.response.headers


@pytest.mark.parametrize("path", ["/", "/ws"])
async def test_websocket_paths(gateway: GatewayServer, path: str) -> None:
    async with connect(gateway.ws_url.rstrip("/") + path) as ws:
        assert ws.response is not None and ws.response.status_code == 101
