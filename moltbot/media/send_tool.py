"""``send_file``: the agent sends a file or image from the sender's workspace to the chat.

The tool is added to a turn's tools only when the turn answers a chat message and the agent
can deliver to its channel. It reads the file through the file tools' confinement
(``Workspace`` over the folder of the sender the turn acts for: ``..``, absolute paths elsewhere
and symbolic links leading out are refused), so one person's turn cannot send another person's
files. The type is sniffed from the bytes: programs and scripts are refused, so is a file whose
name claims another type than its content; the size is capped by ``media.max_bytes``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path, PurePosixPath
from typing import Annotated, Any

import msgspec

from moltbot.agent.loop import ToolRunner
from moltbot.errors import MediaRefused, MoltbotError
from moltbot.media import inbox
from moltbot.media.sniff import name_lies, sniff
from moltbot.messages import InboundMessage, OutboundFile, ToolContext, ToolResult
from moltbot.tools.registry import input_schema

log = logging.getLogger(__name__)

NAME = "send_file"
DESCRIPTION = (
    "Send a file or an image from the workspace to the person in this chat (images are shown "
    "as pictures). The path is relative to the workspace; programs and scripts are refused."
)
Deliver = Callable[[OutboundFile], Awaitable[object]]


class SendFileInput(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    path: Annotated[
        str,
        msgspec.Meta(min_length=1, max_length=4096, description="Path relative to the workspace."),
    ]
    caption: Annotated[str, msgspec.Meta(max_length=1000, description="Optional text.")] = ""


class WithSendFile:
    """A turn's tools with ``send_file`` added (the other calls go to ``inner``)."""

    def __init__(
        self,
        inner: ToolRunner,
        msg: InboundMessage,
        workspace: Path,
        max_bytes: int,
        deliver: Deliver,
    ) -> None:
        self._inner, self._msg, self._root = inner, msg, workspace
        self._max, self._deliver = max_bytes, deliver

    def specs(self) -> list[dict[str, Any]]:
        own = {
            "name": NAME,
            "description": DESCRIPTION,
            "input_schema": input_schema(SendFileInput),
        }
        return [*(s for s in self._inner.specs() if s.get("name") != NAME), own]

    async def call(
        self, name: str, input: dict[str, Any], session: str, ctx: ToolContext | None = None
    ) -> ToolResult:
        if name != NAME:
            return await self._inner.call(name, input, session, ctx)
        try:
            args = msgspec.convert(input, type=SendFileInput, strict=True)
        except msgspec.ValidationError:
            return ToolResult(text="send_file needs {path, caption?}", is_error=True)
        try:
            return ToolResult(text=await self.send(args, (ctx or ToolContext()).sender))
        except MoltbotError as exc:
            return ToolResult(text=exc.user_message, is_error=True, code=exc.code)

    async def send(self, args: SendFileInput, sender: str) -> str:
        ws = inbox.workspace_of(self._root, sender)
        data = inbox.read(ws, args.path, self._max)
        ftype = sniff(data)
        name = PurePosixPath(args.path).name
        if ftype.executable:
            raise MediaRefused(f"{args.path} is a program or script; it is not sent")
        if name_lies(name, ftype):
            raise MediaRefused(
                f"{args.path}: its name claims another type than its content ({ftype.mime}); "
                "it is not sent"
            )
        msg = self._msg
        out = OutboundFile(
            channel=msg.channel,
            account=msg.account,
            chat_id=msg.chat_id,
            name=name,
            mime=ftype.mime,
            data=data,
            caption=args.caption,
            thread_id=msg.thread_id,
        )
        await self._deliver(out)
        return f"sent {name} ({ftype.mime}, {len(data)} bytes) to the chat"


def with_send_file(
    tools: Callable[[], Awaitable[ToolRunner]],
    msg: InboundMessage | None,
    workspace: Path,
    max_bytes: int,
    deliver: Deliver | None,
) -> Callable[[], Awaitable[ToolRunner]]:
    """``tools`` with ``send_file`` when the turn answers ``msg`` and ``deliver`` is set."""
    if msg is None or deliver is None:
        return tools
    send = deliver

    async def merged() -> ToolRunner:
        return WithSendFile(await tools(), msg, workspace, max_bytes, send)

    return merged
