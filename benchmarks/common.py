"""Constants and small helpers every benchmark module shares."""

from __future__ import annotations

import os
import re
import socket
import time
from pathlib import Path

import actors  # noqa: F401  - Ray's environment before any ray import
from tests.fakes.slack_api import APP_TOKEN, BOT_TOKEN
from tests.fakes.telegram_api import DEFAULT_TOKEN

ROOT_DIR = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
OBJECT_STORE_BYTES = 200 * 1024 * 1024
GATEWAY_TOKEN = "bench-gateway-token-0123456789-abcdefghijklmnop"
ANTHROPIC_KEY = "sk-ant-bench-key"
CHANNELS = ("telegram", "slack", "signal")
TOKEN_RE = re.compile(r"bq(\d+)x")

# secrets reach the actors (and the baseline process) as env: references
SECRET_ENV = {
    "MB_BENCH_TG": DEFAULT_TOKEN,
    "MB_BENCH_SLACK_BOT": BOT_TOKEN,
    "MB_BENCH_SLACK_APP": APP_TOKEN,
    "MB_BENCH_GW": GATEWAY_TOKEN,
    "MB_BENCH_ANTHROPIC": ANTHROPIC_KEY,
}
RAY_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "token"),
}


def log(msg: str) -> None:
    print(f"  [{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
