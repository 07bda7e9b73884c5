"""What a channel account's pipeline (``ChannelService``) is given: its ports to the rest of the
system, and its options."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import msgspec

from moltbot.messages import InboundMessage


@dataclass(frozen=True, slots=True)
class Ports:
    """What the pipeline needs from the rest of the system (the actor wires them to Ray).

    Errors the callables raise should be moltbot errors: ``TRANSIENT`` ones are retried.
    """

    # journal a batch (one fsync), per message False for a duplicate; the service batches what
    # arrives while one call is in flight (``GroupCommit``)
    accept_many: Callable[[list[InboundMessage]], Awaitable[Sequence[bool]]]
    mark_done_many: Callable[[list[str]], Awaitable[Sequence[object]]]
    pending: Callable[[], Awaitable[list[InboundMessage]]]  # this account's unfinished ones
    answer: Callable[[InboundMessage], Awaitable[str]]  # idempotent per message id
    save_pairing: Callable[[bytes], Awaitable[object]]


class ServiceOptions(msgspec.Struct, frozen=True, kw_only=True):
    workers: int = 16  # dispatch workers (a session has one job out at a time: its order kept)
    queue_size: int = 16  # jobs waiting per worker; a full queue back-pressures the receive
    stuck_after_s: float = 600.0
    retry_base_s: float = 1.0  # backoff of a send/answer retried later
    retry_cap_s: float = 60.0
    answer_attempts: int = 3  # for errors that are not transient; then SORRY is sent
    finish_grace_s: float = 3.0  # a cancelled worker still finishes send + mark_done this long
    typing_after_s: float = 0.5  # a turn answered sooner shows no typing indicator
    typing_max_s: float = 2.0  # the typing indicator is given up after this (best effort)
    done_ids: int = 4096  # ids finished here, remembered against a late replay


Journaled = Literal["new", "duplicate", "failed"]  # what the journal said of a message


@dataclass(frozen=True, slots=True)
class Job:
    """One piece of a worker's work: answer ``msg``, or send it a fixed ``notice``.

    ``journaled``: set when the job was queued while its journal write was still in flight
    (the turn runs beside the write); the worker waits for it before sending the reply.
    None: the message is known to be journaled (a replay, a scheduled fire)."""

    msg: InboundMessage
    notice: str | None = None  # a fixed reply (pairing code): not journaled, no agent turn
    journaled: asyncio.Future[Journaled] | None = None
