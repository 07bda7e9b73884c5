"""What a restarting channel imports at low priority before its setup (``modules_for``) is
what its setup would otherwise import on the event loop thread at full priority: each name
exists, and for Signal a first HTTP request imports nothing more of its client's transport."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import textwrap

import pytest

from actors.channel import FIRST_REQUEST, ChannelCore
from moltbot.config.schema import CHANNEL_KINDS


@pytest.mark.parametrize("channel", sorted(CHANNEL_KINDS))
def test_every_module_named_for_a_channel_exists(channel: str) -> None:
    names = ChannelCore.modules_for({"channel": channel})
    assert names and names[0] == f"moltbot.channels.{channel}"
    missing = [m for m in names if importlib.util.find_spec(m) is None]
    assert missing == []


def test_an_unknown_channel_names_nothing() -> None:
    assert ChannelCore.modules_for({"channel": "carrier-pigeon"}) == ()


FIRST_REQUEST_PROBE = textwrap.dedent(
    """
    import asyncio, http.server, importlib, json, sys, threading
    for name in json.loads(sys.argv[1]):
        importlib.import_module(name)
    import httpx
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    before = set(sys.modules)
    async def first_request():
        base = f"http://127.0.0.1:{server.server_port}"
        async with httpx.AsyncClient(base_url=base) as client:
            await client.get("/")
    asyncio.run(first_request())
    print(json.dumps(sorted(set(sys.modules) - before)))
    """
)


def test_signals_first_request_imports_no_more_of_its_transport(tmp_path: object) -> None:
    import json

    names = ChannelCore.modules_for({"channel": "signal"})
    out = subprocess.run(
        [sys.executable, "-c", FIRST_REQUEST_PROBE, json.dumps(list(names))],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=str(tmp_path),
        check=True,
    ).stdout
    late = [m for m in json.loads(out) if m.split(".")[0] in ("httpcore", "h11", "anyio")]
    assert late == []
    assert set(FIRST_REQUEST["signal"]) <= set(names)
