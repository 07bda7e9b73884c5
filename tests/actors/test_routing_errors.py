"""Ray's errors are read in one place (``actors.routing``): a remote moltbot error comes back as
itself, anything else as the caller's fallback or unchanged. No cluster needed: these are the
exception objects Ray hands a caller."""

from __future__ import annotations

import pytest
from ray.exceptions import RayActorError, RayTaskError

from actors import routing
from actors.exits import reason_of
from moltbot.errors import BadRequest, Unavailable


def wrapped(cause: BaseException) -> RayTaskError:
    return RayTaskError("kv_put", "Traceback (remote) ...", cause)


def test_a_remote_moltbot_error_is_raised_as_itself() -> None:
    original = BadRequest("a store key is a plain name", hint="use letters and dots")
    assert routing.cause_of(wrapped(original)) is original
    with pytest.raises(BadRequest) as info:
        routing.raise_remote(wrapped(original), Unavailable("store could not handle it"))
    assert info.value is original and info.value.hint == "use letters and dots"


def test_a_foreign_remote_error_becomes_the_fallback_or_stays() -> None:
    err = wrapped(KeyError("secret-name"))
    with pytest.raises(Unavailable) as info:
        routing.raise_remote(err, Unavailable("store could not handle the request"))
    assert "secret-name" not in info.value.user_message
    with pytest.raises(RayTaskError):
        routing.raise_remote(err)
    assert reason_of(err) == "raised KeyError"  # type names only, never the message


def test_a_death_and_plain_errors_map_as_before() -> None:
    assert routing.cause_of(None) is None
    plain = ValueError("x")
    assert routing.cause_of(plain) is plain
    assert isinstance(RayActorError(), routing.ActorDied)
    assert reason_of(RayActorError()) == "process died"
