"""The agent as a pure service with ports, as ``ChannelService`` is for a channel: what the
agent actor (``actors.agent``) and the benchmark baseline (``benchmarks.pipeline``) both run.

A turn: chat commands first (``/status``, ``/approve ID``... answered at once, even while a
turn of the session runs; ``/reset`` waits for it), then one turn per session at a time
(``SessionGate``), idempotent per message id (``idempotent_turn``). What the service needs from
the rest of the system comes in ``AgentPorts``: the session transcripts, the tools of a turn,
who decides approvals for a message, how an approval is answered tree-wide, the audit sink and a
hook per finished turn (metrics)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from moltbot.agent import profiles
from moltbot.agent.finisher import Finisher
from moltbot.agent.loop import Approver, ToolRunner
from moltbot.agent.memory import MemoryStore, memory_store
from moltbot.agent.profile_tools import ProfileTools
from moltbot.agent.providers.base import Provider
from moltbot.agent.service import (
    HELP_TEXT,
    BatchLog,
    Command,
    approval_reply,
    chat_records,
    idempotent_turn,
    parse_command,
    status_text,
    user_text,
)
from moltbot.agent.sessions import SessionGate
from moltbot.agent.skills import SkillBook
from moltbot.clock import SYSTEM_CLOCK, Clock
from moltbot.config.schema import Config
from moltbot.errors import MoltbotError, Unavailable
from moltbot.media.note import turn_content
from moltbot.media.send_tool import with_send_file
from moltbot.messages import ChatEvent, ChatFinal, InboundMessage, OutboundFile
from moltbot.observability import Counters, span
from moltbot.schedule.fires import quiet
from moltbot.security import owners
from moltbot.security.audit import AuditSink

log = logging.getLogger("moltbot.agent")

FAILED = "Sorry, something went wrong while answering; please try again."
NOT_OWNER = (
    "Only an owner of this assistant can answer approvals (the `owners` of a channel "
    "account, or the web page). Nothing was run."
)


class Transcripts(BatchLog, Protocol):
    async def reset(self, session: str) -> bool | Any: ...


@dataclass(frozen=True, slots=True)
class AgentPorts:
    transcripts: Transcripts
    tools: Callable[[], Awaitable[ToolRunner]]  # asked only when a turn really runs
    # who decides an approval raised by this message's turn (None: the tool's own policy)
    approver: Callable[[InboundMessage | None], Approver | None] = lambda _msg: None
    # answer a pending approval wherever it waits: (id, approve, by) -> the approval, or None
    resolve_approval: Callable[[str, bool, str], Awaitable[dict[str, Any] | None]] | None = None
    audit: AuditSink | None = None
    on_turn: Callable[[float, dict[str, int]], None] | None = None  # seconds, usage
    # deliver a file to the chat a turn answers (the send_file tool; None: no such tool)
    deliver_file: Callable[[OutboundFile], Awaitable[object]] | None = None


@dataclass(frozen=True, slots=True)
class Profile:
    """One agent profile as a turn runs it (``moltbot.agent.profiles``)."""

    name: str
    cfg: Config  # ``profiles.profile_config``: its prompt, models, workspace, memory folder
    provider: Provider | None  # None: the service's ``provider`` (the default profile's)
    memory: MemoryStore | None
    skills: SkillBook


class AgentService:
    """``provider``: the default profile's; ``providers``: those of the profiles with their own
    models or providers (``profiles.has_own_provider``), by name; the others use ``provider``."""

    def __init__(
        self,
        cfg: Config,
        provider: Provider,
        ports: AgentPorts,
        *,
        name: str = "agent",
        providers: dict[str, Provider] | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.cfg, self.provider, self.ports, self.name = cfg, provider, ports, name
        self.gate = SessionGate(cfg.agent.queue_size)
        self.profiles = {
            n: _profile(cfg, n, (providers or {}).get(n), clock)
            for n in profiles.profile_names(cfg)
        }
        self.memory = self.profiles[profiles.DEFAULT_PROFILE].memory
        self.counts = Counters()
        self.finisher = Finisher(name=name)  # its owner runs it (the agent actor's main)

    def profile_for(self, msg: InboundMessage | None) -> Profile:
        """The profile that answers ``msg`` (None: a chat from the web page or the CLI)."""
        return self.profiles[profiles.resolve(self.cfg, profiles.route_of(msg))]

    def provider_of(self, profile: Profile) -> Provider:
        return profile.provider or self.provider

    async def aclose(self) -> None:
        """Close every profile's provider (their HTTP clients); never raises."""
        seen = {
            id(p): p
            for p in (self.provider, *(q.provider for q in self.profiles.values()))
            if p is not None
        }
        for provider in seen.values():
            close = getattr(provider, "aclose", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    await close()

    # --- turns -------------------------------------------------------------------------------
    async def turn(
        self,
        session: str,
        text: str,
        msg_id: str = "",
        sender: str = "",
        msg: InboundMessage | None = None,
        content: Any = None,
    ) -> AsyncGenerator[ChatEvent, None]:
        """Stream one turn: ``ChatDelta``/``ChatTool`` events, then one ``ChatFinal``.
        ``content``: the user message's blocks (files from the web page); by default, those
        of ``msg``'s files."""
        command = parse_command(text)
        if command is not None and command.name != "reset":
            # answered at once, even while a turn of this session runs (it may await approval)
            answer = await self.command(command, session, sender, msg)
            yield ChatFinal(session=session, text=answer)
            return
        async with self.gate.hold(session):
            if command is not None:
                answer = await self.command(command, session, sender, msg)
                yield ChatFinal(session=session, text=answer)
                return
            started = time.monotonic()
            profile = self.profile_for(msg)

            def finished(final: ChatFinal) -> None:
                self._record_turn(time.monotonic() - started, final.usage)

            sendable = with_send_file(
                self.ports.tools,
                msg,
                profile.cfg.tools.workspace_path(),  # the profile's own workspace
                self.cfg.media.max_bytes,
                self.ports.deliver_file,
            )

            async def tools() -> ToolRunner:
                inner = await sendable()  # the skills are listed off the event loop
                audit = self.ports.audit
                dm = msg is not None and not msg.is_group
                reply_to = f"{msg.channel}:{msg.account}:{msg.chat_id}" if dm and msg else ""
                cfg, skills = self.cfg, profile.skills
                return await asyncio.to_thread(
                    lambda: ProfileTools(
                        inner, cfg, profile.name, skills, audit=audit, reply_to=reply_to
                    )
                )

            turn = idempotent_turn(
                self.ports.transcripts,
                self.provider_of(profile),
                tools,
                profile.cfg,
                session,
                text,
                msg_id,
                sender=sender,
                approver=self.ports.approver(msg),
                on_final=finished,
                memory=profile.memory,
                content=content if content is not None else self._content(msg),
            )
            async with contextlib.aclosing(turn) as events:
                async for event in events:
                    yield event

    async def answer(self, msg: InboundMessage) -> str:
        """The final reply to ``msg`` (idempotent per ``msg.id``). Errors a person should see
        come back as the reply text; only ``Unavailable`` is raised (keep it pending)."""
        final = ""
        try:
            with span("moltbot.turn", msg.trace or None, channel=msg.channel, agent=self.name):
                sender = f"{msg.channel}:{msg.account}:{msg.sender_id}"
                turn = self.turn(msg.session_key, msg.text, msg.id, sender, msg)
                answered = False
                try:
                    async for event in turn:
                        if isinstance(event, ChatFinal):
                            final, answered = event.text, True
                            break  # the reply goes now; its transcript write after it
                finally:
                    if answered:
                        await self.finisher.hand(turn)
                    else:
                        await turn.aclose()
        except Unavailable:
            raise
        except MoltbotError as exc:
            return user_text(exc)
        except Exception:
            log.exception("%s: the turn for a message failed", self.name)
            return FAILED
        return "" if quiet(msg.id, final) else final  # a heartbeat with nothing to say

    def _content(self, msg: InboundMessage | None) -> Any:
        """The user turn's blocks when ``msg`` came with files (``moltbot.media.note``)."""
        media = self.cfg.media
        return turn_content(self.cfg.tools.workspace_path(), media.image_max_bytes, msg)

    async def reset(self, session: str) -> bool:
        """Archive a session's transcript, after its running turn."""
        async with self.gate.hold(session):
            return bool(await self.ports.transcripts.reset(session))

    def _record_turn(self, seconds: float, usage: dict[str, int]) -> None:
        self.counts.inc("turns")
        self.counts.inc("tokens_in", usage.get("input_tokens", 0))
        self.counts.inc("tokens_out", usage.get("output_tokens", 0))
        self.counts.observe_ms(seconds * 1000)
        if self.ports.on_turn is not None:
            self.ports.on_turn(seconds, usage)

    def figures(self) -> dict[str, Any]:
        f = self.counts
        return {
            "turns": int(f.get("turns")),
            "p50_ms": f.percentile_ms(50),
            "p99_ms": f.percentile_ms(99),
            "tokens_in": int(f.get("tokens_in")),
            "tokens_out": int(f.get("tokens_out")),
        }

    # --- commands ----------------------------------------------------------------------------
    async def command(
        self, command: Command, session: str, sender: str = "", msg: InboundMessage | None = None
    ) -> str:
        if command.problem:
            return command.problem
        transcripts = self.ports.transcripts
        if command.name == "reset":
            if await transcripts.reset(session):
                return "Started a new conversation."
            return "Nothing to reset: this is a new conversation."
        if command.name == "status":
            history = await transcripts.load(session)
            profile = self.profile_for(msg)
            agent = self.name
            if profile.name != profiles.DEFAULT_PROFILE:
                agent = f"{self.name} (profile {profile.name})"
            provider = self.provider_of(profile)
            return status_text(
                agent=agent,
                provider=provider.name,
                models=list(getattr(provider, "models", [])),
                messages=len(chat_records(history, len(history))),
                waiting=self.gate.waiting(session),
            )
        if command.name in ("approve", "deny"):
            return await self.answer_approval(command.arg, command.name == "approve", sender)
        return HELP_TEXT

    async def answer_approval(self, approval_id: str, approve: bool, sender: str) -> str:
        """``/approve ID`` or ``/deny ID`` from ``sender``: only an owner (of the account they
        write from) answers, any pending approval of the tree."""
        who = owners.approver(self.cfg, sender)
        fields = {
            "id": approval_id,
            "by": sender or "gateway",
            "decision": "approve" if approve else "deny",
        }
        if who is None:
            self._audit("approval", {**fields, "action": "refused"})
            return NOT_OWNER
        resolve = self.ports.resolve_approval
        approval = await resolve(approval_id, approve, who) if resolve is not None else None
        if approval is None:
            return f"There is no pending approval with id {approval_id} (it may have expired)."
        self._audit("approval", {**fields, "action": "resolved"})
        return approval_reply(approval, approve)

    def _audit(self, kind: str, fields: dict[str, Any]) -> None:
        if self.ports.audit is not None:
            self.ports.audit(kind, fields)


def profile_providers(cfg: Config, build: Callable[[Config, str], Provider]) -> dict[str, Provider]:
    """The providers of the profiles with models or providers of their own, by name, each
    built by ``build(profile's config, config path of its providers list)`` (the actor:
    ``build_provider`` with the vault)."""
    return {
        name: build(profiles.profile_config(cfg, name), f"$.agent.profiles.{name}.providers")
        for name in profiles.profile_names(cfg)
        if profiles.has_own_provider(cfg, name)
    }


def _profile(cfg: Config, name: str, provider: Provider | None, clock: Clock) -> Profile:
    view = profiles.profile_config(cfg, name)
    memory = memory_store(view, clock=clock, profile=name) if view.agent.memory.enabled else None
    skills = SkillBook(profiles.skills_folder(cfg, name))
    return Profile(name=name, cfg=view, provider=provider, memory=memory, skills=skills)
