"""Gateway wire frames (JSON text frames), parsed once at the edge with msgspec.

- request  ``{"type":"req","id":"1","method":"chat.send","params":{...}}``
- response ``{"type":"res","id":"1","ok":true,"payload":{...}}``
  or ``{"type":"res","id":"1","ok":false,"error":{"code":"...","message":"..."}}``
- event    ``{"type":"event","event":"chat","payload":{...},"seq":7}``

A frame that cannot be parsed is answered with a ``res`` whose ``id`` is null.
"""

from __future__ import annotations

import re
from typing import Any, Literal, TypeVar

import msgspec
import msgspec.inspect

from moltbot.errors import BadRequest, MoltbotError

PROTOCOL_VERSION = 1
MAX_ID_CHARS = 128


class Request(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag="req", tag_field="type"):
    id: str
    method: str
    params: dict[str, Any] = {}


class ErrorBody(msgspec.Struct, frozen=True, omit_defaults=True):
    code: str
    message: str
    hint: str = ""
    retry_after: float | None = None


class Response(msgspec.Struct, frozen=True, omit_defaults=True, tag="res", tag_field="type"):
    id: str | None
    ok: bool
    payload: Any = None
    error: ErrorBody | None = None


class Event(msgspec.Struct, frozen=True, tag="event", tag_field="type"):
    event: str
    payload: Any
    seq: int


# --- params of the methods ----------------------------------------------------------------
class Params(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Base of method parameters: unknown fields are refused."""


class AuthParams(Params, frozen=True):
    token: str | None = None
    password: str | None = None
    session: str | None = None


class ConnectParams(Params, frozen=True):
    auth: AuthParams
    client: str = ""  # free-form client name ("web", "cli"), for logs only


class NoParams(Params, frozen=True):
    pass


class FileParam(Params, frozen=True):
    """A file sent from the web page: its name and its bytes in base64 (the whole frame is
    capped by ``gateway.max_frame_bytes``)."""

    name: str
    data: str


class ChatSendParams(Params, frozen=True):
    text: str
    session: str = "main"
    files: list[FileParam] = []


class ChatHistoryParams(Params, frozen=True):
    session: str = "main"
    limit: int = 50


class SessionParams(Params, frozen=True):
    session: str


class ApprovalResolveParams(Params, frozen=True):
    id: str
    decision: Literal["approve", "deny"]


class PairingApproveParams(Params, frozen=True):
    channel: str
    code: str


P = TypeVar("P", bound=Params)

_request_decoder = msgspec.json.Decoder(Request)
_encoder = msgspec.json.Encoder()


def parse_request(data: str | bytes) -> Request:
    """Decode one client frame; anything else than a well-formed ``req`` is ``BadRequest``."""
    try:
        req = _request_decoder.decode(data)
    except msgspec.DecodeError:
        raise BadRequest(
            "malformed frame: expected a JSON object "
            '{"type":"req","id":"...","method":"...","params":{...}}'
        ) from None
    if not req.id or len(req.id) > MAX_ID_CHARS or not req.method:
        raise BadRequest(f"a request needs a method and an id of 1..{MAX_ID_CHARS} characters")
    return req


def parse_params(params: dict[str, Any], kind: type[P]) -> P:
    try:
        return msgspec.convert(params, type=kind)
    except msgspec.ValidationError as exc:
        # Our own message (never the foreign one): where it failed and what is expected.
        found = _WHERE.search(str(exc))
        where = f" at {found.group(1)}" if found else ""
        raise BadRequest(f"invalid params{where}; expected {describe(kind)}") from None


_WHERE = re.compile(r"(?:at `|field `)(\$?[A-Za-z0-9_.\[\]$]*)`")


def describe(kind: type[Params]) -> str:
    """``{text: str, session: str = 'main'}``: the shape of a params struct, for error messages."""
    info = msgspec.inspect.type_info(kind)
    fields = []
    for f in getattr(info, "fields", ()):
        type_name = type(f.type).__name__.removesuffix("Type").lower()
        default = "" if f.required else f" = {f.default!r}"
        fields.append(f"{f.encode_name}: {type_name}{default}")
    return "{" + ", ".join(fields) + "}"


def encode_ok(req_id: str, payload: Any) -> bytes:
    return _encoder.encode(Response(id=req_id, ok=True, payload=payload))


def encode_error(req_id: str | None, exc: MoltbotError) -> bytes:
    retry_after = getattr(exc, "retry_after", None)
    body = ErrorBody(
        code=exc.code,
        message=exc.user_message,
        hint=exc.hint,
        retry_after=round(retry_after, 3) if isinstance(retry_after, float | int) else None,
    )
    return _encoder.encode(Response(id=req_id, ok=False, error=body))


def encode_event(event: str, payload: Any, seq: int) -> bytes:
    return _encoder.encode(Event(event=event, payload=payload, seq=seq))
