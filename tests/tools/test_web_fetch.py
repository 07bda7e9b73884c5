"""web_fetch against a local HTTP server: SSRF refusals, redirects, caps, decoding."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from moltbot.errors import FetchRefused, ToolError
from moltbot.tools import Tool, ToolRegistry
from moltbot.tools.web_fetch import WebFetcher, WebFetchInput, address_allowed, html_to_text

PAGE = (
    b"<html><head><title>Test page</title><style>body{color:red}</style>"
    b"<script>var secret = 1;</script></head><body><h1>Hello &amp; welcome</h1>"
    b"<p>First <b>para</b>.</p><ul><li>one</li><li>two</li></ul></body></html>"
)


@dataclass
class Server:
    port: int = 0
    paths: list[str] = field(default_factory=list)
    hosts: list[str] = field(default_factory=list)
    redirects: dict[str, str] = field(default_factory=dict)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
            return
        lines = head.decode("latin-1").split("\r\n")
        path = lines[0].split(" ")[1]
        headers = {
            k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)
        }
        self.paths.append(path)
        self.hosts.append(headers.get("host", ""))
        try:
            await self.respond(path, writer)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def respond(self, path: str, writer: asyncio.StreamWriter) -> None:
        def send(status: str, ctype: str, body: bytes, extra: str = "") -> None:
            writer.write(
                f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n"
                f"Connection: close\r\n{extra}\r\n".encode()
                + body
            )

        if path in self.redirects:
            send("302 Found", "text/plain", b"", f"Location: {self.redirects[path]}\r\n")
        elif path == "/hello":
            send("200 OK", "text/html; charset=utf-8", PAGE)
        elif path == "/latin1":
            send("200 OK", "text/plain; charset=iso-8859-1", "café crème".encode("latin-1"))
        elif path == "/binary":
            send("200 OK", "image/png", b"\x89PNG\r\n\x1a\n" + b"\x00" * 100)
        elif path == "/host":
            send("200 OK", "text/plain", self.hosts[-1].encode())
        elif path == "/missing":
            send("404 Not Found", "text/plain", b"no such page")
        elif path == "/big":
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n"
            )
            for _ in range(5 * 16):  # 5 MiB in 64 KiB pieces, unless the client hangs up
                writer.write(b"a" * 65536)
                await writer.drain()
        elif path == "/slow":
            await asyncio.sleep(5)
            send("200 OK", "text/plain", b"late")
        else:
            send("404 Not Found", "text/plain", b"?")
        await writer.drain()


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    srv = Server()
    listener = await asyncio.start_server(srv.handle, "127.0.0.1", 0)
    srv.port = listener.sockets[0].getsockname()[1]
    async with listener:
        yield srv
        listener.close()


@pytest.fixture
async def other_server() -> AsyncIterator[Server]:
    srv = Server()
    listener = await asyncio.start_server(srv.handle, "127.0.0.1", 0)
    srv.port = listener.sockets[0].getsockname()[1]
    async with listener:
        yield srv
        listener.close()


def fetcher(server: Server, **kw: object) -> WebFetcher:
    return WebFetcher(allow_loopback_port_for_tests=server.port, **kw)  # type: ignore[arg-type]


async def test_fetches_html_as_text(server: Server) -> None:
    res = await fetcher(server).fetch(f"http://127.0.0.1:{server.port}/hello")
    assert not res.is_error
    assert "status: 200" in res.text and "content-type: text/html" in res.text
    body = res.text.split("\n\n", 1)[1]
    assert "Test page" in body and "Hello & welcome" in body and "First para." in body
    assert body.endswith("one\n\ntwo")
    assert "<" not in body and "secret" not in body and "color:red" not in body


async def test_loopback_is_refused_by_default(server: Server) -> None:
    plain = WebFetcher()
    for url in (
        f"http://127.0.0.1:{server.port}/hello",
        f"http://localhost:{server.port}/hello",
        f"http://[::1]:{server.port}/hello",
        f"http://2130706433:{server.port}/hello",
        f"http://127.1:{server.port}/hello",
        f"http://[::ffff:127.0.0.1]:{server.port}/hello",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://10.0.0.1/",
        "http://0.0.0.0/",
    ):
        with pytest.raises(FetchRefused):
            await plain.fetch(url)
    assert server.paths == []


async def test_the_test_opt_in_covers_only_its_port(server: Server, other_server: Server) -> None:
    with pytest.raises(FetchRefused):
        await fetcher(server).fetch(f"http://127.0.0.1:{other_server.port}/hello")
    assert other_server.paths == []


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "ftp://example.com/x",
        "gopher://example.com/",
        "http:///nohost",
        "http://user:pw@example.com/",
        "javascript:alert(1)",
        "not a url",
    ],
)
async def test_non_http_urls_are_refused(url: str) -> None:
    with pytest.raises(FetchRefused):
        await WebFetcher().fetch(url)


async def test_redirect_to_a_refused_address_is_refused(
    server: Server, other_server: Server
) -> None:
    server.redirects = {
        "/to-loopback": f"http://127.0.0.1:{other_server.port}/hello",
        "/to-localhost": f"http://localhost:{other_server.port}/hello",
        "/to-metadata": "http://169.254.169.254/latest/meta-data/",
        "/to-file": "file:///etc/passwd",
    }
    f = fetcher(server)
    for path in server.redirects:
        with pytest.raises(FetchRefused):
            await f.fetch(f"http://127.0.0.1:{server.port}{path}")
    assert other_server.paths == []


async def test_allowed_redirects_are_followed_up_to_five(server: Server) -> None:
    base = f"http://127.0.0.1:{server.port}"
    server.redirects = {"/a": "/b", "/b": f"{base}/hello"}
    res = await fetcher(server).fetch(f"{base}/a")
    assert "Hello & welcome" in res.text
    assert f"URL: {base}/hello" in res.text
    server.paths.clear()
    server.redirects = {"/loop": "/loop"}
    with pytest.raises(FetchRefused) as err:
        await fetcher(server).fetch(f"{base}/loop")
    assert "too many redirects" in err.value.user_message
    assert len(server.paths) == 6  # the first request and five redirects


async def test_oversized_body_is_capped(server: Server) -> None:
    res = await fetcher(server, max_bytes=10_000).fetch(f"http://127.0.0.1:{server.port}/big")
    body = res.text.split("\n\n", 1)[1]
    assert body.startswith("a" * 10_000)
    assert "a" * 10_001 not in body
    assert "truncated" in body


async def test_time_cap(server: Server) -> None:
    with pytest.raises(FetchRefused) as err:
        await fetcher(server, timeout_s=0.5).fetch(f"http://127.0.0.1:{server.port}/slow")
    assert "0.5 s" in err.value.user_message


async def test_charset_binary_and_status(server: Server) -> None:
    f = fetcher(server)
    res = await f.fetch(f"http://127.0.0.1:{server.port}/latin1")
    assert res.text.endswith("café crème")
    res = await f.fetch(f"http://127.0.0.1:{server.port}/binary")
    assert "binary content (image/png" in res.text and "PNG" not in res.text
    res = await f.fetch(f"http://127.0.0.1:{server.port}/missing")
    assert res.is_error and "status: 404" in res.text


async def test_connects_to_the_vetted_address_with_the_original_host(server: Server) -> None:
    answers = [["127.0.0.1"], ["10.9.9.9"]]
    calls: list[str] = []

    async def rebinding_dns(host: str, port: int) -> list[str]:
        calls.append(host)
        return answers[min(len(calls) - 1, 1)]

    f = fetcher(server, resolver=rebinding_dns)
    res = await f.fetch(f"http://rebind.example:{server.port}/host")
    assert res.text.endswith(f"rebind.example:{server.port}")
    assert calls == ["rebind.example"]  # resolved once, then connected to that very address


async def test_any_private_answer_refuses_the_host(server: Server) -> None:
    async def mixed_dns(host: str, port: int) -> list[str]:
        return ["93.184.216.34", "10.0.0.5"]

    with pytest.raises(FetchRefused):
        await WebFetcher(resolver=mixed_dns).fetch("http://mixed.example/")


async def test_tool_call_maps_refusals(server: Server) -> None:
    f = WebFetcher()
    reg = ToolRegistry()
    reg.register(Tool(f.name, f.description, WebFetchInput, f))
    res = await reg.call("web_fetch", {"url": f"http://127.0.0.1:{server.port}/hello"}, "s")
    assert res.is_error and "private, local or reserved" in res.text


@pytest.mark.parametrize(
    ("address", "ok"),
    [
        ("8.8.8.8", True),
        ("1.1.1.1", True),
        ("2606:4700:4700::1111", True),
        ("10.1.2.3", False),
        ("172.16.5.4", False),
        ("192.168.0.1", False),
        ("127.0.0.1", False),
        ("127.255.0.1", False),
        ("169.254.169.254", False),
        ("169.254.1.1", False),
        ("100.64.0.1", False),
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("239.255.255.250", False),
        ("240.0.0.1", False),
        ("255.255.255.255", False),
        ("192.0.2.1", False),
        ("::1", False),
        ("::", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("fd00:ec2::254", False),
        ("ff02::1", False),
        ("::ffff:127.0.0.1", False),
        ("::ffff:10.0.0.1", False),
        ("64:ff9b::7f00:1", False),
        ("2002:7f00:1::1", False),
        ("2001:db8::1", False),
    ],
)
def test_address_policy(address: str, ok: bool) -> None:
    assert address_allowed(ipaddress.ip_address(address)) is ok


def test_html_to_text_drops_markup() -> None:
    text = html_to_text("<div>a<br>b</div><script>x()</script><p>&lt;tag&gt; &#169;</p>")
    assert text == "a\nb\n\n<tag> ©"


def _self_signed(name: str) -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


async def test_https_to_the_pinned_address_keeps_sni_and_certificate_checks(
    tmp_path: Path,
) -> None:
    cert_pem, key_pem = _self_signed("tls.example")
    folder = tmp_path
    (folder / "cert.pem").write_bytes(cert_pem)
    (folder / "key.pem").write_bytes(key_pem)
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_ctx.load_cert_chain(folder / "cert.pem", folder / "key.pem")
    seen_sni: list[str | None] = []
    server_ctx.sni_callback = lambda sock, name, ctx: seen_sni.append(name)

    srv = Server()
    listener = await asyncio.start_server(srv.handle, "127.0.0.1", 0, ssl=server_ctx)
    srv.port = listener.sockets[0].getsockname()[1]
    client_ctx = ssl.create_default_context(cadata=cert_pem.decode())

    async def dns(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    async with listener:
        f = WebFetcher(resolver=dns, ssl_context=client_ctx, allow_loopback_port_for_tests=srv.port)
        res = await f.fetch(f"https://tls.example:{srv.port}/host")
        assert res.text.endswith(f"tls.example:{srv.port}")
        assert seen_sni == ["tls.example"]
        with pytest.raises(ToolError) as err:  # the certificate does not name this host
            await f.fetch(f"https://other.example:{srv.port}/host")
        assert "could not fetch" in err.value.user_message
        listener.close()
