"""``moltbot secrets set|get|list|rm``: the encrypted credentials vault from the command line.

A value is read from stdin (a hidden prompt on a terminal), never from the command line, where
it would stay in shell history and be visible to ``ps``. ``get`` is the one command that prints
a secret, and only the one asked for.

Every change (``set``, ``rm``) appends a ``config_change`` record naming the secret and every
``get`` a ``secret_read`` record to the audit log (names only, never values).
"""

from __future__ import annotations

import argparse
import getpass
import sys

from moltbot import paths
from moltbot.cli.trail import Changes, reads_by
from moltbot.errors import SecretNotFound, VaultError
from moltbot.security.vault import ReadHook, Vault, require_name


def read_secret_input(prompt: str, *, confirm: bool = False) -> str:
    """A secret from stdin: a hidden prompt on a terminal, else all of stdin minus one newline."""
    if sys.stdin.isatty():
        value = getpass.getpass(prompt)
        if confirm and getpass.getpass("again: ") != value:
            raise VaultError("the two entries differ", hint="run the command again")
    else:
        value = sys.stdin.read()
        if value.endswith("\r\n"):
            value = value[:-2]
        elif value.endswith("\n"):
            value = value[:-1]
    if not value:
        raise VaultError("an empty value was given and refused", hint="pipe the value on stdin")
    return value


def _vault(on_read: ReadHook | None = None) -> Vault:
    return Vault.open(paths.home(), on_read=on_read)


def cmd_set(args: argparse.Namespace) -> int:
    if args.extra:
        # Do not echo what was typed: it is probably the value itself.
        raise VaultError(
            "secret values are not taken from the command line",
            hint=f"pipe it on stdin, or type it at the prompt: moltbot secrets set {args.name}",
        )
    require_name(args.name)
    vault = _vault()
    changes = Changes("cli:secrets set")
    value = read_secret_input(f"value for {args.name} (hidden): ")
    replaced = args.name in vault
    vault.set(args.name, value)
    changes.record("vault", "set", secret_name=args.name, replaced=replaced)
    print(f"stored secret '{args.name}' in {vault.directory}")
    return 0


def cmd_get(args: argparse.Namespace) -> int:
    value = _vault(on_read=reads_by("cli:secrets get")).get(args.name)
    sys.stdout.write(value + "\n")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    names = _vault().names()
    for name in names:
        print(name)
    if not names:
        print("(the vault holds no secrets)", file=sys.stderr)
    return 0


def cmd_rm(args: argparse.Namespace) -> int:
    vault = _vault()
    changes = Changes("cli:secrets rm")
    if not vault.delete(args.name):
        raise SecretNotFound(f"no secret named '{args.name}' in the vault")
    changes.record("vault", "delete", secret_name=args.name)
    print(f"removed secret '{args.name}'")
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser(
        "secrets",
        help="manage the encrypted credentials vault",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )

    def show_help(args: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    parser.set_defaults(func=show_help)
    actions = parser.add_subparsers(dest="secrets_action", metavar="ACTION")

    p_set = actions.add_parser("set", help="store a secret read from stdin")
    p_set.add_argument("name", metavar="NAME")
    p_set.add_argument("extra", nargs="*", help=argparse.SUPPRESS)
    p_set.set_defaults(func=cmd_set)

    p_get = actions.add_parser("get", help="print one secret's value")
    p_get.add_argument("name", metavar="NAME")
    p_get.set_defaults(func=cmd_get)

    p_list = actions.add_parser("list", help="list secret names (never values)")
    p_list.set_defaults(func=cmd_list)

    p_rm = actions.add_parser("rm", help="delete a secret")
    p_rm.add_argument("name", metavar="NAME")
    p_rm.set_defaults(func=cmd_rm)
