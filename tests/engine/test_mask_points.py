"""Masks from a click (the painter's Select tool): the thing under the point, through the engine, with
known boxes and with the real (tiny) SAM 2."""

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from engine.engine import Engine
from engine.errors import ImageError, MaskError
from engine.masks import points, words
from tests.pictures import photo, png_bytes
from tests.support.known_boxes import KnownBoxes

PICTURE = png_bytes(photo(96, 64))
# A person, and a face inside them: a click on the face selects the face, elsewhere on them the person.
THINGS = KnownBoxes({"things": [(10, 10, 40, 60, 0.6), (15, 12, 30, 28, 0.9)]})


def selected(engine: Engine, point: tuple[float, float]) -> set[tuple[int, int]]:
    mask = Image.open(io.BytesIO(engine.select_object(PICTURE, point)))
    assert mask.mode == "L" and mask.size == (96, 64)
    ys, xs = np.nonzero(np.asarray(mask))
    return set(zip(xs.tolist(), ys.tolist(), strict=True))


def box(x0: int, y0: int, x1: int, y1: int) -> set[tuple[int, int]]:
    return {(x, y) for x in range(x0, x1) for y in range(y0, y1)}


def test_a_click_selects_the_thing_under_it(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "word_finder", THINGS)
    assert selected(engine, (20, 20)) == box(15, 12, 30, 28)
    assert selected(engine, (12.5, 50)) == box(10, 10, 40, 60)


def test_a_click_on_nothing_or_outside_the_picture_says_so(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine, "word_finder", THINGS)
    with pytest.raises(MaskError, match="Nothing was found there"):
        engine.select_object(PICTURE, (80, 5))
    with pytest.raises(MaskError, match=r"outside the 96x64 picture"):
        engine.select_object(PICTURE, (96, 10))
    with pytest.raises(ImageError):
        engine.select_object(b"not a picture", (5, 5))


def test_turned_off_with_the_mask_models(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(engine, "word_finder", None)
    with pytest.raises(MaskError, match="turned off"):
        engine.select_object(PICTURE, (20, 20))


def test_the_real_segmenter_is_prompted_with_the_point_in_its_own_pixels(
    tiny_word_models: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Random weights outline random things: this checks the code users run, and that the point
    reaches SAM 2 scaled from the picture's pixels to its square input, as one positive click."""
    detector, segmenter = tiny_word_models
    models = words.WordModels(str(detector), str(segmenter), "cpu")
    assert isinstance(models, points.PointSegmenter)
    image = photo(96, 64)
    _, _, sam = models._load()
    side = sam.config.prompt_encoder_config.image_size
    seen: dict[str, Any] = {}
    forward = sam.forward

    def recording(**inputs: Any) -> Any:
        seen.update(inputs)
        return forward(**inputs)

    monkeypatch.setattr(sam, "forward", recording)
    mask = models.segment_point(image, (48.0, 16.0))
    assert mask.shape == (64, 96) and mask.dtype == bool
    assert seen["input_points"].tolist() == [[[[48.0 * side / 96, 16.0 * side / 64]]]]
    assert seen["input_labels"].tolist() == [[[1]]]
    assert "input_boxes" not in seen


def test_the_engine_builds_the_segmenter_from_the_operators_settings(word_models_engine: Engine) -> None:
    engine = word_models_engine
    # The tiny SAM 2's weights are seeded: at this point it outlines something, the same each time.
    mask = Image.open(io.BytesIO(engine.select_object(PICTURE, (48, 32))))
    assert mask.size == (96, 64) and mask.getbbox() is not None
