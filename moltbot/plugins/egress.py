"""HTTP for plugins: the plugin's httpx client hands each request to the broker, which makes it.

Inside the sandbox there is no network at all. :func:`client` returns an ``httpx.AsyncClient``
whose transport sends the request over the plugin pipe. The broker's :class:`Egress` makes it
only when the URL's host is one of ``plugins[].http_hosts`` (exact names) and every address the
host resolves to is public (the SSRF guard of ``web_fetch``); the connection goes to the vetted
address (no DNS rebinding), redirects are not followed (each hop is a new, checked request),
bodies both ways are capped.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from moltbot.errors import CapabilityDenied, FetchRefused
from moltbot.security.ssrf import Resolver, system_resolver, vet_host

MAX_BODY = 2 * 1024 * 1024
TIMEOUT_S = 20.0
Call = Callable[[str, dict[str, Any]], Awaitable[Any]]
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


# --- inside the sandbox -------------------------------------------------------------------------
class BrokerTransport(httpx.AsyncBaseTransport):
    def __init__(self, call: Call) -> None:
        self._call = call

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        body = await request.aread()
        got = await self._call(
            "http",
            {
                "method": request.method,
                "url": str(request.url),
                "headers": [
                    [k.decode("latin-1"), v.decode("latin-1")] for k, v in request.headers.raw
                ],
                "body": body,
            },
        )
        return httpx.Response(
            status_code=int(got["status"]),
            headers=[(k, v) for k, v in got["headers"]],
            content=bytes(got["body"]),
            request=request,
        )


def client(call: Call, **kwargs: Any) -> httpx.AsyncClient:
    kwargs.setdefault("timeout", TIMEOUT_S)
    return httpx.AsyncClient(transport=BrokerTransport(call), trust_env=False, **kwargs)


# --- in the broker ------------------------------------------------------------------------------
class Egress:
    """Makes a plugin's HTTP requests to its granted hosts.

    ``allow_loopback_port_for_tests``: as web_fetch's, tests only, never set from config.
    """

    def __init__(
        self,
        hosts: frozenset[str],
        *,
        resolver: Resolver = system_resolver,
        allow_loopback_port_for_tests: int | None = None,
    ) -> None:
        self.hosts = frozenset(h.lower() for h in hosts)
        self._resolve = resolver
        self._loopback_port = allow_loopback_port_for_tests

    def check_host(self, url: httpx.URL) -> None:
        """CapabilityDenied unless the URL is http(s) to a granted host (no credentials)."""
        if url.scheme not in ("http", "https") or not url.host or url.userinfo:
            raise CapabilityDenied("only http(s) URLs to a granted host, without credentials")
        if url.host.lower() not in self.hosts:
            raise CapabilityDenied(
                f"host {url.host[:200]} is not granted",
                hint="list it in plugins[].http_hosts if the plugin should reach it",
            )

    async def _vet(self, url: httpx.URL) -> str:
        port = url.port or (443 if url.scheme == "https" else 80)
        return await vet_host(url.host, port, self._resolve, test_loopback_port=self._loopback_port)

    async def request(self, args: dict[str, Any]) -> dict[str, Any]:
        """Make one request (already host-checked by the caller with :meth:`check_host`)."""
        url = httpx.URL(str(args["url"]))
        method = str(args.get("method", "GET")).upper()
        if method not in METHODS:
            raise FetchRefused(f"HTTP method {method[:20]} is not allowed")
        body = bytes(args.get("body") or b"")
        if len(body) > MAX_BODY:
            raise FetchRefused(f"request body over {MAX_BODY} bytes")
        ip = await self._vet(url)
        headers = [
            (str(k), str(v))
            for k, v in args.get("headers", [])
            if str(k).lower() not in ("host", "content-length")
        ]
        headers.append(("Host", url.netloc.decode("ascii")))
        request = httpx.Request(
            method,
            url.copy_with(host=ip),
            headers=headers,
            content=body,
            extensions={"sni_hostname": url.host},
        )
        transport = httpx.AsyncHTTPTransport(verify=True, retries=0)
        async with httpx.AsyncClient(transport=transport, trust_env=False, timeout=TIMEOUT_S) as c:
            response = await c.send(request, stream=True, follow_redirects=False)
            try:
                data = bytearray()
                async for chunk in response.aiter_raw():
                    data += chunk
                    if len(data) > MAX_BODY:
                        raise FetchRefused(f"the response is over {MAX_BODY} bytes")
            finally:
                await response.aclose()
        keep = [
            [k, v]
            for k, v in response.headers.multi_items()
            if k.lower() not in ("content-length", "transfer-encoding")
        ]
        return {"status": response.status_code, "headers": keep, "body": bytes(data)}
