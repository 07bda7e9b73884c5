"""Meta's Graph API over httpx, as the WhatsApp Cloud adapter uses it: one place where its
answers become moltbot errors.

The token travels in the ``Authorization: Bearer`` header only (never in a URL), so neither
httpx's request log nor our errors can show it. Graph errors come as
``{"error": {"message", "type", "code", "error_subcode", "fbtrace_id"}}``: the HTTP status and
``code`` decide between retry (5xx, 429, throughput codes), a refused token (401/403, code 190)
and a refusal for good (any other 4xx).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import httpx

from moltbot.channels.retry import classify_status, parse_retry_after
from moltbot.errors import MoltbotError, PlatformRejected, PlatformUnavailable, RateLimited
from moltbot.media.fetch import fetch_own

log = logging.getLogger(__name__)

REFUSED_HINT = (
    "check channels.whatsapp access_token: a System User token of the WhatsApp Business app "
    "with whatsapp_business_messaging permission, stored with "
    "`moltbot secrets set whatsapp_access_token`"
)
# Graph error codes that mean "too much, slow down" (rate and throughput limits)
_RATE_CODES = frozenset({4, 80007, 130429, 131048, 131056})
_TEMPORARY_CODES = frozenset({1, 2, 131000, 131016})  # unknown / service unavailable
_TOKEN_CODES = frozenset({190, 10, 200})  # token expired or invalid, permission missing
_OUTSIDE_WINDOW = 131047  # more than 24 h since the person last wrote


def graph_error(status: int, body: Any, retry_after: str | None = None) -> MoltbotError:
    """The moltbot error for a Graph API answer that is not a success."""
    err = body.get("error") if isinstance(body, dict) else None
    code = err.get("code") if isinstance(err, dict) else None
    if status == 429 or code in _RATE_CODES:
        return RateLimited(
            "WhatsApp is rate limiting us", retry_after=parse_retry_after(retry_after, 1.0)
        )
    if status >= 500 or code in _TEMPORARY_CODES:
        return PlatformUnavailable(f"WhatsApp is unavailable right now (HTTP {status})")
    if status in (401, 403) or code in _TOKEN_CODES:
        return PlatformRejected("WhatsApp refused the access token", hint=REFUSED_HINT)
    if code == _OUTSIDE_WINDOW:
        return PlatformRejected(
            "WhatsApp only lets us answer within 24 hours of the person's last message",
            hint="the person has to write again first (Cloud API customer service window)",
        )
    found = classify_status(status, platform="WhatsApp")
    return found or PlatformRejected(f"WhatsApp rejected the request (HTTP {status}, code {code})")


class GraphClient:
    def __init__(
        self,
        *,
        api_base: str,
        api_version: str,
        token: str,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._base = f"{api_base.rstrip('/')}/{api_version}/"
        self._token = token
        self._transport = transport
        self._http: httpx.AsyncClient | None = None

    def __repr__(self) -> str:
        return f"GraphClient({self._base!r})"

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(
                base_url=self._base,
                timeout=30.0,
                headers={"Authorization": f"Bearer {self._token}"},
                transport=self._transport,
            )
        return self._http

    async def get(self, path: str, params: dict[str, str] | None = None) -> dict[str, Any]:
        return await self._request("GET", path, params=params)

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self._request("POST", path, json=body)

    async def upload(
        self, path: str, fields: dict[str, str], file: tuple[str, bytes, str]
    ) -> dict[str, Any]:
        """A multipart POST: ``fields`` and one ``file`` part (name, data, content type)."""
        return await self._request("POST", path, data=fields, files={"file": file})

    async def download(
        self, url: str, max_bytes: int, allowed: Callable[[httpx.URL], bool]
    ) -> bytes:
        """GET ``url`` with the token, only on an ``allowed`` host, no redirects, capped."""
        body, _ctype = await fetch_own(
            url,
            max_bytes=max_bytes,
            allowed=allowed,
            platform="WhatsApp",
            headers={"Authorization": f"Bearer {self._token}"},
        )
        return body

    async def _request(self, method: str, path: str, **kw: Any) -> dict[str, Any]:
        try:
            resp = await self._client().request(method, path, **kw)
        except (httpx.TransportError, OSError) as e:
            log.debug("whatsapp graph %s %s: %s", method, path, type(e).__name__)
            raise PlatformUnavailable(
                "WhatsApp's Graph API could not be reached",
                hint="check the network, or channels.whatsapp api_base",
            ) from None
        try:
            data = resp.json()
        except ValueError:
            data = None
        if resp.status_code >= 400:
            raise graph_error(resp.status_code, data, resp.headers.get("Retry-After"))
        if not isinstance(data, dict):
            raise PlatformUnavailable("WhatsApp sent an answer we cannot read")
        return data

    async def aclose(self) -> None:
        http, self._http = self._http, None
        if http is not None:
            await http.aclose()
