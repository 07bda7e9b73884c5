"""The aiogram models a Telegram adapter meets on every message, built at this module's import.

``moltbot.channels.telegram`` imports aiogram with its models built when first used
(``deferred_models``): a process keeps only what it uses. The first use builds them on the
event loop at full priority (~0.1 s of CPU: an ``Update`` inlines every type a message can
hold). A restarting channel actor imports this module in its low-priority preload thread
(``actors.startup``), so a crash loop's rebuilds weigh on the siblings as little as its imports.
"""

from __future__ import annotations

from pydantic import BaseModel

from moltbot.channels.telegram import Message, Update, User  # first: aiogram, models deferred


def models() -> tuple[type[BaseModel], ...]:
    # imported here, after ``moltbot.channels.telegram`` imported aiogram the deferred way
    from aiogram.methods import DeleteWebhook, GetMe, GetUpdates, SendChatAction, SendMessage

    return (Update, Message, User, GetUpdates, SendMessage, SendChatAction, GetMe, DeleteWebhook)


def warm() -> int:
    """Build the models not built yet; how many were built."""
    built = 0
    for model in models():
        if not model.__pydantic_complete__:
            model.model_rebuild()
            built += 1
    return built


BUILT_AT_IMPORT = warm()
