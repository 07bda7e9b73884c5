"""Owners: who may answer approvals from a chat, and that owners may always talk."""

from __future__ import annotations

import msgspec

from moltbot.channels.accounts import policy_for
from moltbot.channels.dispatch import is_control
from moltbot.config.schema import Config
from moltbot.messages import InboundMessage
from moltbot.security.access import Pairing
from moltbot.security.owners import approver, owners_of

CFG = msgspec.convert(
    {
        "channels": {
            "telegram": [
                {
                    "account": "main",
                    "token": "env:T",
                    "owners": ["42"],
                    "dm_policy": "allowlist",
                    "groups": {"allow": ["-1"]},
                }
            ],
            "slack": [
                {"account": "work", "bot_token": "env:A", "app_token": "env:B", "owners": ["U42"]}
            ],
        },
        "plugins": [
            {
                "name": "bridge",
                "module": "x",
                "sha256": "0" * 64,
                "channel_policy": {"owners": ["@ada:example.org"]},
            }
        ],
    },
    type=Config,
)


def test_only_owners_of_the_account_they_write_from_or_the_gateway_approve() -> None:
    assert approver(CFG, "telegram:main:42") == "owner:telegram:main:42"
    assert approver(CFG, "slack:work:U42") == "owner:slack:work:U42"
    assert approver(CFG, "matrix:bridge:@ada:example.org") == "owner:matrix:bridge:@ada:example.org"
    assert approver(CFG, "") == "gateway"
    for stranger in (
        "telegram:main:7",
        "slack:work:42",
        "telegram:other:42",
        "telegram:main:",
        "signal:main:42",
        "telegram:main:42 ",
    ):
        assert approver(CFG, stranger) is None, stranger
    assert owners_of(CFG, "telegram", "nope") == frozenset()


def test_owners_always_pass_the_access_policy() -> None:
    book = Pairing(policy_for(CFG.channels.telegram[0]))
    dm = InboundMessage(
        id="1", channel="telegram", account="main", chat_id="42", sender_id="42", text="hi"
    )
    assert book.check(dm).action == "allow"  # allowlist policy, empty allow_from
    group = msgspec.structs.replace(dm, chat_id="-1", is_group=True, mentioned=True)
    assert book.check(group).action == "allow"
    stranger = msgspec.structs.replace(group, sender_id="7")
    assert book.check(stranger).action == "deny"


def test_approve_and_deny_skip_the_chats_queue() -> None:
    for text in ("/approve ab12cd34", " /deny ab12cd34", "/approve@bot x", "/APPROVE x"):
        assert is_control(text), text
    for text in ("/approved", "please /approve x", "/reset", "approve x"):
        assert not is_control(text), text
