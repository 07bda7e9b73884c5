"""Telegram through aiogram 3: our own getUpdates loop, so the offset is ours to commit."""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp

from moltbot.channels.base import InboundSink, sink_together
from moltbot.channels.deferred_models import deferred_builds
from moltbot.channels.formatting import TELEGRAM_LIMIT, render
from moltbot.channels.retry import DEFAULT_RETRY, Retrier, RetryPolicy, Sleep
from moltbot.clock import SYSTEM_CLOCK, Clock
from moltbot.errors import (
    MediaRefused,
    MoltbotError,
    PlatformRejected,
    PlatformUnavailable,
    RateLimited,
)
from moltbot.messages import Attachment, InboundMessage, OutboundFile, OutboundMessage

with deferred_builds("aiogram"):  # its models built as met: 90 MB less per account
    from aiogram import Bot
    from aiogram.client.session.aiohttp import AiohttpSession
    from aiogram.client.telegram import TelegramAPIServer
    from aiogram.exceptions import (
        AiogramError,
        ClientDecodeError,
        TelegramAPIError,
        TelegramConflictError,
        TelegramNetworkError,
        TelegramRetryAfter,
        TelegramServerError,
        TelegramUnauthorizedError,
    )
    from aiogram.methods.base import Response
    from aiogram.types import BufferedInputFile, File, Message, ReplyParameters, Update, User
    from aiogram.utils.token import TokenValidationError

T = TypeVar("T")
PHOTO_MAX = 10 * 1024 * 1024  # sendPhoto's limit; larger images go as documents
log = logging.getLogger(__name__)


def map_error(exc: BaseException) -> MoltbotError:
    """The one place aiogram's errors become moltbot errors (no foreign text, no token)."""
    if isinstance(exc, TelegramRetryAfter):
        return RateLimited("Telegram is rate limiting us", retry_after=float(exc.retry_after))
    if isinstance(exc, TelegramUnauthorizedError | TokenValidationError):
        return PlatformRejected(
            "Telegram refused the bot token", hint="check channels.telegram token (from @BotFather)"
        )
    if isinstance(exc, TelegramServerError | TelegramNetworkError | ClientDecodeError):
        return PlatformUnavailable("Telegram is unavailable right now")
    if isinstance(exc, TelegramConflictError):  # an old poller (a restart overlap): it will go
        return PlatformUnavailable("another getUpdates poller is still running for this bot")
    if isinstance(exc, TimeoutError | OSError):
        return PlatformUnavailable("Telegram could not be reached")
    if isinstance(exc, TelegramAPIError):
        return PlatformRejected(f"Telegram rejected {exc.method.__api_method__}")
    return PlatformRejected("Telegram request failed")


# aiogram builds ``Response[<result type>]`` for every call, and pydantic keeps such classes
# only weakly: a busy adapter rebuilt them again and again (a fifth of its CPU under load,
# measured with py-spy). Holding the ones this adapter's calls return keeps them cached.
_RESPONSE_TYPES = tuple(Response[t] for t in (Message, bool, list[Update], User, File))  # type: ignore[valid-type]


class TelegramAdapter:
    channel = "telegram"

    def __init__(
        self,
        *,
        account: str,
        token: str,
        api_base: str = "https://api.telegram.org",
        poll_timeout: int = 25,
        retry: RetryPolicy = DEFAULT_RETRY,
        clock: Clock = SYSTEM_CLOCK,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.account = account
        self.last_activity = clock.monotonic()
        self._token = token
        self._api_base = api_base
        self._poll_timeout = poll_timeout
        self._clock = clock
        self._retrier = Retrier(
            retry, platform="Telegram", channel="telegram", sleep=sleep, clock=clock, rng=rng
        )
        self._bot: Bot | None = None
        self._me: User | None = None
        self._offset: int | None = None
        self._committed: int | None = None

    def __repr__(self) -> str:  # never show the token
        return f"TelegramAdapter(account={self.account!r})"

    async def _call(self, fn: Callable[[Bot], Awaitable[T]]) -> T:
        try:
            return await fn(self._client())
        except (AiogramError, TimeoutError, OSError) as e:
            log.debug("telegram %s: %s", self.account, type(e).__name__)
            raise map_error(e) from None

    def _client(self) -> Bot:
        if self._bot is None:
            try:
                session = AiohttpSession(api=TelegramAPIServer.from_base(self._api_base))
                self._bot = Bot(self._token, session=session)
            except TokenValidationError:
                raise map_error(TokenValidationError()) from None
        return self._bot

    async def connect(self) -> dict[str, Any]:
        me = await self._call(lambda b: b.get_me())
        await self._call(lambda b: b.delete_webhook(drop_pending_updates=False))
        self._me = me
        self.last_activity = self._clock.monotonic()
        return {"id": str(me.id), "username": me.username or "", "name": me.full_name}

    # --- receiving -------------------------------------------------------------------------
    async def run(self, sink: InboundSink) -> None:
        backoff = self._retrier.receiving()
        if self._me is None:
            await backoff.call(self.connect)
        while True:
            offset = self._offset
            try:
                updates = await self._poll(offset)
            except (PlatformUnavailable, RateLimited) as e:
                await backoff.failed(e)
                continue
            self._committed = offset
            backoff.ok()
            self.last_activity = self._clock.monotonic()
            pairs = [(update, self.to_inbound(update)) for update in updates]
            outcomes = iter(await sink_together(sink, [m for _, m in pairs if m is not None]))
            for update, msg in pairs:
                problem = next(outcomes) if msg is not None else None
                if problem is not None:
                    raise problem  # the offset stays before this update
                self._offset = update.update_id + 1

    async def _poll(self, offset: int | None) -> list[Update]:
        return await self._call(
            lambda b: b.get_updates(
                offset=offset,
                timeout=self._poll_timeout,
                allowed_updates=["message"],
                request_timeout=self._poll_timeout + 15,
            )
        )

    def to_inbound(self, update: Update) -> InboundMessage | None:
        m = update.message
        if m is None or m.from_user is None or m.chat.type == "channel":
            return None
        text = m.text if m.text is not None else m.caption
        attachments = _attachments(m)
        if text is None and not attachments:
            return None
        text = text or ""
        is_group = m.chat.type in ("group", "supergroup")
        mentioned = is_group and self._mentions_me(m, text)
        if mentioned and self._me is not None and self._me.username:
            text = text.replace(f"@{self._me.username}", "").strip() or text
        return InboundMessage(
            id=f"telegram:{self.account}:{m.chat.id}:{m.message_id}",
            channel="telegram",
            account=self.account,
            chat_id=str(m.chat.id),
            sender_id=str(m.from_user.id),
            sender_name=m.from_user.full_name,
            text=text,
            is_group=is_group,
            mentioned=mentioned,
            thread_id=str(m.message_thread_id) if m.is_topic_message else None,
            received_at=self._clock.time(),
            attachments=attachments,
        )

    def _mentions_me(self, m: Message, text: str) -> bool:
        me = self._me
        if me is None:
            return False
        reply = m.reply_to_message
        if reply is not None and reply.from_user is not None and reply.from_user.id == me.id:
            return True
        name = f"@{(me.username or '').lower()}"
        for e in m.entities or m.caption_entities or []:
            if e.type == "text_mention" and e.user is not None and e.user.id == me.id:
                return True
            if e.type in ("mention", "bot_command") and me.username:
                piece = text[e.offset : e.offset + e.length].lower()
                if piece == name or piece.endswith(name):
                    return True
        return False

    # --- sending ---------------------------------------------------------------------------
    async def send(self, out: OutboundMessage) -> list[str]:
        chat: int | str = int(out.chat_id) if out.chat_id.lstrip("-").isdigit() else out.chat_id
        thread = int(out.thread_id) if out.thread_id and out.thread_id.isdigit() else None
        reply_to = _message_id(out.in_reply_to) if out.chat_id.startswith("-") else None
        ids: list[str] = []
        for i, piece in enumerate(render(out.text, "telegram", TELEGRAM_LIMIT, plain=out.plain)):
            params = (
                ReplyParameters(message_id=reply_to, allow_sending_without_reply=True)
                if reply_to is not None and i == 0
                else None
            )

            async def once(piece: str = piece, params: ReplyParameters | None = params) -> Message:
                return await self._call(
                    lambda b: b.send_message(
                        chat,
                        piece,
                        parse_mode="HTML",
                        message_thread_id=thread,
                        reply_parameters=params,
                    )
                )

            sent = await self._retrier.run(once)
            ids.append(str(sent.message_id))
        return ids

    # --- files -----------------------------------------------------------------------------
    async def download(self, att: Attachment, max_bytes: int) -> bytes:
        """getFile, then the file from the Bot API's own file URL, cut off past ``max_bytes``
        (MediaRefused)."""
        tg_file = await self._call(lambda b: b.get_file(att.ref))
        if (tg_file.file_size or 0) > max_bytes:
            raise MediaRefused("the file is larger than the limit")
        if not tg_file.file_path:
            raise PlatformRejected("Telegram gave no path for the file")
        bot = self._client()
        url = bot.session.api.file_url(bot.token, tg_file.file_path)
        body = bytearray()
        try:
            async for chunk in bot.session.stream_content(url, timeout=60):
                body += chunk
                if len(body) > max_bytes:
                    raise MediaRefused("the file is larger than the limit")
        except (aiohttp.ClientError, TimeoutError) as e:
            log.debug("telegram %s: download failed: %s", self.account, type(e).__name__)
            raise PlatformUnavailable("the file could not be downloaded from Telegram") from None
        return bytes(body)

    async def send_file(self, out: OutboundFile) -> str:
        """sendPhoto for an image Telegram shows inline (up to 10 MB), else sendDocument."""
        chat: int | str = int(out.chat_id) if out.chat_id.lstrip("-").isdigit() else out.chat_id
        thread = int(out.thread_id) if out.thread_id and out.thread_id.isdigit() else None
        upload = BufferedInputFile(out.data, filename=out.name)
        caption = out.caption[:1024] or None
        as_photo = out.is_image and out.mime != "image/gif" and len(out.data) <= PHOTO_MAX

        async def once() -> Message:
            if as_photo:
                return await self._call(
                    lambda b: b.send_photo(chat, upload, caption=caption, message_thread_id=thread)
                )
            return await self._call(
                lambda b: b.send_document(chat, upload, caption=caption, message_thread_id=thread)
            )

        sent = await self._retrier.run(once)
        return str(sent.message_id)

    async def typing(self, chat_id: str) -> None:
        chat: int | str = int(chat_id) if chat_id.lstrip("-").isdigit() else chat_id
        await self._call(lambda b: b.send_chat_action(chat, "typing"))

    async def close(self) -> None:
        bot, self._bot = self._bot, None
        if bot is None:
            return
        try:
            if self._offset is not None and self._offset != self._committed:
                # confirm what the sink accepted, so a restart does not see it again
                await asyncio.wait_for(bot.get_updates(offset=self._offset, timeout=0, limit=1), 5)
        except (AiogramError, TimeoutError, OSError) as e:
            log.debug("telegram %s: final offset commit failed: %s", self.account, type(e).__name__)
        finally:
            await bot.session.close()


def _attachments(m: Message) -> tuple[Attachment, ...]:
    """The files of a message as references (``file_id``); downloaded later, capped."""
    out: list[Attachment] = []
    if m.photo:
        big = m.photo[-1]  # Telegram lists the sizes smallest first
        out.append(Attachment(kind="image", size=big.file_size or 0, ref=big.file_id))
    for doc, kind in ((m.document, "document"), (m.audio, "audio"), (m.voice, "audio")):
        if doc is not None:
            out.append(
                Attachment(
                    kind=kind,
                    name=getattr(doc, "file_name", None) or "",
                    size=doc.file_size or 0,
                    declared_mime=doc.mime_type or "",
                    ref=doc.file_id,
                )
            )
    return tuple(out)


def _message_id(inbound_id: str | None) -> int | None:
    if not inbound_id or not inbound_id.startswith("telegram:"):
        return None
    last = inbound_id.rsplit(":", 1)[-1]
    return int(last) if last.isdigit() else None
