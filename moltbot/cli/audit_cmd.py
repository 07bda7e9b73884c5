"""``moltbot audit tail|verify``: read and check the audit log (a sealed SHA-256 hash chain).

``tail`` shows the newest records (``--json``: one record per line, as stored). ``verify``
walks the whole chain, checks each record's MAC with the key in ``credentials/audit.key`` and
the end of the log against ``credentials/audit.anchor``: exit 0 when all holds, exit 1 naming
the first bad line (or the anchor) and why.
Both only read the file; the running tree's store actor is its one writer.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path
from typing import Any

import msgspec

from moltbot import paths
from moltbot.security.audit import tail, verify


def _file(args: argparse.Namespace) -> Path:
    return Path(args.file).expanduser() if args.file else paths.audit_file()


def _value(v: Any) -> str:
    return v if isinstance(v, str) else json.dumps(v, separators=(",", ":"), sort_keys=True)


def format_record(rec: dict[str, Any]) -> str:
    """One line for people: ``#seq  time (UTC)  kind  key=value ...``."""
    try:
        when = dt.datetime.fromtimestamp(float(rec.get("ts", 0)), dt.UTC)
        stamp = when.isoformat(timespec="seconds").replace("+00:00", "Z")
    except (TypeError, ValueError, OverflowError):
        stamp = "?"
    fields = rec.get("fields")
    pairs = " ".join(
        f"{k}={_value(v)}" for k, v in sorted(fields.items() if isinstance(fields, dict) else [])
    )
    return f"#{rec.get('seq', '?')}  {stamp}  {rec.get('kind', '?')}  {pairs}".rstrip()


def cmd_tail(args: argparse.Namespace) -> int:
    records = tail(_file(args), args.n)
    for rec in records:
        if args.json:
            print(msgspec.json.encode(rec, order="sorted").decode("utf-8"))
        else:
            print(format_record(rec))
    return 0


def _optional(value: str | None) -> Path | None:
    return Path(value).expanduser() if value else None


def cmd_verify(args: argparse.Namespace) -> int:
    path = _file(args)
    result = verify(path, key_file=_optional(args.key), anchor_file=_optional(args.anchor))
    if result.ok:
        note = "" if path.exists() else f" (no audit log yet at {path})"
        sealed = result.records - result.legacy
        how = "chain intact" if not sealed else "chain intact, MACs and anchor verified"
        print(f"audit log OK: {result.records} records, {how}{note}")
        if result.legacy:
            print(
                f"  {result.legacy} legacy records (written before the seal): chain only, "
                "not authenticated"
            )
        if result.note:
            print(f"  note: {result.note}")
        return 0
    print(f"audit log BROKEN: {path}: {result.problem}")
    if result.line:
        print(f"  {result.records} records before line {result.line} verified")
    else:
        print(f"  {result.records} records verified")
    return 1


def _help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = sub.add_parser("audit", help="show and verify the audit log (hash chain)")
    parser.set_defaults(func=lambda _args: _help(parser))
    cmds = parser.add_subparsers(dest="audit_command", metavar="SUBCOMMAND")

    p_tail = cmds.add_parser("tail", help="show the newest audit records")
    p_tail.add_argument("-n", type=int, default=20, help="how many records (default 20)")
    p_tail.add_argument("--json", action="store_true", help="one JSON record per line")
    p_tail.add_argument("--file", help="an audit log file (default: $MOLTBOT_HOME/audit/...)")
    p_tail.set_defaults(func=cmd_tail)

    p_verify = cmds.add_parser(
        "verify", help="check the chain, its MACs and its anchor; exit 1 if broken"
    )
    p_verify.add_argument("--file", help="an audit log file (default: $MOLTBOT_HOME/audit/...)")
    p_verify.add_argument("--key", help="its key (default: credentials/audit.key beside it)")
    p_verify.add_argument("--anchor", help="its anchor (default: credentials/audit.anchor)")
    p_verify.set_defaults(func=cmd_verify)
