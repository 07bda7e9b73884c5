"""Entry point of the ``moltbot`` command: one sub-module per command group.

Each command module exposes ``register(subparsers)`` which adds its parsers and sets
``func(args) -> int`` on them. Errors from the ``MoltbotError`` tree are printed as one clear
line (with the fix), never as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from moltbot import __version__, paths
from moltbot.deferred_imports import install, switched_on
from moltbot.errors import MoltbotError
from moltbot.security import cluster_tls

COMMAND_MODULES = (
    "moltbot.cli.init_cmd",
    "moltbot.cli.secrets_cmd",
    "moltbot.cli.config_cmd",
    "moltbot.cli.up_cmd",
    "moltbot.cli.chat_cmd",
    "moltbot.cli.node_cmd",
    "moltbot.cli.pairing_cmd",
    "moltbot.cli.cron_cmd",
    "moltbot.cli.doctor_cmd",
    "moltbot.cli.audit_cmd",
    "moltbot.cli.channels_cmd",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="moltbot", description=__doc__)
    parser.add_argument("--version", action="version", version=f"moltbot {__version__}")
    parser.add_argument("--config", help="config file (default: $MOLTBOT_HOME/config.json)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        cluster_tls.use_running(paths.home())  # before any command imports Ray
        return int(func(args) or 0)
    except MoltbotError as exc:
        print(f"moltbot: {exc.user_message}", file=sys.stderr)
        if exc.hint:
            print(f"  fix: {exc.hint}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `moltbot ... | head`: the reader went away; not an error of ours
        sys.stderr.close()
        return 0


def console() -> int:
    """The ``moltbot`` command: :func:`main` in a process of its own, where the libraries Ray
    imports but no command uses wait for a first use (``moltbot.deferred_imports``, as in the
    tree's actors): 0.2-0.3 s less of each command that talks to the tree (``down``,
    ``status``). Not in :func:`main`, which tests call inside their own process.
    ``MOLTBOT_DEFER_IMPORTS=0`` turns it off."""
    if switched_on(os.environ):
        install()
    return main()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(console())
