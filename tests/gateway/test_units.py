"""Pure pieces of the gateway: token bucket, lockout, origin policy, redaction, frames."""

from __future__ import annotations

import pytest

from moltbot.clock import FakeClock
from moltbot.errors import BadRequest
from moltbot.gateway.frames import ChatSendParams, parse_params, parse_request
from moltbot.gateway.methods import redact
from moltbot.security.origin import OriginPolicy, normalize_origin
from moltbot.security.ratelimit import Lockout, TokenBucket


def test_token_bucket_refills_with_the_clock() -> None:
    clock = FakeClock()
    bucket = TokenBucket(rate=2.0, burst=2, clock=clock)
    assert bucket.take() == 0.0 and bucket.take() == 0.0
    assert bucket.take() == pytest.approx(0.5)
    clock.advance(0.5)
    assert bucket.take() == 0.0
    clock.advance(100)
    assert [bucket.take() for _ in range(3)][:2] == [0.0, 0.0]  # never above burst


def test_lockout_backoff_doubles_and_caps() -> None:
    clock = FakeClock()
    lock = Lockout(clock, max_failures=3, window_s=60, base_s=10, cap_s=25)
    assert [lock.failure("a") for _ in range(3)] == [0.0, 0.0, 10.0]
    assert lock.retry_after("a") == 10.0 and lock.retry_after("b") == 0.0
    clock.advance(10)
    assert [lock.failure("a") for _ in range(3)][-1] == 20.0
    clock.advance(20)
    assert [lock.failure("a") for _ in range(3)][-1] == 25.0  # capped
    lock.success("a")
    assert lock.retry_after("a") == 0.0


def test_origin_policy() -> None:
    policy = OriginPolicy("127.0.0.1", 8080, ["https://Chat.Example.org/"])
    assert policy.origin_allowed(None)
    assert policy.origin_allowed("http://127.0.0.1:8080")
    assert policy.origin_allowed("http://LOCALHOST:8080")
    assert policy.origin_allowed("https://chat.example.org")
    assert not policy.origin_allowed("https://chat.example.org:444")
    assert not policy.origin_allowed("null")
    assert not policy.origin_allowed("http://127.0.0.1:8081")
    assert not policy.origin_allowed("file://")
    assert policy.host_allowed("127.0.0.1:8080") and policy.host_allowed("localhost:8080")
    assert policy.host_allowed("chat.example.org")  # behind a reverse proxy
    assert not policy.host_allowed("127.0.0.1") and not policy.host_allowed(None)
    assert not policy.host_allowed("attacker.example:8080")
    assert normalize_origin("http://a.b:80") == "http://a.b"
    assert normalize_origin("javascript:alert(1)") is None


def test_redact_keeps_structure_and_hides_secrets() -> None:
    cfg = {
        "a": {"token": "x", "bot_token": "y", "max_tokens": 5, "list": [{"password": "p"}]},
        "api_key": "k",
        "empty_secret": "",
        "ref": "secret:telegram",
    }
    assert redact(cfg) == {
        "a": {"token": "***", "bot_token": "***", "max_tokens": 5, "list": [{"password": "***"}]},
        "api_key": "***",
        "empty_secret": "",
        "ref": "secret:telegram",
    }


def test_frames_parse_once_and_refuse_junk() -> None:
    req = parse_request(b'{"type":"req","id":"7","method":"chat.send","params":{"text":"hi"}}')
    assert parse_params(req.params, ChatSendParams) == ChatSendParams(text="hi")
    for junk in (
        b"",
        b"{}",
        b'{"type":"req","id":"","method":"x"}',
        b'{"type":"res","id":"1"}',
        b'{"type":"req","id":"1","method":"x","extra":1}',
        b"\xff\xfe",
    ):
        with pytest.raises(BadRequest):
            parse_request(junk)
