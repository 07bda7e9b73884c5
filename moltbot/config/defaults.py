"""The default config file, rendered from the schema with ``//`` comment lines.

Rendering from :class:`~moltbot.config.schema.Config` keeps the file and the schema in step:
every key appears with its default value; :data:`COMMENTS` explains the main ones.
"""

from __future__ import annotations

import msgspec

from moltbot.config.schema import Config

COMMENTS: dict[str, tuple[str, ...]] = {
    "$.version": (
        "moltbot config. JSON with full-line // comments. Unknown keys are errors.",
        'Secrets are never written here: use "secret:NAME" (stored with',
        '`moltbot secrets set NAME`) or "env:VAR" (read from the environment).',
    ),
    "$.gateway": ("WebSocket + HTTP gateway (web chat, CLI, control).",),
    "$.gateway.bind": ("Loopback only by default. Any other address needs auth AND tls below.",),
    "$.gateway.auth": ("Clients send this token in their first frame. `moltbot init` creates it.",),
    "$.gateway.allowed_origins": ("Extra browser origins allowed to open the WebSocket.",),
    "$.gateway.tls": ('null, or {"cert": "PEM", "key": "PEM"} or {"self_signed": true}.',),
    "$.gateway.lockout": ("Failed logins allowed per window before a lockout.",),
    "$.agent": ("The assistant itself.",),
    "$.agent.provider": (
        '"offline" answers without a model (for trying things out); "anthropic" uses Claude',
        "with api_key below (`moltbot secrets set anthropic_api_key`).",
    ),
    "$.agent.models": ("Tried in order: the next one is used when one is overloaded.",),
    "$.agent.memory": (
        "USER.md, MEMORY.md and daily notes memory/YYYY-MM-DD.md in dir (null:",
        "<tools.workspace>/memory-profiles/default); up to recall_tokens of it go into",
        "each turn. embeddings_url: an OpenAI-compatible /v1/embeddings URL (null: keywords).",
    ),
    "$.agent.providers": (
        "Not empty: these providers, tried in order, replace provider/api_key/models. E.g.",
        '[{"kind": "anthropic", "models": ["claude-sonnet-4-5"],',
        '  "api_key": "secret:anthropic_api_key"},',
        ' {"kind": "openai", "base_url": "http://127.0.0.1:11434/v1", "models": ["llama3.1"]}]',
        '"openai" is any OpenAI-compatible server (Ollama, vLLM, llama.cpp, LM Studio).',
    ),
    "$.agent.profiles": (
        "More assistants, each its own prompt, models, tools, workspace, memory, skills. E.g.",
        '{"work": {"system_prompt": "You help with work.", "tools": ["read_file", "skill"]}}',
        "Skills: <workspace>/skills/<name>/SKILL.md (front matter: name, description).",
    ),
    "$.agent.bindings": (
        "Which profile answers: the first rule whose keys all match, else the default. E.g.",
        '[{"channel": "slack", "account": "work", "profile": "work"}]',
    ),
    "$.gateway.idle_stop_s": (
        "Bound to loopback, the gateway's process starts on the first connection (its",
        "port is held open meanwhile) and stops after this many seconds with none and no",
        "web session left. 0, or a bind beyond loopback: always running.",
    ),
    "$.agent.workers": ("Agent actors; sessions are spread over them.",),
    "$.agent.idle_stop_s": (
        "An agent process starts on the first message it is given and stops after this",
        "many seconds without one: the first message after a pause waits about a second",
        "longer. 0: always running.",
    ),
    "$.channels": (
        "Chat accounts, none by default. Example:",
        '"telegram": [{"account": "main", "token": "secret:telegram_token",',
        '              "dm_policy": "pairing"}]',
        'dm_policy: "pairing" (strangers get a code to approve), "allowlist" (only',
        'allow_from), "open" (anyone: not recommended). Groups need a mention by default.',
    ),
    "$.tools": ("Tools the agent may use. Each bash call runs in a bubblewrap sandbox.",),
    "$.media": (
        "Pictures, voice notes and files. max_bytes caps one file (larger: refused, the",
        "sender told). Files are kept as data in the sender's workspace under inbox/.",
        'transcription: null, or {"base_url": "http://gpu-box:8000/v1", "model": "whisper-1",',
        ' "api_key": null} (an OpenAI-compatible /audio/transcriptions server).',
    ),
    "$.tools.idle_stop_s": (
        "A sandbox process starts on the first tool call and stops after this many",
        "seconds without one (none while an approval waits). 0: always running.",
    ),
    "$.tools.workspace": ("null: $MOLTBOT_HOME/workspace. The only folder tools may write.",),
    "$.tools.bash.policy": (
        '"deny": never run; "allowlist": only commands in allowlist; "ask": ask the owner',
        "to approve each command (expires after approval_ttl_s).",
    ),
    "$.tools.bash.network": ("Give the sandbox network access (off by default).",),
    "$.tools.bash.nice": (
        "CPU priority of commands, 0-19 (19 lowest): they use idle CPU but yield it to",
        "the channels and the agent.",
    ),
    "$.supervision": (
        "OTP-style supervisors: at most `intensity` restarts within `period` seconds,",
        "then the supervisor gives up and its parent decides. standby: true keeps a warm",
        "spare process per child (imports done); a restart promotes it (channels: under 1 s",
        "instead of 2.5-10 s), for one more idle process per child. max_memory_mb: a child",
        "whose process tree grows past it is restarted (0: no ceiling).",
    ),
    "$.cluster": (
        'Ray: address null starts a local Ray; "auto" or "host:port" joins a cluster.',
        'placement pins actors by path glob, e.g. "channels/signal:*":',
        '{"resources": {"signal_box": 0.01}}.',
    ),
    "$.schedule": (
        "Cron jobs and reminders (`moltbot cron`, or ask the assistant). deliver_to:",
        'the chat a job answers in when it names none, e.g. "telegram:main:123456" (an',
        "account's owner). heartbeat_minutes: every N minutes the assistant may check in",
        "there (0: off); it sends nothing when it has nothing to say.",
    ),
    "$.plugins": (
        'Extra actors: {"name": ..., "module": ..., "capabilities": [...], "secrets": [...]}.',
    ),
}


def render_config(cfg: Config, *, comments: bool = True) -> str:
    """``cfg`` as indented JSON; with ``comments``, the :data:`COMMENTS` lines before keys."""
    return _render(cfg, "$", 0, comments) + "\n"


def default_config_text() -> str:
    """The commented default config that ``moltbot init`` writes."""
    return render_config(Config())


def _render(value: object, path: str, depth: int, comments: bool) -> str:
    pad = "  " * (depth + 1)
    items: list[tuple[str, str, object]]  # (JSON path, "key": prefix, value)
    if isinstance(value, msgspec.Struct):
        fields = msgspec.structs.fields(value)
        items = [
            (f"{path}.{f.encode_name}", _key(f.encode_name), getattr(value, f.name)) for f in fields
        ]
    elif isinstance(value, dict) and any(isinstance(v, msgspec.Struct) for v in value.values()):
        items = [(f"{path}[{_quote(k)}]", _key(k), v) for k, v in value.items()]
    elif isinstance(value, list) and any(isinstance(v, msgspec.Struct) for v in value):
        items = [(f"{path}[{i}]", "", v) for i, v in enumerate(value)]
    else:
        return msgspec.json.format(msgspec.json.encode(value), indent=0).decode()
    parts = []
    for here, key, item in items:
        notes = COMMENTS.get(here, ()) if comments else ()
        lead = "".join(f"{pad}// {line}\n" for line in notes)
        parts.append(f"{lead}{pad}{key}{_render(item, here, depth + 1, comments)}")
    opening, closing = ("[", "]") if isinstance(value, list) else ("{", "}")
    return f"{opening}\n" + ",\n".join(parts) + "\n" + "  " * depth + closing


def _quote(key: str) -> str:
    return msgspec.json.encode(key).decode()


def _key(name: str) -> str:
    return f"{_quote(name)}: "
