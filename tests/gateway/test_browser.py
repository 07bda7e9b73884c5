"""The web page in a real Chromium against a real gateway: login, streaming chat, XSS as text,
the supervision tree and the approvals list."""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator

import pytest
from PIL import Image
from playwright.async_api import Browser, ConsoleMessage, FilePayload, Page, async_playwright

from .conftest import TOKEN, MakeGateway
from .echo_backend import REJECTED_REASON, EchoBackend

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            await b.close()


async def _login(page: Page, url: str) -> None:
    await page.goto(url)
    await page.fill("#token", TOKEN)
    await page.click("#login-button")
    await page.wait_for_selector("#app:not([hidden])")


async def test_web_chat_login_stream_xss_tree_approvals(
    make_gateway: MakeGateway, browser: Browser
) -> None:
    backend = EchoBackend()
    backend.delta_delay = 0.03
    gw = await make_gateway(backend)
    page = await browser.new_page()
    console: list[str] = []

    def on_console(msg: ConsoleMessage) -> None:
        if msg.type in ("error", "warning"):
            console.append(msg.text)

    page.on("console", on_console)

    await page.goto(gw.url)
    await page.fill("#token", "wrong")
    await page.click("#login-button")
    await page.wait_for_function("document.getElementById('login-error').textContent !== ''")
    assert "authentication failed" in (await page.text_content("#login-error") or "")

    await _login(page, gw.url)
    assert await page.evaluate("sessionStorage.getItem('moltbot.session')") is not None
    assert TOKEN not in (await page.evaluate("JSON.stringify(sessionStorage)"))

    # Streaming: count the text changes of the reply bubble while it arrives.
    await page.evaluate(
        """() => {
        window.__changes = 0;
        new MutationObserver(() => { window.__changes += 1; })
          .observe(document.getElementById('messages'),
                   {subtree: true, childList: true, characterData: true});
    }"""
    )
    await page.fill("#chat-input", "hello from chromium")
    await page.click("#chat-send")
    done = page.locator(".msg.assistant.done").first
    await done.wait_for()
    assert await done.text_content() == "echo: hello from chromium"
    assert await page.evaluate("window.__changes") >= 5  # deltas were appended one by one
    assert await page.text_content(".msg.user") == "hello from chromium"

    # A reply carrying markup is shown as text, never parsed.
    await page.fill("#chat-input", "xss please")
    await page.click("#chat-send")
    await page.locator(".msg.assistant.done").nth(1).wait_for()
    text = await page.locator(".msg.assistant.done").nth(1).text_content()
    assert text is not None and "<img" in text and 'onerror="window.__xss=1"' in text
    assert await page.evaluate("window.__xss") is None
    assert await page.locator("#messages img").count() == 0

    # The supervision tree from `status`, and the pending approvals with their buttons.
    await page.wait_for_selector("#tree .node-name")
    names = await page.locator("#tree .node-name").all_text_contents()
    assert names == ["moltbot", "store", "gateway", "agents", "channels", "signal:phone"]
    # a channel account that cannot work shows as failed, with the platform's reason and fix
    account = page.locator("#tree li", has=page.locator(".node-name", has_text="signal:phone"))
    assert await account.locator(".node-state").last.text_content() == "failed"
    link = await account.locator(".node-link").text_content() or ""
    assert REJECTED_REASON in link and "fix: register or link it first" in link
    assert await account.locator(".node-traffic").text_content() == "; nothing in or out yet"
    item = page.locator("#approvals li[data-id='a1']")
    await item.wait_for()
    assert "rm -rf /tmp/x <b>" in (await item.text_content() or "")
    await item.locator("button.approve").click()
    await page.wait_for_selector("#approvals li", state="detached")
    assert backend.resolved[0][:2] == ("a1", True)
    assert await page.is_visible("#approvals-empty")

    # The scheduled jobs from `cron.list`: what fires when, the text shown as text.
    job = page.locator("#jobs li[data-id='briefing']")
    await job.wait_for()
    assert await job.locator(".job-spec").text_content() == " cron 0 9 * * 1-5 "
    assert (await job.locator(".job-next").text_content() or "").startswith("next 20")
    assert await job.locator(".job-text").text_content() == backend.jobs[0]["text"]
    assert await page.locator("#jobs img").count() == 0 and not await page.is_visible("#jobs-empty")

    # A reload resumes with the (rotated) web session, without the token.
    before = await page.evaluate("sessionStorage.getItem('moltbot.session')")
    await page.reload()
    await page.wait_for_selector("#app:not([hidden])")
    after = await page.evaluate("sessionStorage.getItem('moltbot.session')")
    assert after and after != before

    assert not [m for m in console if "Content Security Policy" in m], console


async def test_a_raised_approval_shows_inline_in_the_chat_and_approve_answers_it(
    make_gateway: MakeGateway, browser: Browser
) -> None:
    """Pushed as it is raised: a card in the chat with the exact command (as text: markup in
    it stays text) and Approve/Deny; Approve answers it through approvals.resolve."""
    backend = EchoBackend()
    gw = await make_gateway(backend)
    page = await browser.new_page()
    await _login(page, gw.url)
    command = "curl -X POST https://example.org <img src=x onerror=alert(1)> && rm -rf ~/t"
    approval = {"id": "ab12cd34", "session": "telegram:main:group:-1", "command": command}
    backend.approvals["ab12cd34"] = approval
    await backend.events_queue.put(("approval", {**approval, "state": "pending"}))
    card = await page.wait_for_selector('#messages .msg.approval[data-id="ab12cd34"]')
    assert card is not None
    assert await card.eval_on_selector("pre", "e => e.textContent") == command
    assert await page.query_selector("#messages img") is None  # text, never markup
    await card.eval_on_selector("button.approve", "b => b.click()")
    for _ in range(100):
        if backend.resolved:
            break
        await asyncio.sleep(0.05)
    assert backend.resolved[-1][:2] == ("ab12cd34", True)
    await backend.events_queue.put(("approval", {**approval, "state": "answered"}))
    await page.wait_for_selector('.msg.approval.answered[data-id="ab12cd34"]')
    assert await card.eval_on_selector_all("button", "bs => bs.every(b => b.disabled)")


async def test_web_page_uploads_a_picture_and_shows_it(
    make_gateway: MakeGateway, browser: Browser
) -> None:
    """A picture picked on the page goes over the gateway in chat.send and is shown in the
    chat; a file over the page's limit is refused on the page, with nothing sent."""
    backend = EchoBackend()
    gw = await make_gateway(backend)
    page = await browser.new_page()
    console: list[str] = []
    page.on("console", lambda m: console.append(m.text) if m.type == "error" else None)
    await _login(page, gw.url)
    picture = _png(40, 30)
    await page.set_input_files(
        "#chat-file", files=[FilePayload(name="red.png", mimeType="image/png", buffer=picture)]
    )
    assert "red.png" in (await page.text_content("#chat-files") or "")
    await page.fill("#chat-input", "what colour?")
    await page.click("#chat-send")
    done = page.locator(".msg.assistant.done").first
    await done.wait_for()
    assert await done.text_content() == f"echo: what colour? + red.png ({len(picture)} bytes)"
    assert [(u.name, u.data) for u in backend.uploads] == [("red.png", picture)]
    shown = page.locator(".msg.user img.upload")
    await shown.wait_for()
    await page.wait_for_function(
        "document.querySelector('.msg.user img.upload').naturalWidth === 40"
    )
    assert await shown.is_visible()

    big = b"%PDF-1.7\n" + b"0" * (800 * 1024)
    await page.set_input_files(
        "#chat-file", files=[FilePayload(name="big.pdf", mimeType="application/pdf", buffer=big)]
    )
    await page.fill("#chat-input", "and this")
    await page.click("#chat-send")
    await page.wait_for_function("document.getElementById('chat-error').textContent !== ''")
    assert "limited to" in (await page.text_content("#chat-error") or "")
    assert await page.input_value("#chat-input") == "and this"  # nothing lost
    assert backend.chat_calls == 1
    assert not [m for m in console if "Content Security Policy" in m], console


def _png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (220, 20, 20)).save(out, format="PNG")
    return out.getvalue()
