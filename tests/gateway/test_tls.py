"""TLS: a self-signed certificate generated with cryptography, served and trusted by a client."""

from __future__ import annotations

import ssl
import stat
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect

from moltbot.errors import ConfigError
from moltbot.gateway.tls import context_from_files, ensure_self_signed, server_context

from .conftest import Client, MakeGateway
from .test_http import assert_secure


def test_self_signed_files_are_private_and_reused(tmp_path: Path) -> None:
    folder = tmp_path / "tls"
    cert, key = ensure_self_signed(folder)
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert b"PRIVATE KEY" in key.read_bytes() and b"CERTIFICATE" in cert.read_bytes()
    before = cert.read_bytes()
    assert ensure_self_signed(folder) == (cert, key)
    assert cert.read_bytes() == before  # still valid: reused, not regenerated


def test_bad_cert_files_name_the_config_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        context_from_files(tmp_path / "missing.pem", tmp_path / "missing-key.pem")
    assert info.value.path == "$.gateway.tls.cert"
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    with pytest.raises(ConfigError) as info:
        context_from_files(junk, junk)
    assert info.value.path == "$.gateway.tls"
    with pytest.raises(ConfigError):
        server_context(cert=junk)


async def test_wss_with_self_signed_cert(make_gateway: MakeGateway, tmp_path: Path) -> None:
    server_ctx = server_context(folder=tmp_path / "tls")
    gw = await make_gateway(ssl_context=server_ctx)
    assert gw.url.startswith("https://127.0.0.1:") and gw.ws_url.startswith("wss://")
    client_ctx = ssl.create_default_context(cafile=str(tmp_path / "tls" / "gateway-cert.pem"))

    async with connect(gw.ws_url + "ws", ssl=client_ctx) as ws:
        assert ws.response is not None and ws.response.status_code == 101
    c = await logged_in_tls(gw.ws_url + "ws", client_ctx)
    assert (await c.call("health"))["payload"]["status"] == "ok"

    async with httpx.AsyncClient(base_url=gw.url, verify=client_ctx) as http:
        res = await http.get("/healthz")
        assert res.status_code == 200
        assert_secure(res.headers)

    untrusting = ssl.create_default_context()  # system CAs only: the self-signed cert fails
    with pytest.raises(ssl.SSLCertVerificationError):
        await connect(gw.ws_url + "ws", ssl=untrusting)


async def logged_in_tls(url: str, ctx: ssl.SSLContext) -> Client:
    client = Client(await connect(url, ssl=ctx))
    assert (await client.login())["ok"]
    return client
