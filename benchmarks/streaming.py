"""6. Streaming: time to first chunk at the web page and at the CLI (``GatewayClient``)
relative to the fake LLM's first token.

The fake Anthropic API (``tests/fakes/anthropic_api``) streams its echo word by word with a
fixed delay before each delta and records when it wrote the first one (wall clock). The web
page (Chromium via Playwright) records, with a MutationObserver, when the reply bubble first
gets text; the CLI client records its first ``on_delta``. Figure = client time - fake time.
Ray: store + gateway + agents on Ray (provider anthropic → the fake). Baseline: the same
gateway and turn code in one process (``benchmarks.pipeline --gateway``).
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from aiohttp import web

from benchmarks import harness as h
from tests.fakes.anthropic_api import FakeAnthropicAPI, Reply, TextBlock

NAME = "streaming"
DELAY_S = 0.02
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
OBSERVER = """() => {
  window.__first = [];
  const seen = new WeakSet();
  new MutationObserver(() => {
    for (const b of document.querySelectorAll('.msg.assistant')) {
      if (!seen.has(b) && b.textContent.length > 0) {
        seen.add(b); window.__first.push(performance.timeOrigin + performance.now());
      }
    }
  }).observe(document.getElementById('messages'),
             {subtree: true, childList: true, characterData: true});
}"""


class TimedAnthropic(FakeAnthropicAPI):
    """Text replies only; records the wall time at which each stream's first delta was sent."""

    first_token: list[float]

    async def _stream(
        self, request: web.Request, model: str, reply: Reply, in_tokens: int
    ) -> web.StreamResponse:
        resp = web.StreamResponse(
            headers={"content-type": "text/event-stream", "cache-control": "no-cache"}
        )
        await resp.prepare(request)

        async def send(event: str, data: dict[str, Any]) -> None:
            await resp.write(
                f"event: {event}\ndata: {json.dumps({'type': event, **data})}\n\n".encode()
            )

        start = self._message(model, Reply(blocks=()), in_tokens)
        start["stop_reason"], start["usage"]["output_tokens"] = None, 1
        await send("message_start", {"message": start})
        first = True
        text = "".join(c for b in reply.blocks if isinstance(b, TextBlock) for c in b.chunks)
        await send(
            "content_block_start", {"index": 0, "content_block": {"type": "text", "text": ""}}
        )
        for b in reply.blocks:
            for chunk in b.chunks if isinstance(b, TextBlock) else ():
                await asyncio.sleep(self.chunk_delay_s)
                await send(
                    "content_block_delta",
                    {"index": 0, "delta": {"type": "text_delta", "text": chunk}},
                )
                if first:
                    self.first_token.append(time.time())
                    first = False
        await send("content_block_stop", {"index": 0})
        await send(
            "message_delta",
            {
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": max(1, len(text) // 4)},
            },
        )
        await send("message_stop", {})
        await resp.write_eof()
        return resp


def _config(ctx: h.Ctx, api: TimedAnthropic) -> dict[str, Any]:
    cfg = h.bench_config(None, anthropic_url=api.base_url, agents=1)
    cfg["agent"]["retries"] = {"max_attempts": 1}
    return cfg


async def _cli(url: str, n: int, api: TimedAnthropic, session: str) -> list[float]:
    from moltbot.gateway.client import GatewayClient

    out = []
    async with GatewayClient(url, h.GATEWAY_TOKEN, session=session) as client:
        for i in range(n + 1):
            got: list[float] = []
            k = len(api.first_token)

            def on_delta(_t: str, got: list[float] = got) -> None:
                if not got:
                    got.append(time.time())

            await client.ask(f"cli message {i} with a few words to stream back", on_delta)
            if i and got and len(api.first_token) > k:  # i == 0: warm-up
                out.append(got[0] - api.first_token[k])
    return out


async def _web(url: str, n: int, api: TimedAnthropic) -> list[float]:
    from playwright.async_api import async_playwright

    out = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            page = await browser.new_page()
            await page.goto(url)
            await page.fill("#token", h.GATEWAY_TOKEN)
            await page.click("#login-button")
            await page.wait_for_selector("#app:not([hidden])")
            await page.evaluate(OBSERVER)
            for i in range(n + 1):
                k = len(api.first_token)
                await page.fill("#chat-input", f"web message {i} with a few words to stream")
                await page.click("#chat-send")
                await page.locator(".msg.assistant.done").nth(i).wait_for(timeout=30_000)
                firsts = await page.evaluate("window.__first")
                if i and len(firsts) > i and len(api.first_token) > k:
                    out.append(firsts[i] / 1000.0 - api.first_token[k])
        finally:
            await browser.close()
    return out


def measure(ctx: h.Ctx, system: str, http_url: str, api: TimedAnthropic) -> dict[str, Any]:
    n = 5 if ctx.quick else 20
    p = ctx.platforms
    ws_url = http_url.replace("http://", "ws://").rstrip("/")
    cli = p.run(_cli(ws_url, n, api, f"bench-cli-{system}"), timeout=300)
    try:
        web_ = p.run(_web(http_url, n, api), timeout=300)
        web_err = None
    except Exception as exc:  # no browser: still report the CLI
        web_, web_err = [], f"{type(exc).__name__}: {str(exc)[:200]}"
    out = {"cli": h.lat_summary(cli), "web": h.lat_summary(web_), "delay_per_delta_s": DELAY_S}
    if web_err:
        out["web_error"] = web_err
    h.log(f"{system}: cli p50={out['cli']['p50_ms']} ms, web p50={out['web']['p50_ms']} ms")
    return out


def _start_api(ctx: h.Ctx) -> TimedAnthropic:
    api = TimedAnthropic(api_key=h.ANTHROPIC_KEY, chunk_delay_s=DELAY_S)
    api.first_token = []
    ctx.platforms.run(api.start())
    return api


def baseline(ctx: h.Ctx) -> None:
    api = _start_api(ctx)
    try:
        cfg = _config(ctx, api)
        with h.Pipeline(cfg, ctx.home("stream-base"), gateway=True):
            url = f"http://127.0.0.1:{cfg['gateway']['port']}/"
            ctx.bucket(NAME)["baseline"] = measure(ctx, "baseline", url, api)
    finally:
        ctx.platforms.run(api.stop())


def ray(ctx: h.Ctx) -> None:
    ctx.stop_tree()  # its own small tree: store, gateway, agents (provider: the fake API)
    h.ray_init()
    api = _start_api(ctx)
    try:
        cfg = _config(ctx, api)
        tree = h.RayTree(cfg, ctx.home("stream-ray"), only=("store", "gateway", "agents"))
        try:
            tree.start()
            h.log(f"streaming tree ready in {tree.ready_s:.1f}s")
            url = f"http://127.0.0.1:{cfg['gateway']['port']}/"
            ctx.bucket(NAME)["ray"] = measure(ctx, "ray", url, api)
        finally:
            tree.stop()
    finally:
        ctx.platforms.run(api.stop())


def report(ctx: h.Ctx) -> dict[str, Any]:
    d = ctx.bucket(NAME)
    base, ray_ = d.get("baseline", {}), d.get("ray", {})
    ratios = {
        f"{c}_{q}": h.ratio(ray_.get(c, {}).get(f"{q}_ms"), base.get(c, {}).get(f"{q}_ms"))
        for c in ("cli", "web")
        for q in ("p50", "p99")
    }
    rows = [
        [
            c,
            base.get(c, {}).get("p50_ms"),
            base.get(c, {}).get("p99_ms"),
            ray_.get(c, {}).get("p50_ms"),
            ray_.get(c, {}).get("p99_ms"),
            ratios[f"{c}_p50"],
        ]
        for c in ("cli", "web")
    ]
    h.print_table(
        "streaming: first chunk at the client - first token at the fake LLM (ms)",
        ["client", "base p50", "base p99", "ray p50", "ray p99", "p50 ratio"],
        rows,
    )
    path = h.write_result(
        NAME,
        quick=ctx.quick,
        figures=ray_,
        baseline=base,
        ratios=ratios,
        targets=[],
        out_dir=ctx.out_dir,
        notes=[
            "no numeric target in the issue",
            f"fake Anthropic streams the echo word by word, {DELAY_S}s "
            "before each delta; the first message of each client is warm-up",
            "web: DOM time (MutationObserver) of the first text in the reply "
            "bubble, not paint; clocks: both the machine's wall clock",
        ],
    )
    return {"path": str(path), "targets": []}
