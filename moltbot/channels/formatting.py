"""Chunking and markdown conversion for the platforms' message formats.

The agent writes (a small subset of) markdown. Each channel converts it once, here:
Telegram HTML, Slack mrkdwn, Signal plain text, Discord its own markdown. ``render`` chunks
first and converts each chunk, so fenced code blocks split across messages are closed and
re-opened and every converted chunk stays within the platform limit (escaping can only make a
chunk longer, so it is re-split).
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from typing import Literal

TELEGRAM_LIMIT = 4096
SLACK_LIMIT = 3900  # Slack truncates at 4000; keep a margin
SIGNAL_LIMIT = 2000  # chosen: long Signal messages become attachments
DISCORD_LIMIT = 2000  # Discord refuses longer message content

Format = Literal["telegram", "slack", "signal", "discord"]

_FENCE = re.compile(r"^```[^\n`]*$", re.MULTILINE)
_INLINE_CODE = re.compile(r"`([^`\n]+)`")
_BOLD = re.compile(r"\*\*(?=\S)(.+?)(?<=\S)\*\*", re.DOTALL)
_STRIKE = re.compile(r"~~(?=\S)(.+?)(?<=\S)~~")
_HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t]*#*[ \t]*$", re.MULTILINE)
_DEEP_HEADING = re.compile(r"^#{4,6}[ \t]+(.+?)[ \t]*#*[ \t]*$", re.MULTILINE)
_DISCORD_MARKUP = re.compile(r"([\\*_~`|>#\[\]()<:-])")
_CLOSE = "\n```"


# --- chunking --------------------------------------------------------------------------------
def _fence_spans(text: str) -> list[tuple[int, int, str]]:
    """(start, end, opening line) of each fenced block; an unclosed fence runs to the end."""
    spans: list[tuple[int, int, str]] = []
    opening: re.Match[str] | None = None
    for m in _FENCE.finditer(text):
        if opening is None:
            opening = m
        else:
            spans.append((opening.start(), m.end(), opening.group(0)))
            opening = None
    if opening is not None:
        spans.append((opening.start(), len(text), opening.group(0)))
    return spans


def _open_fence_at(spans: list[tuple[int, int, str]], pos: int) -> str | None:
    """The opening line of the fenced block that ``pos`` falls strictly inside, if any."""
    for start, end, opening in spans:
        if start < pos < end:
            return opening
    return None


def _best_cut(text: str, limit: int, spans: list[tuple[int, int, str]]) -> int:
    floor = max(1, int(limit * 0.3))
    # a code block that does not fit here but fits alone goes whole into the next chunk
    for start, end, _ in spans:
        if 0 < start <= limit < end and end - start <= limit:
            return start
    window = text[:limit]
    candidates: list[tuple[str, bool]] = [("\n\n", True), ("\n", True), ("\n", False), (" ", False)]
    for sep, outside_only in candidates:
        pos = window.rfind(sep)
        while pos >= floor:
            if not outside_only or _open_fence_at(spans, pos) is None:
                return pos + len(sep)
            pos = window.rfind(sep, 0, pos)
    for sep in ("\n", " "):
        pos = window.rfind(sep)
        if pos > 0:
            return pos + len(sep)
    return limit


def chunk(text: str, limit: int) -> list[str]:
    """Split ``text`` into pieces of at most ``limit`` characters.

    Cuts prefer paragraph, then line, then word boundaries and avoid fenced code blocks; a code
    block longer than ``limit`` is split by lines and each piece is closed and re-opened.
    Whitespace-only input gives no chunks.
    """
    if limit < 16:
        raise ValueError("chunk limit too small")
    out: list[str] = []
    rest = text.strip("\n")
    while len(rest) > limit:
        spans = _fence_spans(rest)
        cut = _best_cut(rest, limit, spans)
        opening = _open_fence_at(spans, cut)
        if opening is not None and cut + len(_CLOSE) > limit:
            cut = _best_cut(rest, limit - len(_CLOSE), spans)
            opening = _open_fence_at(spans, cut)
        piece, rest = rest[:cut].rstrip(), rest[cut:].lstrip("\n")
        if opening is not None and len(opening) + 1 < cut // 2:
            piece += _CLOSE
            rest = f"{opening}\n{rest}"
        if piece.strip():
            out.append(piece)
    if rest.strip():
        out.append(rest.rstrip())
    return out


# --- conversion ------------------------------------------------------------------------------
def _segments(text: str) -> list[tuple[bool, str, str]]:
    """(is_code, language, body) pieces: fenced blocks and the prose between them."""
    out: list[tuple[bool, str, str]] = []
    pos = 0
    for start, end, opening in _fence_spans(text):
        if start > pos:
            out.append((False, "", text[pos:start]))
        body = text[start + len(opening) : end]
        body = body.removeprefix("\n")
        if body.endswith("```"):
            body = body[:-3]
        out.append((True, opening[3:].strip(), body.removesuffix("\n")))
        pos = end
    if pos < len(text):
        out.append((False, "", text[pos:]))
    return out


def _inline(prose: str, code: Callable[[str], str], styled: Callable[[str], str]) -> str:
    """Apply ``code`` to inline code spans and ``styled`` to the text between them."""
    parts: list[str] = []
    pos = 0
    for m in _INLINE_CODE.finditer(prose):
        parts.append(styled(prose[pos : m.start()]))
        parts.append(code(m.group(1)))
        pos = m.end()
    parts.append(styled(prose[pos:]))
    return "".join(parts)


def _esc(text: str) -> str:
    return html.escape(text, quote=False)


def to_telegram_html(text: str) -> str:
    """Markdown subset -> Telegram HTML (parse_mode=HTML). Everything else is escaped."""

    def styled(s: str) -> str:
        s = _HEADING.sub(r"**\1**", s)
        s = _esc(s)
        s = _BOLD.sub(r"<b>\1</b>", s)
        return _STRIKE.sub(r"<s>\1</s>", s)

    out: list[str] = []
    for is_code, lang, body in _segments(text):
        if is_code:
            cls = f' class="language-{_esc(lang)}"' if re.fullmatch(r"[\w+-]+", lang) else ""
            out.append(f"<pre><code{cls}>{_esc(body)}</code></pre>")
        else:
            out.append(_inline(body, lambda c: f"<code>{_esc(c)}</code>", styled))
    return "".join(out)


def to_slack_mrkdwn(text: str) -> str:
    """Markdown subset -> Slack mrkdwn. ``&<>`` are escaped everywhere (no <!channel> injection)."""

    def styled(s: str) -> str:
        s = _HEADING.sub(r"**\1**", s)
        s = _esc(s)
        s = _BOLD.sub(r"*\1*", s)
        return _STRIKE.sub(r"~\1~", s)

    out: list[str] = []
    for is_code, _lang, body in _segments(text):
        if is_code:
            out.append(f"```\n{_esc(body)}\n```")
        else:
            out.append(_inline(body, lambda c: f"`{_esc(c)}`", styled))
    return "".join(out)


def to_signal_text(text: str) -> str:
    """Markdown subset -> plain text: markers removed, code kept verbatim."""

    def styled(s: str) -> str:
        s = _HEADING.sub(r"\1", s)
        s = _BOLD.sub(r"\1", s)
        return _STRIKE.sub(r"\1", s)

    out: list[str] = []
    for is_code, _lang, body in _segments(text):
        out.append(body if is_code else _inline(body, lambda c: c, styled))
    return "".join(out)


def to_discord_markdown(text: str) -> str:
    """Markdown subset -> Discord markdown: the same, but headings deeper than ``###`` (which
    Discord shows as text) become bold. Pings are switched off when sending, not here."""

    def styled(s: str) -> str:
        return _DEEP_HEADING.sub(r"**\1**", s)

    out: list[str] = []
    for is_code, lang, body in _segments(text):
        if is_code:
            out.append(f"```{lang}\n{body}\n```")
        else:
            out.append(_inline(body, lambda c: f"`{c}`", styled))
    return "".join(out)


def discord_escape(text: str) -> str:
    """Every markdown character backslash-escaped: Discord shows the text exactly as it is."""
    return _DISCORD_MARKUP.sub(r"\\\1", text)


CONVERTERS: dict[Format, Callable[[str], str]] = {
    "telegram": to_telegram_html,
    "slack": to_slack_mrkdwn,
    "signal": to_signal_text,
    "discord": to_discord_markdown,
}


PLAIN: dict[Format, Callable[[str], str]] = {
    "telegram": _esc,  # parse_mode HTML: escaped, every character shows as it is
    "slack": _esc,  # sent with mrkdwn off; &<> are still escaped (Slack's own rule)
    "signal": lambda s: s,
    "discord": discord_escape,
}


def render_plain(text: str, fmt: Format, limit: int) -> list[str]:
    """``text`` shown exactly as it is (no markdown: a system message quoting a command),
    escaped for the platform and cut into pieces of at most ``limit``."""
    out: list[str] = []
    pending = [text[i : i + limit] for i in range(0, len(text), limit)] or [""]
    while pending:
        piece = pending.pop(0)
        converted = PLAIN[fmt](piece)
        if len(converted) <= limit:
            if converted.strip():
                out.append(converted)
            continue
        half = max(1, len(piece) // 2)
        pending[:0] = [piece[:half], piece[half:]]
    return out


def render(text: str, fmt: Format, limit: int, *, plain: bool = False) -> list[str]:
    """Chunk markdown ``text`` and convert each chunk; every result is at most ``limit`` long.
    ``plain``: no markdown at all (:func:`render_plain`)."""
    if plain:
        return render_plain(text, fmt, limit)
    convert = CONVERTERS[fmt]
    out: list[str] = []
    pending = chunk(text, limit)
    while pending:
        piece = pending.pop(0)
        converted = convert(piece)
        if len(converted) <= limit:
            if converted.strip():
                out.append(converted)
            continue
        smaller = max(16, len(piece) * limit // len(converted) - 16)
        if smaller >= len(piece):
            smaller = len(piece) - 1
        pending[:0] = chunk(piece, smaller)
    return out
