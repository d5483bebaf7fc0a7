"""Decoding uploads: every supported format, colour modes, EXIF, limits, damaged files, masks."""

import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from engine.errors import ImageError, MaskError
from engine.images import flatten, load_image, load_mask, mask_from_alpha

RED = (255, 0, 0)
BLUE = (0, 0, 255)
LIMIT = 10_000_000


def encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def red_blue(width: int = 40, height: int = 30) -> Image.Image:
    """Left half red, right half blue: orientation and colour are both checkable."""
    image = Image.new("RGB", (width, height), BLUE)
    image.paste(RED, (0, 0, width // 2, height))
    return image


def noise(width: int = 64, height: int = 64) -> Image.Image:
    """Incompressible pixels, so a cut file loses pixel data rather than just its trailer."""
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def close(pixel: tuple[int, ...], expected: tuple[int, ...], tolerance: int) -> bool:
    return all(abs(a - b) <= tolerance for a, b in zip(pixel, expected, strict=True))


@pytest.mark.parametrize(
    ("fmt", "tolerance"),
    [("PNG", 0), ("JPEG", 40), ("WEBP", 40), ("GIF", 0), ("BMP", 0), ("TIFF", 0)],
)
def test_every_supported_format_round_trips(fmt: str, tolerance: int) -> None:
    image = load_image(encode(red_blue(), fmt), max_pixels=LIMIT)
    assert image.mode == "RGB"
    assert image.size == (40, 30)
    assert close(image.getpixel((5, 15)), RED, tolerance)
    assert close(image.getpixel((35, 15)), BLUE, tolerance)


@pytest.mark.parametrize("fmt", ["PNG", "WEBP", "TIFF"])
def test_real_transparency_gives_rgba(fmt: str) -> None:
    picture = red_blue().convert("RGBA")
    picture.putpixel((35, 15), (0, 0, 255, 0))
    options = {"lossless": True} if fmt == "WEBP" else {}
    image = load_image(encode(picture, fmt, **options), max_pixels=LIMIT)
    assert image.mode == "RGBA"
    assert image.getpixel((35, 15))[3] == 0
    assert image.getpixel((5, 15)) == (*RED, 255)


def test_an_opaque_alpha_channel_is_dropped() -> None:
    image = load_image(encode(red_blue().convert("RGBA"), "PNG"), max_pixels=LIMIT)
    assert image.mode == "RGB"


def test_gif_gives_its_first_frame() -> None:
    first, second = Image.new("RGB", (20, 10), RED), Image.new("RGB", (20, 10), BLUE)
    data = encode(first, "GIF", save_all=True, append_images=[second], duration=100)
    assert Image.open(io.BytesIO(data)).n_frames == 2
    assert load_image(data, max_pixels=LIMIT).getpixel((5, 5)) == RED


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "TIFF"])
def test_exif_orientation_is_applied(fmt: str) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    image = load_image(encode(red_blue(), fmt, exif=exif.tobytes()), max_pixels=LIMIT)
    assert image.size == (30, 40)
    # The left (red) half of the stored picture is the top half of the displayed one.
    assert close(image.getpixel((15, 5)), RED, 40)
    assert close(image.getpixel((15, 35)), BLUE, 40)


def palette_picture() -> Image.Image:
    picture = Image.new("P", (20, 10), 0)
    picture.putpalette([0, 0, 0, *RED])
    picture.paste(1, (0, 0, 10, 10))
    return picture


@pytest.mark.parametrize("fmt", ["PNG", "GIF"])
def test_palette_with_transparent_index_gives_rgba(fmt: str) -> None:
    image = load_image(encode(palette_picture(), fmt, transparency=0), max_pixels=LIMIT)
    assert image.mode == "RGBA"
    assert image.getpixel((2, 2)) == (*RED, 255)
    assert image.getpixel((15, 2))[3] == 0


def test_palette_without_transparency_gives_rgb() -> None:
    image = load_image(encode(palette_picture(), "PNG"), max_pixels=LIMIT)
    assert image.mode == "RGB"
    assert image.getpixel((2, 2)) == RED
    assert image.getpixel((15, 2)) == (0, 0, 0)


@pytest.mark.parametrize("fmt", ["JPEG", "TIFF"])
def test_cmyk_becomes_rgb(fmt: str) -> None:
    cmyk = Image.new("CMYK", (20, 10), (0, 255, 255, 0))  # pure red ink-wise
    image = load_image(encode(cmyk, fmt), max_pixels=LIMIT)
    assert image.mode == "RGB"
    assert close(image.getpixel((5, 5)), RED, 10)


@pytest.mark.parametrize(("fmt", "dtype"), [("PNG", np.uint16), ("TIFF", np.uint16), ("TIFF", np.int32)])
def test_wide_grey_is_scaled_not_clipped(fmt: str, dtype: type) -> None:
    values = np.array([[0, 128 * 257, 65535]], dtype=dtype)
    source = Image.fromarray(values)
    assert source.mode in ("I;16", "I")
    image = load_image(encode(source, fmt), max_pixels=LIMIT)
    assert image.mode == "RGB"
    assert [image.getpixel((x, 0)) for x in range(3)] == [(0, 0, 0), (128, 128, 128), (255, 255, 255)]


def test_grey_with_alpha_gives_rgba() -> None:
    picture = Image.new("LA", (20, 10), (100, 0))
    picture.paste((200, 255), (0, 0, 10, 10))
    image = load_image(encode(picture, "PNG"), max_pixels=LIMIT)
    assert image.mode == "RGBA"
    assert image.getpixel((2, 2)) == (200, 200, 200, 255)
    assert image.getpixel((15, 2))[3] == 0


def test_premultiplied_grey_tiff_gives_rgba() -> None:
    picture = Image.new("LA", (20, 10), (0, 0))
    picture.paste((100, 128), (0, 0, 10, 10))
    data = encode(picture, "TIFF")
    # Pillow always writes ExtraSamples = 2 (unassociated alpha); 1 marks it premultiplied ("La").
    entry = struct.pack("<HHI", 338, 3, 1)
    at = data.index(entry) + len(entry)
    data = data[:at] + struct.pack("<H", 1) + data[at + 2 :]
    assert Image.open(io.BytesIO(data)).mode == "La"
    image = load_image(data, max_pixels=LIMIT)
    assert image.mode == "RGBA"
    assert close(image.getpixel((2, 2)), (199, 199, 199, 128), 1)  # 100 premultiplied by 128/255
    assert image.getpixel((15, 2))[3] == 0


def test_grey_png_with_transparent_value_gives_rgba() -> None:
    picture = Image.new("L", (20, 10), 77)
    picture.paste(200, (0, 0, 10, 10))
    image = load_image(encode(picture, "PNG", transparency=77), max_pixels=LIMIT)
    assert image.mode == "RGBA"
    assert image.getpixel((2, 2)) == (200, 200, 200, 255)
    assert image.getpixel((15, 2))[3] == 0


@pytest.mark.parametrize("mode", ["1", "L"])
def test_bilevel_and_grey_become_rgb(mode: str) -> None:
    picture = Image.new(mode, (20, 10), 0)
    picture.paste(255 if mode == "L" else 1, (0, 0, 10, 10))
    image = load_image(encode(picture, "PNG"), max_pixels=LIMIT)
    assert image.mode == "RGB"
    assert image.getpixel((2, 2)) == (255, 255, 255)
    assert image.getpixel((15, 2)) == (0, 0, 0)


NOT_AN_IMAGE = "The image could not be read: it is not a PNG, JPEG, WebP, GIF, BMP or TIFF file."
DAMAGED = "The image file is damaged or incomplete."


def corrupt(data: bytes) -> bytes:
    middle = len(data) // 2
    return data[:middle] + bytes(200) + data[middle + 200 :]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "The image file is empty."),
        (b"hello, this is a text file\n", NOT_AN_IMAGE),
        (b"%PDF-1.4\n1 0 obj\n<< /Type /Catalog >>\nendobj\n", NOT_AN_IMAGE),
        (b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>', NOT_AN_IMAGE),
        (encode(noise(), "PNG")[:8], DAMAGED),  # cut right after the signature
        (encode(noise(), "PNG")[:20], DAMAGED),  # cut inside the header
        (encode(noise(), "GIF")[:10], DAMAGED),
        (encode(noise(), "TIFF")[:8], DAMAGED),
        (encode(noise(), "BMP")[:10], DAMAGED),
        (encode(noise(), "PNG")[:-3000], DAMAGED),
        (encode(noise(), "JPEG")[:-3000], DAMAGED),
        (encode(noise(), "GIF")[:-3000], DAMAGED),
        (encode(noise(), "BMP")[:-3000], DAMAGED),
        (encode(noise(), "TIFF")[:-3000], DAMAGED),
        (encode(noise(), "WEBP")[:30], DAMAGED),
        (corrupt(encode(noise(), "PNG")), DAMAGED),
    ],
    ids=[
        *("empty", "text", "pdf", "svg"),
        *("png-signature", "png-header", "gif-header", "tiff-header", "bmp-header"),
        *("png", "jpeg", "gif", "bmp", "tiff", "webp", "png-garbled"),
    ],
)
@pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning")  # Pillow, on the cut TIFF header
def test_unreadable_bytes_say_why(data: bytes, message: str) -> None:
    with pytest.raises(ImageError) as caught:
        load_image(data, max_pixels=LIMIT)
    assert str(caught.value) == message


def test_too_many_pixels_names_size_and_limit() -> None:
    with pytest.raises(ImageError, match=r"40x30 \(0\.0012 megapixels\).*limit of 0\.001 megapixels"):
        load_image(encode(red_blue(), "PNG"), max_pixels=1000)


def test_pixel_limit_is_checked_before_decoding() -> None:
    """A header that promises 25 MP followed by garbage: refused for its size, never decoded."""
    header = struct.pack(">IIBBBBB", 5000, 5000, 8, 2, 0, 0, 0)
    data = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", header) + png_chunk(b"IDAT", b"garbage")
    with pytest.raises(ImageError, match="5000x5000"):
        load_image(data, max_pixels=1_000_000)


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


@pytest.mark.parametrize("size", [(15, 10), (40, 30)], ids=["bomb-warning", "bomb-error"])
def test_pillow_decompression_bomb_limit_is_an_image_error(
    monkeypatch: pytest.MonkeyPatch, size: tuple[int, int]
) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # warns above 100 px, refuses above 200
    with pytest.raises(ImageError, match="too large"):
        load_image(encode(red_blue(*size), "PNG"), max_pixels=LIMIT)


def grey_mask(size: tuple[int, int] = (40, 30)) -> Image.Image:
    mask = Image.new("L", size, 0)
    mask.paste(255, (0, 0, size[0] // 2, size[1]))
    mask.putpixel((size[0] - 1, 0), 128)
    return mask


def test_grey_mask_keeps_its_levels() -> None:
    mask = load_mask(encode(grey_mask(), "PNG"), size=(40, 30), max_pixels=LIMIT)
    assert mask.mode == "L"
    assert mask.getpixel((5, 5)) == 255
    assert mask.getpixel((35, 5)) == 0
    assert mask.getpixel((39, 0)) == 128


def test_colour_mask_is_read_as_grey() -> None:
    mask = load_mask(encode(grey_mask().convert("RGB"), "PNG"), size=(40, 30), max_pixels=LIMIT)
    assert mask.mode == "L"
    assert (mask.getpixel((5, 5)), mask.getpixel((35, 5))) == (255, 0)


def test_transparent_mask_uses_a1111_alpha_rule() -> None:
    """Opaque strokes on a transparent layer are the mask, whatever their colour: alpha > 128."""
    layer = Image.new("RGBA", (4, 1), (255, 255, 255, 0))
    for x, alpha in enumerate([255, 129, 128, 0]):
        layer.putpixel((x, 0), (0, 0, 0, alpha))  # black strokes: grey levels would say "keep"
    mask = load_mask(encode(layer, "PNG"), size=(4, 1), max_pixels=LIMIT)
    assert mask.mode == "L"
    assert [mask.getpixel((x, 0)) for x in range(4)] == [255, 255, 0, 0]


def test_mask_of_same_shape_is_resized() -> None:
    mask = load_mask(encode(grey_mask((20, 15)), "PNG"), size=(40, 30), max_pixels=LIMIT)
    assert mask.size == (40, 30)
    assert mask.getpixel((5, 15)) == 255
    assert mask.getpixel((35, 15)) == 0


def test_mask_resize_allows_rounding_by_a_pixel() -> None:
    # 401x300 halved is 200.5x150: an editor writes 200x150.
    mask = load_mask(encode(grey_mask((200, 150)), "PNG"), size=(401, 300), max_pixels=LIMIT)
    assert mask.size == (401, 300)


@pytest.mark.parametrize("mask_size", [(30, 30), (40, 32), (80, 40)])
def test_mask_of_another_shape_is_refused(mask_size: tuple[int, int]) -> None:
    with pytest.raises(MaskError) as caught:
        load_mask(encode(grey_mask(mask_size), "PNG"), size=(40, 30), max_pixels=LIMIT)
    assert f"{mask_size[0]}x{mask_size[1]}" in str(caught.value)
    assert "40x30" in str(caught.value)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "The mask file is empty."),
        (b"not a picture", NOT_AN_IMAGE.replace("image", "mask")),
        (encode(noise(), "PNG")[:-3000], "The mask file is damaged or incomplete."),
    ],
)
def test_unreadable_mask_says_mask(data: bytes, message: str) -> None:
    with pytest.raises(MaskError) as caught:
        load_mask(data, size=(64, 64), max_pixels=LIMIT)
    assert str(caught.value) == message


def test_mask_pixel_limit() -> None:
    with pytest.raises(MaskError, match="The mask is 40x30"):
        load_mask(encode(grey_mask(), "PNG"), size=(40, 30), max_pixels=1000)


def test_mask_from_alpha_marks_transparent_pixels() -> None:
    image = Image.new("RGBA", (4, 1))
    for x, alpha in enumerate([0, 127, 128, 255]):
        image.putpixel((x, 0), (9, 9, 9, alpha))
    mask = mask_from_alpha(image)
    assert mask.mode == "L"
    assert [mask.getpixel((x, 0)) for x in range(4)] == [255, 255, 0, 0]


def test_flatten_fills_wiped_pixels_and_keeps_visible_ones() -> None:
    image = Image.new("RGBA", (60, 40), (0, 0, 0, 0))  # an editor wiped the RGB to black
    image.paste((*RED, 255), (0, 0, 30, 40))
    image.paste((10, 20, 30, 200), (0, 0, 5, 5))  # mostly opaque: its own colour stays
    flat = np.asarray(flatten(image))
    assert flatten(image).mode == "RGB"
    assert (flat[:, 5:30] == RED).all()
    assert (flat[:5, :5] == (10, 20, 30)).all()
    hidden = flat[:, 30:].astype(int)
    assert (hidden[..., 0] > 200).all()  # red diffused into the wiped area, not black
    assert (hidden[..., 1:] < 60).all()


def test_flatten_leaves_rgb_alone() -> None:
    image = noise()
    assert np.array_equal(np.asarray(flatten(image)), np.asarray(image))
