"""``agent.providers``: config checks that name the key and the fix, and build_provider turning
the list into a working failover over real fake servers (Claude down → the local model)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from moltbot.agent.providers.anthropic import AnthropicProvider
from moltbot.agent.providers.base import ModelRequest, TextDelta
from moltbot.agent.providers.failover import FailoverProvider
from moltbot.agent.providers.offline import OfflineProvider
from moltbot.agent.providers.openai_compat import OpenAICompatProvider
from moltbot.agent.service import build_provider, status_text
from moltbot.config.loader import load_config_text
from moltbot.config.refs import iter_secret_refs
from moltbot.config.schema import Config
from moltbot.errors import ConfigError, ProviderAuthError
from tests.fakes.anthropic_api import FakeAnthropicAPI, HttpError, overloaded
from tests.fakes.openai_api import FakeOpenAIAPI

CLAUDE_KEY = "sk-ant-very-secret-claude-key"
REQUEST = ModelRequest(system="", messages=[{"role": "user", "content": "ping"}])


def load(*providers: dict[str, Any], **agent: Any) -> Config:
    return load_config_text(json.dumps({"agent": {"providers": list(providers), **agent}}))


def problem(*providers: dict[str, Any]) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load(*providers)
    return info.value


LOCAL = {"kind": "openai", "base_url": "http://127.0.0.1:11434/v1", "models": ["llama3.1"]}


def test_the_old_single_provider_keys_still_work() -> None:
    assert isinstance(build_provider(Config()), OfflineProvider)
    cfg = load_config_text(
        json.dumps({"agent": {"provider": "anthropic", "api_key": "env:K", "models": ["m"]}})
    )
    provider = build_provider(cfg, environ={"K": "sk-test"})
    assert isinstance(provider, AnthropicProvider) and provider.models == ["m"]


def test_a_providers_list_builds_a_failover_in_order() -> None:
    cfg = load(
        {"kind": "anthropic", "models": ["claude-a"], "api_key": "env:CLAUDE"},
        {**LOCAL, "name": "ollama"},
        {"kind": "offline"},
    )
    provider = build_provider(cfg, environ={"CLAUDE": CLAUDE_KEY})
    assert isinstance(provider, FailoverProvider)
    kinds = [type(p) for p in provider.providers]
    assert kinds == [AnthropicProvider, OpenAICompatProvider, OfflineProvider]
    assert provider.name == "anthropic, then ollama, then offline"
    status = status_text(
        agent="a0", provider=provider.name, models=provider.models, messages=0, waiting=0
    )
    assert "model claude-a" in status
    one = build_provider(load(LOCAL))
    assert isinstance(one, OpenAICompatProvider) and one.name == "openai"


def test_config_errors_name_the_key_and_the_fix() -> None:
    err = problem({"kind": "openai", "models": ["llama3.1"]})
    assert err.path == "$.agent.providers[0].base_url" and "11434" in err.fix
    err = problem({"kind": "openai", "base_url": "http://127.0.0.1:11434/v1"})
    assert err.path == "$.agent.providers[0].models" and "ollama list" in err.fix
    err = problem(LOCAL, {"kind": "anthropic", "models": ["c"]})
    assert err.path == "$.agent.providers[1].api_key"
    assert "moltbot secrets set anthropic_api_key" in err.fix
    err = problem({**LOCAL, "base_url": "ftp://host/v1"})
    assert err.path == "$.agent.providers[0].base_url" and "http" in err.fix
    with pytest.raises(ConfigError) as info:
        load({**LOCAL, "kind": "ollama"})
    assert "$.agent.providers[0].kind" in str(info.value)


def test_an_api_key_is_never_sent_in_clear_text_over_the_network() -> None:
    lan = {**LOCAL, "base_url": "http://192.168.1.20:8000/v1", "api_key": "secret:vllm_key"}
    err = problem(lan)
    assert err.path == "$.agent.providers[0].base_url"
    assert "unencrypted" in err.problem and "https" in err.fix
    # without a key the LAN server is fine, and so is https or this machine with a key
    assert load({**lan, "api_key": None}).agent.providers[0].api_key is None
    load({**lan, "base_url": "https://gpu.lan:8000/v1"})
    load({**lan, "base_url": "http://localhost:8000/v1"})


def test_credentials_in_the_url_are_refused_without_echoing_them() -> None:
    err = problem({**LOCAL, "base_url": "http://admin:hunter2@127.0.0.1:11434/v1"})
    assert err.path == "$.agent.providers[0].base_url"
    assert "hunter2" not in str(err) and "secret:NAME" in err.fix


def test_only_keys_in_use_are_reported_to_doctor() -> None:
    cfg = load(
        {"kind": "anthropic", "models": ["c"], "api_key": "secret:anthropic_api_key"},
        {**LOCAL, "api_key": "env:LOCAL_KEY"},
        {"kind": "offline", "api_key": "secret:unused"},
    )
    paths = dict(iter_secret_refs(cfg, in_use_only=True))
    assert paths == {
        "$.agent.providers[0].api_key": "secret:anthropic_api_key",
        "$.agent.providers[1].api_key": "env:LOCAL_KEY",
        "$.gateway.auth.token": "secret:gateway_token",
    }


def test_a_missing_key_fails_the_start_naming_the_fix() -> None:
    cfg = load({**LOCAL, "api_key": "secret:local_llm_key"})

    def missing(name: str) -> str:
        raise KeyError(name)

    with pytest.raises(ProviderAuthError) as info:
        build_provider(cfg, vault_get=missing)
    assert "moltbot secrets set local_llm_key" in info.value.hint


@pytest.mark.parametrize(
    "down",
    [
        overloaded(),
        # what Anthropic answers when the account's credit is spent
        HttpError(400, "invalid_request_error", "Your credit balance is too low"),
    ],
    ids=["overloaded", "budget-spent"],
)
async def test_claude_down_the_local_model_answers_and_never_sees_the_claude_key(
    down: HttpError,
) -> None:
    async with FakeAnthropicAPI(api_key=CLAUDE_KEY) as claude, FakeOpenAIAPI() as local:
        claude.always("claude-a", down)
        cfg = load(
            {
                "kind": "anthropic",
                "models": ["claude-a"],
                "api_key": "env:CLAUDE",
                "base_url": claude.base_url,
            },
            {"kind": "openai", "base_url": local.base_url, "models": ["llama-test"]},
            retries={"max_attempts": 1},
        )
        provider = build_provider(cfg, environ={"CLAUDE": CLAUDE_KEY})
        assert isinstance(provider, FailoverProvider)
        events = [e async for e in provider.stream(REQUEST)]
        await provider.aclose()
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "echo: ping"
    assert len(claude.requests) == 1 and len(local.requests) == 1
    seen = local.requests[0]
    assert "authorization" not in seen.headers
    assert CLAUDE_KEY not in json.dumps(seen.headers) + json.dumps(seen.body)
