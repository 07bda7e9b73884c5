"""The channel pipeline without Ray: the real TelegramAdapter against the fake Bot API, with
in-memory stand-ins for the store (journal + kv) and the agent (offline-style echo)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import msgspec
import pytest

from moltbot.channels.accounts import load_pairing, pairing_key, policy_for
from moltbot.channels.retry import RetryPolicy
from moltbot.channels.service import SORRY, ChannelService, Ports, ServiceOptions
from moltbot.channels.telegram import TelegramAdapter
from moltbot.clock import FakeClock
from moltbot.config import load_config_text
from moltbot.config.schema import GroupsConfig, TelegramAccount
from moltbot.errors import ConfigError, NotFound, Unavailable
from moltbot.messages import InboundMessage
from moltbot.security.access import AccessPolicy, Pairing
from moltbot.security.audit import AuditLog, tail, verify
from tests.fakes.telegram_api import DEFAULT_TOKEN, FakeTelegram

pytestmark = pytest.mark.timeout(30)

QUICK_SEND = RetryPolicy(base=0.01, cap=0.02, deadline=0.05)  # gives up fast: service retries
OPTS = ServiceOptions(workers=2, queue_size=4, retry_base_s=0.01, retry_cap_s=0.05)


class MemoryStore:
    """The store actor's contract in memory: journal dedup by id, pending = accepted - done."""

    def __init__(self) -> None:
        self.journal: dict[str, InboundMessage] = {}
        self.done: set[str] = set()
        self.kv: dict[str, bytes] = {}
        self.down = 0  # the next `down` calls of accept raise Unavailable

    async def accept(self, msg: InboundMessage) -> bool:
        if self.down:
            self.down -= 1
            raise Unavailable("store is not available right now")
        if msg.id in self.journal:
            return False
        self.journal[msg.id] = msg
        return True

    async def mark_done(self, msg_id: str) -> bool:
        if msg_id in self.done:
            return False
        self.done.add(msg_id)
        return True

    async def accept_many(self, msgs: list[InboundMessage]) -> list[bool]:
        return [await self.accept(m) for m in msgs]

    async def mark_done_many(self, ids: list[str]) -> list[bool]:
        return [await self.mark_done(i) for i in ids]

    async def pending(self) -> list[InboundMessage]:
        return [m for i, m in self.journal.items() if i not in self.done]

    def pending_ids(self) -> list[str]:
        return [i for i in self.journal if i not in self.done]


class EchoAgent:
    """Answers like the offline provider; idempotent per message id; can fail on purpose."""

    def __init__(self) -> None:
        self.turns: Counter[str] = Counter()
        self.answers: dict[str, str] = {}
        self.fail: list[BaseException] = []
        self.delay = 0.0  # seconds a turn takes

    async def answer(self, msg: InboundMessage) -> str:
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail:
            raise self.fail.pop(0)
        if msg.id not in self.answers:
            self.turns[msg.id] += 1
            self.answers[msg.id] = f"[offline] you said: {msg.text}"
        return self.answers[msg.id]


class Rig:
    def __init__(
        self,
        fake: FakeTelegram,
        policy: AccessPolicy,
        clock: FakeClock | None = None,
        audit: AuditLog | None = None,
    ) -> None:
        self.fake = fake
        self.store = MemoryStore()
        self.agent = EchoAgent()
        self.saved: list[bytes] = []
        kw: dict[str, Any] = {"clock": clock} if clock is not None else {}
        self.adapter = TelegramAdapter(
            account="main",
            token=DEFAULT_TOKEN,
            api_base=fake.api_base,
            poll_timeout=1,
            retry=QUICK_SEND,
            **kw,
        )
        ports = Ports(
            accept_many=self.store.accept_many,
            mark_done_many=self.store.mark_done_many,
            pending=self.store.pending,
            answer=self.agent.answer,
            save_pairing=self.save,
        )
        sink = audit.append if audit is not None else None
        self.service = ChannelService(
            self.adapter, Pairing(policy, **kw), ports, OPTS, audit=sink, **kw
        )

    async def save(self, data: bytes) -> None:
        self.saved.append(data)
        self.store.kv[pairing_key("telegram", "main")] = data

    def replies(self) -> Counter[str]:
        return Counter(s["plain"] for s in self.fake.sent)


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as f:
        yield f


@asynccontextmanager
async def running(rig: Rig) -> AsyncIterator[None]:
    try:
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(rig.service.run())
            yield
            task.cancel()
    finally:
        await rig.adapter.close()


async def until(cond: Any, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not cond():
            await asyncio.sleep(0.01)


def dm(text: str, sender: str = "42", mid: int = 1) -> InboundMessage:
    return InboundMessage(
        id=f"telegram:main:{sender}:{mid}",
        channel="telegram",
        account="main",
        chat_id=sender,
        sender_id=sender,
        text=text,
    )


OPEN = AccessPolicy(dm_policy="open")


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


async def test_duplicate_delivery_is_answered_once(fake: FakeTelegram) -> None:
    rig = Rig(fake, OPEN)
    msg = dm("once please")
    async with running(rig):
        await rig.service.sink(msg)
        await rig.service.sink(msg)  # the platform re-delivers (offset not yet committed)
        await fake.wait_sent(1)
        await until(lambda: msg.id in rig.store.done)
        await rig.service.sink(msg)  # and once more after it was done
        await asyncio.sleep(0.1)
    assert rig.replies() == {"[offline] you said: once please": 1}
    assert rig.service.counts["duplicates"] == 2


async def test_pending_messages_are_replayed_once_even_when_redelivered(
    fake: FakeTelegram,
) -> None:
    rig = Rig(fake, OPEN)
    # the platform re-delivers the second one (its offset was never committed) ...
    fake.inject_message(chat_id=43, user_id=43, text="left over 2")
    live_id = f"telegram:main:43:{fake.updates[-1]['message']['message_id']}"
    # ... which a previous incarnation had journaled, with another one, before crashing
    for m in (dm("left over 1", mid=1), dm("left over 2", sender="43", mid=0)):
        await rig.store.accept(msgspec.structs.replace(m, id=live_id) if m.sender_id == "43" else m)
    async with running(rig):
        await fake.wait_sent(2)
        await until(lambda: len(rig.store.done) == 2)
        await asyncio.sleep(0.2)
    assert rig.replies() == {
        "[offline] you said: left over 1": 1,
        "[offline] you said: left over 2": 1,
    }
    assert rig.service.counts["duplicates"] == 1 and rig.agent.turns.total() == 2
    assert await rig.store.pending() == []


async def test_a_message_in_flight_is_not_queued_again_by_replay(fake: FakeTelegram) -> None:
    rig = Rig(fake, OPEN)
    msg = dm("in flight")
    await rig.service.sink(msg)  # accepted and queued; no worker runs yet
    assert await rig.service.replay([msg]) == 0
    assert rig.service.queue_depth() == 1
    assert rig.service.counts["deduplicated"] == 1


async def test_a_duplicate_journaled_by_a_lost_accept_is_still_answered(
    fake: FakeTelegram,
) -> None:
    rig = Rig(fake, OPEN)
    msg = dm("journaled, reply lost")
    await rig.store.accept(msg)  # the store journaled it, then restarted before answering
    await rig.service.sink(msg)  # the retried accept says "duplicate"
    assert rig.service.queue_depth() == 1
    await rig.service.sink(msg)  # a real duplicate now: in flight
    assert rig.service.queue_depth() == 1


async def test_send_failures_keep_the_message_pending_until_it_goes_out(
    fake: FakeTelegram,
) -> None:
    rig = Rig(fake, OPEN)
    fake.fail("sendMessage", 12)  # more than one send's retry deadline
    fake.inject_message(chat_id=42, user_id=42, text="are you there")
    async with running(rig):
        await until(lambda: rig.service.counts["send_retries"] >= 1)
        assert [m.text for m in await rig.store.pending()] == ["are you there"]
        await fake.wait_sent(1)
        await until(lambda: rig.store.done)
    assert rig.replies() == {"[offline] you said: are you there": 1}
    assert fake.calls["sendMessage"] == 13
    assert rig.agent.turns.total() == 1  # the turn ran once; only the send was retried


async def test_refused_reply_is_marked_done_not_retried_forever(fake: FakeTelegram) -> None:
    rig = Rig(fake, OPEN)
    fake.fail("sendMessage", 1, status=400)
    fake.inject_message(chat_id=42, user_id=42, text="refuse me")
    async with running(rig):
        await until(lambda: rig.store.done)
    assert fake.sent == [] and fake.calls["sendMessage"] == 1
    assert rig.service.counts["send_rejected"] == 1


async def test_agent_unavailable_is_retried_and_a_broken_agent_gets_an_apology(
    fake: FakeTelegram,
) -> None:
    rig = Rig(fake, OPEN)
    rig.agent.fail = [Unavailable("agents/agent-0 is not available right now")] * 3
    await rig.store.accept(dm("first", mid=1))
    async with running(rig):
        await fake.wait_sent(1)
        rig.agent.fail = [RuntimeError("secret-token-in-message")] * OPTS.answer_attempts
        await rig.service.sink(dm("second", mid=2))
        await fake.wait_sent(2)
        await until(lambda: len(rig.store.done) == 2)
    assert [s["plain"] for s in fake.sent] == ["[offline] you said: first", SORRY]
    assert "secret" not in fake.sent[1]["plain"]


async def test_store_down_fails_the_sink_so_the_offset_is_not_committed(
    fake: FakeTelegram,
) -> None:
    rig = Rig(fake, OPEN)
    rig.store.down = 1
    fake.inject_message(chat_id=42, user_id=42, text="keep me")
    with pytest.raises(ExceptionGroup) as info:
        async with running(rig):
            await asyncio.sleep(5)
    assert info.group_contains(Unavailable)
    # a new incarnation gets the same update again and answers it
    rig2 = Rig(fake, OPEN)
    async with running(rig2):
        await fake.wait_sent(1)
    assert rig2.replies() == {"[offline] you said: keep me": 1}


async def test_stuck_when_nothing_received_for_stuck_after(fake: FakeTelegram) -> None:
    clock = FakeClock()
    rig = Rig(fake, OPEN, clock=clock)
    assert rig.service.problem() is None
    clock.advance(OPTS.stuck_after_s + 1)
    assert rig.service.problem() == f"no receive for {OPTS.stuck_after_s + 1:.0f}s"
    assert rig.service.status()["last_activity_s"] == OPTS.stuck_after_s + 1


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


def hold_marks(rig: Rig) -> asyncio.Event:
    """The rig's done marks wait until the returned event is set (a slow journal)."""
    gate = asyncio.Event()
    marked = rig.store.mark_done_many

    async def held_marks(ids: list[str]) -> list[bool]:
        await gate.wait()
        return await marked(ids)

    rig.service.ports = dataclasses.replace(rig.service.ports, mark_done_many=held_marks)
    return gate


async def test_a_worker_does_not_wait_for_the_done_mark_of_its_last_reply(
    fake: FakeTelegram,
) -> None:
    """Done marks are written behind the workers (the marker), so the next message of the same
    chat is answered while the journal still writes the last one's mark."""
    rig = Rig(fake, OPEN)
    journal_slow = hold_marks(rig)
    fake.inject_message(chat_id=42, user_id=42, text="one")
    async with running(rig):
        await fake.wait_sent(1)
        fake.inject_message(chat_id=42, user_id=42, text="two")
        await fake.wait_sent(2)  # answered although "one" is not marked done yet
        assert not rig.store.done
        journal_slow.set()
        await until(lambda: len(rig.store.done) == 2)
    assert rig.replies() == {"[offline] you said: one": 1, "[offline] you said: two": 1}


async def test_done_marks_still_queued_at_a_stop_are_written(fake: FakeTelegram) -> None:
    rig = Rig(fake, OPEN)
    gate = hold_marks(rig)
    for n in range(3):
        fake.inject_message(chat_id=40 + n, user_id=40 + n, text=f"m{n}")
    task = asyncio.ensure_future(rig.service.run())
    try:
        await fake.wait_sent(3)
        asyncio.get_running_loop().call_later(0.2, gate.set)  # the journal answers late
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    finally:
        await rig.adapter.close()
    assert len(rig.store.done) == 3 and rig.store.pending_ids() == []


async def test_a_quick_answer_shows_no_typing_a_slow_one_shows_it_before_the_reply(
    fake: FakeTelegram,
) -> None:
    rig = Rig(fake, OPEN)
    rig.service.opt = msgspec.structs.replace(OPTS, typing_after_s=0.1)
    fake.inject_message(chat_id=42, user_id=42, text="quick")
    async with running(rig):
        await fake.wait_sent(1)
        assert fake.actions == []  # answered before the indicator was due
        rig.agent.delay = 0.4
        fake.inject_message(chat_id=42, user_id=42, text="slow")
        await fake.wait_sent(2)
    assert [a["action"] for a in fake.actions] == ["typing"]
    assert rig.replies() == {"[offline] you said: quick": 1, "[offline] you said: slow": 1}


async def test_a_hanging_typing_indicator_does_not_hold_the_reply(fake: FakeTelegram) -> None:
    rig = Rig(fake, OPEN)
    rig.service.opt = msgspec.structs.replace(OPTS, typing_after_s=0.0, typing_max_s=0.2)

    async def hangs(_chat_id: str) -> None:
        await asyncio.sleep(30)

    rig.adapter.typing = hangs  # type: ignore[method-assign]
    fake.inject_message(chat_id=42, user_id=42, text="hello")
    async with running(rig):
        await asyncio.wait_for(fake.wait_sent(1), 3)
    assert rig.replies() == {"[offline] you said: hello": 1}


async def test_the_link_says_connected_retrying_with_the_reason_then_connected_again(
    fake: FakeTelegram,
) -> None:
    """Telegram answers 502 for a while: the account's link says it is retrying (attempt,
    when next, why), is not called stuck meanwhile, and is connected again once it answers;
    messages in and out are timed."""
    rig = Rig(fake, OPEN)
    async with running(rig):
        await until(lambda: rig.service.link.state == "connected")
        fake.fail("getUpdates", 4, 502)
        await until(lambda: rig.service.link.state == "retrying")
        link = rig.service.link.snapshot()
        assert link["attempt"] >= 1 and link["next_in_s"] >= 0
        assert link["reason"] == "Telegram is unavailable right now"
        rig.adapter.last_activity -= OPTS.stuck_after_s + 1  # long silent, but retrying
        assert rig.service.problem() is None
        await until(lambda: rig.service.link.state == "connected", 30)
        assert rig.service.link.last_in is None
        fake.inject_message(chat_id=42, user_id=42, text="back?")
        await until(lambda: rig.replies()["[offline] you said: back?"] == 1)
        await until(lambda: rig.service.link.last_out is not None)
        assert rig.service.status()["link"]["last_in"] is not None
