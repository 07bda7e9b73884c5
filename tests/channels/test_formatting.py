"""Chunking and markdown conversion (pure)."""

from __future__ import annotations

import random
import re

import pytest

from moltbot.channels.formatting import (
    chunk,
    render,
    to_signal_text,
    to_slack_mrkdwn,
    to_telegram_html,
)
from tests.fakes.telegram_api import parse_html


def fences_balanced(piece: str) -> bool:
    return len(re.findall(r"^```", piece, re.MULTILINE)) % 2 == 0


def test_short_and_empty() -> None:
    assert chunk("hello", 100) == ["hello"]
    assert chunk("", 100) == [] and chunk("\n\n  \n", 100) == []


def test_prefers_paragraphs_then_lines_then_words() -> None:
    para = "alpha beta gamma " * 5
    text = f"{para}\n\n{para}\n\n{para}"
    assert chunk(text, len(para) * 2 + 10) == [f"{para}\n\n{para}".strip(), para.strip()]
    lines = "\n".join(f"line number {i}" for i in range(40))
    for piece in chunk(lines, 100):
        assert piece.startswith("line number") and not piece.endswith(" ")
    words = " ".join(f"word{i}" for i in range(200))
    pieces = chunk(words, 64)
    assert " ".join(pieces) == words  # no word was cut
    assert all(len(p) <= 64 for p in pieces)


def test_a_huge_word_is_cut_hard() -> None:
    pieces = chunk("x" * 250, 100)
    assert [len(p) for p in pieces] == [100, 100, 50]


def test_code_block_moves_whole_when_it_fits() -> None:
    prose = "Some words here. " * 15
    code = "```python\n" + "\n".join(f"print({i})" for i in range(20)) + "\n```"
    pieces = chunk(prose + "\n" + code + "\nafter", 300)
    assert any(code in p for p in pieces)
    assert all(fences_balanced(p) for p in pieces)


def test_long_code_block_is_closed_and_reopened() -> None:
    code = "```python\n" + "\n".join(f"value_{i} = compute({i})" for i in range(200)) + "\n```"
    pieces = chunk("Intro\n\n" + code, 500)
    assert len(pieces) > 5
    for p in pieces:
        assert len(p) <= 500 and fences_balanced(p)
    for p in pieces[1:]:
        assert p.startswith("```python\n")
    body = "".join(re.sub(r"```python\n|\n?```", "", p) + "\n" for p in pieces)
    assert all(f"value_{i} = compute({i})" in body for i in range(200))


def test_never_exceeds_limit_on_random_text() -> None:
    rng = random.Random(7)
    atoms = ["word", "longerword", "\n", "\n\n", "```\n", "```py\n", "**b**", " ", "x" * 70]
    for _ in range(200):
        text = "".join(rng.choice(atoms) + " " for _ in range(rng.randint(1, 400)))
        limit = rng.randint(40, 400)
        pieces = chunk(text, limit)
        assert all(0 < len(p) <= limit for p in pieces)
        assert " ".join(pieces).count("longerword") == text.count("longerword")


def test_telegram_html() -> None:
    md = "# Title\n**bold** & <script> `a < b **no**`\n```py\nif a < b:\n    pass\n```\n~~gone~~"
    html = to_telegram_html(md)
    assert "<b>Title</b>" in html and "<b>bold</b>" in html
    assert "&amp; &lt;script&gt;" in html
    assert "<code>a &lt; b **no**</code>" in html
    assert '<pre><code class="language-py">if a &lt; b:\n    pass</code></pre>' in html
    assert "<s>gone</s>" in html
    plain, err = parse_html(html)
    assert err == "" and "<script>" in plain


def test_slack_mrkdwn() -> None:
    out = to_slack_mrkdwn("**hi** <!channel> & <@U123>\n```\nx<y\n```\n`a&b`")
    assert out.startswith("*hi* &lt;!channel&gt; &amp; &lt;@U123&gt;")
    assert "```\nx&lt;y\n```" in out and "`a&amp;b`" in out


def test_signal_text() -> None:
    out = to_signal_text("## Head\n**bold** and `code`\n```sh\nls -la\n```")
    assert out == "Head\nbold and code\nls -la"


@pytest.mark.parametrize("fmt,limit", [("telegram", 4096), ("slack", 3900), ("signal", 2000)])
def test_render_respects_limit_after_escaping(fmt: str, limit: int) -> None:
    text = "<&>" * 5000 + "\n\n" + "```\n" + "a<b\n" * 3000 + "```"
    pieces = render(text, fmt, limit)  # type: ignore[arg-type]
    assert pieces and all(len(p) <= limit for p in pieces)
    if fmt == "telegram":
        assert all(parse_html(p)[1] == "" for p in pieces)
