"""Pictures, voice notes and files of the WhatsApp Cloud API (``WhatsAppCloudAdapter``).

In: a webhook message of type image / document / audio / video / sticker carries a media id.
``GET /<version>/<media-id>`` (bearer token) answers a short-lived ``url``, its ``file_size``
and type; the file is then a GET of that url with the same token. The token goes only to
Meta's own hosts (``lookaside.fbsbx.com``, or the configured ``api_base`` itself), redirects
are not followed, and the body is cut at the cap (``moltbot.media.fetch.fetch_own``).

Out: the file is uploaded (``POST /<phone_number_id>/media``, multipart with
``messaging_product=whatsapp``) and a message of type image (JPEG/PNG up to 5 MB: what
WhatsApp shows inline) or document is sent with the media id it got.
"""

from __future__ import annotations

from collections.abc import Callable

import httpx
import msgspec

from moltbot.errors import MediaRefused, PlatformRejected
from moltbot.media.fetch import same_origin
from moltbot.messages import Attachment, OutboundFile

META_MEDIA_HOSTS = frozenset({"lookaside.fbsbx.com"})  # where Graph's media urls point
IMAGE_MIMES = frozenset({"image/jpeg", "image/png"})  # the Cloud API's image types
IMAGE_MAX = 5 * 1024 * 1024
# the webhook's media types and our word for them (a video is kept as a file)
KINDS = {
    "image": "image",
    "sticker": "image",
    "audio": "audio",
    "document": "document",
    "video": "document",
}


class Media(msgspec.Struct):
    """The media object of a webhook message (``message["image"]`` ...)."""

    id: str = ""
    mime_type: str = ""
    caption: str = ""
    filename: str = ""


def media_hosts(api_base: str) -> Callable[[httpx.URL], bool]:
    """The hosts the bearer token may be sent to for a media download."""
    own = same_origin(api_base)

    def check(url: httpx.URL) -> bool:
        return own(url) or (url.scheme == "https" and url.host in META_MEDIA_HOSTS)

    return check


def attachment(kind: str, media: Media | None) -> Attachment | None:
    """The attachment of a webhook message of type ``kind`` (None: not a file, or no id)."""
    ours = KINDS.get(kind)
    if ours is None or media is None or not media.id.isdigit():
        return None
    return Attachment(kind=ours, name=media.filename, declared_mime=media.mime_type, ref=media.id)


def check_media_id(ref: str) -> str:
    if not ref.isdigit():  # a path piece of the Graph URL: never anything but a number
        raise PlatformRejected("WhatsApp gave a media id that is not valid")
    return ref


def declared_size(info: dict[str, object], max_bytes: int) -> str:
    """The url of a media lookup's answer, MediaRefused when it says the file is too big."""
    size = info.get("file_size")
    if isinstance(size, int | str) and str(size).isdigit() and int(size) > max_bytes:
        raise MediaRefused("the file is larger than the limit")
    url = info.get("url")
    if not isinstance(url, str) or not url:
        raise PlatformRejected("WhatsApp gave no url for the file")
    return url


def message_body(out: OutboundFile, media_id: str) -> dict[str, object]:
    """The ``/messages`` body that sends the uploaded ``media_id`` to ``out.chat_id``."""
    as_image = out.mime in IMAGE_MIMES and len(out.data) <= IMAGE_MAX
    media: dict[str, str] = {"id": media_id}
    if out.caption:
        media["caption"] = out.caption[:1024]
    if not as_image:
        media["filename"] = out.name
    kind = "image" if as_image else "document"
    return {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": out.chat_id,
        "type": kind,
        kind: media,
    }
