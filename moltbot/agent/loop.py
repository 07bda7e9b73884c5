"""One turn of a session: model call → tool calls → tool results → ... → final answer.

``TurnRunner.run_turn`` is an async generator of ``ChatEvent``s: a ``ChatDelta`` per streamed
piece of text, a ``ChatTool`` per tool call as it starts (``started``), while it waits for a
person's approval (``approval_pending``) and when it ends (``done`` or ``error``), and last one
``ChatFinal`` with the whole text and the token usage. Each record (the user's message, each
assistant message, one user record with a step's tool results) goes to the ``TranscriptLog``
as soon as it is complete; ``context.normalize`` repairs a transcript a crash cut short.
A tool that fails gives the model an error result; it never ends the turn. After
``max_turns`` model calls the turn stops with a note saying so. A ``ProviderError``
propagates to the caller (which shows its user message), after the text the user already saw
of that step is recorded.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncGenerator
from typing import Any, Protocol

import msgspec

from moltbot.agent import trust
from moltbot.agent.context import build_request, tool_result_block
from moltbot.agent.providers.base import Done, Provider, TextDelta, ToolUse
from moltbot.clock import SYSTEM_CLOCK, Clock
from moltbot.errors import ApprovalRequired, MoltbotError, ProviderError
from moltbot.messages import ChatDelta, ChatEvent, ChatFinal, ChatTool, ToolContext, ToolResult
from moltbot.observability import span

log = logging.getLogger(__name__)

SUMMARY_CHARS = 120


class ToolRunner(Protocol):
    """Runs tools for the agent: ``moltbot.tools.registry.ToolRegistry`` itself, or (in the
    agent actor) ``plugin_tools.MergedTools`` over the sandbox's and the plugins' tools."""

    def specs(self) -> list[dict[str, Any]]: ...

    async def call(
        self, name: str, input: dict[str, Any], session: str, ctx: ToolContext | None = None
    ) -> ToolResult: ...


class Approver(Protocol):
    """Asks for a person's decision on a pending approval and waits for it: the request goes
    out through the chat's own channel (never the model's words) and the turn waits here."""

    async def decide(self, session: str, approval_id: str) -> str:
        """``approved``, ``denied`` or ``expired``."""
        ...


UNDECIDED = {
    "denied": "the user denied this; it did not run. Do not try it again.",
    "expired": "nobody answered the approval request in time, so it did not run.",
}


class TranscriptLog(Protocol):
    """Where a turn's records go: ``service.TurnLog`` (tags them with the message id and writes
    them to the store in batches), or ``store.transcripts.AsyncTranscripts`` directly."""

    async def load(self, session: str) -> list[dict[str, Any]]: ...

    async def append(self, session: str, record: dict[str, Any]) -> None: ...


def tool_summary(name: str, tool_input: dict[str, Any]) -> str:
    """A short one-line description of a tool call for chat clients."""
    raw = msgspec.json.encode(tool_input).decode()
    text = f"{name} {raw}"
    return text if len(text) <= SUMMARY_CHARS else text[: SUMMARY_CHARS - 1] + "…"


class TurnRunner:
    """Runs turns with one provider, tool runner and transcript log. ``max_turns``: model calls
    per turn; ``history_tokens``: the budget of past messages sent (older turns summarized)."""

    def __init__(
        self,
        provider: Provider,
        tools: ToolRunner,
        transcripts: TranscriptLog,
        *,
        max_turns: int = 8,
        max_tokens: int = 4096,
        system_prompt: str = "",
        history_tokens: int = 24_000,
        clock: Clock = SYSTEM_CLOCK,
        approver: Approver | None = None,
    ) -> None:
        if max_turns < 1:
            raise ValueError("max_turns must be at least 1")
        self._provider = provider
        self._tools = tools
        self._transcripts = transcripts
        self._max_turns = max_turns
        self._max_tokens = max_tokens
        self._system_prompt = f"{system_prompt}\n\n{trust.SYSTEM_NOTE}".lstrip()
        self._history_tokens = history_tokens
        self._clock = clock
        self._approver = approver

    async def _persist(
        self, session: str, history: list[dict[str, Any]], role: str, content: Any
    ) -> None:
        record = {"role": role, "content": content, "ts": self._clock.time()}
        await self._transcripts.append(session, record)
        history.append(record)

    async def run_turn(
        self, session: str, user_text: str, sender: str = "", content: Any = None
    ) -> AsyncGenerator[ChatEvent, None]:
        """One turn answering ``user_text`` from ``sender`` (``channel:account:id``; '' for
        the gateway's operator), whose workspace folder the tools use. ``content``: the user
        message's blocks when it is more than its text (images, a note on files)."""
        history = await self._transcripts.load(session)
        await self._persist(session, history, "user", user_text if content is None else content)
        specs = self._tools.specs()
        text = ""
        usage = {"input_tokens": 0, "output_tokens": 0}
        for _step in range(self._max_turns):
            request = build_request(
                history,
                system_prompt=self._system_prompt,
                tools=specs,
                max_tokens=self._max_tokens,
                history_tokens=self._history_tokens,
            )
            step_text = ""
            calls: list[ToolUse] = []
            try:
                async with contextlib.aclosing(self._provider.stream(request)) as events:
                    async for event in events:
                        if isinstance(event, TextDelta):
                            piece = event.text
                            if not step_text and text and not text.endswith("\n"):
                                piece = "\n\n" + piece
                            step_text += event.text
                            text += piece
                            yield ChatDelta(session=session, text=piece)
                        elif isinstance(event, ToolUse):
                            calls.append(event)
                        elif isinstance(event, Done):
                            for key in usage:
                                usage[key] += event.usage.get(key, 0)
            except ProviderError:
                if step_text:  # keep what the user already saw, so history matches it
                    await self._persist(
                        session, history, "assistant", [{"type": "text", "text": step_text}]
                    )
                raise
            blocks: list[dict[str, Any]] = []
            if step_text:
                blocks.append({"type": "text", "text": step_text})
            blocks += [
                {"type": "tool_use", "id": c.id, "name": c.name, "input": c.input} for c in calls
            ]
            if blocks:
                await self._persist(session, history, "assistant", blocks)
            if not calls:
                break
            results: list[dict[str, Any]] = []
            for call in calls:
                summary = tool_summary(call.name, call.input)
                yield ChatTool(session=session, name=call.name, summary=summary)
                untrusted, hosts = trust.session_trust([*history, {"content": results}])
                ctx = ToolContext(sender=sender, untrusted=untrusted, seen_hosts=hosts)
                result, status = await self._call_tool(call, session, ctx)
                if status == "approval_pending" and result.approval_id and self._approver:
                    yield ChatTool(session=session, name=call.name, summary=summary, status=status)
                    decision = await self._approver.decide(session, result.approval_id)
                    if decision == "approved":  # exactly the call that asked, now allowed
                        result, status = await self._call_tool(call, session, ctx)
                    else:
                        text = UNDECIDED.get(decision, UNDECIDED["expired"])
                        result = ToolResult(text=text, is_error=True, code="approval_denied")
                        status = "error"
                yield ChatTool(session=session, name=call.name, summary=summary, status=status)
                results.append(tool_result_block(call.id, result, call.name))
            await self._persist(session, history, "user", results)
        else:
            note = (
                f"[stopped: this turn reached the limit of {self._max_turns} model calls; "
                "send another message to continue]"
            )
            piece = ("\n\n" if text else "") + note
            text += piece
            yield ChatDelta(session=session, text=piece)
            await self._persist(session, history, "assistant", [{"type": "text", "text": note}])
        yield ChatFinal(session=session, text=text, usage=usage)

    async def _call_tool(
        self, call: ToolUse, session: str, ctx: ToolContext
    ) -> tuple[ToolResult, str]:
        with span("moltbot.tool", tool=call.name) as s:  # never the input: it may hold secrets
            result, status = await self._run_tool(call, session, ctx)
            s.set_attribute("moltbot.is_error", result.is_error)
            s.set_attribute("moltbot.status", status)
        return result, status

    async def _run_tool(
        self, call: ToolUse, session: str, ctx: ToolContext
    ) -> tuple[ToolResult, str]:
        try:
            result = await self._tools.call(call.name, call.input, session, ctx)
        except ApprovalRequired as exc:
            return ToolResult(text=exc.user_message, is_error=True), "approval_pending"
        except MoltbotError as exc:
            return ToolResult(text=exc.user_message, is_error=True), "error"
        except Exception:
            log.exception("tool %s failed unexpectedly", call.name)
            return ToolResult(text=f"tool {call.name} failed unexpectedly", is_error=True), "error"
        if result.code == ApprovalRequired.code:  # the sandbox's registry caught it for us
            return result, "approval_pending"
        return result, "error" if result.is_error else "done"
