"""``moltbot init``: the home folder, a default config, the credentials vault, a gateway token.

Idempotent: a second run keeps the existing config, vault and token (and tightens folder modes).
``--force`` rewrites the config from the default (the old one is kept as ``config.json.bak``);
the vault and its secrets are never touched. The token itself is never printed. What it creates
or rewrites (the vault, the token, the config file) is recorded as ``config_change`` in the audit
log.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from moltbot import paths
from moltbot.cli.secrets_cmd import read_secret_input
from moltbot.cli.trail import Changes
from moltbot.security.fsmodes import atomic_write, ensure_private_dir
from moltbot.security.tokens import new_token
from moltbot.security.vault import PASSPHRASE_ENV, Vault

GATEWAY_TOKEN = "gateway_token"  # noqa: S105 - the secret's name in the vault, not a secret


def _folders(home: Path) -> list[Path]:
    return [
        paths.credentials_dir(home),
        paths.sessions_dir(home),
        paths.state_dir(home),
        paths.workspace_dir(home),
        paths.run_dir(home),
        paths.audit_file(home).parent,
    ]


def _write_config(config_path: Path, force: bool, changes: Changes) -> str:
    if config_path.exists() and not force:
        return f"kept the existing {config_path} (moltbot init --force rewrites it)"
    from moltbot.config.defaults import default_config_text

    text = default_config_text()
    config_path.parent.mkdir(parents=True, exist_ok=True)
    note = f"wrote the default config to {config_path}"
    detail: dict[str, str] = {"file": str(config_path), "json_path": "$"}
    action = "create"
    if config_path.exists():
        backup = config_path.with_name(config_path.name + ".bak")
        atomic_write(backup, config_path.read_bytes())
        note += f" (the old one is in {backup})"
        action, detail["backup"] = "replace", str(backup)
    atomic_write(config_path, text.encode("utf-8"), 0o600)
    changes.record("config", action, **detail)
    return note


def _vault(home: Path, passphrase: str | None, changes: Changes) -> tuple[Vault, str]:
    if Vault.exists(home):
        return Vault.open(home, passphrase), "kept the existing vault"
    vault = Vault.create(home, passphrase)
    if paths.key_file(home).exists():
        source = "key file"
        how = f"key file {paths.key_file(home)}: back it up, the secrets cannot be read without it"
    else:
        source = "passphrase"
        how = f"passphrase: set {PASSPHRASE_ENV} for `moltbot up` and `moltbot secrets`"
    changes.record("vault", "create", key_source=source)
    return vault, f"created the vault ({how})"


def cmd_init(args: argparse.Namespace) -> int:
    home = paths.home()
    ensure_private_dir(home)
    for folder in _folders(home):
        ensure_private_dir(folder)
    changes = Changes("cli:init", home)
    passphrase = None
    if args.passphrase_stdin:
        creating = not Vault.exists(home)
        passphrase = read_secret_input("vault passphrase (hidden): ", confirm=creating)
    vault, vault_note = _vault(home, passphrase, changes)
    if GATEWAY_TOKEN in vault:
        gw_note = "kept the existing gateway token"
    else:
        vault.set(GATEWAY_TOKEN, new_token())
        changes.record("vault", "set", secret_name=GATEWAY_TOKEN, replaced=False)
        gw_note = "created a new gateway token"
    config_arg = getattr(args, "config", None)
    config_path = Path(config_arg).expanduser() if config_arg else paths.config_file(home)
    config_note = _write_config(config_path, args.force, changes)

    print(f"moltbot home: {home}")
    print(f"  config:      {config_note}")
    print(f"  credentials: {vault_note}")
    print(f"  token:       {gw_note}, stored as '{GATEWAY_TOKEN}' in the vault")
    print(f"               (to see it: moltbot secrets get {GATEWAY_TOKEN})")
    print("next steps:")
    print("  moltbot secrets set anthropic_api_key    # paste the key, then Enter")
    print("  moltbot up")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "init",
        help="create the home folder, default config, credentials vault and gateway token",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--force", action="store_true", help="rewrite config.json from the default (keeps a .bak)"
    )
    parser.add_argument(
        "--passphrase-stdin",
        action="store_true",
        help="protect a new vault with a passphrase read from stdin (default: a key file)",
    )
    parser.set_defaults(func=cmd_init)
