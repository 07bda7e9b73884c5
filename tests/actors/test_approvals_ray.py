"""Who may approve, and the waiting turn, on a real local Ray tree (store, sandbox, agent,
Telegram and Slack channel actors; offline provider, whose ``!tool`` syntax makes it call a
tool) against the fake Telegram and Slack servers.

The attack: a member of an allowed group (allowed to talk, but not an owner) answers the
approval request of a command with ``/approve``. Nothing runs. The owner approves from another
channel (a Slack DM) and the waiting turn goes on by itself: the command runs once and the
group gets the result. The request itself is a system message from the channel, quoting the
whole command exactly (characters that mean something to Telegram's HTML, and newlines,
included). And per-sender folders through chat messages: a member cannot read the owner's file
by name, by a relative path or by its absolute path."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from moltbot.config.schema import Config
from moltbot.security.audit import tail
from moltbot.security.vault import Vault
from moltbot.tools.scope import relative_folder
from tests.actors.helpers import wait_for
from tests.actors.rig import fast_config, running_tree, serving
from tests.fakes.slack_api import APP_TOKEN, BOT_TOKEN, FakeSlack
from tests.fakes.telegram_api import DEFAULT_TOKEN, FakeTelegram

pytestmark = [pytest.mark.usefixtures("ray_cluster"), pytest.mark.timeout(300)]

GROUP = -100
MEMBER = 7  # allowed to talk in the group, not an owner
OWNER_TG = 42
OWNER_SLACK = "U42"
BOT = "@moltbot_test_bot"


class Lab(msgspec.Struct, kw_only=True):
    loop: Any
    tg: Any
    slack: Any
    home: Path
    workspace: Path

    def tg_texts(self, chat: int) -> list[str]:
        return [str(s["plain"]) for s in list(self.tg.sent) if str(s["chat_id"]) == str(chat)]

    def slack_texts(self, channel: str) -> list[str]:
        return [str(s["text"]) for s in list(self.slack.sent) if s["channel"] == channel]

    def group(self, text: str, user: int = MEMBER) -> None:
        self.loop.call(
            self.tg.inject_message,
            chat_id=GROUP,
            user_id=user,
            text=f"{BOT} {text}",
            chat_type="group",
        )

    def audit(self) -> list[dict[str, Any]]:
        return [
            r["fields"]
            for r in tail(self.home / "audit" / "audit.jsonl", 1000)
            if r["kind"] == "approval"
        ]


def config(tg: FakeTelegram, slack: FakeSlack, workspace: Path) -> Config:
    return fast_config(
        {
            "tools": {
                "workers": 1,
                "workspace": str(workspace),
                "bash": {"policy": "ask", "approval_ttl_s": 60},
            },
            "channels": {
                "telegram": [
                    {
                        "account": "main",
                        "token": "env:MB_TEST_TG",
                        "api_base": tg.api_base,
                        "dm_policy": "allowlist",
                        "allow_from": [str(MEMBER)],
                        "owners": [str(OWNER_TG)],
                        "groups": {"allow": [str(GROUP)]},
                        "poll_timeout_s": 1,
                    },
                ],
                "slack": [
                    {
                        "account": "work",
                        "bot_token": "secret:slack_bot_token",
                        "app_token": "env:MB_TEST_SLACK_APP",
                        "api_base": slack.api_base,
                        "dm_policy": "allowlist",
                        "owners": [OWNER_SLACK],
                    },
                ],
            },
        }
    )


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    tg, slack = FakeTelegram(), FakeSlack()
    home = tmp_path_factory.mktemp("approvals-home")
    workspace = home / "workspace"
    workspace.mkdir()
    Vault.create(home).set("slack_bot_token", BOT_TOKEN)
    env = {"MB_TEST_TG": DEFAULT_TOKEN, "MB_TEST_SLACK_APP": APP_TOKEN}
    ids = ("store", "tools", "agents", "channels")
    with serving(tg, slack) as loop:
        with running_tree(config(tg, slack, workspace), ids, home, env):
            yield Lab(loop=loop, tg=tg, slack=slack, home=home, workspace=workspace)


def approval_request(lab: Lab, command: str, before: int) -> str:
    """The id in the system message the group got for ``command`` (after ``before`` sends)."""
    found: list[str] = []

    def asked() -> bool:
        for text in lab.tg_texts(GROUP)[before:]:
            if text.startswith("[moltbot] Approval needed") and f"\n\n{command}\n\n" in text:
                found.append(re.findall(r"Approval id: ([0-9a-f]{8})", text)[0])
                return True
        return False

    wait_for(asked, 30, "the approval request in the group")
    return found[0]


def test_only_an_owner_approves_and_the_turn_goes_on(lab: Lab) -> None:
    made = lab.workspace / relative_folder(f"telegram:main:{MEMBER}") / "made-by-7"
    lab.group('!tool bash {"command": "touch made-by-7"}')
    aid = approval_request(lab, "touch made-by-7", 0)

    # the attack: a member of the chat that asked answers it; and from the same chat, so this
    # also shows /approve is not stuck behind the turn that waits
    seen = len(lab.tg_texts(GROUP))
    lab.group(f"/approve {aid}")
    wait_for(
        lambda: any("Only an owner" in t for t in lab.tg_texts(GROUP)[seen:]), 30, "the refusal"
    )
    assert not made.exists()
    assert {"action": "refused", "id": aid, "by": f"telegram:main:{MEMBER}"}.items() <= (
        lab.audit()[-1].items()
    )

    # the owner approves from Slack: the group's turn continues by itself
    lab.loop.call(lab.slack.inject_message, channel="D42", user=OWNER_SLACK, text=f"/approve {aid}")
    wait_for(
        lambda: any(t.startswith(f"Approved {aid}") for t in lab.slack_texts("D42")),
        30,
        "the owner's confirmation",
    )
    wait_for(
        lambda: any(
            "tool bash returned" in t and "[exit code 0]" in t for t in lab.tg_texts(GROUP)
        ),
        30,
        "the group's answer",
    )
    assert made.exists()
    resolved = [r for r in lab.audit() if r.get("action") == "resolved"]
    assert resolved[-1]["by"] == f"slack:work:{OWNER_SLACK}" and resolved[-1]["id"] == aid


def test_the_request_quotes_the_exact_command_and_deny_tells_the_model(lab: Lab) -> None:
    command = "echo '<b>*not bold*</b>' && echo `id` & x=$((1<2))"
    before = len(lab.tg_texts(GROUP))
    lab.group("!tool bash " + msgspec.json.encode({"command": command}).decode())
    aid = approval_request(lab, command, before)  # whole and literal, HTML and markdown too
    lab.loop.call(lab.tg.inject_message, chat_id=OWNER_TG, user_id=OWNER_TG, text=f"/deny {aid}")
    wait_for(
        lambda: any("the user denied this" in t for t in lab.tg_texts(GROUP)[before:]),
        30,
        "the model told of the denial",
    )
    assert any(t.startswith(f"Denied {aid}") for t in lab.tg_texts(OWNER_TG))


def test_a_multi_line_command_is_quoted_whole_and_runs_as_approved(lab: Lab) -> None:
    command = "echo first-line\necho second-line > two-lines.txt"
    before = len(lab.tg_texts(GROUP))
    lab.group("!tool bash " + msgspec.json.encode({"command": command}).decode())
    aid = approval_request(lab, command, before)  # both lines, in the one system message
    lab.loop.call(lab.tg.inject_message, chat_id=OWNER_TG, user_id=OWNER_TG, text=f"/approve {aid}")
    wait_for(
        lambda: any(
            "tool bash returned" in t and "first-line" in t for t in lab.tg_texts(GROUP)[before:]
        ),
        30,
        "the result",
    )
    made = lab.workspace / relative_folder(f"telegram:main:{MEMBER}") / "two-lines.txt"
    assert made.read_text() == "second-line\n"


def test_a_sender_cannot_read_another_senders_files_by_chat(lab: Lab) -> None:
    """The owner keeps a file in their folder; an allowed member asks for it by name, by a
    relative path out of their own folder and by its absolute path: refused each time."""

    def dm(user: int, call: str, args: dict[str, str]) -> None:
        text = f"!tool {call} " + msgspec.json.encode(args).decode()
        lab.loop.call(lab.tg.inject_message, chat_id=user, user_id=user, text=text)

    def answered(user: int, count: int) -> list[str]:
        wait_for(
            lambda: len([t for t in lab.tg_texts(user) if "returned" in t]) >= count,
            30,
            f"answer {count} to {user}",
        )
        return [t for t in lab.tg_texts(user) if "returned" in t]

    dm(OWNER_TG, "write_file", {"path": "diary.txt", "content": "owner-only-words"})
    answered(OWNER_TG, 1)
    owner_file = lab.workspace / relative_folder(f"telegram:main:{OWNER_TG}") / "diary.txt"
    assert owner_file.read_text() == "owner-only-words"
    dm(OWNER_TG, "read_file", {"path": "diary.txt"})  # the control: the owner reads it back
    read = '<untrusted-content source="read_file"'  # (the offline model quotes only the start)
    assert read in answered(OWNER_TG, 2)[-1]

    mine = lab.workspace / relative_folder(f"telegram:main:{MEMBER}")
    up = Path(*[".."] * len(mine.relative_to(lab.workspace).parts))
    tries = [
        ("diary.txt", "no such file"),  # their own folder has none
        (str(Path("..") / owner_file.parent.name / "diary.txt"), "is not allowed"),
        (str(up / owner_file.relative_to(lab.workspace)), "is not allowed"),
        (str(owner_file), "outside the workspace"),
    ]
    for n, (path, refusal) in enumerate(tries, start=1):
        dm(MEMBER, "read_file", {"path": path})
        answer = answered(MEMBER, n)[-1]
        assert "owner-only-words" not in answer and read not in answer, (path, answer)
        assert refusal in answer, (path, answer)
    assert not any("owner-only-words" in t for t in lab.tg_texts(MEMBER))
