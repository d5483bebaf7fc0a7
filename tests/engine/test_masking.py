"""Mask settings, crop math, the "fill" masked content and the final composite, measured on pixels."""

import cv2
import numpy as np
import pytest
from PIL import Image, ImageFilter, ImageOps

from engine.errors import MaskError
from engine.masking import (
    Box,
    _upscale_part,
    composite,
    expand_to_aspect,
    fill_masked,
    masked_region,
    prepare_mask,
    processing_size,
)

RED = (255, 0, 0)
BLUE = (0, 0, 255)
GREEN = (0, 255, 0)


def rect(size: tuple[int, int], box: tuple[int, int, int, int], value: int = 255) -> Image.Image:
    mask = Image.new("L", size, 0)
    mask.paste(value, box)
    return mask


def white(mask: Image.Image) -> np.ndarray:
    return np.asarray(mask) == 255


def red_blue(width: int, height: int) -> Image.Image:
    image = Image.new("RGB", (width, height), BLUE)
    image.paste(RED, (0, 0, width // 2, height))
    return image


def noise(width: int, height: int) -> Image.Image:
    rng = np.random.default_rng(1)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


# prepare_mask: emptiness


def test_all_black_mask_is_an_error() -> None:
    with pytest.raises(MaskError, match=r"all black\. White marks the area to repaint"):
        prepare_mask(Image.new("L", (50, 50), 0), invert=False, grow=0, blur=4)


def test_all_white_mask_is_an_error_when_inverted() -> None:
    with pytest.raises(MaskError, match="all white and invert mask is on"):
        prepare_mask(Image.new("L", (50, 50), 255), invert=True, grow=0, blur=4)


def test_all_black_mask_inverted_repaints_everything() -> None:
    mask = prepare_mask(Image.new("L", (50, 50), 0), invert=True, grow=0, blur=4)
    assert white(mask).all()


def test_mask_shrunk_to_nothing_is_an_error() -> None:
    with pytest.raises(MaskError, match="after shrinking it by 5 px"):
        prepare_mask(rect((50, 50), (20, 20, 28, 28)), invert=False, grow=-5, blur=4)


def test_faint_speck_blurred_to_nothing_is_an_error() -> None:
    with pytest.raises(MaskError, match="too small or too faint"):
        prepare_mask(rect((50, 50), (25, 25, 26, 26), value=1), invert=False, grow=0, blur=4)


# prepare_mask: effects


def test_no_settings_leave_the_mask_as_is() -> None:
    rng = np.random.default_rng(2)
    values = rng.integers(0, 256, (40, 60), dtype=np.uint8)
    mask = prepare_mask(Image.fromarray(values), invert=False, grow=0, blur=0)
    assert mask.mode == "L"
    assert np.array_equal(np.asarray(mask), values)


def test_invert_swaps_repaint_and_keep() -> None:
    mask = prepare_mask(rect((60, 40), (0, 0, 30, 40)), invert=True, grow=0, blur=0)
    values = np.asarray(mask)
    assert (values[:, :30] == 0).all()
    assert (values[:, 30:] == 255).all()


def test_grow_uses_a_disc() -> None:
    mask = white(prepare_mask(rect((100, 100), (40, 40, 60, 60)), invert=False, grow=5, blur=0))
    row, column = mask[50], mask[:, 50]
    assert np.flatnonzero(row).tolist() == list(range(35, 65))
    assert np.flatnonzero(column).tolist() == list(range(35, 65))
    # Near the square's corner (59, 59) only offsets within 5.5 px are reached: the corner is round.
    assert mask[59 + 3, 59 + 4] and mask[59 + 2, 59 + 5]
    assert not mask[59 + 4, 59 + 4] and not mask[59 + 3, 59 + 5]


def test_large_grow_is_still_round() -> None:
    mask = white(prepare_mask(rect((201, 201), (100, 100, 101, 101)), invert=False, grow=40, blur=0))
    rows, cols = np.mgrid[0:201, 0:201]
    distance = np.hypot(rows - 100, cols - 100)
    assert mask[distance <= 39].all()
    assert not mask[distance > 41.5].any()  # a square kernel would reach 56 px along the diagonals
    one_disc = (distance**2 <= 40 * 41).sum()
    assert abs(mask.sum() / one_disc - 1) < 0.04


def test_shrink_takes_pixels_off_every_side() -> None:
    mask = white(prepare_mask(rect((100, 100), (40, 40, 60, 60)), invert=False, grow=-5, blur=0))
    expected = white(rect((100, 100), (45, 45, 55, 55)))
    assert np.array_equal(mask, expected)


def test_shrink_does_not_eat_a_mask_at_the_picture_edge() -> None:
    mask = white(prepare_mask(rect((100, 60), (0, 0, 30, 60)), invert=False, grow=-5, blur=0))
    assert np.array_equal(mask, white(rect((100, 60), (0, 0, 25, 60))))


def test_blur_softens_the_edge() -> None:
    values = np.asarray(prepare_mask(rect((100, 20), (0, 0, 50, 20)), invert=False, grow=0, blur=4))
    row = values[10].astype(int)
    assert (np.diff(row) <= 0).all()
    assert 100 < row[49] < 200 and 60 < row[50] < 160
    assert row[45] < 255 and row[55] > 0
    assert (row[:35] == 255).all() and (row[65:] == 0).all()


def test_blur_of_a_small_mask_on_a_big_picture_is_the_full_gaussian() -> None:
    """Only the mask's surroundings are processed; the result must not show it."""
    mask = rect((1000, 800), (500, 400, 520, 420))
    result = prepare_mask(mask, invert=False, grow=0, blur=8)
    expected = mask.filter(ImageFilter.GaussianBlur(8))
    assert np.array_equal(np.asarray(result), np.asarray(expected))


def test_shrink_happens_before_blur() -> None:
    result = prepare_mask(rect((100, 100), (40, 40, 60, 60)), invert=False, grow=-5, blur=2)
    expected = rect((100, 100), (45, 45, 55, 55)).filter(ImageFilter.GaussianBlur(2))
    assert np.array_equal(np.asarray(result), np.asarray(expected))


# processing_size


@pytest.mark.parametrize(
    ("width", "height", "long_side", "expected"),
    [
        (1000, 500, 512, (512, 256)),
        (500, 1000, 512, (256, 512)),
        (300, 300, 1024, (1024, 1024)),
        (1000, 333, 512, (512, 168)),  # 170.5 rounds to 168
        (1000, 340, 512, (512, 176)),  # 174.1 rounds to 176
        (164, 114, 768, (768, 536)),
        (10000, 10, 512, (512, 64)),  # the short side stops at 64
        (10, 10000, 768, (64, 768)),
    ],
)
def test_processing_size(width: int, height: int, long_side: int, expected: tuple[int, int]) -> None:
    assert processing_size(width, height, long_side) == expected


@pytest.mark.parametrize(
    ("width", "height", "long_side"), [(100, 100, 500), (100, 100, 56), (0, 100, 512)]
)
def test_processing_size_refuses_bad_arguments(width: int, height: int, long_side: int) -> None:
    with pytest.raises(ValueError):
        processing_size(width, height, long_side)


# Box and expand_to_aspect (a 1000x800 picture)


def test_box_geometry() -> None:
    box = Box(10, 20, 110, 70)
    assert (box.width, box.height) == (100, 50)
    assert box.as_tuple() == (10, 20, 110, 70)
    assert Image.new("L", (200, 100)).crop(box.as_tuple()).size == (100, 50)


@pytest.mark.parametrize(
    ("box", "aspect", "expected"),
    [
        (Box(400, 300, 500, 350), (1, 1), Box(400, 275, 500, 375)),  # centre: height grows evenly
        (Box(400, 300, 500, 400), (2, 1), Box(350, 300, 550, 400)),  # centre: width grows evenly
        (Box(10, 10, 20, 13), (1, 1), Box(10, 7, 20, 17)),  # odd growth: the extra pixel goes last
        (Box(0, 300, 100, 500), (1, 1), Box(0, 300, 200, 500)),  # left edge: shifted right
        (Box(950, 300, 1000, 400), (1, 1), Box(900, 300, 1000, 400)),  # right edge: shifted left
        (Box(0, 0, 100, 40), (1, 1), Box(0, 0, 100, 100)),  # top-left corner
        (Box(960, 780, 1000, 800), (1, 1), Box(960, 760, 1000, 800)),  # bottom-right corner
        (Box(0, 0, 1000, 100), (1, 1), Box(0, 0, 1000, 800)),  # needs more than the image: clamped
        (Box(100, 100, 612, 452), (512, 352), Box(100, 100, 612, 452)),  # already right
        (Box(0, 0, 100, 50), (3, 2), Box(0, 0, 100, 67)),  # 66.7 rounds to 67
    ],
)
def test_expand_to_aspect(box: Box, aspect: tuple[int, int], expected: Box) -> None:
    assert expand_to_aspect(box, aspect[0], aspect[1], 1000, 800) == expected


# masked_region


def test_masked_region_pads_and_matches_the_processing_aspect() -> None:
    mask = rect((1000, 800), (400, 300, 500, 350))
    box, size = masked_region(mask, padding=32, long_side=512)
    # Padded box 368..532 x 268..382 (164x114) -> 512x352; 114 * 512 / 352 = 165.8 -> 166 wide.
    assert size == (512, 352)
    assert box == Box(367, 268, 533, 382)


def test_masked_region_of_a_thin_line_uses_the_64_px_floor() -> None:
    box, size = masked_region(rect((1000, 800), (100, 400, 900, 401)), padding=0, long_side=512)
    assert size == (512, 64)
    assert box == Box(100, 351, 900, 451)


def test_masked_region_padding_stops_at_the_corner() -> None:
    box, size = masked_region(rect((1000, 800), (0, 0, 50, 30)), padding=32, long_side=512)
    # Padded 0..82 x 0..62 -> 512x384; 62 * 512 / 384 = 82.7 -> 83 wide.
    assert size == (512, 384)
    assert box == Box(0, 0, 83, 62)


def test_masked_region_follows_the_blurred_mask() -> None:
    mask = prepare_mask(rect((1000, 800), (400, 300, 500, 350)), invert=False, grow=0, blur=8)
    box, _ = masked_region(mask, padding=0, long_side=512)
    assert box.x0 < 400 - 10 and box.x1 > 500 + 10
    assert np.asarray(mask)[: box.y0].max() == 0 and np.asarray(mask)[box.y1 :].max() == 0


def test_masked_region_of_an_empty_mask_is_an_error() -> None:
    with pytest.raises(MaskError, match="empty"):
        masked_region(Image.new("L", (100, 100), 0), padding=32, long_side=512)


# fill_masked


def test_fill_diffuses_the_surrounding_colours_into_the_hole() -> None:
    image = red_blue(200, 100)
    mask = rect((200, 100), (70, 30, 130, 70))
    filled = np.asarray(fill_masked(image, mask)).astype(int)
    hole = white(mask)
    assert np.array_equal(filled[~hole], np.asarray(image)[~hole])
    assert (filled[hole].sum(axis=1) > 150).all()  # no black holes
    left, right = filled[30:70, 72], filled[30:70, 127]
    assert (left[:, 0] > 180).all() and (left[:, 2] < 75).all()
    assert (right[:, 2] > 180).all() and (right[:, 0] < 75).all()
    middle = filled[50, 100]
    assert 60 < middle[0] < 200 and 60 < middle[2] < 200


def a1111_fill(image: Image.Image, mask: Image.Image) -> Image.Image:
    """A1111's ``modules/masking.py::fill``, verbatim but for names: the behaviour to match."""
    result = Image.new("RGBA", image.size)
    unmasked = Image.new("RGBa", image.size)
    unmasked.paste(image.convert("RGBA").convert("RGBa"), mask=ImageOps.invert(mask))
    for radius, repeats in [(256, 1), (64, 1), (16, 2), (4, 4), (2, 2), (0, 1)]:
        blurred = unmasked.filter(ImageFilter.GaussianBlur(radius)).convert("RGBA")
        for _ in range(repeats):
            result.alpha_composite(blurred)
    return result.convert("RGB")


@pytest.mark.parametrize(
    ("box", "mean_error"),
    [((150, 100, 350, 300), 2), ((20, 20, 120, 80), 2.5), ((0, 0, 300, 384), 6)],
    ids=["centre", "near-corner", "edge-to-edge"],
)
def test_fill_matches_a1111(box: tuple[int, int, int, int], mean_error: float) -> None:
    rows, cols = np.mgrid[0:384, 0:512]
    pixels = np.stack([cols * 255 // 512, rows * 255 // 384, (rows + cols) % 256], axis=-1)
    pixels[100:140] = (250, 250, 0)
    image = Image.fromarray(pixels.astype(np.uint8))
    mask = rect(image.size, box)
    hole = white(mask)
    ours = np.asarray(fill_masked(image, mask)).astype(int)[hole]
    theirs = np.asarray(a1111_fill(image, mask)).astype(int)[hole]
    # Not bit-exact: OpenCV's true Gaussian on shrunk copies vs Pillow's box-filter approximation.
    assert np.abs(ours - theirs).mean() < mean_error
    assert np.abs(ours - theirs).max() < 25


def test_fill_uses_the_binarised_mask() -> None:
    image = red_blue(100, 50)
    unchanged = fill_masked(image, rect((100, 50), (40, 10, 60, 40), value=127))
    changed = fill_masked(image, rect((100, 50), (40, 10, 60, 40), value=128))
    assert np.array_equal(np.asarray(unchanged), np.asarray(image))
    assert not np.array_equal(np.asarray(changed), np.asarray(image))


def test_fill_of_an_all_masked_picture_is_neutral_grey() -> None:
    filled = fill_masked(red_blue(40, 30), Image.new("L", (40, 30), 255))
    assert set(filled.getdata()) == {(128, 128, 128)}


def test_fill_reaches_holes_wider_than_any_blur() -> None:
    """Pixels thousands of px from anything unmasked get the unmasked colour, not black."""
    image = Image.new("RGB", (3000, 20), (0, 0, 0))
    image.paste(RED, (0, 0, 5, 20))
    filled = np.asarray(fill_masked(image, rect((3000, 20), (5, 0, 3000, 20)))).astype(int)
    assert (filled[:, 5:, 0] > 240).all()
    assert (filled[:, 5:, 1:] < 15).all()


def test_fill_has_no_seams_between_tiles() -> None:
    rows, cols = np.mgrid[0:700, 0:800]
    gradient = np.stack([cols * 255 // 800, rows * 255 // 700, np.full_like(rows, 90)], axis=-1)
    image = Image.fromarray(gradient.astype(np.uint8))
    hole = white(rect((800, 700), (100, 100, 700, 600)))  # spans several 256 px tiles
    filled = np.asarray(fill_masked(image, Image.fromarray(hole))).astype(int)[100:600, 100:700]
    assert np.abs(np.diff(filled, axis=0)).max() <= 3
    assert np.abs(np.diff(filled, axis=1)).max() <= 3


def test_upscaled_parts_are_pieces_of_one_resize() -> None:
    """The fill upscales its coarse layers tile by tile; together the tiles must be one resize."""
    rng = np.random.default_rng(4)
    small = rng.random((25, 33, 4), dtype=np.float32)
    whole = cv2.resize(small, (130, 100), interpolation=cv2.INTER_LINEAR)
    for part in [Box(0, 0, 130, 100), Box(0, 0, 64, 64), Box(64, 64, 130, 100), Box(37, 11, 90, 80)]:
        # warpAffine rounds positions to 1/32 px; an off-by-half-pixel mapping would be off by ~0.3.
        assert np.allclose(_upscale_part(small, (130, 100), part), whole[part.slices()], atol=0.02)


# composite


@pytest.mark.parametrize("size", [(640, 480), (480, 640), (1000, 300), (4096, 3072)])
def test_composite_keeps_unmasked_pixels_bit_identical(size: tuple[int, int]) -> None:
    width, height = size
    original = noise(width, height)
    raw = rect(size, (width // 3, height // 4, width // 2, height // 2))
    mask = prepare_mask(raw, invert=False, grow=0, blur=4)
    box, processing = masked_region(mask, padding=32, long_side=512)
    generated = noise(*processing)
    result = composite(original, generated, mask.crop(box.as_tuple()), box)
    assert result.size == size and result.mode == "RGB"
    values, before, alpha = np.asarray(result), np.asarray(original), np.asarray(mask)
    assert not ((values != before) & (alpha[..., None] == 0)).any()
    # Fully masked pixels are the generated picture, resized back (Lanczos) into the box.
    patch = np.asarray(generated.resize((box.width, box.height), Image.Resampling.LANCZOS))
    full = alpha[box.slices()] == 255
    assert full.any()
    assert np.array_equal(values[box.slices()][full], patch[full])


def test_composite_blends_where_the_mask_is_partial() -> None:
    original = Image.new("RGB", (200, 100), (0, 0, 0))
    mask = prepare_mask(rect((200, 100), (80, 30, 120, 70)), invert=False, grow=0, blur=4)
    box, processing = masked_region(mask, padding=16, long_side=512)
    green = Image.new("RGB", processing, GREEN)
    values = np.asarray(composite(original, green, mask.crop(box.as_tuple()), box))
    alpha = np.asarray(mask).astype(int)
    partial = (alpha > 0) & (alpha < 255)
    assert partial.any()
    assert (np.abs(values[partial][:, 1] - alpha[partial]) <= 1).all()
    assert (values[partial][:, [0, 2]] == 0).all()


def test_composite_refuses_a_mask_of_another_size_than_the_box() -> None:
    with pytest.raises(ValueError):
        composite(noise(100, 100), noise(64, 64), Image.new("L", (100, 100), 255), Box(0, 0, 50, 50))
