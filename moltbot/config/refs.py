"""Secret references: ``"secret:NAME"`` (the vault) and ``"env:VAR"`` (the environment).

The config only ever holds references; they are resolved at the moment a component needs the
value. Errors name the reference and the fix, never the value (nor a malformed "reference",
which may be a secret pasted in the wrong place).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Literal

import msgspec

from moltbot.config.schema import CHANNEL_KINDS, SECRET_REF_PATTERN, Config, is_secret_ref_type
from moltbot.errors import NotFound, SecretRefError

RefKind = Literal["secret", "env"]
_REF = re.compile(SECRET_REF_PATTERN)


def is_secret_ref(value: object) -> bool:
    return isinstance(value, str) and _REF.match(value) is not None


def parse_ref(ref: str, *, at: str = "$") -> tuple[RefKind, str]:
    """Split ``"secret:NAME"`` / ``"env:VAR"`` into (kind, name); anything else is an error."""
    if not is_secret_ref(ref):
        raise SecretRefError(
            at,
            'not a secret reference (expected "secret:NAME" or "env:VAR")',
            'store the value with `moltbot secrets set NAME` and write "secret:NAME"',
        )
    kind, name = ref.split(":", 1)
    return ("secret" if kind == "secret" else "env"), name


def resolve_secret(
    ref: str,
    lookup: Callable[[str], str],
    *,
    environ: Mapping[str, str] | None = None,
    at: str = "",
) -> str:
    """Return the value ``ref`` points to.

    ``lookup`` is the vault's get (it may raise KeyError/NotFound or return None/"" for a missing
    name); ``environ`` defaults to ``os.environ``; ``at`` is the JSON path used in errors
    (default: the reference itself).
    """
    kind, name = parse_ref(ref, at=at or "$")
    where = at or ref
    if kind == "env":
        value = (os.environ if environ is None else environ).get(name)
        if not value:
            raise SecretRefError(
                where,
                f"environment variable {name!r} is not set",
                f"export {name}=... before starting moltbot",
            )
        return value
    try:
        found: str | None = lookup(name)
    except (LookupError, NotFound):
        found = None
    if not found:
        raise SecretRefError(
            where,
            f"secret {name!r} is not in the vault",
            f"run `moltbot secrets set {name}`",
        )
    return found


def iter_secret_refs(cfg: Config, *, in_use_only: bool = False) -> Iterator[tuple[str, str]]:
    """Every secret reference in the config as (JSON path, ref): for `moltbot doctor` and startup.

    Plugin ``secrets`` (vault names granted to a plugin) are reported as ``secret:NAME``.
    ``in_use_only`` skips refs nothing will read: the API key of a non-anthropic provider,
    disabled channel accounts and disabled plugins.
    """
    unused: set[str] = set()
    if in_use_only:
        if cfg.agent.provider != "anthropic" or cfg.agent.providers:
            unused.add("$.agent.api_key")
        unused.update(
            f"$.agent.providers[{i}].api_key"
            for i, p in enumerate(cfg.agent.providers)
            if p.kind == "offline"
        )
        for kind in CHANNEL_KINDS:
            for i, account in enumerate(getattr(cfg.channels, kind)):
                if not account.enabled:
                    unused.add(f"$.channels.{kind}[{i}].")
        unused.update(f"$.plugins[{i}]." for i, p in enumerate(cfg.plugins) if not p.enabled)
    found = list(_walk(cfg, "$"))
    for i, plugin in enumerate(cfg.plugins):
        found.extend(
            (f"$.plugins[{i}].secrets[{j}]", f"secret:{n}") for j, n in enumerate(plugin.secrets)
        )
    for path, ref in found:
        if not any(path == u or (u.endswith(".") and path.startswith(u)) for u in unused):
            yield path, ref


def _walk(node: object, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(node, msgspec.Struct):
        for field in msgspec.structs.fields(node):
            value = getattr(node, field.name)
            here = f"{path}.{field.encode_name}"
            if isinstance(value, str) and is_secret_ref_type(field.type):
                yield here, value
            else:
                yield from _walk(value, here)
    elif isinstance(node, list):
        for i, item in enumerate(node):
            yield from _walk(item, f"{path}[{i}]")
    elif isinstance(node, dict):
        for key, item in node.items():
            yield from _walk(item, f"{path}[{msgspec.json.encode(key).decode()}]")
