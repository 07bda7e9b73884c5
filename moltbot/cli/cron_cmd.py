"""``moltbot cron list | add | rm``: the scheduler's jobs in a running tree.

    moltbot cron add --at 2026-12-05T09:00 "remind me to call the dentist"
    moltbot cron add --cron "0 9 * * 1-5" --id briefing --catch-up once "morning briefing"
    moltbot cron list
    moltbot cron rm briefing

A job answers in ``--to channel:account:chat``, else in ``schedule.deliver_to``. The commands
reach the ``scheduler`` actor through the tree control, like ``moltbot status``.
"""

from __future__ import annotations

import argparse
import datetime
import json
from typing import Any

from moltbot import paths
from moltbot.cluster.control import TreeControl, tree_control

SCHEDULER = "scheduler"


def _when(ts: float) -> str:
    if not ts:
        return "-"
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def list_jobs(control: TreeControl, namespace: str, *, as_json: bool = False) -> int:
    jobs: list[dict[str, Any]] = control.actor_call(namespace, SCHEDULER, "jobs_list")
    if as_json:
        print(json.dumps(jobs))
        return 0
    if not jobs:
        print("no scheduled jobs")
    for j in jobs:
        to = j.get("deliver_to") or "(schedule.deliver_to)"
        print(
            f"{j['id']}  {j['kind']} {j['spec']!r}  next {_when(j['next_at'])}  to {to}  "
            f"catch-up {j['catch_up']}: {j['text']}"
        )
    return 0


def add_job(control: TreeControl, namespace: str, args: argparse.Namespace) -> int:
    request = {
        "kind": "once" if args.at else "cron",
        "spec": args.at or args.cron,
        "text": args.text,
        "id": args.id,
        "deliver_to": args.to,
        "catch_up": args.catch_up,
        "tz": args.tz,
    }
    job = control.actor_call(namespace, SCHEDULER, "jobs_add", request)
    print(f"added {job['id']}: next fire {_when(job['next_at'])}")
    return 0


def remove_job(control: TreeControl, namespace: str, job_id: str) -> int:
    job = control.actor_call(namespace, SCHEDULER, "jobs_remove", job_id)
    print(f"removed {job['id']}")
    return 0


def _attached(args: argparse.Namespace) -> int:
    control = tree_control()
    head, _root = control.attach(paths.home())
    if args.cron_command == "list":
        return list_jobs(control, head.namespace, as_json=args.json)
    if args.cron_command == "add":
        return add_job(control, head.namespace, args)
    return remove_job(control, head.namespace, args.job_id)


def register(sub: Any) -> None:
    p = sub.add_parser("cron", help="scheduled jobs and reminders")
    csub = p.add_subparsers(dest="cron_command", metavar="ACTION")
    lst = csub.add_parser("list", help="the jobs and when each fires next")
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(func=_attached)
    add = csub.add_parser("add", help="add a cron job (--cron) or a one-shot reminder (--at)")
    when = add.add_mutually_exclusive_group(required=True)
    when.add_argument("--at", help="ISO time of a one-shot reminder, e.g. 2026-12-05T09:00")
    when.add_argument("--cron", help='cron expression, e.g. "0 9 * * 1-5"')
    add.add_argument("text", help="what the assistant gets when it fires")
    add.add_argument("--id", default="", help="a name for it (default: generated)")
    add.add_argument("--to", default="", help="channel:account:chat (default: schedule.deliver_to)")
    add.add_argument(
        "--catch-up",
        default="skip",
        choices=("skip", "once"),
        help="after downtime: skip what was missed, or run once",
    )
    add.add_argument("--tz", default="UTC", help="time zone of --at and --cron (default UTC)")
    add.set_defaults(func=_attached)
    rm = csub.add_parser("rm", help="remove a job")
    rm.add_argument("job_id")
    rm.set_defaults(func=_attached)
    p.set_defaults(func=lambda _a: (p.print_help(), 2)[1])
