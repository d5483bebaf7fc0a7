"""Deterministic test pictures and masks, made in memory."""

import io

import numpy as np
from PIL import Image
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


def crowd(columns: int = 20, rows: int = 10) -> Image.Image:
    """The astronaut's head tiled ``columns`` x ``rows`` times: a face the detector finds in each
    170x180 cell."""
    head = astronaut().crop((145, 15, 315, 195))
    picture = Image.new("RGB", (head.width * columns, head.height * rows))
    for column in range(columns):
        for row in range(rows):
            picture.paste(head, (column * head.width, row * head.height))
    return picture
