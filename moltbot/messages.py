"""Data that crosses actors or the wire: frozen msgspec Structs, parsed once at the edge."""

from __future__ import annotations

import msgspec


class Attachment(msgspec.Struct, frozen=True, kw_only=True):
    """A file that came with a message (``moltbot.media``).

    As the adapter reads it: ``kind`` is the platform's word (image / audio / document),
    ``name``, ``size`` and ``declared_mime`` what the sender's side claims, ``ref`` how the
    adapter downloads it (a file id, an URL). Once taken in (``moltbot.media.ingest``) the
    type is decided by content: ``mime`` is sniffed from the bytes, ``kind`` follows it,
    ``path`` is where it lies in the sender's workspace (``inbox/...``; '' if not kept),
    ``flags`` say what was wrong (``name_mismatch``, ``too_large``, ``executable`` ...) and
    ``transcript`` holds a voice note's text when a transcription endpoint is configured.
    """

    kind: str = "document"  # image | audio | document
    name: str = ""
    size: int = 0
    declared_mime: str = ""
    ref: str = ""
    mime: str = ""
    path: str = ""
    flags: tuple[str, ...] = ()
    transcript: str = ""
    taken: bool = False  # ingested (downloaded, checked, stored or refused)


class InboundMessage(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One message a person sent us, on any channel (encoded without its default fields:
    journal records stay small).

    ``id`` is unique per platform message (``telegram:<account>:<chat>:<message_id>``) and is
    the de-duplication key of the inbound journal.
    """

    id: str
    channel: str  # "telegram" | "slack" | "signal" | "web" | "cli" | plugin channel name
    account: str  # which configured account of that channel received it
    chat_id: str
    sender_id: str  # immutable platform id of the sender
    text: str
    sender_name: str = ""
    is_group: bool = False
    mentioned: bool = False
    thread_id: str | None = None
    received_at: float = 0.0
    trace: dict[str, str] = {}  # W3C trace context carried across actors
    attachments: tuple[Attachment, ...] = ()

    @property
    def session_key(self) -> str:
        """Every DM sender and every group gets its own session: no cross-user leak."""
        if self.is_group:
            return f"{self.channel}:{self.account}:group:{self.chat_id}"
        return f"{self.channel}:{self.account}:dm:{self.sender_id}"


class OutboundMessage(msgspec.Struct, frozen=True, kw_only=True):
    """A reply to be delivered by a channel (already the whole text; the channel chunks it)."""

    channel: str
    account: str
    chat_id: str
    text: str
    in_reply_to: str | None = None  # the InboundMessage.id this answers
    thread_id: str | None = None
    trace: dict[str, str] = {}
    plain: bool = False  # a system message: shown exactly as written, no markdown


class OutboundFile(msgspec.Struct, frozen=True, kw_only=True):
    """A file the agent sends to a chat (the ``send_file`` tool): already read from the
    sender's workspace and checked (type sniffed, size capped)."""

    channel: str
    account: str
    chat_id: str
    name: str
    mime: str
    data: bytes
    caption: str = ""
    thread_id: str | None = None

    @property
    def is_image(self) -> bool:
        return self.mime in ("image/png", "image/jpeg", "image/gif", "image/webp")


class ChatDelta(msgspec.Struct, frozen=True, kw_only=True, tag="delta"):
    """A streamed piece of a reply."""

    session: str
    text: str


class ChatTool(msgspec.Struct, frozen=True, kw_only=True, tag="tool"):
    """A tool call the agent made during a turn (name, short input summary, status)."""

    session: str
    name: str
    summary: str
    status: str = "started"  # started | done | error | approval_pending


class ChatFinal(msgspec.Struct, frozen=True, kw_only=True, tag="final"):
    session: str
    text: str
    usage: dict[str, int] = {}


ChatEvent = ChatDelta | ChatTool | ChatFinal


class ToolResult(msgspec.Struct, frozen=True, kw_only=True):
    """What a tool call returned to the model (text only; capped by the tool).

    ``code``: the ``moltbot.errors`` code when one of our errors stopped the call
    (``approval_required``, ``path_escape`` ...), so callers can tell a refusal from a failure.
    """

    text: str
    is_error: bool = False
    code: str = ""
    untrusted: bool = False  # text from the outside (a web page, a file): data, never orders
    approval_id: str = ""  # with code "approval_required": the approval the call waits for


class ToolContext(msgspec.Struct, frozen=True, kw_only=True):
    """What a tool call knows besides its input, built by the agent from the turn.

    ``sender``: ``channel:account:sender_id`` of the message being answered ('' for the
    gateway's operator), whose own workspace folder the tools use. ``untrusted``: the session
    already holds untrusted content; ``seen_hosts``: the hosts web_fetch already fetched in it.
    ``profile``: whose tools, workspace and memory the call uses (``moltbot.agent.profiles``).
    """

    sender: str = ""
    untrusted: bool = False
    seen_hosts: tuple[str, ...] = ()
    profile: str = ""  # the agent profile of the turn ('' = default), set by the agent
    # ``channel:account:chat_id`` of the direct chat being answered ('' in a group or from the
    # gateway): where something meant for the sender later goes (a DM's chat id is not always
    # the sender's id: Discord, iMessage)
    reply_to: str = ""
