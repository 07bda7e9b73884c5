"""What every fake platform server shares: failure injection and the aiohttp lifecycle.

A fake subclasses ``FakeServer``, adds its platform routes in ``routes(app)`` and defines the
control handlers ``_ctl_inject`` / ``_ctl_sent`` / ``_ctl_fail`` (standalone use).
"""

from __future__ import annotations

from typing import Any, Self

from aiohttp import web


class Failures:
    """Planned failures per method: the next ``count`` calls answer ``status``."""

    def __init__(self) -> None:
        self._plan: dict[str, list[tuple[int, float | None]]] = {}

    def add(self, method: str, count: int, status: int, retry_after: float | None) -> None:
        self._plan.setdefault(method, []).extend([(status, retry_after)] * count)

    def take(self, method: str) -> tuple[int, float | None] | None:
        plan = self._plan.get(method)
        return plan.pop(0) if plan else None


class FakeServer:
    host: str
    port: int
    _runner: web.AppRunner | None = None

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    async def _ctl_inject(self, request: web.Request) -> web.Response:
        raise NotImplementedError

    async def _ctl_sent(self, request: web.Request) -> web.Response:
        raise NotImplementedError

    async def _ctl_fail(self, request: web.Request) -> web.Response:
        raise NotImplementedError

    async def start(self) -> None:
        app = web.Application()
        self.routes(app)
        app.router.add_post("/_fake/inject", self._ctl_inject)
        app.router.add_get("/_fake/sent", self._ctl_sent)
        app.router.add_post("/_fake/fail", self._ctl_fail)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.stop()
