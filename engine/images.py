"""Decoding user uploads into the two picture kinds the engine works with.

An input image comes out as RGB, or RGBA when it really has transparency (the transparent pixels can
be the mask). A mask comes out as "L", white = repaint; an upload that is a marked-up copy of the
picture becomes one through ``engine.masks.scribble``. Every failure is an ``ImageError`` or a
``MaskError`` whose message the user can act on: the bot shows it as is.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from engine.errors import EngineError, ImageError, MaskError, NoMaskError
from engine.masking import fill_masked
from engine.masks import scribble


class MaskSource(StrEnum):
    """Where the repaint area came from; shown to users because masks confuse them."""

    UPLOADED = "uploaded mask"
    SCRIBBLE = "strokes drawn on a copy of the picture"
    WORDS = "mask from words"
    FACE = "automatic face mask"
    TRANSPARENCY = "the image's transparent pixels"
    BORDER = "the new border (outpainting)"


FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF")
_FORMAT_LIST = "a PNG, JPEG, WebP, GIF, BMP or TIFF file"

# First bytes of the supported formats but WebP (RIFF....WEBP): a file that starts like one but does
# not open is damaged, not of the wrong kind.
_SIGNATURES = (
    b"\x89PNG\r\n\x1a\n",
    b"\xff\xd8\xff",
    b"GIF87a",
    b"GIF89a",
    b"BM",
    b"II*\x00",
    b"MM\x00*",
)

# Modes Pillow uses for more than 8 bits per grey sample.
_WIDE_GREY_MODES = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N"})
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "PA"})

# A1111's rule for masks drawn on a transparent layer: strokes more than half opaque are the mask.
MASK_ALPHA_THRESHOLD = 128

# Tolerance, in pixels of the smaller picture, when deciding whether a mask is a resized copy.
_ASPECT_TOLERANCE_PX = 1

NO_MASK_MESSAGE = (
    "No mask to work with. Give one of: a mask image (white = repaint, or opaque strokes on a "
    "transparent layer), the automatic face mask, or an image whose transparent pixels mark the area."
)


@dataclass(frozen=True)
class UploadedMask:
    """An uploaded mask as "L" at the picture's size; ``scribbled`` when the upload was strokes drawn
    on a copy of the picture, so the result can say which kind of mask it used."""

    mask: Image.Image
    scribbled: bool = False


def load_pictures(
    image: bytes, mask: bytes | None, *, find_faces: bool, max_pixels: int
) -> tuple[Image.Image, UploadedMask | None]:
    """A job's picture and its uploaded mask (at the picture's size), once they are known to give a
    mask: the upload, faces to find, or the picture's transparent pixels.

    Every check on the pictures that needs no model is here: the command line runs it before importing
    torch, so a bad file is refused at once.
    """
    picture = load_image(image, max_pixels=max_pixels)
    if mask is not None:
        return picture, _uploaded_mask(mask, picture, max_pixels)
    if not find_faces and picture.mode != "RGBA":
        raise NoMaskError(NO_MASK_MESSAGE)
    return picture, None


def load_image(data: bytes, *, max_pixels: int) -> Image.Image:
    """Decode an uploaded picture to RGB, or to RGBA when it has real transparency."""
    return _decode(data, max_pixels=max_pixels, what="image", error=ImageError)


def load_mask(data: bytes, *, size: tuple[int, int], max_pixels: int) -> Image.Image:
    """Decode an uploaded mask to "L" (white = repaint) at ``size``, the image's size.

    Masks drawn on a transparent layer use A1111's alpha rule (opaque strokes are the mask, whatever
    their colour); other masks are read as grey levels. A mask of the same shape but another size
    (an editor exported it scaled) is resized; a mask of another shape was made for another picture.
    """
    return _plain_mask(_decode_mask(data, size, max_pixels), size)


def _uploaded_mask(data: bytes, picture: Image.Image, max_pixels: int) -> UploadedMask:
    """A mask upload as ``load_mask`` reads it, or the area marked on it when it is a marked-up copy
    of the picture (strokes on a transparent layer are a mask, whatever is under them)."""
    decoded = _decode_mask(data, picture.size, max_pixels)
    if decoded.mode != "RGBA" and scribble.is_marked_copy(decoded, picture):
        return UploadedMask(scribble.scribble_mask(decoded, picture), scribbled=True)
    return UploadedMask(_plain_mask(decoded, picture.size))


def _decode_mask(data: bytes, size: tuple[int, int], max_pixels: int) -> Image.Image:
    """The decoded upload, once it is known to have the shape of a picture of ``size``."""
    decoded = _decode(data, max_pixels=max_pixels, what="mask", error=MaskError)
    if decoded.size != size and not _same_aspect(decoded.size, size):
        raise MaskError(
            f"The mask is {decoded.width}x{decoded.height} but the image is {size[0]}x{size[1]}: "
            "they must have the same shape. Draw the mask on a copy of the image."
        )
    return decoded


def _plain_mask(decoded: Image.Image, size: tuple[int, int]) -> Image.Image:
    if decoded.mode == "RGBA":
        mask = decoded.getchannel("A").point(lambda a: 255 if a > MASK_ALPHA_THRESHOLD else 0)
    else:
        mask = decoded.convert("L")
    if mask.size == size:
        return mask
    return mask.resize(size, Image.Resampling.BILINEAR)


def mask_from_alpha(image: Image.Image) -> Image.Image:
    """The repaint area of an RGBA upload: 255 where alpha < 128, else 0.

    Binary on purpose, mirroring ``load_mask``'s alpha rule: a soft ``255 - alpha`` mask would pull
    nearly opaque pixels (anti-aliasing, a faint layer at alpha 250) into the mask and stretch the
    only-masked crop over the whole picture. Soft eraser edges are still softened by the mask blur.
    """
    return image.getchannel("A").point(lambda a: 255 if a < MASK_ALPHA_THRESHOLD else 0)


def flatten(image: Image.Image) -> Image.Image:
    """RGB pixels for the VAE: colour under the transparent pixels is diffused from the visible ones.

    Editors often wipe the RGB under transparency to black or white; encoding that garbage would pull
    the repaint towards it.
    """
    if image.mode != "RGBA":
        return image.convert("RGB")
    return fill_masked(image.convert("RGB"), mask_from_alpha(image))


def _decode(data: bytes, *, max_pixels: int, what: str, error: type[EngineError]) -> Image.Image:
    """Open, check the size from the header, then decode: a huge picture is refused before its pixels
    are allocated."""
    if not data:
        raise error(f"The {what} file is empty.")
    # Pillow's own decompression-bomb limit becomes an error like ours, not a warning in the log.
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            picture = Image.open(io.BytesIO(data), formats=FORMATS)
            _check_pixels(picture.size, max_pixels, what, error)
            picture.load()
            ImageOps.exif_transpose(picture, in_place=True)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            raise error(
                f"The {what} is too large: the limit is {megapixels(max_pixels)} megapixels."
            ) from None
        except UnidentifiedImageError:
            if _starts_like_supported_format(data):
                raise error(f"The {what} file is damaged or incomplete.") from None
            raise error(f"The {what} could not be read: it is not {_FORMAT_LIST}.") from None
        except (OSError, SyntaxError, ValueError, EOFError):
            raise error(f"The {what} file is damaged or incomplete.") from None
    return _to_rgb_or_rgba(picture)


def _starts_like_supported_format(data: bytes) -> bool:
    return data.startswith(_SIGNATURES) or (data[:4] == b"RIFF" and data[8:12] == b"WEBP")


def _check_pixels(size: tuple[int, int], max_pixels: int, what: str, error: type[EngineError]) -> None:
    width, height = size
    if width * height > max_pixels:
        raise error(
            f"The {what} is {width}x{height} ({megapixels(width * height)} megapixels), more than "
            f"the limit of {megapixels(max_pixels)} megapixels. Send a smaller version."
        )


def megapixels(pixels: int) -> str:
    return f"{pixels / 1e6:.3g}"


def _to_rgb_or_rgba(picture: Image.Image) -> Image.Image:
    """RGBA only when some pixel is not fully opaque: an unused alpha channel is dropped."""
    if picture.mode in _WIDE_GREY_MODES:
        picture = _wide_grey_to_l(picture)
    if picture.mode == "La":
        picture = picture.convert("LA")  # premultiplied grey (TIFF): Pillow has no direct way to RGBA
    if picture.mode in _ALPHA_MODES or "transparency" in picture.info:
        picture = picture.convert("RGBA")
        low, _ = picture.getchannel("A").getextrema()
        if isinstance(low, int) and low < 255:
            return picture
    return picture.convert("RGB")


def _wide_grey_to_l(picture: Image.Image) -> Image.Image:
    """16-bit grey to 8 bits by scaling (Pillow's own conversion clips, turning most pixels white).

    Mode "I" (32-bit TIFFs; 16-bit PNGs in older Pillow) is assumed to hold 16-bit values too.
    """
    values = np.asarray(picture).astype(np.float32) / 257
    return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8))


def _same_aspect(mask_size: tuple[int, int], image_size: tuple[int, int]) -> bool:
    """True when one size is a scaled copy of the other, allowing the scaler's rounding.

    The check runs on the smaller of the two, where rounding to whole pixels happened: one side
    derived from the other and the larger picture's aspect must be within a pixel of the real one.
    """
    small, large = sorted((mask_size, image_size), key=lambda s: s[0] * s[1])
    derived_height = small[0] * large[1] / large[0]
    derived_width = small[1] * large[0] / large[1]
    return (
        abs(small[1] - derived_height) <= _ASPECT_TOLERANCE_PX
        or abs(small[0] - derived_width) <= _ASPECT_TOLERANCE_PX
    )
