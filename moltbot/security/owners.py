"""Who owns the assistant: the ``owners`` of each channel account (exact platform user ids).

An owner may always talk to the bot (the access check lets them through in DMs and in allowed
groups) and is the only person who may answer an approval from a chat: an owner of any account,
writing from that account, may answer any pending approval (asked on Telegram, approved from
Slack). The gateway (web page, ``moltbot chat``: authenticated with the gateway token) may
always answer. Nobody else: being in the chat that asked is not enough.
"""

from __future__ import annotations

from moltbot.config.schema import Config


def owners_of(cfg: Config, channel: str, account: str) -> frozenset[str]:
    """The owners of one channel account (a plugin channel: its plugin's channel policy)."""
    accounts = getattr(cfg.channels, channel, None)
    if isinstance(accounts, list):
        for acct in accounts:
            if acct.account == account:
                return frozenset(acct.owners)
        return frozenset()
    for plugin in cfg.plugins:
        if plugin.name == account:  # plugin channels: channel "<name>", account "<plugin>"
            return frozenset(plugin.channel_policy.owners)
    return frozenset()


def approver(cfg: Config, sender: str) -> str | None:
    """Who answers, as recorded (``owner:<channel>:<account>:<id>``), when ``sender``
    (``channel:account:id``; '' = the gateway's operator) may answer approvals; else None."""
    if not sender:
        return "gateway"
    channel, _, rest = sender.partition(":")
    account, _, sender_id = rest.partition(":")
    if sender_id and sender_id in owners_of(cfg, channel, account):
        return f"owner:{sender}"
    return None
