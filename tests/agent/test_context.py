"""Context building: token window by whole turns, extractive compaction, transcript repair."""

from __future__ import annotations

import itertools
from typing import Any

from moltbot.agent.context import (
    INTERRUPTED,
    TRUNCATED,
    build_messages,
    build_request,
    normalize,
    tool_result_block,
    turns,
)
from moltbot.messages import ToolResult


def user(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text, "ts": 1.0}


def assistant(text: str) -> dict[str, Any]:
    return {"role": "assistant", "content": [{"type": "text", "text": text}]}


def tool_call(tid: str, name: str = "bash") -> dict[str, Any]:
    return {
        "role": "assistant",
        "content": [
            {"type": "text", "text": "checking"},
            {"type": "tool_use", "id": tid, "name": name, "input": {"c": "x" * 40}},
        ],
    }


def tool_result(tid: str, text: str) -> dict[str, Any]:
    return {"role": "user", "content": [tool_result_block(tid, ToolResult(text=text))]}


def pairs_intact(messages: list[dict[str, Any]]) -> bool:
    for i, msg in enumerate(messages):
        uses = [b["id"] for b in msg["content"] if b["type"] == "tool_use"]
        if uses:
            nxt = messages[i + 1]["content"]
            got = [b["tool_use_id"] for b in nxt if b["type"] == "tool_result"]
            if sorted(got) != sorted(uses):
                return False
        results = [b for b in msg["content"] if b["type"] == "tool_result"]
        if results:
            prev = messages[i - 1]["content"] if i else []
            ids = {b["id"] for b in prev if b["type"] == "tool_use"}
            if not all(b["tool_use_id"] in ids for b in results):
                return False
    return True


def long_history() -> list[dict[str, Any]]:
    history: list[dict[str, Any]] = []
    for n in range(12):
        history.append(user(f"question {n}\nsecond line {n}"))
        history.append(tool_call(f"t{n}"))
        history.append(tool_result(f"t{n}", "r" * 400))
        history.append(assistant(f"answer {n} " + "a" * 200))
    history.append(user("the newest question"))
    return history


def test_everything_fits_means_nothing_dropped_and_metadata_stripped() -> None:
    msgs = build_messages([user("hi"), assistant("hello"), user("again")], 10_000)
    assert msgs == [
        {"role": "user", "content": [{"type": "text", "text": "hi"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "hello"}]},
        {"role": "user", "content": [{"type": "text", "text": "again"}]},
    ]


def test_window_keeps_newest_whole_turns_and_never_splits_tool_pairs() -> None:
    history = long_history()
    for budget in range(0, 3000, 37):
        msgs = build_messages(history, budget)
        assert msgs[0]["role"] == "user" and msgs[-1]["role"] == "user"
        assert msgs[-1]["content"][-1]["text"] == "the newest question"
        assert pairs_intact(msgs), budget
        roles = [m["role"] for m in msgs]
        assert all(a != b for a, b in itertools.pairwise(roles))


def test_dropped_turns_become_an_extractive_summary() -> None:
    msgs = build_messages(long_history(), 700)
    summary = msgs[0]["content"][0]["text"]
    assert summary.startswith("[Summary of")
    assert "- question 0" in summary and "second line" not in summary
    kept_first = msgs[0]["content"][1]["text"]
    assert kept_first.startswith("question ")
    assert f"- {kept_first.splitlines()[0]}" not in summary


def test_summary_is_capped() -> None:
    history = []
    for n in range(100):
        history += [user(f"q{n} " + "z" * 500), assistant("ok")]
    history.append(user("last"))
    summary = build_messages(history, 10)[0]["content"][0]["text"]
    assert summary.count("\n- q") == 20 and "80 older lines omitted" in summary
    assert len(summary) < 3000


def test_newest_turn_is_kept_even_over_budget() -> None:
    msgs = build_messages([user("old"), assistant("x"), user("y" * 10_000)], 5)
    assert msgs[-1]["content"][-1]["text"] == "y" * 10_000


def test_a_crashed_tool_call_gets_an_error_result() -> None:
    msgs = normalize([user("do it"), tool_call("t1"), user("hello?")])
    assert msgs[2]["content"][0] == {
        "type": "tool_result",
        "tool_use_id": "t1",
        "content": INTERRUPTED,
        "is_error": True,
    }
    assert msgs[2]["content"][1] == {"type": "text", "text": "hello?"}
    assert pairs_intact(msgs)
    trailing = normalize([user("do it"), tool_call("t2")])
    assert trailing[-1]["content"][0]["tool_use_id"] == "t2"


def test_orphan_results_and_leading_assistant_are_dropped_and_users_merged() -> None:
    msgs = normalize([assistant("stray"), user("a"), tool_result("ghost", "x"), user("b")])
    assert msgs == [
        {"role": "user", "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}
    ]


def test_turns_start_at_user_text_not_at_tool_results() -> None:
    history = normalize(
        [user("a"), tool_call("t1"), tool_result("t1", "r"), assistant("done"), user("b")]
    )
    assert [len(t) for t in turns(history)] == [4, 1]


def test_tool_result_blocks_and_request_fields() -> None:
    err = tool_result_block("t9", ToolResult(text="boom", is_error=True))
    assert err == {"type": "tool_result", "tool_use_id": "t9", "content": "boom", "is_error": True}
    req = build_request(
        [user("hi")],
        system_prompt="sys",
        tools=[{"name": "bash"}],
        max_tokens=99,
        history_tokens=100,
    )
    assert req.system == "sys" and req.tools == [{"name": "bash"}] and req.max_tokens == 99


def test_an_oversized_newest_turn_cuts_its_earlier_tool_results() -> None:
    history = [
        user("go"),
        tool_call("t1"),
        tool_result("t1", "a" * 5000),
        tool_call("t2"),
        tool_result("t2", "b" * 5000),
    ]
    msgs = build_messages(history, 1000)
    first, last = msgs[2]["content"][0]["content"], msgs[4]["content"][0]["content"]
    assert first.startswith("a" * 1000) and first.endswith(TRUNCATED) and len(first) < 1100
    assert last == "b" * 5000
    assert pairs_intact(msgs)
