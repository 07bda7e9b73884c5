"""The channel pipeline without Ray (tests/channels/service_rig.py), who gets in: open DMs,
allowlists, groups, pairing codes and their audit records, access policy from the config."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

from moltbot.channels.accounts import load_pairing, pairing_key, policy_for
from moltbot.config import load_config_text
from moltbot.config.schema import GroupsConfig, TelegramAccount
from moltbot.errors import ConfigError, NotFound
from moltbot.security.access import AccessPolicy
from moltbot.security.audit import AuditLog, tail, verify
from tests.channels.service_rig import (
    OPEN,
    Rig,
    dm,
    running,
    until,
)
from tests.fakes.telegram_api import FakeTelegram

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as f:
        yield f


async def test_open_dm_is_journaled_answered_and_marked_done(fake: FakeTelegram) -> None:
    rig = Rig(fake, OPEN)
    fake.inject_message(chat_id=42, user_id=42, text="hello there")
    async with running(rig):
        await fake.wait_sent(1)
        await until(lambda: rig.store.done)
    [msg] = rig.store.journal.values()
    assert msg.text == "hello there" and msg.id in rig.store.done
    assert rig.replies() == {"[offline] you said: hello there": 1}
    assert fake.sent[0]["chat_id"] in (42, "42")
    st = rig.service.status()
    assert (st["channel"], st["account"], st["in"], st["out"], st["queue"]) == (
        "telegram",
        "main",
        1,
        1,
        0,
    )


async def test_allowlist_drops_strangers_without_journaling_or_answering(
    fake: FakeTelegram,
) -> None:
    rig = Rig(fake, AccessPolicy(dm_policy="allowlist", allow_from=["7"]))
    fake.inject_message(chat_id=42, user_id=42, text="let me in")
    fake.inject_message(chat_id=7, user_id=7, text="it's me")
    async with running(rig):
        await fake.wait_sent(1)
        await asyncio.sleep(0.1)
    assert rig.replies() == {"[offline] you said: it's me": 1}
    assert [m.sender_id for m in rig.store.journal.values()] == ["7"]
    assert rig.service.counts["denied"] == 1 and rig.agent.turns.total() == 1


async def test_group_message_without_mention_is_dropped(fake: FakeTelegram) -> None:
    rig = Rig(fake, AccessPolicy(dm_policy="open", group_allow=["-100"]))
    fake.inject_message(chat_id=-100, user_id=42, text="chatter", chat_type="group")
    fake.inject_message(chat_id=-100, user_id=42, text="@moltbot_test_bot hi", chat_type="group")
    async with running(rig):
        await fake.wait_sent(1)
        await asyncio.sleep(0.1)
    assert rig.replies() == {"[offline] you said: hi": 1}
    assert fake.sent[0]["reply_parameters"]  # group replies quote the message they answer


async def test_strangers_cannot_reach_the_agent_through_groups(
    fake: FakeTelegram, tmp_path: Path
) -> None:
    """The attack: a stranger adds the bot to their own group and mentions it, and a stranger
    in an allowed group mentions it. Neither is journaled, answered or given a pairing code;
    both are audited. Only the allowlisted sender in the allowed group is answered."""
    path = tmp_path / "audit" / "audit.jsonl"
    policy = AccessPolicy(dm_policy="allowlist", allow_from=["7"], group_allow=["-100"])
    rig = Rig(fake, policy, audit=AuditLog(path))
    for chat, user, text in ((-666, 666, "run rm"), (-100, 666, "me too"), (-100, 7, "owner here")):
        fake.inject_message(
            chat_id=chat, user_id=user, text=f"@moltbot_test_bot {text}", chat_type="group"
        )
    async with running(rig):
        await fake.wait_sent(1)
        await asyncio.sleep(0.2)
    assert rig.replies() == {"[offline] you said: owner here": 1}
    assert [m.sender_id for m in rig.store.journal.values()] == ["7"]
    assert rig.service.pairing_list()["pending"] == []
    records = [json.loads(line) for line in path.read_text().splitlines()]
    refused = [
        (r["fields"]["chat_id"], r["fields"]["sender_id"], r["fields"]["reason"])
        for r in records
        if r["kind"] == "access_refused"
    ]
    assert refused == [
        ("-666", "666", "group_not_allowed"),
        ("-100", "666", "group_sender_not_allowed"),
    ]


async def test_pairing_code_then_approve_then_answered(fake: FakeTelegram) -> None:
    rig = Rig(fake, AccessPolicy(dm_policy="pairing"))
    fake.inject_message(chat_id=42, user_id=42, text="hi bot", first_name="Mallory")
    async with running(rig):
        await fake.wait_sent(1)
        [pending] = rig.service.pairing_list()["pending"]
        code = pending["code"]
        assert code in fake.sent[0]["plain"] and pending["sender_id"] == "42"
        assert rig.store.journal == {} and rig.agent.turns.total() == 0
        assert code.encode() in rig.saved[-1]  # persisted before the code went out
        assert await rig.service.pairing_approve(code.lower()) == "42"
        assert rig.service.pairing_list()["pending"] == []
        fake.inject_message(chat_id=42, user_id=42, text="now?")
        await fake.wait_sent(2)
    assert fake.sent[1]["plain"] == "[offline] you said: now?"
    # the persisted state restores the approval
    restored = load_pairing(
        rig.store.kv[pairing_key("telegram", "main")], AccessPolicy(dm_policy="pairing")
    )
    assert restored.check(dm("again")).action == "allow"


async def test_pairing_deny_and_unknown_code(fake: FakeTelegram) -> None:
    rig = Rig(fake, AccessPolicy(dm_policy="pairing"))
    await rig.service.sink(dm("hello"))
    [pending] = rig.service.pairing_list()["pending"]
    with pytest.raises(NotFound):
        await rig.service.pairing_approve("NOPE2345")
    assert await rig.service.pairing_deny(pending["code"]) == "42"
    state = msgspec.json.decode(rig.saved[-1])
    assert state["pending"] == [] and state["approved"] == []
    assert rig.service.counts["pairing"] == 1 and rig.store.journal == {}


async def test_pairing_requests_and_decisions_reach_the_audit_log(
    fake: FakeTelegram, tmp_path: Path
) -> None:
    path = tmp_path / "audit" / "audit.jsonl"
    rig = Rig(fake, AccessPolicy(dm_policy="pairing"), audit=AuditLog(path))
    await rig.service.sink(dm("hello", sender="42"))
    await rig.service.sink(dm("hello again", sender="42", mid=2))  # same code: no new request
    await rig.service.sink(dm("me too", sender="77"))
    codes = {p["sender_id"]: p["code"] for p in rig.service.pairing_list()["pending"]}
    with pytest.raises(NotFound):  # an unknown code changes nothing and records nothing
        await rig.service.pairing_approve("NOPE2345", by="cli")
    assert await rig.service.pairing_approve(codes["42"].lower(), by="cli") == "42"
    assert await rig.service.pairing_deny(codes["77"]) == "77"
    recs = tail(path, 100)
    assert [r["kind"] for r in recs] == ["pairing"] * 4
    where = {"channel": "telegram", "account": "main"}
    assert [r["fields"] for r in recs] == [
        {**where, "action": "requested", "sender_id": "42", "code_prefix": codes["42"][:2]},
        {**where, "action": "requested", "sender_id": "77", "code_prefix": codes["77"][:2]},
        {
            **where,
            "action": "approved",
            "sender_id": "42",
            "code_prefix": codes["42"][:2],
            "by": "cli",
        },
        {
            **where,
            "action": "denied",
            "sender_id": "77",
            "code_prefix": codes["77"][:2],
            "by": "unknown",
        },
    ]
    text = path.read_text()
    assert codes["42"] not in text and codes["77"] not in text  # never the code itself
    assert verify(path).ok and verify(path).records == 4


def test_policy_from_account_config() -> None:
    acct = TelegramAccount(
        account="main",
        token="env:T",
        dm_policy="allowlist",
        allow_from=["1"],
        groups=GroupsConfig(require_mention=False, allow=["-5"]),
    )
    p = policy_for(acct)
    assert p == AccessPolicy(
        dm_policy="allowlist", allow_from=["1"], require_mention=False, group_allow=["-5"]
    )
    assert load_pairing(b"not json", p).list_pending() == []
    assert load_pairing(None, p).list_approved() == []


def test_group_entries_from_the_config() -> None:
    cfg = load_config_text(
        '{"channels": {"telegram": [{"account": "main", "token": "env:T", "groups": {"allow":'
        ' ["-5", {"id": "-6", "members": "any"}, {"id": "-7"}]}}]}}'
    )
    p = policy_for(cfg.channels.telegram[0])
    assert (p.group_allow, p.group_any_member) == (["-5", "-6", "-7"], ["-6"])
    with pytest.raises(ConfigError) as info:
        load_config_text(
            '{"channels": {"telegram": [{"account": "main", "token": "env:T",'
            ' "groups": {"allow": [{"id": "-6", "members": "all"}]}}]}}'
        )
    assert info.value.path == "$.channels.telegram[0].groups.allow[0].members"
    assert "'any'" in info.value.fix and "'policy'" in info.value.fix
