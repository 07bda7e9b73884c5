"""The agent actor: runs turns for the sessions that shard to it (``agents/agent-<i>``).

Transcripts live in the store actor and tools run in the sandbox actor the session shards to;
both are reached by stable name through ``actors.routing``, so either can restart under a turn.
One turn per session runs at a time (``SessionGate``). ``answer(msg)`` is idempotent per
``msg.id`` (see ``moltbot.agent.service``): a caller that lost this actor mid-turn calls again
and gets exactly one answer, with the user message recorded once.

The tools of a turn are the built-in ones plus those of the plugin actors
(``plugins/plugin:<name>``), merged and routed as ``moltbot.agent.plugin_tools`` decides: built-in
names win, plugin specs are cached a few seconds, a plugin that does not answer has no tools
for now. Every tool call is audited (``tool_call``) through an ``AuditForwarder``, which never
makes a turn wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, TypeVar

import msgspec
import ray

from actors import metrics, routing
from actors.audit import AuditForwarder
from actors.base import CHILD_OPTIONS, ChildBase
from moltbot.agent.agent_service import AgentPorts, AgentService, profile_providers
from moltbot.agent.loop import ToolRunner
from moltbot.agent.plugin_tools import MergedTools, PluginToolCache
from moltbot.agent.service import (
    approval_book,
    build_provider,
    tool_registry,
    user_text,
)
from moltbot.agent.transcript_cache import CachedTranscripts
from moltbot.batching import GroupCommit
from moltbot.config.refs import resolve_secret
from moltbot.config.schema import CHANNEL_KINDS, Config
from moltbot.errors import (
    Dormant,
    MediaRefused,
    NotFound,
    ProviderAuthError,
    Unavailable,
)
from moltbot.media.build import media_intake
from moltbot.media.ingest import MediaIntake
from moltbot.media.web import Upload, told_first, web_content
from moltbot.messages import (
    ChatEvent,
    InboundMessage,
    OutboundFile,
    OutboundMessage,
    ToolContext,
    ToolResult,
)
from moltbot.schedule.tools import WithScheduleTools, schedule_tools
from moltbot.security.audit import AuditSink
from moltbot.security.vault import lazy_get
from moltbot.supervision.idle import IdleWatch
from moltbot.tools.approvals import Approval, request_text

log = logging.getLogger("moltbot.agent")

T = TypeVar("T")

STORE = "store"
DORMANT_RETRY_S = 0.1
TOOL_LOST = (
    "the tool worker stopped during this call, so it may or may not have run; "
    "check before trying again"
)
PLUGIN_SPECS_DEADLINE_S = 2.0  # a plugin that cannot list its tools by then has none this turn
PLUGIN_CALL_DEADLINE_S = 15.0  # waiting for a restarting plugin before a tool call gives up


class StoreTranscripts:
    """The store actor's transcripts (riding through its restarts); cached in front by
    ``CachedTranscripts``, since this agent is the only writer of its sessions."""

    def __init__(self, namespace: str, deadline_s: float = 60.0) -> None:
        self._ns = namespace
        self._deadline = deadline_s
        # the turns that end while one write is in flight share the next store call
        self.writes = GroupCommit[tuple[str, list[dict[str, Any]]], None](
            self._append_batch, name="transcript writes"
        )

    async def _append_batch(
        self, items: list[tuple[str, list[dict[str, Any]]]]
    ) -> list[BaseException | None]:
        problems: list[str | None] = await self._call("transcript_append_batch", items)
        return [None if p is None else Unavailable(p) for p in problems]

    async def _call(self, method: str, *args: Any) -> Any:
        return await routing.call(self._ns, STORE, method, *args, deadline_s=self._deadline)

    async def load(self, session: str) -> list[dict[str, Any]]:
        records: list[dict[str, Any]] = await self._call("transcript_load", session)
        return records

    async def append(self, session: str, record: dict[str, Any]) -> None:
        await self.writes.submit((session, [record]))

    async def append_many(self, session: str, records: list[dict[str, Any]]) -> None:
        await self.writes.submit((session, records))

    async def reset(self, session: str) -> bool:
        return bool(await self._call("sessions_reset", session))


class SandboxTools:
    """``ToolRunner`` whose calls run in the sandbox actor the session shards to.

    The specs are built locally from the same config. A call is sent once: the sandbox is first
    woken (it sleeps when idle), found and asked ``ready`` (safe to retry while it restarts);
    if it then dies during the call the model is told the call may or may not have run (a
    command is never run twice by us). One that refused it because it was ending (``Dormant``:
    nothing ran) is woken again and sent the call again.
    """

    def __init__(
        self, namespace: str, workers: int, specs: list[dict[str, Any]], deadline_s: float = 60.0
    ) -> None:
        self._ns = namespace
        self._workers = workers
        self._specs = specs
        self._deadline = deadline_s

    def specs(self) -> list[dict[str, Any]]:
        return list(self._specs)

    async def call(
        self, name: str, input: dict[str, Any], session: str, ctx: ToolContext | None = None
    ) -> ToolResult:
        path = routing.sandbox_path(session, self._workers)
        end = time.monotonic() + self._deadline
        while True:
            left = max(1.0, end - time.monotonic())
            target = await routing.awake(self._ns, path, left)
            try:
                result: ToolResult = await target.call.remote(name, input, session, ctx)
            except routing.ActorDied:
                return ToolResult(text=TOOL_LOST, is_error=True)
            except routing.RemoteFailed as exc:
                if not isinstance(routing.cause_of(exc), Dormant) or time.monotonic() > end:
                    raise
                await asyncio.sleep(DORMANT_RETRY_S)  # its supervisor notes the end, then wakes
                continue
            return result


class SchedulerJobs:
    """The scheduler actor's jobs, for the schedule tools (``moltbot.schedule.tools``)."""

    def __init__(self, namespace: str, deadline_s: float = 15.0) -> None:
        self._ns, self._deadline = namespace, deadline_s

    async def _call(self, method: str, *args: Any) -> Any:
        try:
            return await routing.call(
                self._ns, "scheduler", method, *args, deadline_s=self._deadline
            )
        except routing.RemoteFailed as exc:
            routing.raise_remote(exc, Unavailable("the scheduler could not handle that"))

    async def add(self, request: dict[str, Any]) -> dict[str, Any]:
        return dict(await self._call("jobs_add", request))

    async def list(self) -> list[dict[str, Any]]:
        return list(await self._call("jobs_list"))

    async def remove(self, job_id: str) -> dict[str, Any]:
        return dict(await self._call("jobs_remove", job_id))


class TurnApprover:
    """The ``Approver`` of one turn: the approval request goes to the chat the message came
    from, sent by its channel actor as a system message (the gateway's clients see it too: the
    gateway polls pending approvals), then the turn waits in the sandbox that holds it."""

    def __init__(
        self,
        namespace: str,
        workers: int,
        wait_s: float,
        reply_to: InboundMessage | None,
        audit: AuditSink,
    ) -> None:
        self._ns, self._workers, self._wait = namespace, workers, wait_s
        self._msg = reply_to
        self._audit = audit

    async def decide(self, session: str, approval_id: str) -> str:
        path = routing.sandbox_path(session, self._workers)
        try:
            raw = await routing.call(self._ns, path, "approvals_get", approval_id, deadline_s=15)
            approval = msgspec.convert(raw, Approval)
            self._audit(
                "approval",
                {
                    "action": "requested",
                    "id": approval_id,
                    "session": session,
                    "command": approval.command[:500],
                },
            )
            await self._notify(approval)
            final = await routing.call(
                self._ns,
                path,
                "approvals_wait",
                approval_id,
                self._wait,
                deadline_s=self._wait + 30,
            )
        except (NotFound, Unavailable):
            return "expired"  # the sandbox restarted: the request is gone
        state = str(final.get("state", ""))
        return state if state in ("approved", "denied") else "expired"

    async def _notify(self, approval: Approval) -> None:
        msg = self._msg
        if msg is None:  # a gateway chat: the page shows pending approvals as they come
            return
        text = request_text(approval, time.time())
        out = OutboundMessage(
            channel=msg.channel,
            account=msg.account,
            chat_id=msg.chat_id,
            text=text,
            thread_id=msg.thread_id,
            plain=True,
        )
        builtin = msg.channel in CHANNEL_KINDS
        path = (
            f"channels/{msg.channel}:{msg.account}" if builtin else routing.plugin_path(msg.account)
        )
        try:
            await routing.call(self._ns, path, "notify", out, deadline_s=30)
        except Exception:  # the owner can still answer from the web page or another chat
            log.exception("approval request %s not delivered to %s", approval.id, path)


class PluginTools:
    """The plugin actors as the agent sees them: their tool specs, and tool calls (sent once).

    Neither raises: a plugin that is missing, restarting or refused has no specs
    (None) and its calls return an error ``ToolResult`` the model can read.
    """

    def __init__(
        self,
        namespace: str,
        *,
        specs_deadline_s: float = PLUGIN_SPECS_DEADLINE_S,
        call_deadline_s: float = PLUGIN_CALL_DEADLINE_S,
    ) -> None:
        self._ns = namespace
        self._specs_deadline = specs_deadline_s
        self._call_deadline = call_deadline_s

    async def specs(self, plugin: str) -> list[dict[str, Any]] | None:
        path = routing.plugin_path(plugin)
        wait = self._specs_deadline
        try:
            asked = routing.call(self._ns, path, "tools", deadline_s=wait)
            got = await asyncio.wait_for(asked, wait)
        except (TimeoutError, Unavailable, AttributeError, routing.ActorDied):
            routing.forget(self._ns, path)
            return None
        return got if isinstance(got, list) else None

    async def call_tool(
        self, plugin: str, name: str, input: dict[str, Any], session: str
    ) -> ToolResult:
        path = routing.plugin_path(plugin)
        down = f"plugin '{plugin}' is not available right now; try again later"
        try:
            target = await routing.live(self._ns, path, self._call_deadline)
            result: ToolResult = await target.call_tool.remote(name, input, session)
        except (Unavailable, AttributeError):
            return ToolResult(text=down, is_error=True, code=Unavailable.code)
        except routing.ActorDied:
            routing.forget(self._ns, path)
            lost = f"plugin '{plugin}' stopped during this call, so it may or may not have run"
            return ToolResult(text=lost, is_error=True, code=Unavailable.code)
        return result


_SDKS = (("anthropic", "anthropic"), ("openai", "openai_compat"))


class AgentCore(ChildBase):
    """Started on demand (``agent.idle_stop_s`` > 0: its ``idle_stop_s``), it ends normally
    once idle that long with no turn running or being finished; a call that comes as it ends
    is refused with ``Dormant`` before anything runs (callers wake the next incarnation)."""

    PIPE_METHODS = frozenset({"answer"})

    def __init__(
        self,
        *,
        path: str = "",
        config: Config | None = None,
        index: int = 0,
        idle_stop_s: float = 0.0,
        **kw: Any,
    ) -> None:
        super().__init__(path=path, **kw)
        self.config = config or Config()
        self.index = index
        self.idle = IdleWatch(path or "agent", idle_stop_s)
        self._service: AgentService | None = None
        self._intake: MediaIntake | None = None  # files sent from the web page
        self._writes: StoreTranscripts | None = None
        self._audit = AuditForwarder(self.namespace, path)

    def preload_modules(self) -> tuple[str, ...]:
        agent = self.config.agent  # the SDKs: seconds of imports
        kinds = {p.kind for p in agent.providers} if agent.providers else {agent.provider}
        kinds |= {p.kind for own in agent.profiles.values() for p in own.providers}
        return tuple(f"moltbot.agent.providers.{m}" for k, m in _SDKS if k in kinds)

    async def setup(self) -> None:
        cfg, ns = self.config, self.namespace  # the tree's namespace, given by the supervisor
        vault_get = lazy_get(on_read=self._audit.secret_reader())
        try:  # the API key read from the vault (if it is there) is audited
            provider = build_provider(cfg, vault_get=vault_get)
            own = profile_providers(
                cfg, lambda view, at: build_provider(view, vault_get=vault_get, providers_at=at)
            )
        except ProviderAuthError as exc:
            log.error("%s cannot start: %s", self.path, user_text(exc))
            raise
        specs = tool_registry(cfg, approval_book(cfg)).specs()
        self._writes = StoreTranscripts(ns)
        sandboxes = SandboxTools(ns, cfg.tools.workers, specs)
        plugins = PluginTools(ns)
        table = PluginToolCache(specs, [p.name for p in cfg.plugins if p.enabled], plugins.specs)

        schedule = schedule_tools(SchedulerJobs(ns), cfg) if cfg.schedule.enabled else None

        async def tools() -> ToolRunner:
            merged = MergedTools(sandboxes, plugins, await table.table(), audit=self._audit.record)
            if schedule is None:
                return merged
            return WithScheduleTools(merged, schedule, audit=self._audit.record)

        def approver(msg: InboundMessage | None) -> TurnApprover:
            t = cfg.tools
            return TurnApprover(ns, t.workers, t.bash.approval_ttl_s, msg, self._audit.record)

        async def deliver_file(out: OutboundFile) -> object:
            if out.channel not in CHANNEL_KINDS:  # a plugin's channel: not yet
                raise MediaRefused(f"files cannot be sent on {out.channel} yet")
            path = f"channels/{out.channel}:{out.account}"
            return await routing.call(ns, path, "send_file", out, deadline_s=120)

        ports = AgentPorts(
            transcripts=CachedTranscripts(self._writes),
            tools=tools,
            approver=approver,
            resolve_approval=self._resolve_approval,
            audit=self._audit.record,
            on_turn=_turn_metrics,
            deliver_file=deliver_file,
        )
        self._service = AgentService(cfg, provider, ports, name=self.path or "agent", providers=own)
        vault = lazy_get(on_read=self._audit.secret_reader())
        self._intake = media_intake(cfg, lambda ref, at: resolve_secret(ref, vault, at=at))

    async def main(self) -> None:
        service = self._need(self._service)
        finisher = service.finisher
        try:
            async with asyncio.TaskGroup() as tg:
                writes = tg.create_task(self._need(self._writes).writes.run())  # group commits
                finishing = tg.create_task(finisher.run())  # turns whose reply is already out
                if self.idle.idle_stop_s > 0:  # on demand: ends when idle, all written
                    await self.idle.wait_idle(held=lambda: finisher.busy > 0 or finisher.queued > 0)
                    finishing.cancel()
                    writes.cancel()
        finally:
            await self._audit.aclose()
            await service.aclose()

    # --- turns (moltbot.agent.agent_service) -------------------------------------------------
    @ray.method(num_returns="streaming")
    async def chat(
        self, session: str, text: str, msg_id: str = "", files: list[Upload] | None = None
    ) -> AsyncIterator[ChatEvent]:
        """Stream one turn: ``ChatDelta``/``ChatTool`` events, then one ``ChatFinal``.
        ``files``: sent from the web page, taken into the operator's workspace first.

        Raises our errors (``ProviderError``, ``RateLimited``, ``Unavailable``) with safe texts.
        """
        await self._ready.wait()
        with self.idle.call():
            async with contextlib.aclosing(self._chat(session, text, msg_id, files)) as turn:
                async for event in turn:
                    yield event

    async def _chat(
        self, session: str, text: str, msg_id: str, files: list[Upload] | None
    ) -> AsyncGenerator[ChatEvent, None]:
        service = self._need(self._service)
        content: list[dict[str, Any]] | None = None
        tell: list[str] = []
        if files:
            if self._intake is None:
                raise MediaRefused("files are turned off (media.enabled is false)")
            media = self.config.media
            content, tell = await web_content(
                self._intake, session, text, files, media.image_max_bytes
            )
        turn = told_first(session, tell, service.turn(session, text, msg_id, content=content))
        async with contextlib.aclosing(turn) as ev:
            async for event in ev:
                yield event

    async def answer(self, msg: InboundMessage) -> str:
        """The final reply to ``msg`` (idempotent per ``msg.id``); see ``AgentService.answer``."""
        await self._ready.wait()
        with self.idle.call():
            return await self._need(self._service).answer(msg)

    async def figures(self) -> dict[str, Any]:
        return self._service.figures() if self._service is not None else {}

    async def sessions_reset(self, session: str) -> bool:
        """Archive a session's transcript (the gateway's ``sessions.reset``): through the agent
        that owns the session, after its running turn, so its cache stays true."""
        await self._ready.wait()
        with self.idle.call():
            return await self._need(self._service).reset(session)

    async def _resolve_approval(
        self, approval_id: str, approve: bool, who: str
    ) -> dict[str, Any] | None:
        """Answer a pending approval in whichever sandbox it waits (one asleep holds none)."""
        for i in range(self.config.tools.workers):
            try:
                approval: dict[str, Any] | None = await routing.call_running(
                    self.namespace,
                    f"tools/sandbox-{i}",
                    "approvals_resolve",
                    approval_id,
                    approve,
                    who,
                    deadline_s=15.0,
                )
            except NotFound:
                continue
            if approval is not None:
                return approval
        return None

    @staticmethod
    def _need(value: T | None) -> T:
        if value is None:
            raise Unavailable("the agent is still starting")
        return value


AgentActor = ray.remote(**CHILD_OPTIONS)(AgentCore)


def _turn_metrics(seconds: float, usage: dict[str, int]) -> None:
    """One finished model turn in the Ray metrics."""
    metrics.turn_latency(seconds)
    metrics.tokens("input", usage.get("input_tokens", 0))
    metrics.tokens("output", usage.get("output_tokens", 0))
