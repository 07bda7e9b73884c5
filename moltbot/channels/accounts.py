"""Building a channel account's parts from the config (pure: the actor passes the secret
resolver): its adapter, access policy, pairing book and where that book is kept."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import msgspec

from moltbot.channels.base import ChannelAdapter, CursorStore, MemoryCursors
from moltbot.clock import SYSTEM_CLOCK, Clock
from moltbot.config.schema import (
    AccountConfig,
    ChannelPolicy,
    DiscordAccount,
    GroupEntry,
    IMessageAccount,
    SignalAccount,
    SlackAccount,
    TelegramAccount,
    WhatsAppAccount,
)
from moltbot.security.access import AccessPolicy, Pairing

log = logging.getLogger(__name__)

SecretResolver = Callable[[str, str], str]  # (reference, JSON path for errors) -> value


def pairing_key(channel: str, account: str) -> str:
    return f"pairing.{channel}.{account}"


def policy_for(acct: AccountConfig | ChannelPolicy) -> AccessPolicy:
    """The access rules of a channel account or of a plugin's channels."""
    groups = [g if isinstance(g, GroupEntry) else GroupEntry(id=g) for g in acct.groups.allow]
    allowed = [*acct.allow_from, *(o for o in acct.owners if o not in acct.allow_from)]
    return AccessPolicy(
        dm_policy=acct.dm_policy,
        allow_from=allowed,  # owners always pass
        require_mention=acct.groups.require_mention,
        group_allow=[g.id for g in groups],
        group_any_member=[g.id for g in groups if g.members == "any"],
    )


def load_pairing(
    data: bytes | None, policy: AccessPolicy, *, clock: Clock = SYSTEM_CLOCK
) -> Pairing:
    """The pairing book from its persisted JSON; a fresh one when there is none or it is bad."""
    if data:
        try:
            return Pairing.from_json(data, policy, clock=clock)
        except (msgspec.DecodeError, msgspec.ValidationError):
            log.error("pairing state unreadable; starting with an empty pairing book")
    return Pairing(policy, clock=clock)


def make_adapter(
    channel: str,
    index: int,
    acct: AccountConfig,
    secret: SecretResolver,
    *,
    cursor_store: CursorStore | None = None,
) -> ChannelAdapter:
    """The adapter of one configured account; ``index`` only names the JSON path in errors.
    ``cursor_store``: where an adapter without platform re-delivery (iMessage, Discord) keeps
    its read positions (the store's kv); without one they last only as long as the process,
    so what came while it was down is not fetched after a restart."""
    at = f"$.channels.{channel}[{index}]"
    if channel == "telegram" and isinstance(acct, TelegramAccount):
        from moltbot.channels.telegram import TelegramAdapter

        return TelegramAdapter(
            account=acct.account,
            token=secret(acct.token, f"{at}.token"),
            api_base=acct.api_base,
            poll_timeout=acct.poll_timeout_s,
        )
    if channel == "slack" and isinstance(acct, SlackAccount):
        from moltbot.channels.slack import SlackAdapter

        return SlackAdapter(
            account=acct.account,
            bot_token=secret(acct.bot_token, f"{at}.bot_token"),
            app_token=secret(acct.app_token, f"{at}.app_token"),
            api_base=acct.api_base,
        )
    if channel == "signal" and isinstance(acct, SignalAccount):
        from moltbot.channels.signal import SignalAdapter

        return SignalAdapter(
            account=acct.number, api_base=acct.api_base, receive_mode=acct.receive_mode
        )
    if channel == "imessage" and isinstance(acct, IMessageAccount):
        from moltbot.channels.imessage import IMessageAdapter

        return IMessageAdapter(
            account=acct.account,
            api_base=acct.api_base,
            password=secret(acct.password, f"{at}.password"),
            cursor_store=cursor_store,
            mention_names=acct.mention_names,
            catch_up_max=acct.catch_up_max,
            poll_interval_s=acct.poll_interval_s,
            send_method=acct.send_method,
        )
    if channel == "discord" and isinstance(acct, DiscordAccount):
        from moltbot.channels.discord import DiscordAdapter

        if cursor_store is None:
            log.warning(
                "discord %s: no durable cursor store; messages sent while it is down "
                "are not caught up after a restart",
                acct.account,
            )
        return DiscordAdapter(
            account=acct.account,
            token=secret(acct.token, f"{at}.token"),
            cursors=cursor_store or MemoryCursors(),
            api_base=acct.api_base,
            catch_up_max=acct.catch_up_max,
        )
    if channel == "whatsapp" and isinstance(acct, WhatsAppAccount):
        from moltbot.channels.whatsapp import make_whatsapp

        return make_whatsapp(acct, at, secret, cursor_store=cursor_store)
    raise ValueError(f"unknown channel type {channel!r}")


def find_account(accounts: list[Any], account: str) -> tuple[int, AccountConfig]:
    for i, acct in enumerate(accounts):
        if isinstance(acct, AccountConfig) and acct.account == account:
            return i, acct
    raise ValueError(f"no channel account {account!r} in the config")
