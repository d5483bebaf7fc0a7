"""Deterministic test pictures and masks, made in memory."""

import io

import numpy as np
from PIL import Image, ImageDraw
from skimage import data

# Where the face is in skimage's 512x512 astronaut, measured by eye on the picture: the head (hair to
# chin, ear to ear) lies inside ASTRONAUT_HEAD and the eyes, nose and mouth fill ASTRONAUT_FEATURES,
# so a face box must hold ASTRONAUT_FEATURES within ASTRONAUT_HEAD.
ASTRONAUT_HEAD = (160, 40, 290, 180)
ASTRONAUT_FEATURES = (200, 95, 250, 150)


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def photo(width: int, height: int, seed: int = 0) -> Image.Image:
    """A smooth, deterministic test picture (gradients plus a little noise)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    pixels = np.stack(
        [
            x * 255 / max(width - 1, 1),
            y * 255 / max(height - 1, 1),
            (x + y) * 127 / max(width + height, 1),
        ],
        axis=-1,
    )
    pixels += rng.normal(0, 8, pixels.shape)
    return Image.fromarray(pixels.clip(0, 255).astype(np.uint8), mode="RGB")


def rect_mask(width: int, height: int, box: tuple[int, int, int, int]) -> Image.Image:
    mask = Image.new("L", (width, height), 0)
    mask.paste(255, box)
    return mask


def astronaut() -> Image.Image:
    """A real photo with one face, at the known place above."""
    return Image.fromarray(data.astronaut())


# An outline around the astronaut's face, as a member would circle it on a phone: red, 6 px wide.
FACE_OUTLINE = (150, 30, 300, 190)


def circled_face_copy(colour: tuple[int, int, int] = (255, 0, 0)) -> tuple[bytes, Image.Image]:
    """A copy of the astronaut with her face circled, re-saved by a phone (JPEG at quality 75, resized
    to 90 %), and the area the outline encloses (stroke included) as an "L" mask at full size."""
    copy = astronaut()
    ImageDraw.Draw(copy).ellipse(FACE_OUTLINE, outline=colour, width=6)
    filled = Image.new("L", copy.size, 0)
    ImageDraw.Draw(filled).ellipse(FACE_OUTLINE, fill=255)
    return phone_copy(copy), filled


def phone_copy(picture: Image.Image) -> bytes:
    """``picture`` as a phone re-saves an edited copy: resized to 90 %, JPEG at quality 75."""
    smaller = picture.resize((round(picture.width * 0.9), round(picture.height * 0.9)))
    buffer = io.BytesIO()
    smaller.save(buffer, format="JPEG", quality=75)
    return buffer.getvalue()


def crowd(columns: int = 20, rows: int = 10) -> Image.Image:
    """The astronaut's head tiled ``columns`` x ``rows`` times: a face the detector finds in each
    170x180 cell."""
    head = astronaut().crop((145, 15, 315, 195))
    picture = Image.new("RGB", (head.width * columns, head.height * rows))
    for column in range(columns):
        for row in range(rows):
            picture.paste(head, (column * head.width, row * head.height))
    return picture
