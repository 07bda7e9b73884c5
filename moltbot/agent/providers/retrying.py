"""The retry and per-model failover loop every SDK-backed provider shares.

An adapter gives one attempt (a model name → a stream of events) and a function that maps a
foreign exception once, to one of ours or to the signals below. ``stream_with_retries`` retries
a :class:`Retry` with backoff (honouring ``retry_after``) up to ``max_attempts`` per model, moves
to the next model on a :class:`NextModel`, and never retries once an event of that attempt was
yielded, so streamed text is never duplicated.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence

from moltbot.agent.providers.base import ModelRequest, ProviderEvent, backoff_delay
from moltbot.errors import ProviderError

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]


class Retry(Exception):
    """This attempt failed in a retryable way (a retry happens only before anything streamed)."""

    def __init__(self, error: ProviderError, retry_after: float | None) -> None:
        super().__init__(error.user_message)
        self.error = error
        self.retry_after = retry_after


class NextModel(Exception):
    """This model cannot serve the request (e.g. unknown model); try the next one."""

    def __init__(self, error: ProviderError) -> None:
        super().__init__(error.user_message)
        self.error = error


class RetryPolicy:
    """How often and how long to retry one model. ``sleep`` and ``rng`` are for tests."""

    def __init__(
        self,
        *,
        max_attempts: int = 4,
        base_s: float = 0.5,
        max_s: float = 20.0,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.max_attempts = max_attempts
        self.base_s = base_s
        self.max_s = max_s
        self.sleep = sleep
        self.rng = rng or random.Random()

    async def wait(self, attempt: int, retry_after: float | None) -> None:
        await self.sleep(
            backoff_delay(
                attempt,
                base_s=self.base_s,
                max_s=self.max_s,
                retry_after=retry_after,
                rng=self.rng,
            )
        )


async def stream_with_retries(
    label: str,
    models: Sequence[str],
    attempt: Callable[[str], AsyncGenerator[ProviderEvent, None]],
    map_error: Callable[[BaseException], Exception],
    catch: tuple[type[BaseException], ...],
    policy: RetryPolicy,
    last: ProviderError,
) -> AsyncGenerator[ProviderEvent, None]:
    """The events of the first model that answers; ``last`` is raised if none was tried."""
    for model in models:
        for n in range(1, policy.max_attempts + 1):
            started = False
            try:
                async with contextlib.aclosing(attempt(model)) as events:
                    async for event in events:
                        started = True
                        yield event
                return
            except catch as exc:
                mapped = map_error(exc)
                if isinstance(mapped, Retry) and not started:
                    last = mapped.error
                    log.warning(
                        "%s %s attempt %d/%d failed: %s",
                        label,
                        model,
                        n,
                        policy.max_attempts,
                        type(exc).__name__,
                    )
                    if n < policy.max_attempts:
                        await policy.wait(n, mapped.retry_after)
                    continue
                if isinstance(mapped, NextModel) and not started:
                    last = mapped.error
                    break
                if isinstance(mapped, (Retry, NextModel)):
                    raise mapped.error from None
                raise mapped from None
        log.warning("%s model %s gave up; failing over", label, model)
    raise last


class RetryingProvider:
    """Base of an SDK-backed ``Provider``: subclasses give ``catch`` (the foreign exceptions),
    ``map_error``, ``attempt`` (one call of one model) and ``gave_up`` (raised if no model was
    tried); ``stream`` runs them through :func:`stream_with_retries`."""

    catch: tuple[type[BaseException], ...] = ()

    def __init__(self, label: str, models: Sequence[str], policy: RetryPolicy) -> None:
        if not models:
            raise ProviderError(f"no model is configured for {label}")
        self._label = label
        self._models = list(models)
        self._policy = policy

    @property
    def name(self) -> str:
        return self._label

    @property
    def models(self) -> list[str]:
        return list(self._models)

    def map_error(self, exc: BaseException) -> Exception:
        raise NotImplementedError

    def attempt(self, model: str, request: ModelRequest) -> AsyncGenerator[ProviderEvent, None]:
        raise NotImplementedError

    def gave_up(self) -> ProviderError:
        raise NotImplementedError

    async def stream(self, request: ModelRequest) -> AsyncGenerator[ProviderEvent, None]:
        async for event in stream_with_retries(
            self._label,
            self._models,
            lambda model: self.attempt(model, request),
            self.map_error,
            self.catch,
            self._policy,
            self.gave_up(),
        ):
            yield event


def retry_after_header(headers: object) -> float | None:
    """Seconds from ``retry-after-ms`` / ``retry-after`` (an HTTP date or garbage: None)."""
    get = getattr(headers, "get", None)
    if get is None:
        return None
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        raw = get(name)
        if raw is None:
            continue
        try:
            value = float(raw) * scale
        except ValueError:
            continue  # fall back to our own backoff
        if value >= 0:
            return value
    return None
