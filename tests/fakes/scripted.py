"""What the fake model APIs share: scripted answers per model, and the recorded requests."""

from __future__ import annotations

from collections import deque
from typing import Generic, Protocol, TypeVar

R = TypeVar("R")


class _Recorded(Protocol):
    model: str


Q = TypeVar("Q", bound=_Recorded)


class Scripted(Generic[R, Q]):
    """First match wins: ``always(model)``, the ``script(..., model=)`` queue, the global
    ``script()`` queue, else None (the fake then answers its default)."""

    def __init__(self) -> None:
        # bounded, so a long benchmark run does not grow without limit
        self.requests: deque[Q] = deque(maxlen=10_000)
        self._queue: deque[R] = deque()
        self._per_model: dict[str, deque[R]] = {}
        self._always: dict[str, R] = {}

    def script(self, *responses: R, model: str | None = None) -> None:
        target = self._queue if model is None else self._per_model.setdefault(model, deque())
        target.extend(responses)

    def always(self, model: str, response: R) -> None:
        self._always[model] = response

    def heal(self, model: str) -> None:
        """Undo ``always(model)``."""
        self._always.pop(model, None)

    def requests_for(self, model: str) -> list[Q]:
        return [r for r in self.requests if r.model == model]

    def pick(self, model: str) -> R | None:
        if model in self._always:
            return self._always[model]
        queue = self._per_model.get(model)
        if queue:
            return queue.popleft()
        return self._queue.popleft() if self._queue else None
