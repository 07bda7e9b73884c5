"""The pipe between a plugin's sandboxed host process and its broker (the plugin actor).

Each frame is a 4-byte big-endian length and a msgpack-encoded :class:`Frame`. Either side may
``call`` (the other answers with a ``reply`` of the same id) or send a ``note`` (no answer).
Frames are capped at :data:`MAX_FRAME` bytes: a larger one is a protocol error that ends the
connection. Errors cross as :class:`ErrorInfo` (a class name from :mod:`moltbot.errors`, a
safe message and a hint); anything else becomes a generic ``PluginError`` on the other side.
"""

from __future__ import annotations

import struct
from typing import Any, Literal

import msgspec

from moltbot import errors
from moltbot.errors import MoltbotError, PluginError

MAX_FRAME = 4 * 1024 * 1024
HEADER = struct.Struct(">I")
# error classes that cross the pipe by name (plain ``(message, hint=...)`` constructors)
CROSSING: dict[str, type[MoltbotError]] = {
    cls.__name__: cls
    for cls in (
        errors.AccessDenied,
        errors.BadRequest,
        errors.CapabilityDenied,
        errors.FetchRefused,
        errors.NotFound,
        errors.PlatformRejected,
        errors.PlatformUnavailable,
        errors.PluginError,
        errors.ToolError,
        errors.Unavailable,
    )
}


class ErrorInfo(msgspec.Struct, frozen=True, kw_only=True):
    kind: str
    message: str
    hint: str = ""


class Frame(msgspec.Struct, frozen=True, kw_only=True):
    kind: Literal["call", "reply", "note"]
    id: int = 0
    op: str = ""
    args: Any = None  # a call's arguments (a dict) or a reply's value
    error: ErrorInfo | None = None


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(Frame)


class ProtocolError(PluginError):
    """The other side sent something that is not a valid frame (or too large a one)."""


def encode(frame: Frame) -> bytes:
    body = _encoder.encode(frame)
    if len(body) > MAX_FRAME:
        raise PluginError(f"a plugin message of {len(body)} bytes is over the {MAX_FRAME} cap")
    return HEADER.pack(len(body)) + body


def frame_length(header: bytes) -> int:
    (size,) = HEADER.unpack(header)
    if size > MAX_FRAME:
        raise ProtocolError(f"a plugin message of {size} bytes is over the {MAX_FRAME} cap")
    return int(size)


def decode(body: bytes) -> Frame:
    try:
        return _decoder.decode(body)
    except msgspec.DecodeError:
        raise ProtocolError("the plugin process sent a malformed message") from None


def error_info(exc: BaseException, generic: str) -> ErrorInfo:
    """What crosses for ``exc``: our own errors by class and message, others as ``generic``."""
    if isinstance(exc, MoltbotError):
        kind = type(exc).__name__ if type(exc).__name__ in CROSSING else "PluginError"
        return ErrorInfo(kind=kind, message=exc.user_message, hint=exc.hint)
    return ErrorInfo(kind="PluginError", message=generic)


def rebuild(info: ErrorInfo) -> MoltbotError:
    cls = CROSSING.get(info.kind, PluginError)
    return cls(info.message[:2000], hint=info.hint[:500])
