"""What the gateway talks to: one async method per gateway method.

The gateway never knows about Ray: the lead's Ray-backed implementation (in ``actors/``) adapts
actor calls to this protocol. ``BaseBackend`` answers every call with ``Unavailable`` so a
gateway started without a tree still answers clients with a clear ``unavailable`` error.

Payloads are plain JSON-able data (dicts, lists, str, numbers, msgspec Structs); the gateway
wraps lists into objects (``sessions.list`` -> ``{"sessions": [...]}``) and redacts secrets
from ``config.get`` once more before sending.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any, Protocol, runtime_checkable

from moltbot.errors import Unavailable
from moltbot.media.web import Upload
from moltbot.messages import ChatEvent

JSON = dict[str, Any]


@runtime_checkable
class Backend(Protocol):
    async def ready(self) -> bool:
        """True when the tree can serve requests (``/readyz``)."""
        ...

    async def health(self) -> JSON: ...

    async def status(self) -> JSON:
        """The supervision tree: ``{"name", "kind", "state", "children": [...]}`` nodes."""
        ...

    def chat_send(
        self, session: str, text: str, files: list[Upload] | None = None
    ) -> AsyncIterator[ChatEvent]:
        """Run one turn; yields deltas and tool notices, ending with a ``ChatFinal``.
        ``files``: sent from the web page (given only when there are some)."""
        ...

    async def chat_history(self, session: str, limit: int) -> list[JSON]: ...

    async def sessions_list(self) -> list[JSON]: ...

    async def sessions_reset(self, session: str) -> None: ...

    async def channels_status(self) -> list[JSON]: ...

    async def approvals_list(self) -> list[JSON]: ...

    async def approvals_resolve(self, approval_id: str, approve: bool, *, by: str) -> JSON:
        """``by`` names who answered (``gateway:<client address>``) for the audit log."""
        ...

    async def pairing_list(self) -> list[JSON]: ...

    async def pairing_approve(self, channel: str, code: str, *, by: str = "") -> JSON:
        """``by`` names who approved (``gateway:<client address>``) for the audit log."""
        ...

    async def config_get(self) -> JSON:
        """The effective config with secrets redacted (the gateway redacts once more)."""
        ...

    async def cron_list(self) -> list[JSON]:
        """The scheduler's jobs (id, kind, spec, text, deliver_to, catch_up, tz, next_at)."""
        ...

    async def plugin_call(self, plugin: str, method: str, params: JSON) -> JSON:
        """A plugin's gateway method (``plugin.<plugin>.<method>``): its object, or
        ``NotFound`` (no such plugin or method), or the plugin's own error (safe message)."""
        ...

    def events(self, listening: asyncio.Event | None = None) -> AsyncIterator[tuple[str, JSON]]:
        """Server events pushed to every connected client: ``(event name, payload)``.

        Supervision-tree transitions are expected as ``("tree", {...})``, approval changes as
        ``("approvals", {...})``. If the iterator raises or ends, the gateway retries it with
        backoff. ``listening`` is set while a client is connected: a backend that polls for
        events may wait for it (what happens while nobody listens is not sent later).
        """
        ...


class BaseBackend:
    """A backend with nothing behind it: every call raises ``Unavailable``."""

    def _missing(self, what: str) -> Unavailable:
        return Unavailable(
            f"{what} not available yet", hint="the assistant tree is not connected to the gateway"
        )

    async def ready(self) -> bool:
        raise self._missing("readiness")

    async def health(self) -> JSON:
        raise self._missing("health")

    async def status(self) -> JSON:
        raise self._missing("status")

    async def chat_send(
        self, session: str, text: str, files: list[Upload] | None = None
    ) -> AsyncIterator[ChatEvent]:
        raise self._missing("chat")
        yield  # pragma: no cover - makes this an async generator

    async def chat_history(self, session: str, limit: int) -> list[JSON]:
        raise self._missing("chat history")

    async def sessions_list(self) -> list[JSON]:
        raise self._missing("sessions")

    async def sessions_reset(self, session: str) -> None:
        raise self._missing("sessions")

    async def channels_status(self) -> list[JSON]:
        raise self._missing("channels")

    async def approvals_list(self) -> list[JSON]:
        raise self._missing("approvals")

    async def approvals_resolve(self, approval_id: str, approve: bool, *, by: str) -> JSON:
        raise self._missing("approvals")

    async def pairing_list(self) -> list[JSON]:
        raise self._missing("pairing")

    async def pairing_approve(self, channel: str, code: str, *, by: str = "") -> JSON:
        raise self._missing("pairing")

    async def config_get(self) -> JSON:
        raise self._missing("config")

    async def plugin_call(self, plugin: str, method: str, params: JSON) -> JSON:
        raise self._missing("plugins")

    async def cron_list(self) -> list[JSON]:
        raise self._missing("scheduled jobs")

    async def events(
        self, listening: asyncio.Event | None = None
    ) -> AsyncIterator[tuple[str, JSON]]:
        raise self._missing("events")
        yield  # pragma: no cover - makes this an async generator
