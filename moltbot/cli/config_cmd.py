"""``moltbot config validate | path | show``: check, locate and print the config file.

``validate`` also resolves the gateway's token/password (the vault read is audited) and
refuses a gateway without one or with one shorter than 32 characters; a secret it cannot read
here (no passphrase in this shell, an unset variable) is a warning, not a failure.

``show`` prints the effective config (file + defaults) with secret references as written
(``"secret:NAME"``); it never resolves them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from moltbot import paths
from moltbot.config.defaults import render_config
from moltbot.config.loader import load_config
from moltbot.config.schema import Config
from moltbot.errors import ConfigError, MoltbotError, SecretRefError
from moltbot.security.vault import lazy_get


def register(sub: Any) -> None:
    """Add ``config`` and its sub-commands to the ``moltbot`` sub-parsers ``sub``."""
    parser: argparse.ArgumentParser = sub.add_parser(
        "config", help="validate, locate or show the config file"
    )
    parser.set_defaults(func=lambda args: _help(parser))
    actions = parser.add_subparsers(dest="config_command", metavar="ACTION")
    actions.add_parser(
        "validate", help="check the config file; exit 1 if it is wrong"
    ).set_defaults(func=cmd_validate)
    actions.add_parser("path", help="print the path of the config file").set_defaults(func=cmd_path)
    actions.add_parser(
        "show", help="print the effective config as JSON (secret refs, never values)"
    ).set_defaults(func=cmd_show)


def config_path(args: argparse.Namespace) -> Path:
    """``--config`` when given, else ``$MOLTBOT_HOME/config.json``."""
    given = getattr(args, "config", None)
    return Path(given).expanduser() if given else paths.config_file()


def check_gateway_secrets(cfg: Config) -> str:
    """'' when the gateway's secrets are fine; a warning when they cannot be read here.
    Raises ``ConfigError`` when they are missing from the config or weak."""
    from moltbot.cli.trail import reads_by
    from moltbot.gateway.from_config import settings_from_config

    try:
        settings_from_config(cfg, lazy_get(on_read=reads_by("cli:config-validate")))
    except SecretRefError as exc:
        return f"the gateway's secret could not be checked here: {exc.problem}"
    except MoltbotError as exc:
        if isinstance(exc, ConfigError):
            raise
        return f"the gateway's secret could not be checked here: {exc.user_message}"
    return ""


def cmd_validate(args: argparse.Namespace) -> int:
    path = config_path(args)
    try:
        warning = check_gateway_secrets(load_config(path))
    except ConfigError as exc:
        print(f"config INVALID: {path}", file=sys.stderr)
        print(f"  {exc.user_message}", file=sys.stderr)
        if exc.fix:
            print(f"  fix: {exc.fix}", file=sys.stderr)
        return 1
    print(f"config OK: {path}")
    if warning:
        print(f"  warning: {warning}")
    return 0


def cmd_path(args: argparse.Namespace) -> int:
    print(config_path(args))
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    print(render_config(load_config(config_path(args)), comments=False), end="")
    return 0


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2
