"""Why a supervised child ended or did not start, in words safe to show a user: a moltbot
error's own message and fix (written for users), otherwise type names only."""

from __future__ import annotations

from actors.routing import ActorDied, RemoteFailed, cause_of
from moltbot.errors import ChildStartError, MoltbotError


class ChildRaised(Exception):
    """An in-process child's run raised ``cause`` (what ``RemoteFailed`` is for an actor)."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(type(cause).__name__)
        self.cause = cause


class ChildKilled(Exception):
    """An in-process child was ended from outside (what ``ActorDied`` is for an actor)."""


def _cause(exc: BaseException | None) -> BaseException | None:
    return exc.cause if isinstance(exc, ChildRaised) else cause_of(exc)


def start_error_of(exc: BaseException | None) -> ChildStartError | None:
    """The start error of a grandchild, carried up through a supervisor that did not start."""
    cause = _cause(exc)
    return cause if isinstance(cause, ChildStartError) else None


def hint_of(exc: BaseException | None) -> str:
    """The fix a moltbot error carries (written for users), else none."""
    cause = _cause(exc)
    return cause.hint if isinstance(cause, MoltbotError) else ""


def reason_of(exc: BaseException | None) -> str:
    """A short, safe description of why a child ended: a moltbot error's own message (written
    for users, never a secret), else type names only."""
    if exc is None:
        return "exited"
    if isinstance(exc, RemoteFailed | ChildRaised):
        cause = _cause(exc)
        if isinstance(cause, MoltbotError):
            return cause.user_message
        return f"raised {type(cause).__name__}"
    if isinstance(exc, ActorDied):
        return "process died"
    if isinstance(exc, ChildKilled):
        return "killed"
    if isinstance(exc, ChildStartError):
        return "start failed"
    return type(exc).__name__
