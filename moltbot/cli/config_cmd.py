"""``moltbot config validate | path | show``: check, locate and print the config file.

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
from moltbot.errors import ConfigError


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


def cmd_validate(args: argparse.Namespace) -> int:
    path = config_path(args)
    try:
        load_config(path)
    except ConfigError as exc:
        print(f"config INVALID: {path}", file=sys.stderr)
        print(f"  {exc.user_message}", file=sys.stderr)
        if exc.fix:
            print(f"  fix: {exc.fix}", file=sys.stderr)
        return 1
    print(f"config OK: {path}")
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
