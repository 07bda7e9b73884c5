"""Pure pieces of the agent service the Ray actors wrap: chat commands, turn idempotency, tools.

- **Chat commands** (``/reset``, ``/new``, ``/status``, ``/approve ID``, ``/deny ID``, ``/help``)
  are recognised by :func:`parse_command` before any model call. Any other text starting with
  ``/`` is an ordinary message (``/etc/hosts, what is it?`` goes to the model).
- **Idempotent turns.** Every transcript record written by a turn that answers an inbound
  message carries ``"msg_id"``. When the turn completes, a ``turn_done`` record (role ``meta``,
  skipped by :func:`moltbot.agent.context.normalize`) holds its final text. :func:`turn_state`
  reads a transcript and says whether the turn for a ``msg_id`` is new, interrupted (its user
  message is recorded but no ``turn_done``) or done (with its final text). :class:`TurnLog` is
  the ``TranscriptLog`` one turn writes through: it tags records, and when re-running an
  interrupted turn it does not write the user message a second time. It holds records back
  until a tool is about to run (the call is on record first) or :meth:`TurnLog.finish`, which
  writes them with the ``turn_done`` record: a plain turn is one store call and one fsync.
  Losing held records in a crash is safe: the message is in the inbound journal, so the turn
  is answered again from the start, as an interrupted one would be.
- **Tools.** :func:`tool_registry` builds the same registry in the sandbox actor (to run tools)
  and in the agent (for the tool specs the model sees) from one config.
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from pathlib import Path
from typing import Any, Literal, Protocol

import msgspec

from moltbot.agent.loop import Approver, ToolRunner, TranscriptLog, TurnRunner
from moltbot.agent.memory import DEFAULT_PROFILE, MemoryStore, memory_store
from moltbot.agent.memory_turn import summarise_cut, with_memory
from moltbot.agent.providers.base import Provider
from moltbot.agent.providers.build import build_provider as build_provider  # re-exported
from moltbot.clock import SYSTEM_CLOCK, Clock
from moltbot.config.schema import Config
from moltbot.errors import MoltbotError
from moltbot.messages import ChatEvent, ChatFinal
from moltbot.sandbox import SandboxPolicy
from moltbot.security import owners
from moltbot.tools import ApprovalBook, ExecPolicy, ToolRegistry, WebFetcher, default_registry
from moltbot.tools.memory import memory_tools

META_ROLE = "meta"
TURN_DONE = "turn_done"
CHAT_ROLES = ("user", "assistant")

CommandName = Literal["reset", "status", "approve", "deny", "help"]
_ALIASES: dict[str, CommandName] = {
    "reset": "reset",
    "new": "reset",
    "status": "status",
    "approve": "approve",
    "deny": "deny",
    "help": "help",
}
_COMMAND = re.compile(r"^/([A-Za-z]+)(?:@[A-Za-z0-9_]+)?(?:\s+(.*))?$", re.DOTALL)
_APPROVAL_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")

HELP_TEXT = (
    "Commands: /reset (start a new conversation), /status (what is running), "
    "/approve ID and /deny ID (answer a command waiting for your approval), /help."
)


class Command(msgspec.Struct, frozen=True, kw_only=True):
    """An in-chat command. ``problem`` non-empty: it was malformed; reply with it."""

    name: CommandName
    arg: str = ""
    problem: str = ""


def parse_command(text: str) -> Command | None:
    """The chat command in ``text``, or None when it is an ordinary message."""
    match = _COMMAND.match(text.strip())
    if match is None:
        return None
    name = _ALIASES.get(match.group(1).lower())
    if name is None:
        return None
    arg = (match.group(2) or "").strip()
    if name in ("approve", "deny"):
        words = arg.split()
        if len(words) != 1 or not _APPROVAL_ID.match(words[0]):
            return Command(name=name, problem=f"usage: /{name} ID (the id in the approval request)")
        return Command(name=name, arg=words[0])
    if arg:
        return Command(name=name, problem=f"/{match.group(1).lower()} takes no arguments")
    return Command(name=name)


def approval_reply(approval: dict[str, Any], approve: bool) -> str:
    """What the chat says after ``/approve`` or ``/deny`` worked (the waiting turn goes on)."""
    if approve:
        return f"Approved {approval.get('id', '')}: it runs now, and the assistant goes on."
    return f"Denied {approval.get('id', '')}: it will not run; the assistant is told."


def status_text(
    *, agent: str, provider: str, models: list[str], messages: int, waiting: int
) -> str:
    model = models[0] if provider != "offline" and models else "none (offline echo)"
    return (
        f"moltbot {agent}: provider {provider}, model {model}. "
        f"This conversation has {messages} messages; {waiting} waiting behind the current one."
    )


# --- idempotent turns --------------------------------------------------------------------------
class TurnState(msgspec.Struct, frozen=True, kw_only=True):
    status: Literal["new", "interrupted", "done"]
    final_text: str = ""


def done_marker(msg_id: str, text: str, ts: float) -> dict[str, Any]:
    return {"role": META_ROLE, "type": TURN_DONE, "msg_id": msg_id, "text": text, "ts": ts}


def turn_state(records: list[dict[str, Any]], msg_id: str) -> TurnState:
    """Where the turn answering ``msg_id`` stands in a session's transcript."""
    started = False
    for record in records:
        if record.get("msg_id") != msg_id:
            continue
        if record.get("role") == META_ROLE and record.get("type") == TURN_DONE:
            return TurnState(status="done", final_text=str(record.get("text", "")))
        if record.get("role") == "user":
            started = True
    return TurnState(status="interrupted" if started else "new")


def without_turn(records: list[dict[str, Any]], msg_id: str) -> list[dict[str, Any]]:
    """The transcript minus the records of one turn (so a re-run starts from a clean history)."""
    return [r for r in records if r.get("msg_id") != msg_id]


def chat_records(records: list[dict[str, Any]], limit: int) -> list[dict[str, Any]]:
    """The newest ``limit`` user/assistant records (no bookkeeping records)."""
    if limit <= 0:
        return []
    return [r for r in records if r.get("role") in CHAT_ROLES][-limit:]


class BatchLog(TranscriptLog, Protocol):
    """A ``TranscriptLog`` that can also write several records of a session at once."""

    async def append_many(self, session: str, records: list[dict[str, Any]]) -> None: ...


def _holds_tool_use(record: dict[str, Any]) -> bool:
    content = record.get("content")
    return isinstance(content, list) and any(
        isinstance(b, dict) and b.get("type") == "tool_use" for b in content
    )


class TurnLog:
    """The ``TranscriptLog`` of one turn: preloaded history, records tagged with ``msg_id``.

    ``skip_user``: the user message of this turn is already in the transcript (an interrupted
    turn being re-run), so the first user record the turn appends is not written again.
    Records wait until an assistant record asks for a tool (then all are written before the
    tool runs) or until :meth:`finish`.
    """

    def __init__(
        self,
        inner: BatchLog,
        history: list[dict[str, Any]],
        *,
        msg_id: str = "",
        skip_user: bool = False,
    ) -> None:
        self._inner = inner
        self._history = list(history)
        self._msg_id = msg_id
        self._skip_user = skip_user
        self._appended = 0
        self._held: list[dict[str, Any]] = []

    async def load(self, session: str) -> list[dict[str, Any]]:
        return list(self._history)

    async def append(self, session: str, record: dict[str, Any]) -> None:
        first = self._appended == 0
        self._appended += 1
        if first and self._skip_user and record.get("role") == "user":
            return
        if self._msg_id:
            record = {**record, "msg_id": self._msg_id}
        self._held.append(record)
        if record.get("role") == "assistant" and _holds_tool_use(record):
            await self.finish(session)

    async def finish(self, session: str, *records: dict[str, Any]) -> None:
        """Write what is held back, plus ``records`` (e.g. the done marker), in one call."""
        batch, self._held = [*self._held, *records], []
        if len(batch) == 1:
            await self._inner.append(session, batch[0])
        elif batch:
            await self._inner.append_many(session, batch)


async def idempotent_turn(
    store: BatchLog,
    provider: Provider,
    tools: Callable[[], Awaitable[ToolRunner]],
    cfg: Config,
    session: str,
    text: str,
    msg_id: str = "",
    *,
    sender: str = "",
    approver: Approver | None = None,
    on_final: Callable[[ChatFinal], None] | None = None,
    memory: MemoryStore | None = None,
    content: Any = None,
) -> AsyncGenerator[ChatEvent, None]:
    """One turn of ``session`` answering ``msg_id`` (if given) exactly once: a done turn gives
    its recorded reply again, an interrupted one is re-run without writing its user message
    twice; the reply and its done mark are written together, after the final event was
    yielded (the consumer has the reply before the write; the generator ends only once it
    is written, also when closed early). ``tools`` is asked only when the
    turn really runs. With ``memory``, in a turn for an owner (``owners.approver``), turns
    the window would cut are summarised into the day's notes first, and what memory recalls
    for ``text`` joins the system prompt. The caller holds the session's gate."""
    history = await store.load(session)
    state = turn_state(history, msg_id) if msg_id else TurnState(status="new")
    if state.status == "done":
        yield ChatFinal(session=session, text=state.final_text)
        return
    past = without_turn(history, msg_id) if msg_id else history
    turn_log = TurnLog(store, past, msg_id=msg_id, skip_user=state.status == "interrupted")
    agent = cfg.agent
    system_prompt = agent.system_prompt
    if memory is not None and owners.approver(cfg, sender) is not None:  # the owner's memory
        await summarise_cut(
            store,
            provider,
            memory,
            session,
            past,
            text,
            history_tokens=agent.history_tokens,
            max_tokens=agent.max_tokens,
        )
        system_prompt = await with_memory(memory, system_prompt, text, agent.memory.recall_tokens)
    runner = TurnRunner(
        provider,
        await tools(),
        turn_log,
        max_turns=agent.max_turns,
        max_tokens=agent.max_tokens,
        system_prompt=system_prompt,
        history_tokens=agent.history_tokens,
        approver=approver,
    )
    try:
        async with contextlib.aclosing(runner.run_turn(session, text, sender, content)) as events:
            async for event in events:
                if not isinstance(event, ChatFinal):
                    yield event
                    continue
                if on_final is not None:
                    on_final(event)
                marks = [done_marker(msg_id, event.text, time.time())] if msg_id else []
                try:
                    yield event  # the reply goes out first; nothing waits for it ...
                finally:  # ... but the gate is held until reply + mark are written (one write)
                    await turn_log.finish(session, *marks)
    except Exception:
        with contextlib.suppress(Exception):
            await turn_log.finish(session)  # keep the text the user already saw
        raise


# --- durable small values ----------------------------------------------------------------------
# --- tools -------------------------------------------------------------------------------------
def sandbox_policy(cfg: Config, workspace: Path) -> SandboxPolicy:
    bash = cfg.tools.bash
    return SandboxPolicy(
        workspace=workspace,
        network=bash.network,
        timeout_s=bash.timeout_s,
        memory_mb=bash.memory_mb,
        max_processes=bash.max_processes,
        output_limit_bytes=bash.output_limit_bytes,
        nice=bash.nice,
    )


def exec_policy(cfg: Config) -> ExecPolicy:
    return ExecPolicy(mode=cfg.tools.bash.policy, allowlist=tuple(cfg.tools.bash.allowlist))


def approval_book(cfg: Config) -> ApprovalBook:
    """Requests wait for an answer ``approval_ttl_s`` (the turn waits as long), and an approved
    command may run again in its session as long."""
    ttl = cfg.tools.bash.approval_ttl_s
    return ApprovalBook(request_ttl_s=ttl, approval_ttl_s=ttl)


def tool_registry(
    cfg: Config,
    approvals: ApprovalBook,
    workspace: Path | None = None,
    *,
    profile: str = "",
    clock: Clock = SYSTEM_CLOCK,
) -> ToolRegistry:
    """bash / files / web_fetch / memory as the config enables them, over the configured
    workspace (``cfg``: the profile's config, ``profiles.profile_config``)."""
    ws = (workspace or cfg.tools.workspace_path()).resolve()
    web = cfg.tools.web_fetch
    registry = default_registry(
        ws,
        approvals=approvals,
        bash_policy=sandbox_policy(cfg, ws),
        exec_policy=exec_policy(cfg),
        web=WebFetcher(
            max_bytes=web.max_bytes,
            timeout_s=web.timeout_s,
            max_redirects=web.max_redirects,
            approvals=approvals if web.approve_new_hosts_when_untrusted else None,
        ),
        enable_bash=cfg.tools.bash.enabled,
        enable_files=cfg.tools.files.enabled,
        enable_web=web.enabled,
    )
    if cfg.agent.memory.enabled:
        store = memory_store(cfg, ws, profile=profile or DEFAULT_PROFILE, clock=clock)
        for tool in memory_tools(store, lambda sender: owners.approver(cfg, sender) is not None):
            registry.register(tool)
    return registry


def approval_dict(approval: Any) -> dict[str, Any]:
    """An ``Approval`` as plain JSON-able data."""
    data: dict[str, Any] = msgspec.to_builtins(approval)
    return data


# --- errors ------------------------------------------------------------------------------------
def user_text(exc: MoltbotError) -> str:
    """The safe text a person sees for one of our errors (its message and hint)."""
    return f"{exc.user_message} ({exc.hint})" if exc.hint else exc.user_message
