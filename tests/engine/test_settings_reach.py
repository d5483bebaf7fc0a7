"""Every user setting reaches the picture, in the way it means.

With the seed fixed, each test changes one setting and checks the result changed as the setting says:
a larger mask grow changes pixels further out, padding widens the crop, and so on. Where the honest
observable is the call to the real pipeline (the guidance scale, the prompt embeddings, the scheduler,
the denoising steps run), ``record_calls`` records it on the way through. A setting that stops reaching
the picture fails its test here; README, "Development", says how a new setting gets one. The
outpainting border (zoom, left, right, up, down) is followed to the picture in ``test_outpaint.py``.
"""

from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from engine.engine import Engine, PreparedJob
from engine.masking import Box
from engine.prompts import PromptEncoder
from engine.samplers import make_scheduler
from engine.settings import MaskedContent, Sampler
from tests.engine.test_engine import far_from, pixels, request
from tests.pictures import photo, rect_mask
from tests.support.known_boxes import KnownBoxes
from tests.support.pipeline_calls import PipelineCall, record_calls

SIZE = 128
BOX = (48, 48, 80, 80)


def picture() -> Image.Image:
    """The test photo with a black and white checkerboard where the mask is: what the masked area
    starts from (and what a Tile guide keeps of it) then makes a difference."""
    pixels = np.asarray(photo(SIZE, SIZE, seed=7)).copy()
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    board = ((x // 4 + y // 4) % 2 * 255)[..., None]
    x0, y0, x1, y1 = BOX
    pixels[y0:y1, x0:x1] = board[y0:y1, x0:x1]
    return Image.fromarray(pixels)


PICTURE = picture()
ORIGINAL = np.asarray(PICTURE).astype(np.int16)
# The sharp-edged mask: no blur, so the changed pixels show exactly where the engine repainted.
SHARP = {"mask_blur": 0}


@pytest.fixture
def calls(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> list[PipelineCall]:
    return record_calls(monkeypatch, type(engine.load().pipe))


@pytest.fixture
def cn_calls(cn_engine: Engine, monkeypatch: pytest.MonkeyPatch, tiny_tile: Path) -> list[PipelineCall]:
    return record_calls(
        monkeypatch, type(cn_engine.models.controlnet_pipe(cn_engine.load(), str(tiny_tile)))
    )


def prepare(engine: Engine, **settings: object) -> PreparedJob:
    return engine.prepare(request(PICTURE, rect_mask(SIZE, SIZE, BOX), **settings))


def inpaint(engine: Engine, **settings: object) -> list[np.ndarray]:
    """The pixels of each image of the job on the standard picture and mask."""
    result = engine.run([prepare(engine, **settings)])[0]
    return [pixels(image.png) for image in result.images]


def changed(out: np.ndarray) -> np.ndarray:
    """Boolean map of the pixels that differ from the input picture."""
    return np.any(out != ORIGINAL, axis=-1)


def changed_box(out: np.ndarray) -> Box:
    rows, cols = np.flatnonzero(changed(out).any(axis=1)), np.flatnonzero(changed(out).any(axis=0))
    return Box(int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)


def assert_differ(a: np.ndarray, b: np.ndarray, more_than: int = 8) -> None:
    """Two pictures differ somewhere by more than ``more_than`` (of 255).

    With the seed fixed the engine reproduces a picture bit for bit, so any difference comes from the
    setting; the random-weight models barely react to a few settings (their VAE's latents are small
    next to the noise), and those tests also check the call to the pipeline."""
    assert np.abs(a - b).max() > more_than


# -- what the model is asked ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "first", "second"),
    [
        ("prompt_embeds", {"prompt": "a red hat"}, {"prompt": "a blue scarf"}),
        ("negative_prompt_embeds", {"negative_prompt": "blurry"}, {"negative_prompt": "ugly, dark"}),
        # Same tokens, one weighted: only the weighting can tell them apart.
        ("prompt_embeds", {"prompt": "a red hat"}, {"prompt": "a (red:1.5) hat"}),
    ],
    ids=["prompt", "negative-prompt", "prompt-weighting"],
)
def test_prompts_reach_the_pipeline(
    engine: Engine,
    calls: list[PipelineCall],
    field: str,
    first: dict[str, str],
    second: dict[str, str],
) -> None:
    pictures = [inpaint(engine, **texts)[0] for texts in (first, second)]
    encoder = PromptEncoder(engine.load().pipe)
    for call, texts in zip(calls, (first, second), strict=True):
        expected = encoder.encode([texts.get("prompt", "")], [texts.get("negative_prompt", "")])
        assert torch.equal(call.kwargs["prompt_embeds"], expected.prompt_embeds)
        assert torch.equal(call.kwargs["negative_prompt_embeds"], expected.negative_prompt_embeds)
    assert not torch.equal(calls[0].kwargs[field], calls[1].kwargs[field])
    assert_differ(*pictures, more_than=1)


def test_guidance_reaches_the_pipeline(engine: Engine, calls: list[PipelineCall]) -> None:
    low, high = (inpaint(engine, prompt="a red hat", guidance=g)[0] for g in (2.0, 12.5))
    assert [call.kwargs["guidance_scale"] for call in calls] == [2.0, 12.5]
    assert_differ(low, high)


def test_sampler_chooses_the_scheduler(engine: Engine, calls: list[PipelineCall]) -> None:
    """Each sampler runs its own scheduler on the model's noise schedule, and paints its own picture
    (``tests/engine/test_samplers.py`` checks each one is the right scheduler)."""
    pictures = [inpaint(engine, sampler=sampler)[0] for sampler in Sampler]
    base = engine.load().base_scheduler_config
    for call, sampler in zip(calls, Sampler, strict=True):
        expected = make_scheduler(sampler, base)
        assert type(call.scheduler) is type(expected), sampler
        assert dict(call.scheduler.config) == dict(expected.config), sampler
    for a, b in combinations(range(len(pictures)), 2):
        assert_differ(pictures[a], pictures[b], more_than=1)


@pytest.mark.parametrize(
    ("settings", "steps_run"),
    [
        ({"steps": 8, "strength": 0.5}, 4),
        ({"steps": 8, "strength": 1.0}, 8),
        ({"steps": 3, "strength": 1.0}, 3),
        ({"steps": 10, "strength": 0.3}, 3),
    ],
)
def test_steps_and_strength_decide_the_steps_run(
    engine: Engine, calls: list[PipelineCall], settings: dict[str, Any], steps_run: int
) -> None:
    """diffusers runs int(strength x steps) of the full schedule: one UNet pass each."""
    inpaint(engine, **settings)
    (call,) = calls
    assert call.kwargs["strength"] == settings["strength"]
    assert call.unet_passes == steps_run


@pytest.mark.parametrize(
    ("setting", "first", "second"),
    [("steps", 4, 8), ("strength", 0.5, 0.9), ("seed", 1, 2)],
)
def test_steps_strength_and_seed_change_the_picture(
    engine: Engine, setting: str, first: object, second: object
) -> None:
    one, other = (inpaint(engine, **{setting: value})[0] for value in (first, second))
    assert_differ(one, other)
    assert np.array_equal(one, inpaint(engine, **{setting: first})[0]), "a fixed seed reproduces"


def test_count_paints_that_many_different_pictures(engine: Engine, calls: list[PipelineCall]) -> None:
    pictures = inpaint(engine, count=3)
    assert len(pictures) == 3
    (call,) = calls
    assert len(call.kwargs["generator"]) == 3 == call.kwargs["prompt_embeds"].shape[0]
    for a, b in combinations(pictures, 2):
        assert_differ(a, b)


# -- where the model paints -----------------------------------------------------------------------


def test_area_whole_processes_the_whole_picture(engine: Engine) -> None:
    whole, masked = (prepare(engine, area=area, padding=8, **SHARP) for area in ("whole", "masked"))
    assert whole.passes[0].box == Box(0, 0, SIZE, SIZE)
    assert masked.passes[0].box == Box(40, 40, 88, 88)
    pictures = [inpaint(engine, area=area, padding=8, **SHARP)[0] for area in ("whole", "masked")]
    assert_differ(*pictures)


@pytest.mark.parametrize("padding", [0, 20])
def test_padding_widens_the_crop(engine: Engine, padding: int) -> None:
    job = prepare(engine, padding=padding, **SHARP)
    x0, y0, x1, y1 = BOX
    assert job.passes[0].box == Box(x0 - padding, y0 - padding, x1 + padding, y1 + padding)


def test_padding_changes_the_picture(engine: Engine) -> None:
    tight, wide = (inpaint(engine, padding=p, **SHARP)[0] for p in (0, 40))
    assert_differ(tight, wide)


@pytest.mark.parametrize("grow", [-6, 0, 5, 12])
def test_mask_grow_moves_the_edge_of_the_change(engine: Engine, grow: int) -> None:
    (out,) = inpaint(engine, mask_grow=grow, **SHARP)
    x0, y0, x1, y1 = BOX
    assert changed_box(out) == Box(x0 - grow, y0 - grow, x1 + grow, y1 + grow)


@pytest.mark.parametrize("blur", [0, 3, 8])
def test_mask_blur_widens_the_changed_band(engine: Engine, blur: int) -> None:
    (out,) = inpaint(engine, mask_blur=blur)
    outside_box = far_from(BOX, (SIZE, SIZE), margin=0)
    band = changed(out) & outside_box
    reach = 3 * blur + 2  # Pillow's Gaussian spreads 2.55 sigma + 1 px
    assert not (changed(out) & far_from(BOX, (SIZE, SIZE), margin=reach)).any()
    if blur == 0:
        assert not band.any()
    else:  # pixels well beyond the drawn mask were blended
        assert band[far_from(BOX, (SIZE, SIZE), margin=blur)].any()


@pytest.mark.parametrize("area", ["masked", "whole"])
def test_invert_repaints_outside_instead_of_inside(engine: Engine, area: str) -> None:
    x0, y0, x1, y1 = BOX
    inside = np.zeros((SIZE, SIZE), dtype=bool)
    inside[y0:y1, x0:x1] = True
    normal, inverted = (
        inpaint(engine, invert_mask=invert, area=area, **SHARP)[0] for invert in (False, True)
    )
    assert changed(normal)[inside].mean() > 0.9 and not changed(normal)[~inside].any()
    assert changed(inverted)[~inside].mean() > 0.9 and not changed(inverted)[inside].any()


# -- what the masked area starts from --------------------------------------------------------------


def test_masked_content_modes_each_paint_their_own_picture(engine: Engine) -> None:
    pictures = {mode: inpaint(engine, masked_content=mode, strength=0.5)[0] for mode in MaskedContent}
    for a, b in combinations(MaskedContent, 2):
        assert_differ(pictures[a], pictures[b], more_than=1)


def test_masked_content_modes_start_from_what_they_mean(
    engine: Engine, calls: list[PipelineCall]
) -> None:
    """The start latents, under the mask the pipeline was given: the picture's (original), the filled
    picture's (fill), seeded noise (latent noise) or zeros (latent nothing); the picture's elsewhere."""
    for mode in MaskedContent:
        inpaint(engine, masked_content=mode, strength=0.5, **SHARP)
    start = {mode: call.kwargs["image"] for mode, call in zip(MaskedContent, calls, strict=True)}
    mask = F.interpolate(calls[0].kwargs["mask_image"], size=start[MaskedContent.ORIGINAL].shape[-2:])
    masked, kept = (mask == 1).expand_as(start[MaskedContent.ORIGINAL]), mask == 0
    assert masked.any() and kept.any()
    original = start[MaskedContent.ORIGINAL]
    nothing, noise = start[MaskedContent.LATENT_NOTHING], start[MaskedContent.LATENT_NOISE]
    assert torch.all(nothing[masked] == 0)
    assert noise[masked].std() > 0.5 and (noise[masked] - original[masked]).abs().mean() > 0.5
    assert (start[MaskedContent.FILL][masked] - original[masked]).abs().mean() > 0.01
    for latents in (nothing, noise):
        assert torch.equal(latents[kept.expand_as(latents)], original[kept.expand_as(original)])


# -- ControlNet ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "first", "second", "argument"),
    [
        ("control_weight", 0.4, 1.6, "controlnet_conditioning_scale"),
        ("control_start", 0.0, 0.5, "control_guidance_start"),
        ("control_end", 0.3, 1.0, "control_guidance_end"),
    ],
)
def test_controlnet_weight_and_window_reach_the_pipeline(
    cn_engine: Engine,
    cn_calls: list[PipelineCall],
    setting: str,
    first: float,
    second: float,
    argument: str,
) -> None:
    pictures = [
        inpaint(cn_engine, controlnet="tile", strength=1.0, **{setting: value})[0]
        for value in (first, second)
    ]
    # Of 4 steps: weight as given; start 0.5 guides steps 2 and 3 from fraction 0.5; end 0.3 the
    # steps at 0 and 0.25, until 0.5 (engine.controlnet.guidance_window).
    expected = {"control_end": (0.5, 1.0)}.get(setting, (first, second))
    assert tuple(call.kwargs[argument] for call in cn_calls) == expected
    assert_differ(*pictures)


def test_tile_downsample_blurs_the_guide(cn_engine: Engine, cn_calls: list[PipelineCall]) -> None:
    sharp, blurred = (
        inpaint(cn_engine, controlnet="tile", strength=1.0, tile_downsample=rate)[0]
        for rate in (1.0, 4.0)
    )
    guides = [call.kwargs["control_image"] for call in cn_calls]
    # Down-sampling by 4 and back loses detail: neighbouring guide pixels get closer.
    roughness = [float((guide[..., 1:] - guide[..., :-1]).abs().mean()) for guide in guides]
    assert roughness[1] < roughness[0] / 2
    assert_differ(sharp, blurred, more_than=0)


@pytest.mark.parametrize(
    ("pick", "where"), [("left", Box(8, 8, 40, 40)), ("right", Box(88, 88, 120, 120))]
)
def test_mask_prompt_and_pick_decide_where_the_picture_changes(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, pick: str, where: Box
) -> None:
    """The words' match (known boxes) is what is repainted, and mask_pick chooses which one."""
    monkeypatch.setattr(
        engine, "word_finder", KnownBoxes({"hat": [(8, 8, 40, 40, 0.5), (88, 88, 120, 120, 0.9)]})
    )
    job = engine.prepare(request(PICTURE, None, mask_prompt="hat", mask_pick=pick, **SHARP))
    (out,) = [pixels(image.png) for image in engine.run([job])[0].images]
    assert changed_box(out) == where
