"""web_fetch: GET an http(s) URL from the public internet and return its text.

SSRF guard: the host is resolved here, every address it resolves to must be public (not private,
loopback, link-local, multicast, reserved, CGNAT, the cloud metadata addresses, or a v6 form that
embeds such a v4 address), and the connection goes to the vetted IP (Host header and TLS SNI keep
the name), so a second DNS answer cannot swap in another address (DNS rebinding). Redirects are
followed by hand, at most five, each hop vetted again. The body is streamed and cut at a size cap;
the whole fetch has a time cap.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import re
import ssl
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from typing import Annotated

import httpx
import msgspec

from moltbot.errors import ApprovalRequired, FetchRefused, ToolError
from moltbot.media.fetch import read_capped
from moltbot.messages import ToolResult
from moltbot.security.ssrf import (  # noqa: F401 - address_allowed re-exported
    Resolver,
    address_allowed,
    system_resolver,
    vet_host,
)
from moltbot.tools import scope
from moltbot.tools.approvals import ApprovalBook

_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_TEXT_TYPES = ("text/", "application/json", "application/xml", "application/javascript")

DESCRIPTION = (
    "Fetch a public web page or text document over http(s) and return it as text (HTML is "
    "reduced to its text). Private, local and cloud-metadata addresses are refused; large "
    "bodies are cut."
)


class WebFetchInput(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    url: Annotated[
        str,
        msgspec.Meta(min_length=1, max_length=4096, description="An http:// or https:// URL."),
    ]


class WebFetcher:
    """The web_fetch tool.

    ``allow_loopback_port_for_tests`` lets loopback through on that one port: tests only, never
    set from config.
    """

    name = "web_fetch"
    description = DESCRIPTION
    input_type = WebFetchInput

    def __init__(
        self,
        *,
        max_bytes: int = 2 * 1024 * 1024,
        max_chars: int = 100_000,
        timeout_s: float = 20.0,
        max_redirects: int = 5,
        resolver: Resolver = system_resolver,
        ssl_context: ssl.SSLContext | None = None,
        allow_loopback_port_for_tests: int | None = None,
        approvals: ApprovalBook | None = None,
    ) -> None:
        """``approvals``: when given, a session holding untrusted content needs an approval
        to fetch from a host it has not fetched from (``tools.web_fetch.
        approve_new_hosts_when_untrusted``); None turns that off."""
        self._approvals = approvals
        self.max_bytes = max_bytes
        self.max_chars = max_chars
        self.timeout_s = timeout_s
        self.max_redirects = max_redirects
        self._resolve = resolver
        self._loopback_port = allow_loopback_port_for_tests
        self._verify: ssl.SSLContext | bool = ssl_context or True  # certificates always checked

    async def __call__(self, args: WebFetchInput, session: str) -> ToolResult:
        url = self._parse(args.url)
        ctx = scope.current()
        if self._approvals is not None and ctx.untrusted and url.host not in ctx.seen_hosts:
            self._need_approval(session, str(url))
        return await self.fetch(args.url)

    def _need_approval(self, session: str, url: str) -> None:
        """A session holding untrusted content asks before it reaches a host it has not
        fetched from (text it read may be steering it to leak what it knows there)."""
        assert self._approvals is not None
        command = f"web_fetch {url}"
        if self._approvals.is_approved(session, command):
            return
        approval = self._approvals.request(session, command)
        raise ApprovalRequired(
            "this conversation holds content from the web or from files, and this fetch goes "
            f"to a host it has not used yet, so it needs the user's approval (approval id "
            f"{approval.id}). Ask the user to answer `/approve {approval.id}` or "
            f"`/deny {approval.id}`; once approved, fetch exactly the same URL again.",
            approval_id=approval.id,
        )

    async def fetch(self, url: str) -> ToolResult:
        try:
            async with asyncio.timeout(self.timeout_s):
                return await self._follow(self._parse(url))
        except TimeoutError as exc:
            raise FetchRefused(f"the fetch took longer than {self.timeout_s:g} s") from exc
        except httpx.HTTPError as exc:
            raise ToolError(f"could not fetch {url}: {_http_problem(exc)}") from exc

    # --- steps ---------------------------------------------------------------------------
    def _parse(self, raw: str) -> httpx.URL:
        try:
            url = httpx.URL(raw)
        except (httpx.InvalidURL, TypeError, ValueError) as exc:
            raise FetchRefused("not a valid URL") from exc
        if url.scheme not in ("http", "https"):
            raise FetchRefused("only http:// and https:// URLs can be fetched")
        if not url.host:
            raise FetchRefused("the URL has no host")
        if url.userinfo:
            raise FetchRefused("URLs with a user name or password are refused")
        return url.copy_with(fragment=None)

    async def _vet(self, url: httpx.URL) -> str:
        port = url.port or (443 if url.scheme == "https" else 80)
        return await vet_host(url.host, port, self._resolve, test_loopback_port=self._loopback_port)

    def _request(self, url: httpx.URL, ip: str) -> httpx.Request:
        """A GET of ``url`` sent to the vetted ``ip`` (Host header and SNI keep the name)."""
        headers = {
            "Host": url.netloc.decode("ascii"),
            "User-Agent": "moltbot-web-fetch/0.1",
            "Accept": "text/html, text/plain;q=0.9, application/json;q=0.9, */*;q=0.5",
        }
        return httpx.Request(
            "GET", url.copy_with(host=ip), headers=headers, extensions={"sni_hostname": url.host}
        )

    async def download(self, url: str, max_bytes: int) -> bytes:
        """The raw body of ``url`` (a chat attachment on a CDN), through the same guard: every
        hop's address vetted, the time capped; MediaRefused past ``max_bytes``."""
        target = self._parse(url)
        try:
            async with asyncio.timeout(self.timeout_s), self._final(target) as (_, response):
                if response.status_code != 200:
                    raise ToolError(f"the download answered {response.status_code}")
                return await read_capped(response, max_bytes)
        except TimeoutError as exc:
            raise FetchRefused(f"the download took longer than {self.timeout_s:g} s") from exc
        except httpx.HTTPError as exc:
            raise ToolError(f"could not download: {_http_problem(exc)}") from exc

    async def _follow(self, url: httpx.URL) -> ToolResult:
        async with self._final(url) as (final, response):
            body, truncated = await self._read(response)
        return self._render(final, response, body, truncated)

    @contextlib.asynccontextmanager
    async def _final(self, url: httpx.URL) -> AsyncIterator[tuple[httpx.URL, httpx.Response]]:
        """The streamed response of ``url`` after its redirects (each hop's address vetted
        before it is asked), with the URL it came from; closed on the way out."""
        for _ in range(self.max_redirects + 1):
            request = self._request(url, await self._vet(url))
            transport = httpx.AsyncHTTPTransport(verify=self._verify, retries=0)
            async with httpx.AsyncClient(transport=transport, trust_env=False) as client:
                response = await client.send(request, stream=True, follow_redirects=False)
                try:
                    location = response.headers.get("location")
                    if response.status_code in _REDIRECTS and location:
                        url = self._parse(str(url.join(location)))
                        continue
                    yield url, response
                    return
                finally:
                    await response.aclose()
        raise FetchRefused(f"too many redirects (more than {self.max_redirects})")

    async def _read(self, response: httpx.Response) -> tuple[bytes, bool]:
        body = bytearray()
        async for chunk in response.aiter_bytes():
            body += chunk
            if len(body) > self.max_bytes:
                return bytes(body[: self.max_bytes]), True
        return bytes(body), False

    def _render(
        self, url: httpx.URL, response: httpx.Response, body: bytes, truncated: bool
    ) -> ToolResult:
        ctype = response.headers.get("content-type", "").split(";", 1)[0].strip().lower()
        head = f"URL: {url}\nstatus: {response.status_code}\ncontent-type: {ctype or 'unknown'}"
        is_text = not ctype or ctype.startswith(_TEXT_TYPES) or ctype.endswith(("+json", "+xml"))
        if not is_text:
            text = f"[binary content ({ctype}, {len(body)} bytes) not shown]"
        else:
            text = body.decode(_charset(response.charset_encoding), "replace")
            if ctype in ("text/html", "application/xhtml+xml") or (
                not ctype and "<html" in text[:1000].lower()
            ):
                text = html_to_text(text)
        if len(text) > self.max_chars:
            text, truncated = text[: self.max_chars], True
        if truncated:
            text += f"\n[truncated: the body is larger than the {self.max_bytes}-byte cap]"
        return ToolResult(
            text=f"{head}\n\n{text}", is_error=response.status_code >= 400, untrusted=True
        )


def _charset(name: str | None) -> str:
    if not name:
        return "utf-8"
    try:
        return codecs.lookup(name).name
    except LookupError:
        return "utf-8"


def _http_problem(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "the server did not answer in time"
    if isinstance(exc, httpx.ConnectError):
        return "the connection failed"
    if isinstance(exc, httpx.RemoteProtocolError):
        return "the server sent an invalid HTTP response"
    return "the request failed"


# --- HTML to text --------------------------------------------------------------------------
_SKIP = frozenset({"script", "style", "noscript", "template", "svg", "iframe", "object", "head"})
_BLOCK = frozenset(
    {
        "p",
        "div",
        "br",
        "li",
        "ul",
        "ol",
        "tr",
        "table",
        "section",
        "article",
        "header",
        "footer",
        "nav",
        "aside",
        "main",
        "pre",
        "blockquote",
        "form",
        "hr",
        "dt",
        "dd",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "title",
    }
)


class _TextParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip_depth = 0
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "title":
            self._in_title = True
        elif tag in _SKIP:
            self._skip_depth += 1
        if tag in _BLOCK:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False
        elif tag in _SKIP and self._skip_depth:
            self._skip_depth -= 1
        if tag in _BLOCK:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self._in_title or not self._skip_depth:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    """Visible text of an HTML page: no tags, scripts or styles; entities decoded."""
    parser = _TextParser()
    parser.feed(html)
    parser.close()
    lines = (
        re.sub(r"[ \t\r\f\v]+", " ", line).strip() for line in "".join(parser.parts).split("\n")
    )
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip()
