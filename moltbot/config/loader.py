"""Read, strictly validate and cross-check ``config.json``; every problem becomes a ConfigError.

The file is JSON with full-line ``//`` comments (so ``moltbot init`` can write a commented file).
Errors name the JSON path (``$.gateway.port``), the problem and the fix; they never echo a value
from the file, which could be a secret pasted in the wrong place.
"""

from __future__ import annotations

import difflib
import enum
import re
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin
from urllib.parse import urlsplit

import msgspec

from moltbot import paths
from moltbot.config.profiles import check_profiles
from moltbot.config.schema import (
    ACCOUNT_ID_PATTERN,
    CHANNEL_KINDS,
    E164_PATTERN,
    SECRET_REF_PATTERN,
    AccountConfig,
    Config,
    ProviderEntry,
    is_secret_ref_type,
)
from moltbot.errors import ConfigError
from moltbot.netaddr import is_loopback
from moltbot.schedule.fires import check_schedule

_AT = re.compile(r"^(?P<msg>.*?)(?: - at `(?P<path>[^`]*)`)?$", re.DOTALL)
_SEGMENT = re.compile(
    r"\.(?P<name>[A-Za-z_][A-Za-z0-9_]*)"  # .field
    r"|\[(?P<index>\d+|\.\.\.)\]"  # [0] or msgspec's [...] for a dict key
    r'|\[(?P<key>"(?:[^"\\]|\\.)*")\]'  # ["dict key"]
)
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_BYTE = re.compile(r"^JSON is malformed: (?P<what>.*) \(byte (?P<byte>\d+)\)$")
_KINDS = {
    "int": "a whole number",
    "float": "a number",
    "str": "a string in double quotes",
    "bool": "true or false",
    "object": "an object {...}",
    "array": "a list [...]",
}
_PATTERN_HELP = {
    SECRET_REF_PATTERN: "",
    ACCOUNT_ID_PATTERN: "an account id of letters, digits, '_', '.', '-' (like \"main\")",
    E164_PATTERN: 'a phone number in E.164 form, like "+15551234567"',
}


# --- public API ----------------------------------------------------------------------------
def load_config(path: Path | None = None) -> Config:
    """Load ``path`` (default ``$MOLTBOT_HOME/config.json``) or raise ConfigError."""
    target = Path(path) if path is not None else paths.config_file()
    try:
        data = target.read_bytes()
    except FileNotFoundError:
        raise ConfigError(
            "$", f"no config file at {target}", "run `moltbot init` (or pass --config PATH)"
        ) from None
    except OSError as exc:
        raise ConfigError(
            "$", f"cannot read {target} ({exc.strerror})", "check the file's permissions"
        ) from None
    return _load(data, str(target))


def load_config_text(text: str, source: str = "<text>") -> Config:
    """Validate config text (JSON with ``//`` comment lines) as if it were the file ``source``."""
    return _load(text.encode("utf-8"), source)


def strip_comments(data: bytes) -> bytes:
    """Blank full-line ``//`` comments with spaces so byte offsets (line, column) stay true."""
    out = []
    for line in data.split(b"\n"):
        out.append(b" " * len(line) if line.lstrip().startswith(b"//") else line)
    return b"\n".join(out)


def check_config(cfg: Config) -> None:
    """Rules that span fields (msgspec checks each field alone). Raises the first ConfigError."""
    _check_gateway(cfg)
    _check_agent(cfg)
    memory = cfg.agent.memory
    if memory.embeddings_url and not memory.embeddings_model:
        raise ConfigError(
            "$.agent.memory.embeddings_model",
            "embeddings_url is set but no embeddings model is named",
            'name the model the endpoint serves, e.g. "embeddings_model": "nomic-embed-text", '
            'or set "embeddings_url": null',
        )
    if memory.dir is not None and (not memory.dir.strip("/") or ".." in Path(memory.dir).parts):
        raise ConfigError(
            "$.agent.memory.dir",
            "the memory folder must be a folder of its own, without `..`",
            'write a plain path such as "~/moltbot-memory", or null for the default',
        )
    for kind in CHANNEL_KINDS:
        accounts: list[AccountConfig] = list(getattr(cfg.channels, kind))
        _unique(
            f"$.channels.{kind}",
            "account",
            [a.account for a in accounts],
            f'give each {kind} account its own "account" id',
        )
    _unique(
        "$.channels.signal",
        "number",
        [a.number for a in cfg.channels.signal],
        "configure each Signal number once",
    )
    _check_whatsapp(cfg)
    _unique("$.plugins", "name", [p.name for p in cfg.plugins], "give each plugin its own name")
    check_schedule(cfg)


def _check_whatsapp(cfg: Config) -> None:
    """A cloud account needs its number id and three secrets (Meta's app dashboard)."""
    for i, acct in enumerate(cfg.channels.whatsapp):
        if acct.mode != "cloud":
            continue
        for key, example in (
            ("phone_number_id", '"109876543210" (WhatsApp > API Setup > Phone number ID)'),
            ("access_token", '"secret:whatsapp_access_token"'),
            ("app_secret", '"secret:whatsapp_app_secret" (App settings > Basic > App secret)'),
            ("verify_token", '"secret:whatsapp_verify_token" (any random string you choose)'),
        ):
            if getattr(acct, key) is None:
                raise ConfigError(
                    f"$.channels.whatsapp[{i}].{key}",
                    f"a cloud-mode WhatsApp account needs {key}",
                    f'set "{key}": {example}',
                )


# --- loading -------------------------------------------------------------------------------
def _load(data: bytes, source: str) -> Config:
    data = strip_comments(data.removeprefix(b"\xef\xbb\xbf"))
    try:
        cfg = msgspec.json.decode(data, type=Config, strict=True)
    except msgspec.ValidationError as exc:
        raise _validation_error(str(exc), lambda: msgspec.json.decode(data)) from None
    except msgspec.DecodeError as exc:
        raise _syntax_error(str(exc), data, source) from None
    check_config(cfg)
    return cfg


def _check_gateway(cfg: Config) -> None:
    gw = cfg.gateway
    tls = gw.tls
    if tls is not None:
        if (tls.cert is None) != (tls.key is None):
            missing = "key" if tls.key is None else "cert"
            raise ConfigError(
                f"$.gateway.tls.{missing}",
                f"tls.{missing} is missing",
                'give both "cert" and "key" (PEM files) or set "self_signed": true',
            )
        if tls.cert is None and not tls.self_signed:
            raise ConfigError(
                "$.gateway.tls",
                "tls has no certificate",
                'give "cert" and "key" (PEM files) or set "self_signed": true',
            )
    if is_loopback(gw.bind):
        return
    has_auth = gw.auth.token is not None or gw.auth.password is not None
    if not has_auth or tls is None:
        lacking = " and ".join(
            name for name, ok in (("auth", has_auth), ("tls", tls is not None)) if not ok
        )
        raise ConfigError(
            "$.gateway.bind",
            f"binding {gw.bind!r} exposes the gateway to the network without {lacking}",
            'bind "127.0.0.1", or set gateway.auth.token ("secret:gateway_token") '
            'and gateway.tls ({"self_signed": true} or cert and key)',
        )


def _check_agent(cfg: Config) -> None:
    agent = cfg.agent
    if not agent.providers and agent.provider == "anthropic" and agent.api_key is None:
        raise ConfigError(
            "$.agent.api_key",
            "the anthropic provider needs an API key",
            'set "api_key": "secret:anthropic_api_key" and run '
            "`moltbot secrets set anthropic_api_key`",
        )
    check_providers(agent.providers, "$.agent.providers")
    for name, profile in agent.profiles.items():
        check_providers(profile.providers, f"$.agent.profiles.{name}.providers")
    check_profiles(cfg)


def check_providers(entries: list[ProviderEntry], base: str) -> None:
    """The rules of one providers list (``agent.providers`` or a profile's)."""
    for i, entry in enumerate(entries):
        at = f"{base}[{i}]"
        if entry.kind != "offline" and not entry.models:
            raise ConfigError(
                f"{at}.models", f"the {entry.kind} provider needs a model", _MODEL_FIX[entry.kind]
            )
        if entry.kind == "anthropic" and entry.api_key is None:
            raise ConfigError(
                f"{at}.api_key",
                "the anthropic provider needs an API key",
                'set "api_key": "secret:anthropic_api_key" and run '
                "`moltbot secrets set anthropic_api_key`",
            )
        if entry.kind == "openai" and entry.base_url is None:
            raise ConfigError(
                f"{at}.base_url",
                "an openai provider needs the server's URL",
                'set "base_url", e.g. "http://127.0.0.1:11434/v1" for Ollama',
            )
        if entry.base_url is not None:
            _check_base_url(f"{at}.base_url", entry.base_url, has_key=entry.api_key is not None)


_MODEL_FIX = {
    "anthropic": 'set "models": ["claude-sonnet-4-5"]',
    "openai": 'set "models" to the name the server knows, e.g. ["llama3.1"] (see `ollama list`)',
}


def _check_base_url(path: str, url: str, *, has_key: bool) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(path, "is not an http(s) URL", 'use e.g. "http://127.0.0.1:11434/v1"')
    if parts.username is not None or parts.password is not None:
        raise ConfigError(
            path,
            "holds credentials; the config never holds a secret",
            'drop them from the URL and set "api_key": "secret:NAME" (`moltbot secrets set NAME`)',
        )
    if has_key and parts.scheme == "http" and not is_loopback(parts.hostname):
        raise ConfigError(
            path,
            "would send the API key unencrypted over the network",
            "use https://, or a server on this machine, or drop api_key if it needs none",
        )


def _unique(base: str, key: str, values: list[str], fix: str) -> None:
    seen: dict[str, int] = {}
    for i, value in enumerate(values):
        if value in seen:
            raise ConfigError(
                f"{base}[{i}].{key}",
                f"duplicate {key} {value!r} (also at {base}[{seen[value]}])",
                fix,
            )
        seen[value] = i


# --- turning msgspec errors into ConfigErrors ----------------------------------------------
def _syntax_error(message: str, data: bytes, source: str) -> ConfigError:
    match = _BYTE.match(message)
    if match:
        what, offset = match["what"], int(match["byte"])
    else:  # "Input data was truncated" and the like: point at the end
        what, offset = "the file ends early (an unclosed {, [ or string?)", len(data.rstrip())
        if not data.strip():
            what = "the file is empty"
    line = data.count(b"\n", 0, offset) + 1
    column = len(data[data.rfind(b"\n", 0, offset) + 1 : offset].decode("utf-8", "replace")) + 1
    return ConfigError(
        "$",
        f"invalid JSON in {source} at line {line}, column {column}: {what}",
        "fix the JSON there (only full-line // comments are allowed; no trailing commas)",
    )


def _validation_error(message: str, raw: Callable[[], Any]) -> ConfigError:
    match = _AT.match(message)
    msg, path = (match["msg"], match["path"] or "$") if match else (message, "$")
    if "[...]" in path:
        try:
            path = _resolve_keys(path, raw())
        except msgspec.DecodeError:  # the JSON is also broken further on: keep msgspec's path
            pass
    if m := re.match(r"Object contains unknown field `(.*)`$", msg):
        return _unknown_key(path, m[1])
    if m := re.match(r"Object missing required field `(.*)`$", msg):
        full = _join(path, m[1])
        example = '"secret:NAME"' if is_secret_ref_type(_type_at(full)) else "a value"
        return ConfigError(full, f"missing required key {m[1]!r}", f'add "{m[1]}": {example}')
    if msg.startswith("Expected `str` matching regex"):
        return _pattern_error(path, msg)
    if msg.startswith("Invalid enum value"):
        choices = ", ".join(repr(v) for v in _literal_values(_type_at(path)))
        return ConfigError(path, "invalid value", f"use one of: {choices}")
    problem = msg.replace("`", "")
    problem = problem[:1].lower() + problem[1:]
    if m := re.match(r"Expected `(\w+)`(.*)$", msg):
        kind, rest = m[1], m[2]
        wanted = _KINDS.get(kind, kind) + ("" if rest.startswith(",") else rest.replace("`", ""))
        return ConfigError(path, problem, f"write {wanted} here")
    return ConfigError(path, problem, "change the value (configs/default.json shows every key)")


def _unknown_key(parent: str, key: str) -> ConfigError:
    valid = _struct_keys(_type_at(parent))
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}? " if close else ""
    return ConfigError(
        _join(parent, key), f"unknown key {key!r}", f"{hint}valid keys: {', '.join(valid)}"
    )


def _pattern_error(path: str, msg: str) -> ConfigError:
    pattern = next((p for p in _PATTERN_HELP if msg.endswith(f"regex {p!r}")), "")
    if pattern == SECRET_REF_PATTERN:
        name = _suggest_secret_name(path)
        return ConfigError(
            path,
            'a literal secret is not allowed here; expected "secret:NAME" or "env:VAR"',
            f'store it with `moltbot secrets set {name}` and write "secret:{name}" here '
            '(or "env:VAR" to read an environment variable)',
        )
    wanted = _PATTERN_HELP.get(pattern) or "a string of the form " + msg.split("regex ", 1)[1]
    return ConfigError(path, "value has the wrong form", f"use {wanted}")


def _suggest_secret_name(path: str) -> str:
    names = [s for s in _names(path) if s not in ("channels", "auth")]
    return "_".join(names[-2:]) or "NAME"


# --- walking the schema and the raw document by JSON path ----------------------------------
def _segments(path: str) -> Iterator[tuple[str, str]]:
    for m in _SEGMENT.finditer(path, 1):
        kind = m.lastgroup or ""
        yield kind, m[kind]


def _names(path: str) -> list[str]:
    return [value for kind, value in _segments(path) if kind == "name"]


def _quote(key: str) -> str:
    return msgspec.json.encode(key).decode()


def _join(parent: str, key: str) -> str:
    return f"{parent}.{key}" if _IDENT.match(key) else f"{parent}[{_quote(key)}]"


def _unwrap(tp: Any) -> Any:
    while True:
        origin = get_origin(tp)
        if origin is Annotated:
            tp = get_args(tp)[0]
        elif origin in (Union, types.UnionType):
            rest = [a for a in get_args(tp) if a is not type(None)]
            if len(rest) != 1:
                return tp
            tp = rest[0]
        else:
            return tp


def _step(tp: Any, kind: str, value: str) -> Any:
    tp = _unwrap(tp)
    if kind == "name" and get_origin(tp) in (Union, types.UnionType):  # e.g. str | GroupEntry
        structs = [a for a in get_args(tp) if isinstance(a, type) and issubclass(a, msgspec.Struct)]
        tp = structs[0] if len(structs) == 1 else tp
    if kind == "name" and isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        for field in msgspec.structs.fields(tp):
            if field.encode_name == value:
                return field.type
        return None
    if kind == "index" and get_origin(tp) is list:
        return get_args(tp)[0]
    if kind in ("index", "key") and get_origin(tp) is dict:
        return get_args(tp)[1]
    return None


def _type_at(path: str) -> Any:
    tp: Any = Config
    for kind, value in _segments(path):
        tp = _step(tp, kind, value)
    return tp


def _struct_keys(tp: Any) -> list[str]:
    tp = _unwrap(tp)
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        return [f.encode_name for f in msgspec.structs.fields(tp)]
    return []


def _literal_values(tp: Any) -> tuple[Any, ...]:
    tp = _unwrap(tp)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return tuple(member.value for member in tp)
    return get_args(tp) if get_origin(tp) is Literal else ()


def _resolve_keys(path: str, raw: Any, root: Any = Config) -> str:
    """msgspec writes dict keys as ``[...]``; find the offending key by re-checking entries."""
    out, tp, node = "$", root, raw
    for kind, value in _segments(path):
        if kind == "index" and value == "..." and isinstance(node, dict):
            item_type = _step(tp, "key", "")
            for key, item in node.items():
                try:
                    msgspec.convert(item, type=item_type, strict=True)
                except msgspec.ValidationError as exc:
                    inner = _AT.match(str(exc))
                    rest = (inner["path"] if inner else None) or "$"
                    if "[...]" in rest:
                        rest = _resolve_keys(rest, item, item_type)
                    return f"{out}[{_quote(key)}]{rest[1:]}"
            return path
        out += f".{value}" if kind == "name" else f"[{value}]"
        tp = _step(tp, kind, value)
        node = _child(node, kind, value)
    return out


def _child(node: Any, kind: str, value: str) -> Any:
    if kind == "name" and isinstance(node, dict):
        return node.get(value)
    if kind == "index" and isinstance(node, list) and value.isdigit() and int(value) < len(node):
        return node[int(value)]
    return None
