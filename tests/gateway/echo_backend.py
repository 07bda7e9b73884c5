"""A Backend for the gateway tests: echoes chat text back in several deltas, keeps small state."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from moltbot.errors import NotFound, PluginError
from moltbot.media.web import Upload
from moltbot.messages import ChatDelta, ChatEvent, ChatFinal, ChatTool
from moltbot.schedule.jobs import make_job
from moltbot.schedule.service import job_view

XSS_REPLY = 'look: <img src=x onerror="window.__xss=1"> done'
SECRET_IN_CONFIG = "s3cret-value-never-shown"

REJECTED_REASON = "Signal number +15557770000 is not registered with signal-cli"


class EchoBackend:
    def __init__(self) -> None:
        self.is_ready = True
        self.events_queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue(100)
        self.listening: asyncio.Event | None = None  # what the server gave ``events``
        self.chat_calls = 0
        self.uploads: list[Upload] = []  # files that came with chat.send
        self.hang_first_chat = False
        self.delta_delay = 0.01
        self.reset_sessions: list[str] = []
        self.resolved: list[tuple[str, bool, str]] = []
        self.paired: list[tuple[str, str]] = []
        self.plugin_calls: list[tuple[str, str, dict[str, Any]]] = []
        self.approvals: dict[str, dict[str, Any]] = {
            "a1": {"id": "a1", "command": "rm -rf /tmp/x <b>", "session": "web"},
        }
        # the scheduler's listing of real jobs (``moltbot.schedule``), one with markup in it
        briefing = make_job(
            "cron",
            "0 9 * * 1-5",
            "morning <img src=x onerror=alert(1)>",
            now=time.time(),
            job_id="briefing",
            deliver_to="telegram:main:42",
        )
        self.jobs: list[dict[str, Any]] = [job_view(briefing)]

    async def ready(self) -> bool:
        return self.is_ready

    async def health(self) -> dict[str, Any]:
        return {"status": "ok", "uptime_s": 1.5}

    async def status(self) -> dict[str, Any]:
        return {
            "tree": {
                "name": "moltbot",
                "state": "running",
                "children": [
                    {"name": "store", "state": "running", "children": []},
                    {"name": "gateway", "state": "running", "children": []},
                    {"name": "agents", "state": "restarting", "restarts": 2, "children": []},
                    {
                        "name": "channels",
                        "state": "running",
                        "children": [
                            {
                                "name": "signal:phone",
                                "state": "running",
                                "children": [],
                                "figures": {
                                    "in": 0,
                                    "out": 0,
                                    "queue": 0,
                                    "link": {
                                        "state": "rejected",
                                        "since": 0,
                                        "last_in": None,
                                        "last_out": None,
                                        "reason": REJECTED_REASON,
                                        "fix": "register or link it first",
                                    },
                                },
                            },
                        ],
                    },
                ],
            }
        }

    async def chat_send(
        self, session: str, text: str, files: list[Upload] | None = None
    ) -> AsyncIterator[ChatEvent]:
        self.uploads += files or []
        if files:
            text += " + " + ", ".join(f"{f.name} ({len(f.data)} bytes)" for f in files)
        self.chat_calls += 1
        call = self.chat_calls
        reply = XSS_REPLY if "xss" in text else f"echo: {text}"
        yield ChatTool(session=session, name="echo", summary="repeat the text", status="done")
        pieces = [reply[i : i + 4] for i in range(0, len(reply), 4)]
        for n, piece in enumerate(pieces):
            if n == 1 and call == 1 and self.hang_first_chat:
                await asyncio.Event().wait()  # stuck until the gateway goes away
            yield ChatDelta(session=session, text=piece)
            await asyncio.sleep(self.delta_delay)
        yield ChatFinal(session=session, text=reply, usage={"output_tokens": len(pieces)})

    async def chat_history(self, session: str, limit: int) -> list[dict[str, Any]]:
        return [{"role": "user", "text": "hi"}, {"role": "assistant", "text": "echo: hi"}][:limit]

    async def sessions_list(self) -> list[dict[str, Any]]:
        return [{"key": "web:main", "messages": 2}]

    async def sessions_reset(self, session: str) -> None:
        self.reset_sessions.append(session)

    async def channels_status(self) -> list[dict[str, Any]]:
        return [{"name": "telegram:main", "state": "running"}]

    async def approvals_list(self) -> list[dict[str, Any]]:
        return list(self.approvals.values())

    async def approvals_resolve(
        self, approval_id: str, approve: bool, *, by: str
    ) -> dict[str, Any]:
        if self.approvals.pop(approval_id, None) is None:
            raise NotFound(f"no pending approval {approval_id}")
        self.resolved.append((approval_id, approve, by))
        await self.events_queue.put(("approvals", {"resolved": approval_id}))
        return {"id": approval_id, "approved": approve}

    async def cron_list(self) -> list[dict[str, Any]]:
        return list(self.jobs)

    async def pairing_list(self) -> list[dict[str, Any]]:
        return [{"channel": "telegram", "code": "ABC123", "sender": "42"}]

    async def pairing_approve(self, channel: str, code: str, *, by: str = "") -> dict[str, Any]:
        self.paired.append((channel, code))
        self.pairing_by = by
        return {"channel": channel, "code": code, "approved": True}

    async def config_get(self) -> dict[str, Any]:
        return {
            "gateway": {"port": 18789, "token": SECRET_IN_CONFIG, "allowed_origins": []},
            "channels": {"telegram": {"bot_token": SECRET_IN_CONFIG, "api_base": "http://x"}},
            "agent": {"model": "claude", "max_tokens": 1024, "api_key": SECRET_IN_CONFIG},
        }

    async def plugin_call(self, plugin: str, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """One plugin, ``echo``: ``repeat`` answers its params, ``refuse`` fails politely."""
        self.plugin_calls.append((plugin, method, params))
        if plugin != "echo":
            raise NotFound(f"no plugin named {plugin!r}")
        if method == "repeat":
            return {"plugin": plugin, "params": params}
        if method == "refuse":
            raise PluginError("the echo plugin refuses", hint="ask nicely")
        raise NotFound(f"plugin 'echo' has no method {method!r}")

    async def events(
        self, listening: asyncio.Event | None = None
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        self.listening = listening
        while True:
            yield await self.events_queue.get()
