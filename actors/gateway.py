"""The gateway actor: runs ``moltbot.gateway.GatewayServer`` with a backend made of Ray calls."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import ray

from actors import routing
from actors.audit import AuditForwarder
from actors.base import CHILD_OPTIONS, ChildBase
from moltbot.agent import profiles
from moltbot.channels.hooks import HookReply, HookRequest
from moltbot.config.schema import Config
from moltbot.errors import Dormant, NotFound, Unavailable
from moltbot.gateway.activation import take
from moltbot.gateway.backend import JSON, BaseBackend
from moltbot.gateway.from_config import settings_from_config, ssl_from_config
from moltbot.gateway.server import GatewayServer
from moltbot.media.web import Upload
from moltbot.messages import ChatEvent
from moltbot.supervision.idle import IdleWatch
from moltbot.supervision.tree import channel_ids, channel_plugins

SUPERVISORS = ("", "agents", "tools", "channels", "plugins")
EVENT_POLL_S = 0.5
APPROVALS_POLL_S = 1.0  # how long one look at the pending approvals may take
PLUGIN_DEADLINE_S = 10.0  # waiting for a restarting plugin before a method call gives up
HOOK_DEADLINE_S = 7.0  # below the gateway's own webhook timeout
AGENT_WAKE_S = 30.0  # a sleeping agent's start (imports, provider) before a chat gives up


def web_session(session: str) -> str:
    """The session key of a web/CLI chat (a full key from sessions.list passes through)."""
    return session if ":" in session else f"web:gateway:dm:{session}"


class RayBackend(BaseBackend):
    """Adapts gateway methods to calls on the tree's actors, found by their stable names."""

    def __init__(self, cfg: Config, namespace: str) -> None:
        self.cfg = cfg
        self.ns = namespace

    async def _call(self, path: str, method: str, *args: Any, **kw: Any) -> Any:
        return await routing.call(self.ns, path, method, *args, deadline_s=10.0, **kw)

    async def ready(self) -> bool:
        return True

    async def health(self) -> JSON:
        return {"ok": True}

    async def status(self) -> JSON:
        tree = await routing.call(self.ns, "", "status", deadline_s=10.0)
        return {"tree": tree}

    async def chat_send(
        self, session: str, text: str, files: list[Upload] | None = None
    ) -> AsyncIterator[ChatEvent]:
        key = web_session(session)
        path = profiles.agent_path_for(self.cfg, key, None)
        for tries_left in (1, 0):
            agent = await self._agent(path)
            stream = (
                agent.chat.remote(key, text, "", files) if files else agent.chat.remote(key, text)
            )
            said = False
            try:
                async for ref in stream:
                    event = await ref
                    said = True
                    yield event
                return
            except Dormant:  # it refused the turn as it ended idle: nothing ran
                routing.forget(self.ns, path)
                if said or not tries_left:
                    raise
            except routing.RETRYABLE:  # the agent died mid-reply: the client asks again
                routing.forget(self.ns, path)
                raise Unavailable("the assistant restarted; please send again") from None

    async def _agent(self, path: str) -> Any:
        """The agent at ``path``; started first when it sleeps (``agent.idle_stop_s``). Looked
        up afresh: a handle kept from before it slept is of a process that ended."""
        routing.forget(self.ns, path)
        with contextlib.suppress(ValueError):  # absent: asleep (or between incarnations)
            return routing.handle(self.ns, path)
        try:
            return await routing.awake(self.ns, path, deadline_s=AGENT_WAKE_S)
        except (Unavailable, NotFound):
            raise Unavailable("the assistant is not available right now") from None

    async def chat_history(self, session: str, limit: int) -> list[JSON]:
        result: list[JSON] = await self._call("store", "history", web_session(session), limit)
        return result

    async def sessions_list(self) -> list[JSON]:
        result: list[JSON] = await self._call("store", "sessions_list")
        return result

    async def sessions_reset(self, session: str) -> None:
        key = web_session(session)  # the agent owning the session resets it (and its cache)
        path = profiles.agent_path_for_session(self.cfg, key)
        await self._call(path, "sessions_reset", key, wake=True)

    async def channels_status(self) -> list[JSON]:
        out: list[JSON] = []
        for cid, _kind, _acct in channel_ids(self.cfg):
            try:
                out.append(await self._call(f"channels/{cid}", "status"))
            except Unavailable:
                out.append({"channel": cid, "state": "unavailable"})
        return out

    async def approvals_list(self) -> list[JSON]:
        """The pending approvals of every running sandbox (one asleep holds none)."""
        out: list[JSON] = []
        for i in range(self.cfg.tools.workers):
            held = await routing.call_running(
                self.ns, f"tools/sandbox-{i}", "approvals_list", deadline_s=10.0
            )
            out.extend(held or [])
        return out

    async def _pending_approvals(self, known: dict[str, JSON]) -> dict[str, JSON]:
        """Pending approvals by id, asked briefly: a sandbox that is restarting never holds up
        the tree's events (``known`` stands in until it answers)."""
        try:
            listed = await asyncio.wait_for(self.approvals_list(), APPROVALS_POLL_S)
        except Exception:  # slow, restarting or gone: try again next round
            return known
        return {str(a["id"]): a for a in listed}

    async def approvals_resolve(self, approval_id: str, approve: bool, *, by: str) -> JSON:
        for i in range(self.cfg.tools.workers):
            path = f"tools/sandbox-{i}"
            pending = await routing.call_running(self.ns, path, "approvals_list", deadline_s=10)
            if any(a.get("id") == approval_id for a in pending or []):
                result: JSON = await self._call(
                    path, "approvals_resolve", approval_id, approve, f"gateway:{by}"
                )
                return result
        raise NotFound(f"no pending approval {approval_id}")

    async def _pairing_targets(self) -> dict[str, tuple[str, tuple[str, ...]]]:
        """channel id -> (actor path, leading args): the channel accounts, then the channels
        running plugins registered (``<channel>:<plugin>``)."""
        out: dict[str, tuple[str, tuple[str, ...]]] = {
            cid: (f"channels/{cid}", ()) for cid, _kind, _acct in channel_ids(self.cfg)
        }
        for plugin in channel_plugins(self.cfg):
            path = routing.plugin_path(plugin)
            try:
                described = await self._call(path, "describe")
            except Unavailable:
                continue  # not running now: none of its channels can be paired
            for channel in sorted(described.get("channel_status", {})):
                out[f"{channel}:{plugin}"] = (path, (channel,))
        return out

    async def pairing_list(self) -> list[JSON]:
        out: list[JSON] = []
        for cid, (path, lead) in (await self._pairing_targets()).items():
            book = await self._call(path, "pairing_list", *lead)
            out += [{**item, "channel": cid} for item in book.get("pending", [])]
        return out

    async def pairing_approve(self, channel: str, code: str, *, by: str = "") -> JSON:
        target = (await self._pairing_targets()).get(channel)
        if target is None:
            raise NotFound(f"no channel {channel}")
        path, lead = target
        result: JSON = await self._call(path, "pairing_approve", *lead, code, by or "gateway")
        return result if isinstance(result, dict) else {"sender": result}

    async def cron_list(self) -> list[JSON]:
        return list(await self._call("scheduler", "jobs_list"))

    async def config_get(self) -> JSON:
        data: JSON = msgspec.to_builtins(self.cfg)
        return data

    async def plugin_call(self, plugin: str, method: str, params: JSON) -> JSON:
        """Sent once (a method need not be idempotent): the plugin's errors reach the client
        with their own code and message; its death mid-call is ``Unavailable``."""
        if plugin not in {p.name for p in self.cfg.plugins if p.enabled}:
            raise NotFound(f"no plugin named {plugin!r}", hint="see plugins[] in the config")
        path = routing.plugin_path(plugin)
        try:
            target = await routing.live(self.ns, path, PLUGIN_DEADLINE_S)
            result: JSON = await target.call_method.remote(method, params)
        except routing.ActorDied:
            routing.forget(self.ns, path)
            raise Unavailable(
                f"plugin '{plugin}' stopped during the call; it may or may not have run"
            ) from None
        return result

    async def events(
        self, listening: asyncio.Event | None = None
    ) -> AsyncIterator[tuple[str, JSON]]:
        """Tree transitions, and each approval as it is raised (``approval``, pushed to the
        clients so the page shows it in the chat) and once it is no longer pending.

        Polled every ``EVENT_POLL_S`` while ``listening`` (a client is connected), never
        otherwise: an idle tree makes no calls for it (each one a task in Ray's GCS: polling
        always grew it by ~2 MB a minute). When a client comes, the tree's events from then
        on are sent (and the approvals that change after its first look)."""
        seen = dict.fromkeys(SUPERVISORS, 0)
        pending: dict[str, JSON] = {}
        since, baseline = time.time(), False
        while True:
            if listening is not None and not listening.is_set():
                await listening.wait()
                since, baseline = time.time() - EVENT_POLL_S, True
            now = await self._pending_approvals(pending)
            if not baseline:
                for aid, approval in now.items():
                    if aid not in pending:
                        yield ("approval", {**approval, "state": "pending"})
                for aid, approval in pending.items():
                    if aid not in now:
                        yield ("approval", {**approval, "state": "answered"})
            pending, baseline = now, False
            for path in SUPERVISORS:
                try:
                    events = await routing.call(
                        self.ns, path, "recent_events", seen[path], deadline_s=2.0
                    )
                except Unavailable:
                    continue
                for ev in events:
                    seen[path] = max(seen[path], int(ev["seq"]))
                    if float(ev.get("t", since)) >= since:
                        yield ("tree", ev)
            await asyncio.sleep(EVENT_POLL_S)


@ray.remote(**CHILD_OPTIONS)
class GatewayActor(ChildBase):
    """Started on demand (socket activation: ``actors.activation``) when ``listen`` names the
    listening socket the root holds: it takes that socket, and ends normally once
    ``idle_stop_s`` passed with no connection open or waiting and no request."""

    def __init__(
        self,
        *,
        config: Config | None = None,
        listen: str = "",
        idle_stop_s: float = 0.0,
        **kw: Any,
    ) -> None:
        super().__init__(**kw)
        self.cfg = config or Config()
        self.server: GatewayServer | None = None
        self._audit = AuditForwarder(self.namespace, self.path)  # its vault reads, audited
        self.listen = listen
        self.idle = IdleWatch(self.path or "gateway", idle_stop_s if listen else 0.0)

    async def setup(self) -> None:
        from moltbot.security.vault import lazy_get

        settings = settings_from_config(self.cfg, lazy_get(on_read=self._audit.secret_reader()))
        self.server = GatewayServer(
            settings,
            RayBackend(self.cfg, self.namespace),
            ssl_context=ssl_from_config(self.cfg),
            audit=self._audit.send,  # the server queues its records; it never waits on them
            hooks=self._webhook,
        )
        sock = await asyncio.to_thread(take, self.listen) if self.listen else None
        await self.server.start(sock)

    async def main(self) -> None:
        server = self.server
        assert server is not None

        def held() -> bool:
            self.idle.touch(server.last_request)
            if server.busy():
                self.idle.touch()
                return True
            return False

        try:
            if self.idle.idle_stop_s <= 0:
                await server.serve_forever()
                return
            async with asyncio.TaskGroup() as tg:
                tg.create_task(server.serve_forever())  # returns once the server is closed
                await self.idle.wait_idle(held)
                await server.end_idle()
        finally:
            await server.stop()
            await self._audit.aclose()

    async def _webhook(self, req: HookRequest) -> HookReply:
        """A webhook to the channel account it names (``channels/<channel>:<account>``), which
        verifies and journals it; 404 for an account not configured here."""
        cid = f"{req.channel}:{req.account}"
        if cid not in {c for c, _kind, _acct in channel_ids(self.cfg)}:
            return HookReply(status=404, body="no such webhook\n")
        reply: HookReply = await routing.call(
            self.namespace, f"channels/{cid}", "webhook", req, deadline_s=HOOK_DEADLINE_S
        )
        return reply

    async def url(self) -> str:
        return self.server.url if self.server else ""
