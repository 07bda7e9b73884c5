"""Downloads from a platform's own servers (Slack's file host, signal-cli-rest-api,
BlueBubbles): the URL must be on a host the adapter trusts with its credentials
(``allowed``), redirects are not followed (a credential never goes elsewhere), the body is
streamed and cut at ``max_bytes`` (MediaRefused), the time is capped. Files on a public CDN
(Discord) go through ``WebFetcher.download`` instead: the SSRF guard of web_fetch."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import httpx

from moltbot.errors import MediaRefused, PlatformRejected, PlatformUnavailable


async def fetch_own(
    url: str,
    *,
    max_bytes: int,
    allowed: Callable[[httpx.URL], bool],
    platform: str,
    headers: Mapping[str, str] | None = None,
    params: Mapping[str, str] | None = None,
    timeout_s: float = 60.0,
) -> tuple[bytes, str]:
    """(the body, its content type) of a GET of ``url``."""
    try:
        target = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        raise PlatformRejected(f"{platform} gave a file URL that is not valid") from None
    if target.scheme not in ("http", "https") or target.userinfo or not allowed(target):
        raise PlatformRejected(f"{platform} gave a file URL on a host we do not trust")
    try:
        async with httpx.AsyncClient(timeout=timeout_s, trust_env=False) as client:
            request = client.build_request(
                "GET", target, headers=dict(headers or {}), params=dict(params or {})
            )
            response = await client.send(request, stream=True, follow_redirects=False)
            try:
                if response.status_code >= 500:
                    raise PlatformUnavailable(f"{platform} could not serve the file right now")
                if response.status_code != 200:
                    raise PlatformRejected(f"{platform} refused the file download")
                body = await read_capped(response, max_bytes)
                ctype = response.headers.get("content-type", "").split(";", 1)[0].strip()
                return body, ctype.lower()
            finally:
                await response.aclose()
    except httpx.HTTPError:
        raise PlatformUnavailable(f"{platform} could not be reached for the file") from None


def same_origin(base: str) -> Callable[[httpx.URL], bool]:
    """The hosts of ``base`` (scheme, host and port equal)."""
    origin = httpx.URL(base)

    def check(url: httpx.URL) -> bool:
        return (url.scheme, url.host, url.port) == (origin.scheme, origin.host, origin.port)

    return check


async def read_capped(response: httpx.Response, max_bytes: int) -> bytes:
    """A streamed body, MediaRefused as soon as it passes ``max_bytes``."""
    body = bytearray()
    async for chunk in response.aiter_bytes():
        body += chunk
        if len(body) > max_bytes:
            raise MediaRefused(f"larger than {max_bytes} bytes")
    return bytes(body)
