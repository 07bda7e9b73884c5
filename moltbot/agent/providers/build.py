"""The configured model provider, built once when an agent starts.

``agent.providers`` (a list, tried in order) wins when it is not empty; otherwise the single
provider of ``agent.provider`` / ``api_key`` / ``base_url`` / ``models`` is used, as before.
Keys are resolved now, so a missing one fails the agent's start with a ``ProviderAuthError``
naming the config key and the fix (never the key itself). The SDKs are imported only here, only
for the kinds configured.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from moltbot.agent.providers.base import Provider
from moltbot.agent.providers.failover import FailoverProvider
from moltbot.agent.providers.offline import OfflineProvider
from moltbot.config.refs import resolve_secret
from moltbot.config.schema import Config, ProviderEntry
from moltbot.errors import ProviderAuthError, SecretRefError, VaultError

VaultGet = Callable[[str], str]


def _secret_name(ref: str) -> str:
    return ref.split(":", 1)[1] if ref.startswith("secret:") else ""


def key_hint(ref: str | None, at: str) -> str:
    """How to set the key that ``ref`` (at config path ``at``) names."""
    name = _secret_name(ref or "")
    if name:
        return f"set the key with `moltbot secrets set {name}`"
    if ref:
        return f"export {ref.split(':', 1)[1]}, or point {at} at a vault secret"
    return f'set {at} to "secret:NAME" and run `moltbot secrets set NAME`'


def _resolve(
    ref: str, at: str, what: str, hint: str, vault_get: VaultGet, environ: Mapping[str, str] | None
) -> str:
    try:
        return resolve_secret(ref, vault_get, environ=environ, at=at)
    except SecretRefError as exc:
        # SecretRefError does not survive pickling across actors; this one does.
        raise ProviderAuthError(
            f"the {what} API key is not available: {exc.problem}", hint=exc.fix or hint
        ) from None
    except VaultError as exc:
        raise ProviderAuthError(
            f"the {what} API key is not available: {exc.user_message}", hint=exc.hint or hint
        ) from None


def build_provider(
    cfg: Config,
    *,
    vault_get: VaultGet | None = None,
    environ: Mapping[str, str] | None = None,
    providers_at: str = "$.agent.providers",
) -> Provider:
    """The provider ``cfg`` asks for; ``vault_get`` defaults to the vault of ``MOLTBOT_HOME``
    (opened only for ``secret:`` refs). ``providers_at``: the config path of the providers
    list that errors name (a profile's: ``$.agent.profiles.<name>.providers``)."""
    agent = cfg.agent
    get = vault_get or _vault_get
    if not agent.providers:
        single = ProviderEntry(
            kind=agent.provider,
            models=list(agent.models),
            base_url=agent.base_url,
            api_key=agent.api_key,
        )
        return _one(cfg, single, "$.agent", get, environ)
    built = [
        _one(cfg, entry, f"{providers_at}[{i}]", get, environ)
        for i, entry in enumerate(agent.providers)
    ]
    return built[0] if len(built) == 1 else FailoverProvider(built)


def _one(
    cfg: Config, entry: ProviderEntry, at: str, get: VaultGet, environ: Mapping[str, str] | None
) -> Provider:
    r = cfg.agent.retries
    if entry.kind == "offline":
        return OfflineProvider()
    at_key = f"{at}.api_key"
    if entry.kind == "anthropic":
        from moltbot.agent.providers.anthropic import KEY_HINT, AnthropicProvider

        if entry.api_key is None:
            raise ProviderAuthError("no Anthropic API key is configured", hint=KEY_HINT)
        key = _resolve(entry.api_key, at_key, "Anthropic", KEY_HINT, get, environ)
        return AnthropicProvider(
            key,
            entry.models,
            base_url=entry.base_url,
            max_attempts=r.max_attempts,
            base_s=r.base_s,
            max_s=r.max_s,
        )
    from moltbot.agent.providers.openai_compat import OpenAICompatProvider

    hint = key_hint(entry.api_key, at_key)
    label = entry.name or entry.kind
    token = _resolve(entry.api_key, at_key, label, hint, get, environ) if entry.api_key else None
    return OpenAICompatProvider(
        entry.base_url or "",
        entry.models,
        api_key=token,
        label=label,
        key_hint=hint,
        max_attempts=r.max_attempts,
        base_s=r.base_s,
        max_s=r.max_s,
    )


def _vault_get(name: str) -> str:
    from moltbot.security.vault import Vault

    return Vault.open().get(name)
