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
from moltbot.agent.plugin_tools import MergedTools, PluginToolCache
from moltbot.agent.providers.base import Provider
from moltbot.agent.service import (
    HELP_TEXT,
    Command,
    approval_book,
    approval_reply,
    build_provider,
    chat_records,
    idempotent_turn,
    parse_command,
    status_text,
    tool_registry,
    user_text,
)
from moltbot.agent.sessions import SessionGate
from moltbot.agent.transcript_cache import CachedTranscripts
from moltbot.batching import GroupCommit
from moltbot.config.schema import CHANNEL_KINDS, Config
from moltbot.errors import (
    MoltbotError,
    NotFound,
    ProviderAuthError,
    Unavailable,
)
from moltbot.messages import (
    ChatEvent,
    ChatFinal,
    InboundMessage,
    OutboundMessage,
    ToolContext,
    ToolResult,
)
from moltbot.observability import Counters, span
from moltbot.security import owners
from moltbot.security.audit import AuditSink
from moltbot.security.vault import lazy_get
from moltbot.tools.approvals import Approval, request_text

log = logging.getLogger("moltbot.agent")

T = TypeVar("T")

STORE = "store"
FAILED = "Sorry, something went wrong while answering; please try again."
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
    found and asked ``ready`` (safe to retry while it restarts); if it then dies during the call
    the model is told the call may or may not have run (a command is never run twice by us).
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
        target = await routing.live(self._ns, path, self._deadline)
        try:
            result: ToolResult = await target.call.remote(name, input, session, ctx)
        except routing.ActorDied:
            return ToolResult(text=TOOL_LOST, is_error=True)
        return result


class TurnApprover:
    """The ``Approver`` of one turn: the approval request goes to the chat the message came
    from, sent by its channel actor as a system message (the gateway's clients see it too: the
    gateway polls pending approvals), then the turn waits in the sandbox that holds it."""

    def __init__(
        self, namespace: str, workers: int, wait_s: float, reply_to: InboundMessage | None,
        audit: AuditSink,
    ) -> None:  # fmt: skip
        self._ns, self._workers, self._wait = namespace, workers, wait_s
        self._msg = reply_to
        self._audit = audit

    async def decide(self, session: str, approval_id: str) -> str:
        path = routing.sandbox_path(session, self._workers)
        try:
            raw = await routing.call(self._ns, path, "approvals_get", approval_id, deadline_s=15)
            approval = msgspec.convert(raw, Approval)
            self._audit("approval", {"action": "requested", "id": approval_id,
                                     "session": session, "command": approval.command[:500]})
            await self._notify(approval)
            final = await routing.call(self._ns, path, "approvals_wait", approval_id, self._wait,
                                       deadline_s=self._wait + 30)  # fmt: skip
        except (NotFound, Unavailable):
            return "expired"  # the sandbox restarted: the request is gone
        state = str(final.get("state", ""))
        return state if state in ("approved", "denied") else "expired"

    async def _notify(self, approval: Approval) -> None:
        msg = self._msg
        if msg is None:  # a gateway chat: the page shows pending approvals as they come
            return
        text = request_text(approval, time.time())
        out = OutboundMessage(channel=msg.channel, account=msg.account, chat_id=msg.chat_id,
                              text=text, thread_id=msg.thread_id, plain=True)  # fmt: skip
        builtin = msg.channel in CHANNEL_KINDS
        path = f"channels/{msg.channel}:{msg.account}" if builtin else routing.plugin_path(
            msg.account
        )
        try:
            await routing.call(self._ns, path, "notify", out, deadline_s=30)
        except Exception:  # the owner can still answer from the web page or another chat
            log.exception("approval request %s not delivered to %s", approval.id, path)


class PluginTools:
    """The plugin actors as the agent sees them: their tool specs, and tool calls (sent once).

    Neither raises: a plugin that is missing, restarting, refused or a placeholder has no specs
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


@ray.remote(**CHILD_OPTIONS)
class AgentActor(ChildBase):
    def __init__(
        self, *, path: str = "", config: Config | None = None, index: int = 0, **kw: Any
    ) -> None:
        super().__init__(path=path, **kw)
        self.config = config or Config()
        self.index = index
        self._provider: Provider | None = None
        self._store: CachedTranscripts | None = None
        self._writes: StoreTranscripts | None = None
        self._tools: SandboxTools | None = None
        self._plugins: PluginTools | None = None
        self._tool_table: PluginToolCache | None = None
        self._audit = AuditForwarder(self.namespace, path)
        self._gate = SessionGate(self.config.agent.queue_size)
        self._ns = ""
        self._figures = Counters()

    def preload_modules(self) -> tuple[str, ...]:
        if self.config.agent.provider == "anthropic":  # the SDK: seconds of imports
            return ("moltbot.agent.providers.anthropic",)
        return ()

    async def setup(self) -> None:
        cfg = self.config
        self._ns = self.namespace  # the tree's namespace, given by the supervisor
        try:  # the API key read from the vault (if it is there) is audited
            self._provider = build_provider(
                cfg, vault_get=lazy_get(on_read=self._audit.secret_reader())
            )
        except ProviderAuthError as exc:
            log.error("%s cannot start: %s", self.path, user_text(exc))
            raise
        specs = tool_registry(cfg, approval_book(cfg)).specs()
        self._writes = StoreTranscripts(self._ns)
        self._store = CachedTranscripts(self._writes)
        self._tools = SandboxTools(self._ns, cfg.tools.workers, specs)
        self._plugins = PluginTools(self._ns)
        enabled = [p.name for p in cfg.plugins if p.enabled]
        self._tool_table = PluginToolCache(specs, enabled, self._plugins.specs)

    async def main(self) -> None:
        try:
            await self._need(self._writes).writes.run()  # group-commits writes until stopped
        finally:
            await self._audit.aclose()
            close = getattr(self._provider, "aclose", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    await close()

    # --- turns -------------------------------------------------------------------------------
    @ray.method(num_returns="streaming")
    async def chat(self, session: str, text: str, msg_id: str = "") -> AsyncIterator[ChatEvent]:
        """Stream one turn: ``ChatDelta``/``ChatTool`` events, then one ``ChatFinal``.

        Raises our errors (``ProviderError``, ``RateLimited``, ``Unavailable``) with safe texts.
        """
        async with contextlib.aclosing(self._turn(session, text, msg_id)) as events:
            async for event in events:
                yield event

    async def answer(self, msg: InboundMessage) -> str:
        """The final reply to ``msg`` (idempotent per ``msg.id``).

        Errors a person should see (the model is overloaded, too many messages waiting) come
        back as the reply text. Only ``Unavailable`` is raised: the store or sandbox could not
        be reached, so the message should stay pending and be retried.
        """
        final = ""
        try:
            with span("moltbot.turn", msg.trace or None, channel=msg.channel, agent=self.path):
                sender = f"{msg.channel}:{msg.account}:{msg.sender_id}"
                turn = self._turn(msg.session_key, msg.text, msg.id, sender, msg)
                async with contextlib.aclosing(turn) as events:
                    async for event in events:
                        if isinstance(event, ChatFinal):
                            final = event.text
        except Unavailable:
            raise
        except MoltbotError as exc:
            return user_text(exc)
        except Exception:
            log.exception("%s: the turn for a message failed", self.path)
            return FAILED
        return final

    async def _turn(
        self, session: str, text: str, msg_id: str, sender: str = "",
        msg: InboundMessage | None = None,
    ) -> AsyncGenerator[ChatEvent, None]:  # fmt: skip
        await self._ready.wait()
        command = parse_command(text)
        if command is not None and command.name != "reset":
            # answered at once, even while a turn of this session runs (it may await approval)
            yield ChatFinal(session=session, text=await self._command(command, session, sender))
            return
        async with self._gate.hold(session):
            if command is not None:
                yield ChatFinal(session=session, text=await self._command(command, session, sender))
                return
            started = time.monotonic()

            def finished(final: ChatFinal) -> None:
                self._record_turn(time.monotonic() - started, final.usage)

            async def tools() -> MergedTools:
                return MergedTools(
                    self._need(self._tools),
                    self._need(self._plugins),
                    await self._need(self._tool_table).table(),
                    audit=self._audit.record,
                )

            turn = idempotent_turn(
                self._need(self._store),
                self._need(self._provider),
                tools,
                self.config,
                session,
                text,
                msg_id,
                sender=sender,
                approver=self._approver(msg),
                on_final=finished,
            )
            async with contextlib.aclosing(turn) as events:
                async for event in events:
                    yield event

    def _approver(self, msg: InboundMessage | None) -> TurnApprover:
        tools = self.config.tools
        return TurnApprover(
            self._ns, tools.workers, tools.bash.approval_ttl_s, msg, self._audit.record
        )

    def _record_turn(self, seconds: float, usage: dict[str, int]) -> None:
        """One finished model turn in ``figures()`` and the Ray metrics."""
        tokens_in, tokens_out = usage.get("input_tokens", 0), usage.get("output_tokens", 0)
        self._figures.inc("turns")
        self._figures.inc("tokens_in", tokens_in)
        self._figures.inc("tokens_out", tokens_out)
        self._figures.observe_ms(seconds * 1000)
        metrics.turn_latency(seconds)
        metrics.tokens("input", tokens_in)
        metrics.tokens("output", tokens_out)

    async def figures(self) -> dict[str, Any]:
        f = self._figures
        return {
            "turns": int(f.get("turns")),
            "p50_ms": f.percentile_ms(50),
            "p99_ms": f.percentile_ms(99),
            "tokens_in": int(f.get("tokens_in")),
            "tokens_out": int(f.get("tokens_out")),
        }

    async def sessions_reset(self, session: str) -> bool:
        """Archive a session's transcript (the gateway's ``sessions.reset``): through the agent
        that owns the session, after its running turn, so its cache stays true."""
        await self._ready.wait()
        async with self._gate.hold(session):
            return bool(await self._need(self._store).reset(session))

    # --- commands ----------------------------------------------------------------------------
    async def _command(self, command: Command, session: str, sender: str = "") -> str:
        if command.problem:
            return command.problem
        if command.name == "reset":
            had = bool(await self._need(self._store).reset(session))
            if had:
                return "Started a new conversation."
            return "Nothing to reset: this is a new conversation."
        if command.name == "status":
            history = await self._need(self._store).load(session)
            return status_text(
                agent=self.path or "agent",
                provider=self._need(self._provider).name,
                models=list(self.config.agent.models),
                messages=len(chat_records(history, len(history))),
                waiting=self._gate.waiting(session),
            )
        if command.name in ("approve", "deny"):
            return await self._answer_approval(command.arg, command.name == "approve", sender)
        return HELP_TEXT

    async def _answer_approval(self, approval_id: str, approve: bool, sender: str) -> str:
        """``/approve ID`` or ``/deny ID`` from ``sender``: only an owner (of the account they
        write from) answers, any pending approval of the tree (it may wait in any sandbox)."""
        who = owners.approver(self.config, sender)
        fields = {"id": approval_id, "by": sender or "gateway", "decision":
                  "approve" if approve else "deny"}  # fmt: skip
        if who is None:
            self._audit.record("approval", {**fields, "action": "refused"})
            return ("Only an owner of this assistant can answer approvals (the `owners` of a "
                    "channel account, or the web page). Nothing was run.")  # fmt: skip
        for i in range(self.config.tools.workers):
            try:
                approval = await routing.call(
                    self._ns, f"tools/sandbox-{i}", "approvals_resolve", approval_id, approve,
                    who, deadline_s=15.0,
                )  # fmt: skip
            except NotFound:
                continue
            self._audit.record("approval", {**fields, "action": "resolved"})
            return approval_reply(approval, approve)
        return f"There is no pending approval with id {approval_id} (it may have expired)."

    @staticmethod
    def _need(value: T | None) -> T:
        if value is None:
            raise Unavailable("the agent is still starting")
        return value
