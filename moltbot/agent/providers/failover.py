"""Failover across providers: Claude first, say, then a local model when Claude is down.

``FailoverProvider`` asks its providers in order, each turn starting again from the first (so a
provider that is back is used again at once). The next one is asked when a provider fails with a
``ProviderError`` before yielding anything: down after its own retries, overloaded, rate limited,
refusing the key, not knowing the model. Once a provider has yielded an event (text the user
may already see, or a tool call) its error is raised as it is: nothing is asked twice and no
text is duplicated. When every provider fails, the first one's error is raised (it is the one
the owner chose first), and each failure is logged.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncGenerator, Sequence

from moltbot.agent.providers.base import ModelRequest, Provider, ProviderEvent
from moltbot.errors import ProviderError

log = logging.getLogger(__name__)


class FailoverProvider:
    """A ``Provider`` over an ordered list of providers."""

    def __init__(self, providers: Sequence[Provider]) -> None:
        if not providers:
            raise ProviderError("no model provider is configured")
        self._providers = list(providers)

    @property
    def name(self) -> str:
        return ", then ".join(p.name for p in self._providers)

    @property
    def providers(self) -> list[Provider]:
        return list(self._providers)

    @property
    def models(self) -> list[str]:
        return [m for p in self._providers for m in getattr(p, "models", [])]

    async def aclose(self) -> None:
        for provider in self._providers:
            close = getattr(provider, "aclose", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    await close()

    async def stream(self, request: ModelRequest) -> AsyncGenerator[ProviderEvent, None]:
        first: ProviderError | None = None
        for i, provider in enumerate(self._providers):
            started = False
            try:
                async with contextlib.aclosing(provider.stream(request)) as events:
                    async for event in events:
                        started = True
                        yield event
                return
            except ProviderError as exc:
                if started:
                    raise
                first = first or exc
                more = i + 1 < len(self._providers)
                log.warning(
                    "provider %s failed (%s)%s",
                    provider.name,
                    exc.code,
                    "; trying the next one" if more else "; none left",
                )
        raise first if first is not None else ProviderError("no model provider answered")
