"""The plugin pipe's framing: size cap both ways, malformed frames, errors that cross."""

from __future__ import annotations

import pytest

from moltbot.errors import CapabilityDenied, PlatformRejected, PluginError
from moltbot.plugins.wire import (
    HEADER,
    MAX_FRAME,
    ErrorInfo,
    Frame,
    ProtocolError,
    decode,
    encode,
    error_info,
    frame_length,
    rebuild,
)


def test_a_frame_round_trips_with_bytes() -> None:
    frame = Frame(kind="call", id=7, op="kv_put", args={"key": "k", "value": b"\x00\xff"})
    data = encode(frame)
    assert frame_length(data[: HEADER.size]) == len(data) - HEADER.size
    assert decode(data[HEADER.size :]) == frame


def test_oversized_and_malformed_frames_are_refused() -> None:
    with pytest.raises(PluginError, match="over the"):
        encode(Frame(kind="note", op="log", args={"message": "x" * MAX_FRAME}))
    with pytest.raises(ProtocolError, match="over the"):
        frame_length(HEADER.pack(MAX_FRAME + 1))
    with pytest.raises(ProtocolError, match="malformed"):
        decode(b"\x93not a frame")


def test_only_our_errors_cross_by_name_and_foreign_text_stays_behind() -> None:
    denied = rebuild(error_info(CapabilityDenied("no", hint="grant it"), "generic"))
    assert type(denied) is CapabilityDenied and denied.hint == "grant it"
    assert type(rebuild(error_info(PlatformRejected("gone"), "g"))) is PlatformRejected
    foreign = rebuild(error_info(RuntimeError("db password is hunter2"), "the call failed"))
    assert type(foreign) is PluginError and foreign.user_message == "the call failed"
    unknown = ErrorInfo(kind="SystemExit", message="m")  # not one of ours: a PluginError
    assert type(rebuild(unknown)) is PluginError
