"""What a file is, from its first bytes (never from its name).

``sniff`` looks at the leading bytes against a small table of signatures; ``expected`` says what
a declared name's extension claims. A name whose extension claims one type while the bytes are
another is a lie worth flagging (``Kind.mismatch``); the file is then kept as plain data.
"""

from __future__ import annotations

from dataclasses import dataclass

OCTET = "application/octet-stream"


@dataclass(frozen=True, slots=True)
class FileType:
    mime: str
    kind: str  # image | audio | document
    ext: str  # the extension we store it under
    executable: bool = False


PNG = FileType("image/png", "image", "png")
JPEG = FileType("image/jpeg", "image", "jpg")
GIF = FileType("image/gif", "image", "gif")
WEBP = FileType("image/webp", "image", "webp")
PDF = FileType("application/pdf", "document", "pdf")
OGG = FileType("audio/ogg", "audio", "ogg")
MP3 = FileType("audio/mpeg", "audio", "mp3")
M4A = FileType("audio/mp4", "audio", "m4a")
WAV = FileType("audio/wav", "audio", "wav")
ZIP = FileType("application/zip", "document", "zip")
TEXT = FileType("text/plain", "document", "txt")
DATA = FileType(OCTET, "document", "bin")
ELF = FileType("application/x-executable", "document", "bin", executable=True)
EXE = FileType("application/x-msdownload", "document", "bin", executable=True)
SCRIPT = FileType("text/x-script", "document", "bin", executable=True)
MACHO = FileType("application/x-mach-binary", "document", "bin", executable=True)

IMAGE_TYPES = frozenset({PNG.mime, JPEG.mime, GIF.mime, WEBP.mime})

_PREFIXES: tuple[tuple[bytes, FileType], ...] = (
    (b"\x89PNG\r\n\x1a\n", PNG),
    (b"\xff\xd8\xff", JPEG),
    (b"GIF87a", GIF),
    (b"GIF89a", GIF),
    (b"%PDF-", PDF),
    (b"OggS", OGG),
    (b"ID3", MP3),
    (b"PK\x03\x04", ZIP),
    (b"\x7fELF", ELF),
    (b"MZ", EXE),
    (b"#!", SCRIPT),
    (b"\xcf\xfa\xed\xfe", MACHO),
    (b"\xfe\xed\xfa\xcf", MACHO),
    (b"\xca\xfe\xba\xbe", MACHO),
)
_M4A_BRANDS = (b"M4A ", b"M4B ", b"mp42", b"isom", b"dash")

# what a declared extension claims: mime types it may hold
_EXPECTED: dict[str, frozenset[str]] = {
    "png": frozenset({PNG.mime}),
    "jpg": frozenset({JPEG.mime}),
    "jpeg": frozenset({JPEG.mime}),
    "gif": frozenset({GIF.mime}),
    "webp": frozenset({WEBP.mime}),
    "pdf": frozenset({PDF.mime}),
    "ogg": frozenset({OGG.mime}),
    "oga": frozenset({OGG.mime}),
    "opus": frozenset({OGG.mime}),
    "mp3": frozenset({MP3.mime}),
    "m4a": frozenset({M4A.mime}),
    "wav": frozenset({WAV.mime}),
    "zip": frozenset({ZIP.mime}),
    "docx": frozenset({ZIP.mime}),
    "xlsx": frozenset({ZIP.mime}),
    "pptx": frozenset({ZIP.mime}),
    "odt": frozenset({ZIP.mime}),
    "txt": frozenset({TEXT.mime}),
    "md": frozenset({TEXT.mime}),
    "csv": frozenset({TEXT.mime}),
    "json": frozenset({TEXT.mime}),
}


def sniff(data: bytes) -> FileType:
    """The type of ``data`` from its leading bytes; plain text if it decodes as UTF-8 with no
    control bytes; else opaque data."""
    head = data[:64]
    for prefix, ftype in _PREFIXES:
        if head.startswith(prefix):
            return ftype
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return WEBP
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return WAV
    if head[4:8] == b"ftyp" and head[8:12] in _M4A_BRANDS:
        return M4A
    if len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:  # MPEG audio frame sync
        return MP3
    if _is_text(data[:4096]):
        return TEXT
    return DATA


def _is_text(sample: bytes) -> bool:
    if not sample:
        return False
    try:
        text = sample.decode("utf-8")
    except UnicodeDecodeError:
        try:  # the sample may end inside a multi-byte character
            text = sample[:-3].decode("utf-8") if len(sample) > 3 else ""
        except UnicodeDecodeError:
            return False
    return bool(text) and all(c.isprintable() or c in "\n\r\t\f" for c in text)


def extension(name: str) -> str:
    base = name.rsplit("/", 1)[-1]
    return base.rsplit(".", 1)[-1].lower() if "." in base.strip(".") else ""


def name_lies(name: str, actual: FileType) -> bool:
    """True when ``name``'s extension claims a type the bytes are not (an unknown or missing
    extension claims nothing)."""
    claimed = _EXPECTED.get(extension(name))
    return claimed is not None and actual.mime not in claimed


def kind_hint(declared_mime: str) -> str:
    """The platform's word for a file (image / audio / document), from its declared type; only
    a hint until the bytes are sniffed."""
    if declared_mime.startswith("image/"):
        return "image"
    return "audio" if declared_mime.startswith("audio/") else "document"


def shown_name(name: str, limit: int = 120) -> str:
    """A sender's file name as we repeat it (to them, to the model): one line, printable
    characters only, at most ``limit`` long."""
    clean = "".join(c if c.isprintable() else " " for c in name).strip()
    return clean if len(clean) <= limit else clean[: limit - 1] + "…"
