"""Images checked and fitted to the model's limits with Pillow.

An image is opened lazily and its pixel count checked *before* it is decoded (a small file can
declare a huge canvas: a decompression bomb); then decoded, its first frame taken, scaled so its
long edge is at most ``max_edge`` and re-encoded (PNG when it has transparency, else JPEG), which
also drops metadata such as a photo's GPS position. What is still over ``max_bytes`` is made
smaller until it fits.

Pillow is imported on the first image, not with this module: every process that can receive
a file imports this, and most never see a picture (about 2 MB each).
"""

from __future__ import annotations

import io
import warnings
from typing import TYPE_CHECKING

from moltbot.errors import MediaRefused as ImageRefused

if TYPE_CHECKING:
    from PIL import Image


def fit_image(
    data: bytes,
    *,
    max_edge: int = 1568,
    max_bytes: int = 5 * 1024 * 1024,
    max_pixels: int = 50_000_000,
) -> tuple[bytes, str]:
    """``data`` as an image the provider takes: (encoded bytes, mime). ImageRefused if it is
    not a readable image or is larger than ``max_pixels``."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img: Image.Image = Image.open(io.BytesIO(data))
            width, height = img.size
            if width < 1 or height < 1 or width * height > max_pixels:
                raise ImageRefused(
                    f"the image is {width}x{height} pixels, more than the {max_pixels} allowed "
                    "(media.image_max_pixels)"
                )
            img.seek(0)
            img.load()
            img = ImageOps.exif_transpose(img) or img
    except ImageRefused:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageRefused(
            f"the image has more pixels than the {max_pixels} allowed (media.image_max_pixels)"
        ) from exc
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ImageRefused("the image could not be read (damaged or not an image)") from exc
    alpha = img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)
    img = img.convert("RGBA" if alpha else "RGB")
    edge = max_edge
    quality = 85
    while True:
        frame = img.copy()
        frame.thumbnail((edge, edge), Image.Resampling.LANCZOS)
        out = io.BytesIO()
        if alpha:
            frame.save(out, format="PNG", optimize=True)
        else:
            frame.save(out, format="JPEG", quality=quality)
        if out.tell() <= max_bytes:
            return out.getvalue(), "image/png" if alpha else "image/jpeg"
        if edge <= 64:
            raise ImageRefused("the image cannot be made small enough for the model")
        if not alpha and quality > 60:
            quality -= 10
        else:
            edge = int(edge * 0.75)
