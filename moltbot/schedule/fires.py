"""A fire as a message: where a job's answer goes, who it runs as, and what the model is told.

A fire becomes an ``InboundMessage`` whose id is the fire's stable id (``cron:<job>:<ts>``),
on the channel account and chat of the job's ``deliver_to`` (else ``schedule.deliver_to``),
from the account's owner: it then takes the inbound path (journal, one answer, one reply) and
the turn runs in the owner's own session, with the owner's memory. Its text says plainly that
a scheduler wrote it, not the owner. A heartbeat answered with ``HEARTBEAT_OK`` sends nothing.
"""

from __future__ import annotations

import re

from moltbot.config.schema import CHANNEL_KINDS, Config
from moltbot.errors import BadRequest, ConfigError
from moltbot.messages import InboundMessage
from moltbot.schedule.jobs import Fire, Job

HEARTBEAT_ID = "heartbeat"
HEARTBEAT_OK = "HEARTBEAT_OK"
FIRE_ID = re.compile(r"^cron:[a-z0-9][a-z0-9_-]{0,31}:[0-9]+$")
DEFAULT_HEARTBEAT_PROMPT = (
    "Look at what you know (your memory, today's notes, open tasks) and decide whether there "
    "is something worth telling the owner now."
)
_QUIET_TRIM = " \t\r\n.!*_`'\""


class Target:
    """A parsed ``channel:account:chat``."""

    def __init__(self, channel: str, account: str, chat: str) -> None:
        self.channel, self.account, self.chat = channel, account, chat

    def __str__(self) -> str:
        return f"{self.channel}:{self.account}:{self.chat}"


def parse_target(cfg: Config, text: str, key: str) -> Target:
    """``text`` as a configured channel account's chat; ``key`` names where it came from in
    the error (``$.schedule.deliver_to``, or ``deliver_to`` of a job)."""
    channel, account, chat = [*text.split(":", 2), "", ""][:3]
    if not (channel and account and chat):
        raise BadRequest(
            f"{key}: {text!r} is not channel:account:chat", hint="e.g. telegram:main:123456"
        )
    if channel not in CHANNEL_KINDS:
        raise BadRequest(
            f"{key}: {channel!r} is not a channel", hint="one of: " + ", ".join(CHANNEL_KINDS)
        )
    accounts = [a for a in getattr(cfg.channels, channel) if a.enabled]
    if not any(a.account == account for a in accounts):
        known = ", ".join(f"{channel}:{a.account}" for a in accounts) or "none configured"
        raise BadRequest(f"{key}: no enabled {channel} account {account!r}", hint=known)
    return Target(channel, account, chat)


def owner_of(cfg: Config, target: Target) -> str:
    """The owner a fire delivered to ``target`` runs as: the chat itself when it is an owner
    (a DM), else the account's first owner. ``ConfigError`` naming the key when it has none."""
    accounts = list(getattr(cfg.channels, target.channel))
    for index, acct in enumerate(accounts):
        if acct.account == target.account:
            if target.chat in acct.owners:
                return target.chat
            if acct.owners:
                return str(acct.owners[0])
            raise ConfigError(
                f"$.channels.{target.channel}[{index}].owners",
                "a scheduled job is delivered here, but this account has no owner to run it as",
                "add your own user id to owners",
            )
    raise ConfigError("$.schedule.deliver_to", f"no account {target.account!r}")


def target_of(cfg: Config, job: Job) -> Target:
    """Where ``job``'s answer goes; ``ConfigError`` naming ``schedule.deliver_to`` when the job
    names no chat and the config none either."""
    if job.deliver_to:
        return parse_target(cfg, job.deliver_to, "deliver_to")
    if not cfg.schedule.deliver_to:
        raise ConfigError(
            "$.schedule.deliver_to",
            f"job {job.id!r} names no chat to answer in, and no default is configured",
            'set it to the owner\'s chat, e.g. "telegram:main:123456"',
        )
    try:
        return parse_target(cfg, cfg.schedule.deliver_to, "$.schedule.deliver_to")
    except BadRequest as exc:
        raise ConfigError("$.schedule.deliver_to", exc.user_message, exc.hint) from None


def check_schedule(cfg: Config) -> None:
    """The config's own rules (the loader calls this): a heartbeat needs somewhere to go."""
    sched = cfg.schedule
    if sched.deliver_to:
        try:
            target = parse_target(cfg, sched.deliver_to, "$.schedule.deliver_to")
        except BadRequest as exc:
            raise ConfigError("$.schedule.deliver_to", exc.user_message, exc.hint) from None
        owner_of(cfg, target)
    elif sched.heartbeat_minutes:
        raise ConfigError(
            "$.schedule.deliver_to",
            "the heartbeat is on but no chat is named for it",
            'set "deliver_to" to the owner\'s chat, e.g. "telegram:main:123456", '
            'or "heartbeat_minutes": 0',
        )


def fire_text(cfg: Config, job: Job) -> str:
    if job.kind == "heartbeat":
        prompt = cfg.schedule.heartbeat_prompt or DEFAULT_HEARTBEAT_PROMPT
        return (
            "[Heartbeat: a scheduled check-in from the scheduler, not a message from the owner.]"
            f"\n{prompt}\nIf there is nothing worth telling the owner now, reply with exactly "
            f"{HEARTBEAT_OK} and nothing else."
        )
    what = f"cron '{job.spec}'" if job.kind == "cron" else f"reminder for {job.spec}"
    return (
        f"[Scheduled job '{job.id}' ({what}), set up earlier by the owner. The scheduler sent "
        "this, not the owner writing now: do what the job asks and write the result for the "
        f"owner.]\n{job.text}"
    )


def fire_message(cfg: Config, job: Job, fire: Fire, now: float) -> InboundMessage:
    """The inbound message of ``fire`` (raises ``ConfigError`` / ``BadRequest`` when its
    target cannot be reached)."""
    target = target_of(cfg, job)
    return InboundMessage(
        id=fire.id,
        channel=target.channel,
        account=target.account,
        chat_id=target.chat,
        sender_id=owner_of(cfg, target),
        sender_name="scheduler",
        text=fire_text(cfg, job),
        received_at=now,
    )


def is_fire(msg_id: str) -> bool:
    return bool(FIRE_ID.match(msg_id))


def quiet(msg_id: str, reply: str) -> bool:
    """A heartbeat answered with nothing to say: its reply is not sent."""
    if not msg_id.startswith(f"cron:{HEARTBEAT_ID}:") or not is_fire(msg_id):
        return False
    return reply.strip(_QUIET_TRIM) == HEARTBEAT_OK
