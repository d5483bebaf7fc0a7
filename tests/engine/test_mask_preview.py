"""The mask preview: the overlay's tint and outline, and ``Engine.mask_preview`` finding the mask a
job would repaint (with its settings and its pick among several faces) without running it."""

import numpy as np
import pytest
from PIL import Image

from engine.engine import Engine
from engine.errors import MaskError
from engine.job import InpaintRequest, MaskSource
from engine.mask_preview import OUTLINE_PX, TINT_OPACITY, overlay
from engine.settings import InpaintSettings
from tests.pictures import crowd, photo, png_bytes, rect_mask

GREY = (100, 100, 100)


def pixels(image: Image.Image) -> np.ndarray:
    return np.asarray(image).astype(int)


def test_the_mask_is_tinted_red_and_outlined_and_the_rest_is_the_picture() -> None:
    picture = Image.new("RGB", (64, 48), GREY)
    shown = pixels(overlay(picture, rect_mask(64, 48, (16, 12, 48, 36))))
    tinted = np.rint(np.array(GREY) + (np.array([255, 0, 0]) - GREY) * TINT_OPACITY)
    assert (shown[20:28, 24:40] == tinted).all(), "inside, away from the edge"
    assert (shown[:8] == GREY).all() and (shown[:, :12] == GREY).all(), "outside, away from the edge"
    outline = (shown == [255, 0, 0]).all(axis=-1)
    assert outline[24, 15] and outline[24, 16], "the outline straddles the mask's edge"
    assert outline[24].sum() == 2 * OUTLINE_PX, "two edges crossed, each OUTLINE_PX wide"


def test_a_soft_mask_is_tinted_in_proportion_and_an_empty_one_not_at_all() -> None:
    picture = Image.new("RGB", (32, 32), GREY)
    half = pixels(overlay(picture, Image.new("L", (32, 32), 128)))
    assert half[16, 16, 0] == round(GREY[0] + (255 - GREY[0]) * TINT_OPACITY * 128 / 255)
    assert (pixels(overlay(picture, Image.new("L", (32, 32), 0))) == GREY).all()


def test_a_large_picture_is_shown_at_most_1024_px_long_with_its_aspect() -> None:
    picture = photo(3000, 1500)
    shown = overlay(picture, rect_mask(3000, 1500, (100, 100, 2000, 1000)))
    assert shown.size == (1024, 512) and shown.mode == "RGB"
    assert overlay(photo(300, 200), Image.new("L", (300, 200))).size == (300, 200), "never enlarged"
    with pytest.raises(ValueError, match="mask is"):
        overlay(picture, Image.new("L", (10, 10)))


def preview_of(engine: Engine, picture: Image.Image, mask: Image.Image | None = None, **values: object):
    settings = InpaintSettings.parse(**values)
    request = InpaintRequest(png_bytes(picture), settings, png_bytes(mask) if mask else None)
    return engine.mask_preview(request)


def tinted(preview_overlay: Image.Image, picture: Image.Image) -> np.ndarray:
    """Where the overlay differs from the picture under it."""
    return (pixels(preview_overlay) != pixels(picture)).any(axis=-1)


def test_the_preview_shows_the_mask_as_the_job_will_use_it(engine: Engine) -> None:
    picture = Image.new("RGB", (96, 64), GREY)
    mask = rect_mask(96, 64, (32, 16, 64, 48))
    plain = preview_of(engine, picture, mask, mask_blur=0)
    assert (plain.source, plain.matches, plain.shown) == (MaskSource.UPLOADED, 1, 0)
    # The outline reaches one pixel beyond the mask's edge.
    assert tinted(plain.overlay, picture).sum() == (32 + 2) ** 2
    grown = preview_of(engine, picture, mask, mask_blur=0, mask_grow=8)
    assert tinted(grown.overlay, picture).sum() > (32 + 2 + 14) ** 2
    inverted = preview_of(engine, picture, mask, mask_blur=0, invert_mask=True)
    assert tinted(inverted.overlay, picture).sum() == 96 * 64 - (32 - 2) ** 2


def test_several_faces_are_matches_and_mask_pick_shows_one(engine: Engine) -> None:
    two = crowd(columns=2, rows=1)
    every = preview_of(engine, two, auto_mask="face")
    assert (every.source, every.matches, every.shown) == (MaskSource.FACE, 2, 0)
    shown = tinted(every.overlay, two)
    assert [shown[:, :170].any(), shown[:, 170:].any()] == [True, True]
    seen = []
    for pick in (1, 2):
        one = preview_of(engine, two, auto_mask="face", mask_pick=str(pick))
        assert (one.matches, one.shown) == (2, pick)
        shown = tinted(one.overlay, two)
        seen.append((bool(shown[:, :170].any()), bool(shown[:, 170:].any())))
    assert sorted(seen) == [(False, True), (True, False)], "each pick is one of the two faces"
    with pytest.raises(MaskError, match=r"mask_pick 3 asks for match number 3 .* only 2 matches"):
        preview_of(engine, two, auto_mask="face", mask_pick="3")
    left = tinted(preview_of(engine, two, auto_mask="face", mask_pick="left").overlay, two)
    assert left[:, :170].any() and not left[:, 170:].any(), "words' picks work for faces too"


def test_a_picked_face_is_the_only_one_the_job_repaints(engine: Engine) -> None:
    two = crowd(columns=2, rows=1)
    request = InpaintRequest(png_bytes(two), InpaintSettings.parse(auto_mask="face", mask_pick="2"))
    job = engine.prepare(request)
    shown = tinted(preview_of(engine, two, auto_mask="face", mask_pick="2").overlay, two)
    (only,) = job.passes
    column = (only.box.x0 + only.box.x1) // 2
    assert shown[:, column].any(), "the face the preview showed is the face the job repaints"
