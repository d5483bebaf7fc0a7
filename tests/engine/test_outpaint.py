"""Outpainting: the canvas's size, the picture kept bit for bit outside the overlap band, the border
painted, and windows along the border whose cost follows the border, not the picture."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine import masking, outpaint
from engine.config import EngineConfig
from engine.engine import Engine
from engine.errors import MaskError, SettingsError
from engine.job import InpaintResult, MaskSource
from engine.masking import Box
from engine.settings import InpaintSettings, MaskedContent
from tests.engine.test_engine import pixels, request
from tests.pictures import photo, rect_mask

WIDTH, HEIGHT = 72, 48
PICTURE = photo(WIDTH, HEIGHT, seed=5)
QUICK = {"steps": 2, "seed": 99}


@pytest.mark.parametrize(
    ("asked", "size", "at"),
    [
        ({"left": 24}, (96, 48), (24, 0)),
        ({"right": 20}, (92, 48), (0, 0)),
        ({"up": 16}, (72, 64), (0, 16)),
        ({"down": 40}, (72, 88), (0, 0)),
        ({"left": 8, "right": 16, "up": 24, "down": 32}, (96, 104), (8, 24)),
        ({"zoom": 1.5}, (112, 72), (20, 12)),  # 108 and 72, each rounded up to a multiple of 8
        ({"zoom": 2}, (144, 96), (36, 24)),
    ],
)
def test_output_size_and_the_picture_kept_outside_the_band(
    engine: Engine, asked: dict[str, float], size: tuple[int, int], at: tuple[int, int]
) -> None:
    settings = InpaintSettings.parse(**asked)
    border = outpaint.border_for(settings, WIDTH, HEIGHT)
    assert border.canvas_size(WIDTH, HEIGHT) == size
    result = engine.inpaint(request(PICTURE, **QUICK, **asked))
    out = pixels(result.images[0].png)
    assert (out.shape[1], out.shape[0]) == size
    keep = _keep(settings, border)
    original = np.asarray(PICTURE).astype(np.int16)
    inside = keep.moved(-at[0], -at[1])
    assert np.array_equal(out[keep.slices()], original[inside.slices()]), (
        "bit-identical outside the band"
    )
    x, y = at
    new = np.ones(out.shape[:2], bool)
    new[y : y + HEIGHT, x : x + WIDTH] = False
    assert new.any()
    # The border is painted: not black, not the flat fill it starts from, and not one colour.
    prefilled = np.asarray(engine.prepare(request(PICTURE, **QUICK, **asked)).image).astype(np.int16)
    assert np.abs(out[new] - prefilled[new]).mean() > 2
    assert out[new].std() > 5


def _keep(settings: InpaintSettings, border: outpaint.Border) -> Box:
    """The picture less the overlap band on each side that has a border, on the canvas."""
    band = outpaint.overlap(settings)
    return Box(
        border.left + (band if border.left else 0),
        border.up + (band if border.up else 0),
        border.left + WIDTH - (band if border.right else 0),
        border.up + HEIGHT - (band if border.down else 0),
    )


def test_the_band_follows_the_mask_blur(engine: Engine) -> None:
    """Pixels of the picture next to the border change, within the band the blur and its inset make."""
    blurs = {}
    for blur in (0, 6):
        out = pixels(engine.inpaint(request(PICTURE, **QUICK, left=24, mask_blur=blur)).images[0].png)
        changed = np.any(out[:, 24:] != np.asarray(PICTURE).astype(np.int16), axis=-1)
        columns = np.flatnonzero(changed.any(axis=0))
        blurs[blur] = int(columns.max()) + 1 if columns.size else 0
        assert blurs[blur] <= outpaint.overlap(InpaintSettings.parse(left=24, mask_blur=blur))
    assert blurs[0] == 0  # no blur: a hard seam at the picture's edge, the picture untouched
    assert blurs[6] > 12  # twice the blur into the picture is repainted, and the blur beyond


@pytest.mark.parametrize(
    ("size", "asked", "long_side"),
    [
        ((512, 512), {"zoom": 2}, 512),
        ((300, 200), {"left": 100, "down": 700}, 128),
        ((128, 96), {"zoom": 1.5}, 64),
        ((20, 20), {"zoom": 3}, 64),  # the band eats the whole picture: the canvas is tiled
        ((640, 100), {"up": 40, "right": 8}, 64),
    ],
)
def test_the_windows_cover_the_mask_with_a_full_weight_each(
    size: tuple[int, int], asked: dict[str, float], long_side: int
) -> None:
    """Every repainted pixel lies where some window's mask is the canvas mask unfaded, so no pixel
    keeps its starting fill; nothing of ``keep`` is masked; windows are at most the model's size."""
    picture = photo(*size)
    settings = InpaintSettings.parse(**asked)
    planned = outpaint.plan(picture, settings, long_side, 10**8)
    mask = np.asarray(planned.mask)
    full = np.zeros(mask.shape, bool)
    for window in planned.windows:
        assert window.box.width <= long_side and window.box.height <= long_side
        part = mask[window.box.slices()]
        full[window.box.slices()] |= (np.asarray(window.mask) == part) & (part > 0)
        # Faded to (almost) nothing at each side inside the canvas: no seam where a window ends.
        faded = np.asarray(window.mask)
        box, (width, height) = window.box, planned.canvas.size
        edges = [(box.x0 > 0, faded[:, 0]), (box.x1 < width, faded[:, -1])]
        edges += [(box.y0 > 0, faded[0]), (box.y1 < height, faded[-1])]
        for inside, edge in edges:
            assert not inside or edge.max() <= 255 // 8
    assert np.array_equal(full, mask > 0)
    if planned.keep.width > 0 and planned.keep.height > 0:
        assert not mask[planned.keep.slices()].any()
        outside = np.ones(mask.shape, bool)
        outside[planned.picture.slices()] = False
        assert (mask[outside] == 255).all(), "every new pixel is repainted in full"


def test_windows_painted_one_after_another_blend_without_a_seam() -> None:
    """Each window composited as the engine does, painting a flat colour far from its neighbours':
    nowhere on the canvas do two neighbouring pixels differ by a window's edge (a hard seam would
    jump by 255), and no new pixel keeps the fill it started from."""
    picture = Image.new("RGB", (160, 96), (128, 128, 128))
    planned = outpaint.plan(picture, InpaintSettings.parse(zoom=2), 64, 10**8)
    canvas = planned.canvas
    for number, window in enumerate(planned.windows):
        colour = (255 * (number % 2), 255 * (number // 2 % 2), 255 * (number // 4 % 2))
        painted = Image.new("RGB", (window.box.width, window.box.height), colour)
        canvas = masking.composite(canvas, painted, window.mask, window.box)
    out = np.asarray(canvas).astype(np.int16)
    steps = max(np.abs(np.diff(out, axis=0)).max(), np.abs(np.diff(out, axis=1)).max())
    # A window fades in over 64 // 8 px: at most two fading in over one another, 255 x 2 / 8 a pixel.
    assert len(planned.windows) > 8 and steps <= 255 * 2 / 8 + 3
    new = np.asarray(planned.mask) == 255
    assert (np.abs(out - np.asarray(planned.canvas).astype(np.int16)).max(axis=-1)[new] > 0).all()


def test_the_cost_follows_the_border_not_the_picture() -> None:
    """Window area (what the UNet is run over) grows with the border's area; the picture's middle is
    never in a window."""
    areas = {}
    for side in (256, 512, 1024):
        settings = InpaintSettings.parse(left=64)
        planned = outpaint.plan(photo(side, side), settings, 64, 10**8)
        areas[side] = sum(w.box.width * w.box.height for w in planned.windows)
        border_area = 64 * side
        assert areas[side] <= 4 * border_area
        assert all(w.box.x0 < planned.keep.x0 for w in planned.windows), "the middle stays out"
    # Twice the picture: twice the border, twice the work (give or take a window at the ends).
    assert 1.6 < areas[512] / areas[256] < 2.4 and 1.6 < areas[1024] / areas[512] < 2.4
    thick = outpaint.plan(photo(256, 256), InpaintSettings.parse(left=256), 64, 10**8)
    assert sum(w.box.width * w.box.height for w in thick.windows) > 2.5 * areas[256]


def test_the_canvas_starts_from_the_fill_and_the_windows_run_at_the_model_size(
    engine: Engine,
) -> None:
    job = engine.prepare(request(PICTURE, **QUICK, zoom=2))
    assert job.mask_source is MaskSource.BORDER
    assert job.settings.masked_content is MaskedContent.FILL and job.settings.strength == 0.8
    assert all(p.size == (64, 64) == (p.box.width, p.box.height) for p in job.passes)
    canvas = np.asarray(job.image).astype(np.int16)
    corner = canvas[:8, :8].reshape(-1, 3)
    mean = np.asarray(PICTURE).reshape(-1, 3).mean(axis=0)
    assert np.abs(corner.mean(axis=0) - mean).max() < 40, "the border starts from the picture's colours"


def test_parameters_record_the_outpainting(engine: Engine) -> None:
    zoomed = engine.inpaint(request(PICTURE, **QUICK, zoom=1.5)).images[0].parameters
    assert "Outpaint zoom: 1.5" in zoomed and "Mask source: the new border (outpainting)" in zoomed
    assert "Size: 112x72," in zoomed  # the canvas: the windows it was painted in differ
    assert "Inpaint area" not in zoomed
    sides = engine.inpaint(request(PICTURE, **QUICK, left=8, down=16)).images[0].parameters
    assert 'Outpaint pixels: "left 8, right 0, up 0, down 16"' in sides


def test_regular_checkpoint(engine: Engine, tiny_sd_regular_path: Path) -> None:
    result = engine.inpaint(request(PICTURE, **QUICK, right=32, model=str(tiny_sd_regular_path)))
    _assert_outpainted(result, right=32)


def test_controlnet_inpaint(cn_engine: Engine) -> None:
    result = cn_engine.inpaint(request(PICTURE, **QUICK, right=32, controlnet="inpaint"))
    assert result.images[0].parameters.count("ControlNet 0") == 1
    _assert_outpainted(result, right=32)


def _assert_outpainted(result: InpaintResult, right: int) -> None:
    out = pixels(result.images[0].png)
    assert out.shape[:2] == (HEIGHT, WIDTH + right)
    band = outpaint.overlap(result.settings)
    kept = np.asarray(PICTURE).astype(np.int16)[:, : WIDTH - band]
    assert np.array_equal(out[:, : WIDTH - band], kept)
    assert out[:, WIDTH:].std() > 5


@pytest.mark.parametrize(
    ("asked", "message"),
    [
        ({"left": 0}, "Nothing to add: give a zoom"),
        ({"zoom": 1}, "zoom 1 adds nothing"),
        ({"zoom": 5}, "zoom must be between 1.0 and 4.0"),
        ({"up": -8}, "up must be between 0 and 4096"),
        ({"zoom": 2, "left": 10}, "Give either zoom or pixels for the sides"),
        ({"left": 10, "mask_prompt": "hat"}, "cannot take mask_prompt or auto_mask"),
    ],
)
def test_bad_values_are_clear_errors(asked: dict[str, float], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        outpaint.require_border(InpaintSettings.parse(**asked))


def test_a_canvas_over_the_limit_is_refused_before_any_model(tiny_sd_path: Path) -> None:
    config = EngineConfig(
        model=str(tiny_sd_path), device="cpu", max_pixels=WIDTH * HEIGHT * 3, _env_file=None
    )
    engine = Engine(config)
    with pytest.raises(
        SettingsError, match=r"makes it 144x96 \(0\.0138 megapixels\), over this bot's limit of 0\.0104"
    ):
        engine.prepare(request(PICTURE, zoom=2))
    assert engine.prepare(request(PICTURE, zoom=1.5)).image.size == (112, 72)


def test_a_mask_picture_is_refused(engine: Engine) -> None:
    with pytest.raises(MaskError, match="takes no mask picture"):
        engine.prepare(request(PICTURE, rect_mask(WIDTH, HEIGHT, (0, 0, 8, 8)), left=8))


def test_transparency_is_flattened_not_a_mask(engine: Engine) -> None:
    clear = PICTURE.convert("RGBA")
    clear.putalpha(Image.new("L", clear.size, 255))
    job = engine.prepare(request(clear, **QUICK, up=16))
    assert job.image.mode == "RGB" and job.image.size == (WIDTH, HEIGHT + 16)
