"""Crops staged ahead, and crops made between passes from the box alone, give the pictures that
cropping and compositing the whole picture pass by pass gives, bit for bit."""

import numpy as np
import pytest
from PIL import Image, ImageFilter

from engine import masking
from engine.masking import Box, Patch
from engine.passes import Composite, MaskPass, StagedCrop, stage_ahead
from engine.settings import InpaintSettings

SIZE = (400, 300)
PROCESSING = (64, 64)


def noise(width: int, height: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def mask_pass(box: Box, painted: Box) -> MaskPass:
    """A pass over ``box`` whose blurred mask is non-zero only within ``painted`` (picture pixels),
    up to a pixel from its edges."""
    mask = Image.new("L", (box.width, box.height), 0)
    inner = painted.moved(-box.x0, -box.y0)
    mask.paste(255, (inner.x0 + 6, inner.y0 + 6, inner.x1 - 6, inner.y1 - 6))
    mask = mask.filter(ImageFilter.GaussianBlur(2))
    found = mask.getbbox()
    assert found is not None
    reaches = Box(*found).moved(box.x0, box.y0)
    assert reaches == painted.expanded(-1, *SIZE)
    return MaskPass(mask=mask, box=box, size=PROCESSING)


# Face-like passes: the second's box takes in what the first paints; the third's box overlaps the
# second's box but not what the second paints; the last (an inverted mask) is the whole picture.
PASSES = (
    mask_pass(Box(40, 40, 200, 200), Box(60, 60, 180, 180)),
    mask_pass(Box(150, 50, 330, 230), Box(170, 70, 310, 190)),
    mask_pass(Box(200, 200, 390, 290), Box(220, 220, 370, 280)),
    mask_pass(Box(0, 0, 400, 300), Box(10, 10, 390, 290)),
)


def assert_same(made: StagedCrop, expected: StagedCrop) -> None:
    for name in ("picture", "mask", "filled", "control"):
        mine, theirs = getattr(made, name), getattr(expected, name)
        assert (mine is None) == (theirs is None), name
        if mine is not None:
            assert np.array_equal(np.asarray(mine), np.asarray(theirs)), name


@pytest.mark.parametrize(
    "settings",
    [
        {"masked_content": "original"},
        {"masked_content": "fill", "controlnet": "tile", "tile_downsample": 2},
        {"controlnet": "inpaint"},
    ],
)
def test_staged_and_between_pass_crops_are_the_pass_by_pass_ones(settings: dict[str, object]) -> None:
    job = InpaintSettings.parse(prompt="a face", **settings)
    picture = noise(*SIZE, seed=0)
    outputs = [noise(*PROCESSING, seed=index + 1) for index in range(len(PASSES))]

    # As the engine did before: crop the whole picture as the earlier passes left it, then paste.
    canvas, expected = picture, []
    for p, output in zip(PASSES, outputs, strict=True):
        expected.append(p.stage(canvas.crop(p.box.as_tuple()), job))
        canvas = masking.composite(canvas, output, p.mask, p.box)

    linked = stage_ahead(PASSES, picture, job)
    assert [p.after for p in linked] == [(), (0,), (), (0, 1, 2)]
    assert [p.staged is not None for p in linked] == [True, False, True, False]
    painted: list[Patch] = []
    for p, output, theirs in zip(linked, outputs, expected, strict=True):
        assert_same(p.staged_for(picture, painted, job), theirs)
        painted.append(Patch(output, p.mask, p.box))
    result = Composite(picture, painted)()
    assert np.array_equal(np.asarray(result), np.asarray(canvas))
    assert np.array_equal(np.asarray(picture), np.asarray(noise(*SIZE, seed=0))), "upload changed"


def test_a_result_with_no_pass_is_the_picture() -> None:
    picture = noise(*SIZE, seed=0)
    assert Composite(picture, [])() is picture


def test_paste_leaves_out_what_falls_outside_the_canvas() -> None:
    """A crop pasted into equals the same crop of the pasted picture, wherever the two overlap."""
    picture = noise(*SIZE, seed=0)
    patch = Patch(noise(48, 48, seed=1), PASSES[1].mask, PASSES[1].box)
    whole = masking.composite(picture, *patch)
    for part in (Box(0, 0, 160, 120), Box(300, 200, 400, 300), Box(100, 30, 340, 260)):
        crop = picture.crop(part.as_tuple())
        masking.paste(crop, patch, at=(part.x0, part.y0))
        assert np.array_equal(np.asarray(crop), np.asarray(whole.crop(part.as_tuple())))
