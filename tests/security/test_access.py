"""Access control: pairing flow on a fake clock, allowlist exactness, open, groups, JSON."""

from __future__ import annotations

import re

import pytest

from moltbot.clock import FakeClock
from moltbot.errors import NotFound
from moltbot.messages import InboundMessage
from moltbot.security.access import CODE_ALPHABET, AccessPolicy, Pairing, RefusalAudit


def dm(sender: str, *, channel: str = "telegram", account: str = "main") -> InboundMessage:
    return InboundMessage(
        id=f"{channel}:{account}:{sender}:1",
        channel=channel,
        account=account,
        chat_id=sender,
        sender_id=sender,
        text="hi",
        sender_name="Someone",
    )


def group(chat: str, *, mentioned: bool, sender: str = "7") -> InboundMessage:
    return InboundMessage(
        id=f"telegram:main:{chat}:1",
        channel="telegram",
        account="main",
        chat_id=chat,
        sender_id=sender,
        text="hi",
        is_group=True,
        mentioned=mentioned,
    )


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def book(clock: FakeClock) -> Pairing:
    return Pairing(AccessPolicy(dm_policy="pairing"), clock=clock)


def test_unknown_sender_gets_a_code(book: Pairing) -> None:
    d = book.check(dm("100"))
    assert d.action == "pair" and d.code is not None
    assert re.fullmatch(f"[{CODE_ALPHABET}]{{8}}", d.code)
    assert not set(d.code) & set("0O1IL")
    assert d.reply_text is not None and d.code in d.reply_text
    [p] = book.list_pending()
    assert (p.code, p.sender_id, p.channel, p.account) == (d.code, "100", "telegram", "main")


def test_codes_are_random(clock: FakeClock) -> None:
    codes = {Pairing(AccessPolicy(), clock=clock).check(dm("1")).code for _ in range(50)}
    assert len(codes) == 50


def test_same_sender_same_code(book: Pairing) -> None:
    first = book.check(dm("100"))
    again = book.check(dm("100"))
    assert again.action == "pair" and again.code == first.code
    assert len(book.list_pending()) == 1


def test_at_most_three_pending_per_account(book: Pairing) -> None:
    codes = [book.check(dm(s)).code for s in ("1", "2", "3")]
    assert None not in codes and len(set(codes)) == 3
    fourth = book.check(dm("4"))
    assert fourth.action == "pair" and fourth.code is None
    assert fourth.reply_text is not None and "try again later" in fourth.reply_text
    assert len(book.list_pending()) == 3
    # other accounts have their own three
    assert book.check(dm("4", account="other")).code is not None
    # the waiting ones still get their codes
    assert book.check(dm("2")).code == codes[1]


def test_codes_expire_after_an_hour(book: Pairing, clock: FakeClock) -> None:
    code = book.check(dm("100")).code
    assert code is not None
    clock.advance(3599)
    assert [p.code for p in book.list_pending()] == [code]
    clock.advance(1)
    assert book.list_pending() == []
    with pytest.raises(NotFound):
        book.approve(code)
    fresh = book.check(dm("100")).code
    assert fresh is not None and fresh != code


def test_expiry_frees_slots(book: Pairing, clock: FakeClock) -> None:
    for s in ("1", "2", "3"):
        book.check(dm(s))
    clock.advance(3601)
    assert book.check(dm("4")).code is not None


def test_approve_then_allowed(book: Pairing) -> None:
    code = book.check(dm("100")).code
    assert code is not None
    assert book.approve(code.lower()) == "100"  # typed by hand: case-insensitive code
    d = book.check(dm("100"))
    assert d.action == "allow" and d.reply_text is None
    assert book.list_pending() == []
    assert book.check(dm("100", account="other")).action == "pair"  # per account
    with pytest.raises(NotFound):
        book.approve(code)
    assert book.revoke("telegram", "main", "100")
    assert book.check(dm("100")).action == "pair"


def test_deny(book: Pairing) -> None:
    code = book.check(dm("100")).code
    assert code is not None
    assert book.deny(code) == "100"
    assert book.list_pending() == []
    with pytest.raises(NotFound):
        book.deny(code)
    assert book.check(dm("100")).action == "pair"


def test_unknown_code(book: Pairing) -> None:
    with pytest.raises(NotFound):
        book.approve("ABCDEFGH")


def test_allowlist_is_exact(clock: FakeClock) -> None:
    book = Pairing(AccessPolicy(dm_policy="allowlist", allow_from=["12345", "U0ABC"]), clock=clock)
    assert book.check(dm("12345")).action == "allow"
    assert book.check(dm("U0ABC", channel="slack")).action == "allow"
    for trick in (
        "1234",
        "123456",
        " 12345",
        "12345 ",
        "u0abc",
        "U0AB",
        "U0ABCD",
        "",
        "*",
        "12345\n",
        "\uff11\uff12\uff13\uff14\uff15",
    ):
        d = book.check(dm(trick))
        assert d.action == "deny" and d.code is None and d.reply_text is None, trick
    assert book.list_pending() == []


def test_allowlist_entries_pass_in_pairing_mode(clock: FakeClock) -> None:
    book = Pairing(AccessPolicy(dm_policy="pairing", allow_from=["42"]), clock=clock)
    assert book.check(dm("42")).action == "allow"
    assert book.check(dm("43")).action == "pair"


def test_open(clock: FakeClock) -> None:
    book = Pairing(AccessPolicy(dm_policy="open"), clock=clock)
    assert book.check(dm("anyone")).action == "allow"


def test_groups_need_a_mention(clock: FakeClock) -> None:
    book = Pairing(AccessPolicy(dm_policy="open", group_allow=["-100"]), clock=clock)
    assert book.check(group("-100", mentioned=False)).action == "deny"
    assert book.check(group("-100", mentioned=False)).reason == "not_mentioned"
    assert book.check(group("-100", mentioned=True)).action == "allow"
    assert book.list_pending() == []  # groups never start pairing


def test_groups_without_mention_requirement(clock: FakeClock) -> None:
    policy = AccessPolicy(dm_policy="open", require_mention=False, group_allow=["-100"])
    book = Pairing(policy, clock=clock)
    assert book.check(group("-100", mentioned=False)).action == "allow"


@pytest.mark.parametrize("dm_policy", ["pairing", "allowlist", "open"])
def test_groups_are_closed_by_default(clock: FakeClock, dm_policy: str) -> None:
    """A stranger adds the bot to their own group and mentions it: nothing, whatever the DM
    policy (even ``open``), and no pairing code handed out in the group."""
    book = Pairing(AccessPolicy(dm_policy=dm_policy, allow_from=["7"]), clock=clock)  # type: ignore[arg-type]
    d = book.check(group("-666", mentioned=True, sender="7"))
    assert (d.action, d.reason, d.reply_text) == ("deny", "group_not_allowed", None)
    assert book.list_pending() == []


def test_group_allowlist(clock: FakeClock) -> None:
    book = Pairing(AccessPolicy(group_allow=["-100"], allow_from=["7"]), clock=clock)
    assert book.check(group("-100", mentioned=True)).action == "allow"
    d = book.check(group("-1001", mentioned=True))
    assert d.action == "deny" and d.reason == "group_not_allowed"
    assert book.check(group("-100", mentioned=False)).action == "deny"


def test_group_sender_must_pass_the_policy(clock: FakeClock) -> None:
    """An allowed group does not open the bot to its other members: under ``allowlist`` only
    allowlisted senders, under ``pairing`` only paired ones, and no code in the group."""
    strict = Pairing(
        AccessPolicy(dm_policy="allowlist", allow_from=["7"], group_allow=["-100"]), clock=clock
    )
    assert strict.check(group("-100", mentioned=True, sender="7")).action == "allow"
    d = strict.check(group("-100", mentioned=True, sender="666"))
    assert (d.action, d.reason, d.reply_text) == ("deny", "group_sender_not_allowed", None)

    paired = Pairing(AccessPolicy(dm_policy="pairing", group_allow=["-100"]), clock=clock)
    stranger = group("-100", mentioned=True, sender="42")
    assert paired.check(stranger).reason == "group_sender_not_allowed"
    assert paired.list_pending() == []
    code = paired.check(dm("42")).code  # pairing happens in a DM ...
    assert code is not None
    paired.approve(code)
    assert paired.check(stranger).action == "allow"  # ... and then the group answers too


def test_group_with_any_member(clock: FakeClock) -> None:
    policy = AccessPolicy(
        dm_policy="allowlist", group_allow=["-100", "-200"], group_any_member=["-100"]
    )
    book = Pairing(policy, clock=clock)
    assert book.check(group("-100", mentioned=True, sender="666")).action == "allow"
    assert book.check(group("-200", mentioned=True, sender="666")).action == "deny"
    assert book.check(group("-100", mentioned=False, sender="666")).action == "deny"


def test_refusals_are_audited_and_throttled(clock: FakeClock) -> None:
    records: list[tuple[str, dict[str, object]]] = []
    audit = RefusalAudit(
        lambda kind, fields: records.append((kind, fields)), clock=clock, window_s=60
    )
    book = Pairing(AccessPolicy(dm_policy="allowlist"), clock=clock)
    chatter = group("-1", mentioned=False)
    assert not audit.refused(chatter, book.check(chatter))  # not addressed to the bot
    stranger = group("-1", mentioned=True, sender="666")
    for _ in range(5):
        audit.refused(stranger, book.check(stranger))
    assert len(records) == 1
    kind, fields = records[0]
    assert kind == "access_refused"
    assert fields["reason"] == "group_not_allowed" and fields["sender_id"] == "666"
    clock.advance(61)
    assert audit.refused(stranger, book.check(stranger))
    assert records[-1][1]["suppressed"] == 4
    assert audit.refused(dm("9"), book.check(dm("9")))  # a DM stranger under allowlist
    assert records[-1][1]["reason"] == "not_allowlisted"


def test_json_round_trip(book: Pairing, clock: FakeClock) -> None:
    approved = book.check(dm("1")).code
    pending = book.check(dm("2")).code
    assert approved and pending
    book.approve(approved)
    data = book.to_json()
    again = Pairing.from_json(data, book.policy, clock=clock)
    assert again.to_json() == data
    assert again.check(dm("1")).action == "allow"
    assert again.check(dm("2")).code == pending
    clock.advance(3600)  # the expiry survives the restart (wall clock)
    restored = Pairing.from_json(data, book.policy, clock=clock)
    assert restored.list_pending() == [] and restored.check(dm("1")).action == "allow"
    assert restored.check(dm("2")).code != pending
