"""What the Discord adapter tests share: ids, the adapter factory, small waits."""

from __future__ import annotations

import msgspec

from moltbot.channels.base import MemoryCursors
from moltbot.channels.discord import DiscordAdapter
from moltbot.messages import OutboundMessage
from tests.channels.conftest import FAST
from tests.fakes.discord_api import BOT_TOKEN, FakeDiscord

DM = "300000000000000001"
ALICE = "400000000000000001"


def make(fake: FakeDiscord, cursors: MemoryCursors | None = None, **kw: object) -> DiscordAdapter:
    args: dict[str, object] = {
        "account": "main",
        "token": BOT_TOKEN,
        "api_base": fake.api_base,
        "cursors": cursors if cursors is not None else MemoryCursors(),
        "identify_delay": 0.0,
        "retry": FAST,
    }
    args.update(kw)
    return DiscordAdapter(**args)  # type: ignore[arg-type]


def out(text: str, chat_id: str = DM, **kw: object) -> OutboundMessage:
    return OutboundMessage(channel="discord", account="main", chat_id=chat_id, text=text, **kw)  # type: ignore[arg-type]


def cursor_of(cursors: MemoryCursors, channel: str) -> int:
    book = msgspec.json.decode(cursors.values["cursor.discord.main"])
    return int(book["channels"][channel]["last"])


async def connected(fake: FakeDiscord, n: int = 1) -> None:
    """Wait until the n-th session is READY (identified) and has an attached socket."""
    await fake.wait_for(
        lambda: (
            fake.identifies >= n and fake.session is not None and fake.session.socket is not None
        )
    )
