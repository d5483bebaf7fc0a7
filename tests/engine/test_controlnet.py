"""ControlNet Tile and Inpaint with tiny random ControlNets, loaded through the engine's own loader."""

import io
import shutil
from pathlib import Path
from typing import Any

import cv2
import huggingface_hub.constants
import numpy as np
import pytest
import torch
from PIL import Image

from engine import latents
from engine.config import EngineConfig
from engine.controlnet import (
    ControlNetInpaintPipeline,
    control_image,
    guidance_window,
    inpaint_only,
    short_name,
    tile_resample,
)
from engine.engine import Engine, PreparedJob
from engine.errors import ModelLoadError, SettingsError
from engine.job import Progress
from engine.models import ModelManager
from engine.settings import ControlNet, InpaintSettings
from tests.engine.test_engine import assert_untouched_outside, far_from, pixels, request
from tests.pictures import photo, rect_mask
from tests.support.pipeline_calls import PipelineCall, record_calls
from tests.support.tiny_models import build_tiny_controlnet, build_tiny_sdxl, save_single_file

BOX = (30, 16, 70, 48)


@pytest.fixture(scope="module")
def tiny_sdxl_tile(tiny_sdxl_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_controlnet(tmp_path_factory.mktemp("tile-xl"), tiny_sdxl_path)


@pytest.fixture
def pipe_calls(monkeypatch: pytest.MonkeyPatch) -> list[PipelineCall]:
    """The calls the engine makes to the SD 1.x ControlNet pipeline."""
    return record_calls(monkeypatch, ControlNetInpaintPipeline)


def make_engine(model: Path, **config: Any) -> Engine:
    return Engine(EngineConfig(model=str(model), device="cpu", _env_file=None, **config))


def inpaint(engine: Engine, **settings: object) -> tuple[np.ndarray, str]:
    """Inpaint the standard test picture; the result's pixels and its parameters text."""
    result = engine.inpaint(request(photo(96, 64), rect_mask(96, 64, BOX), **settings))
    png = result.images[0].png
    return pixels(png), Image.open(io.BytesIO(png)).text["parameters"]


# -- preprocessing -----------------------------------------------------------------------------------


@pytest.mark.parametrize("rate", [1.0, 1.09])
def test_tile_resample_below_1_1_keeps_the_picture(rate: float) -> None:
    """sd-webui-controlnet's tile_resample returns the input unchanged below rate 1.1."""
    image = photo(64, 48)
    assert np.array_equal(np.asarray(tile_resample(image, rate)), np.asarray(image))


@pytest.mark.parametrize(("rate", "small"), [(2.0, (32, 24)), (3.0, (21, 16)), (8.0, (8, 6))])
def test_tile_resample_is_area_down_then_cubic_up(rate: float, small: tuple[int, int]) -> None:
    image = photo(64, 48, seed=5)
    source = np.asarray(image)
    expected = cv2.resize(
        cv2.resize(source, small, interpolation=cv2.INTER_AREA), (64, 48), interpolation=cv2.INTER_CUBIC
    )
    out = np.asarray(tile_resample(image, rate))
    assert np.array_equal(out, expected)
    # The round trip loses detail: the higher the rate, the further from the original.
    assert np.abs(out.astype(int) - source).mean() > 1


def test_tile_control_image_is_the_resampled_crop_in_0_1() -> None:
    image = photo(64, 48)
    control = control_image(ControlNet.TILE, image, rect_mask(64, 48, (0, 0, 64, 48)), 4.0)
    assert control.dtype == np.float32 and control.shape == (48, 64, 3)
    assert np.array_equal(control, np.asarray(tile_resample(image, 4.0), dtype=np.float32) / 255)


def test_inpaint_only_sets_masked_pixels_to_minus_one() -> None:
    image = photo(4, 2)
    mask = Image.fromarray(np.array([[0, 127, 128, 255], [255, 10, 200, 127]], dtype=np.uint8))
    control = inpaint_only(image, mask)
    masked = np.array([[False, False, True, True], [True, False, True, False]])
    assert np.all(control[masked] == -1.0)
    assert np.array_equal(control[~masked], np.asarray(image, dtype=np.float32)[~masked] / 255)
    assert np.array_equal(control_image(ControlNet.INPAINT, image, mask, 8.0), control)


def test_short_name_is_what_a1111_shows() -> None:
    assert short_name("lllyasviel/control_v11f1e_sd15_tile") == "control_v11f1e_sd15_tile"
    assert short_name("/models/cn/control_v11p_sd15_inpaint.safetensors") == "control_v11p_sd15_inpaint"
    assert short_name("./controlnets/tile/") == "tile"


# -- end to end --------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["tile", "inpaint"])
@pytest.mark.parametrize("area", ["whole", "masked"])
def test_weight_zero_paints_what_no_controlnet_paints(cn_engine: Engine, kind: str, area: str) -> None:
    plain, _ = inpaint(cn_engine, area=area, strength=1.0)
    off, _ = inpaint(cn_engine, area=area, strength=1.0, controlnet=kind, control_weight=0)
    on, _ = inpaint(cn_engine, area=area, strength=1.0, controlnet=kind, control_weight=1)
    assert np.abs(off - plain).max() <= 1
    assert np.abs(on - plain).mean() > 1, "at weight 1 the ControlNet steers the picture"


@pytest.mark.parametrize("content", ["latent-noise", "latent-nothing"])
def test_latent_masked_content_works_with_a_controlnet(cn_engine: Engine, content: str) -> None:
    """At weight 0 the ControlNet path starts from the same edited latents, drawn from the same
    generators, as the plain path; and the mode changes the picture from ``original``'s."""
    plain, _ = inpaint(cn_engine, strength=0.5, masked_content=content)
    off, _ = inpaint(
        cn_engine, strength=0.5, masked_content=content, controlnet="tile", control_weight=0
    )
    original, _ = inpaint(cn_engine, strength=0.5, controlnet="tile", control_weight=0)
    assert np.abs(off - plain).max() <= 1
    x0, y0, x1, y1 = BOX
    assert np.abs(off - original)[y0:y1, x0:x1].max() > 8


def test_guidance_window_guides_the_steps_a1111_guides(
    cn_engine: Engine, pipe_calls: list[PipelineCall]
) -> None:
    """Of 4 steps (at 0, 0.25, 0.5 and 0.75), A1111 guides those whose fraction is in [start, end]:
    control_end 0.2 guides the first, control_start 0.8 none (as weight 0)."""
    plain, _ = inpaint(cn_engine, strength=1.0)
    early, _ = inpaint(cn_engine, strength=1.0, controlnet="tile", control_end=0.2)
    late, _ = inpaint(cn_engine, strength=1.0, controlnet="tile", control_start=0.8)
    windows = [
        (
            c.kwargs["control_guidance_start"],
            c.kwargs["control_guidance_end"],
            c.kwargs["controlnet_conditioning_scale"],
        )
        for c in pipe_calls
    ]
    assert windows == [(0.0, 0.25, 1.0), (0.0, 1.0, 0.0)]
    assert np.abs(early - plain).max() > 8
    assert np.abs(late - plain).max() <= 1


def test_guidance_window_in_diffusers_terms() -> None:
    assert guidance_window(0.0, 1.0, 4) == (0.0, 1.0)
    assert guidance_window(0.0, 0.2, 4) == (0.0, 0.25)
    assert guidance_window(0.25, 0.5, 4) == (0.25, 0.75)
    assert guidance_window(0.8, 1.0, 4) is None
    fractions = [i / 20 for i in range(21)] + [0.1, 0.3, 0.7]
    for steps in (1, 3, 7, 10, 25):
        for start in fractions:
            for end in (end for end in fractions if end > start):
                a1111 = [start <= i / steps <= end for i in range(steps)]
                window = guidance_window(start, end, steps)
                if window is None:
                    assert not any(a1111)
                    continue
                low, high = window
                # diffusers' rule, as its ControlNet pipelines compute controlnet_keep
                guided = [not (i / steps < low or (i + 1) / steps > high) for i in range(steps)]
                assert guided == a1111, (start, end, steps)


def test_the_mask_travels_with_the_picture(cn_engine: Engine, pipe_calls: list[PipelineCall]) -> None:
    """The pipeline masks the crops it is given (``image * (mask < 0.5)``) where they are: pictures,
    on the CPU. A mask already on the GPU beside them failed every ControlNet job on CUDA."""

    def where(values: object) -> set[str]:
        assert isinstance(values, list)
        return {"picture" if isinstance(v, Image.Image) else str(v.device) for v in values}

    inpaint(cn_engine, controlnet="inpaint")
    (call,) = pipe_calls
    assert where(call.kwargs["image"]) == where(call.kwargs["mask_image"]) == {"picture"}


@pytest.mark.parametrize(
    ("kind", "extra"),
    [
        ("tile", {"tile_downsample": 3, "masked_content": "fill"}),
        ("tile", {"area": "whole"}),
        ("inpaint", {"masked_content": "fill"}),
        ("inpaint", {"invert_mask": True}),
        ("inpaint", {"invert_mask": True, "area": "whole"}),
    ],
)
def test_control_image_is_made_from_the_unfilled_crop(
    cn_engine: Engine, pipe_calls: list[PipelineCall], kind: str, extra: dict[str, object]
) -> None:
    image = photo(96, 64)
    job = cn_engine.prepare(request(image, rect_mask(96, 64, BOX), controlnet=kind, **extra))
    cn_engine.run([job])
    (p,) = job.passes
    crop = image.crop(p.box.as_tuple()).resize(p.size, Image.Resampling.LANCZOS)
    crop_mask = p.mask.resize(p.size, Image.Resampling.BILINEAR)
    if kind == "tile":
        expected = np.asarray(tile_resample(crop, job.settings.tile_downsample), np.float32) / 255
    else:
        expected = inpaint_only(crop, crop_mask)
    (call,) = pipe_calls
    control = call.kwargs["control_image"]
    assert control.shape == (1, 3, p.size[1], p.size[0])
    assert np.array_equal(control[0].permute(1, 2, 0).numpy(), expected)
    if kind == "inpaint":  # -1 where the job repaints: the box, or all but the box when inverted
        drawn = rect_mask(96, 64, BOX).crop(p.box.as_tuple()).resize(p.size, Image.Resampling.NEAREST)
        repainted = (np.asarray(drawn) > 127) != extra.get("invert_mask", False)
        assert np.mean((expected[..., 0] == -1) == repainted) > 0.9


@pytest.mark.parametrize(
    ("kind", "extra"),
    [("tile", {"tile_downsample": 4}), ("inpaint", {}), ("tile", {"masked_content": "fill"})],
)
@pytest.mark.parametrize("area", ["whole", "masked"])
def test_unmasked_pixels_identical(
    cn_engine: Engine, kind: str, extra: dict[str, object], area: str
) -> None:
    image = photo(96, 64)
    result = cn_engine.inpaint(
        request(image, rect_mask(96, 64, BOX), area=area, strength=1.0, controlnet=kind, **extra)
    )
    assert_untouched_outside(result.images[0].png, image, far_from(BOX, (64, 96), margin=14))
    x0, y0, x1, y1 = BOX
    inside = np.s_[y0 + 2 : y1 - 2, x0 + 2 : x1 - 2]
    assert np.abs(pixels(result.images[0].png)[inside] - np.asarray(image)[inside]).mean() > 1


def test_progress_every_step(cn_engine: Engine) -> None:
    seen: list[Progress] = []
    cn_engine.inpaint(
        request(photo(64, 64), rect_mask(64, 64, (8, 8, 40, 40)), strength=1.0, controlnet="inpaint"),
        on_progress=seen.append,
    )
    assert [(p.step, p.total) for p in seen] == [(1, 4), (2, 4), (3, 4), (4, 4)]


def test_sdxl_in_float16_keeps_the_shared_vae_in_float16(
    tiny_sdxl_path: Path, tiny_sdxl_tile: Path
) -> None:
    """diffusers' SDXL ControlNet inpaint pipeline upcasts the float16 VAE to decode and leaves it in
    float32; the VAE is shared, so the next job (with a ControlNet or without) failed on dtypes. The
    tiny models run in float16 on the CPU too, as real ones do on a GPU."""
    engine = make_engine(tiny_sdxl_path, controlnet_tile_sdxl=str(tiny_sdxl_tile))
    engine.models.dtype = torch.float16
    vae = engine.load().pipe.vae
    assert vae.dtype == torch.float16 and vae.config.force_upcast
    image = photo(80, 64)
    for settings in ({"controlnet": "tile"}, {}, {"controlnet": "tile"}):
        engine.inpaint(request(image, rect_mask(80, 64, (20, 16, 50, 40)), steps=2, **settings))
        assert vae.dtype == torch.float16


def test_a_failed_call_leaves_no_start_latents_edit(
    cn_engine: Engine, tiny_tile: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A call that fails before the pipeline encodes the picture must not leave its masked-content
    edit (and its mask and generators) on the shared pipeline for whatever encodes next."""

    def fail(*args: object, **kwargs: object) -> None:
        raise RuntimeError("before any encoding")

    with monkeypatch.context() as patch:
        patch.setattr(ControlNetInpaintPipeline, "check_inputs", fail)
        with pytest.raises(RuntimeError, match="before any encoding"):
            inpaint(cn_engine, masked_content="latent-nothing", controlnet="tile")
    pipe = cn_engine.models.controlnet_pipe(cn_engine.load(), str(tiny_tile))
    pixels = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    expected = latents.encode(pipe.vae, pixels, torch.float32, sdxl=False)
    assert torch.equal(pipe._encode_vae_image(pixels, generator=None), expected)


def test_the_masked_image_is_not_encoded_for_a_4_channel_unet(
    cn_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Only 9-channel UNets see the masked image's latents: one VAE encoding (the start latents)."""
    encodings: list[tuple[int, ...]] = []
    encode = latents.encode

    def counted(vae: Any, pixels: torch.Tensor, dtype: torch.dtype, *, sdxl: bool) -> torch.Tensor:
        encodings.append(tuple(pixels.shape))
        return encode(vae, pixels, dtype, sdxl=sdxl)

    monkeypatch.setattr(latents, "encode", counted)
    inpaint(cn_engine, controlnet="tile", count=2)
    assert encodings == [(2, 3, 64, 64)]


def test_prepare_loads_no_weights(
    tiny_sd_path: Path, tiny_sd_regular_path: Path, tiny_tile: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """prepare runs beside the GPU worker, so it reads configs only. With one resident model, an
    inpainting checkpoint's ControlNet job loads the base model and the ControlNet once, on run."""
    engine = make_engine(
        tiny_sd_path,
        controlnet_tile=str(tiny_tile),
        controlnet_base_model=str(tiny_sd_regular_path),
        max_loaded_models=1,
    )
    loads: list[str] = []
    load, load_controlnet = ModelManager._load, ModelManager._controlnet_pipe

    def counted(manager: ModelManager, name: str) -> Any:
        loads.append(name)
        return load(manager, name)

    def counted_controlnet(manager: ModelManager, model: Any, name: str) -> Any:
        loads.append(name)
        return load_controlnet(manager, model, name)

    monkeypatch.setattr(ModelManager, "_load", counted)
    monkeypatch.setattr(ModelManager, "_controlnet_pipe", counted_controlnet)
    image, mask = photo(64, 64), rect_mask(64, 64, (8, 8, 40, 40))
    jobs = [engine.prepare(request(image, mask, controlnet="tile", seed=seed)) for seed in (1, 2)]
    assert loads == []
    for job in jobs:
        engine.run([job])
    assert loads == [str(tiny_sd_regular_path), str(tiny_tile)]


def test_controlnet_pipeline_is_resident_and_shares_the_base_weights(
    cn_engine: Engine, tiny_tile: Path
) -> None:
    job = cn_engine.prepare(request(photo(64, 64), rect_mask(64, 64, (8, 8, 40, 40)), controlnet="tile"))
    assert job.controlnet == str(tiny_tile)
    model = cn_engine.load(job.model)
    pipe = cn_engine.models.controlnet_pipe(model, str(tiny_tile))
    assert cn_engine.models.controlnet_pipe(model, str(tiny_tile)) is pipe
    assert pipe.unet is model.pipe.unet and pipe.vae is model.pipe.vae
    assert pipe.text_encoder is model.pipe.text_encoder


def test_parameters_line_has_a1111_controlnet_unit(
    cn_engine: Engine, tiny_tile: Path, tiny_inpaint: Path
) -> None:
    _, tile = inpaint(cn_engine, controlnet="tile", tile_downsample=2.5, control_weight=0.8)
    assert tile.splitlines()[-1].endswith(
        f', ControlNet 0: "Module: tile_resample, Model: {tiny_tile.name}, Weight: 0.8, Resize Mode: '
        'Crop and Resize, Threshold A: 2.5, Guidance Start: 0, Guidance End: 1, Control Mode: Balanced"'
    )
    _, unit = inpaint(cn_engine, controlnet="inpaint", control_start=0.1, control_end=0.9)
    assert unit.splitlines()[-1].endswith(
        f', ControlNet 0: "Module: inpaint_only, Model: {tiny_inpaint.name}, Weight: 1, Resize Mode: '
        'Crop and Resize, Guidance Start: 0.1, Guidance End: 0.9, Control Mode: Balanced"'
    )
    _, plain = inpaint(cn_engine)
    assert "ControlNet" not in plain


def test_controlnet_settings_decide_batching(cn_engine: Engine) -> None:
    def job(seed: int, **settings: object) -> PreparedJob:
        return cn_engine.prepare(
            request(photo(64, 64, seed=seed), rect_mask(64, 64, (10, 10, 40, 40)), seed=seed, **settings)
        )

    # Each image gets its own control image: the down-sampling rate need not be shared.
    tiles = [job(1, controlnet="tile", tile_downsample=2), job(2, controlnet="tile", tile_downsample=3)]
    assert tiles[0].batch_key == tiles[1].batch_key is not None
    for other in (
        job(3),
        job(3, controlnet="inpaint"),
        job(3, controlnet="tile", control_weight=0.5),
        job(3, controlnet="tile", control_start=0.2),
        job(3, controlnet="tile", control_end=0.8),
    ):
        assert other.batch_key != tiles[0].batch_key
    # Settings that do not apply do not split batches.
    assert job(3).batch_key == job(4, control_weight=0.5, control_end=0.5, tile_downsample=4).batch_key
    assert (
        job(3, controlnet="inpaint").batch_key
        == job(4, controlnet="inpaint", tile_downsample=4).batch_key
    )
    together = cn_engine.run(tiles)
    alone = [cn_engine.run([one])[0] for one in tiles]
    for batched, single in zip(together, alone, strict=True):
        assert np.abs(pixels(batched.images[0].png) - pixels(single.images[0].png)).max() <= 2


# -- models ------------------------------------------------------------------------------------------


def test_inpainting_checkpoint_is_refused_without_a_base_model(
    engine: Engine, tiny_sd_path: Path
) -> None:
    with pytest.raises(SettingsError, match="INPAINTBOT_CONTROLNET_BASE_MODEL") as refused:
        engine.prepare(request(photo(64, 64), rect_mask(64, 64, (8, 8, 40, 40)), controlnet="tile"))
    assert "inpainting (9-channel) checkpoints" in str(refused.value)
    assert str(tiny_sd_path) in str(refused.value)


def test_inpainting_checkpoint_switches_to_the_configured_base_model(
    tiny_sd_path: Path, tiny_sd_regular_path: Path, tiny_tile: Path
) -> None:
    engine = make_engine(
        tiny_sd_path, controlnet_tile=str(tiny_tile), controlnet_base_model=str(tiny_sd_regular_path)
    )
    image = photo(96, 64)
    result = engine.inpaint(request(image, rect_mask(96, 64, BOX), controlnet="tile", strength=1.0))
    assert result.model == str(tiny_sd_regular_path)
    parameters = Image.open(io.BytesIO(result.images[0].png)).text["parameters"]
    assert f"Model: {tiny_sd_regular_path}," in parameters
    assert_untouched_outside(result.images[0].png, image, far_from(BOX, (64, 96), margin=14))
    plain = engine.prepare(request(image, rect_mask(96, 64, BOX)))
    assert plain.model == str(tiny_sd_path), "jobs without a ControlNet keep the chosen model"


def test_base_model_of_another_family_is_refused(
    tiny_sd_regular_path: Path, tiny_tile: Path, tmp_path: Path
) -> None:
    """An SDXL inpainting model must not quietly become an SD 1.x job (config files only)."""
    sdxl_inpainting = build_tiny_sdxl(tmp_path / "xl-inpainting", inpainting=True)
    engine = make_engine(
        sdxl_inpainting, controlnet_tile=str(tiny_tile), controlnet_base_model=str(tiny_sd_regular_path)
    )
    with pytest.raises(SettingsError) as refused:
        engine.prepare(request(photo(64, 64), rect_mask(64, 64, (8, 8, 40, 40)), controlnet="tile"))
    assert str(refused.value) == (
        f"ControlNets do not work with inpainting (9-channel) checkpoints like {str(sdxl_inpainting)!r}, "
        f"and this server's INPAINTBOT_CONTROLNET_BASE_MODEL ({str(tiny_sd_regular_path)!r}) is "
        "SD 1.x, not SDXL. Choose a regular SDXL model."
    )
    assert not engine.models._loaded


def test_base_model_that_is_an_inpainting_checkpoint_is_refused(tiny_sd_path: Path) -> None:
    engine = make_engine(tiny_sd_path, controlnet_base_model=str(tiny_sd_path))
    with pytest.raises(SettingsError, match="is an inpainting checkpoint too"):
        engine.prepare(request(photo(64, 64), rect_mask(64, 64, (8, 8, 40, 40)), controlnet="inpaint"))


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("./no-such-controlnet", "ControlNet file or folder './no-such-controlnet' does not exist"),
        ("someone/no-such-controlnet", "not in the local Hugging Face cache"),
    ],
)
def test_missing_controlnet_fails_at_prepare(
    tiny_sd_regular_path: Path, name: str, message: str
) -> None:
    """Members see this on Discord: it names the ControlNet, the variable, and who must fix it."""
    engine = make_engine(tiny_sd_regular_path, controlnet_tile=name)
    with pytest.raises(ModelLoadError, match=message) as refused:
        engine.prepare(request(photo(64, 64), rect_mask(64, 64, (8, 8, 40, 40)), controlnet="tile"))
    text = str(refused.value)
    assert text.startswith(
        "This server's tile ControlNet (INPAINTBOT_CONTROLNET_TILE) cannot be used. The ControlNet "
    )
    assert text.endswith(
        "The bot's operator must fix INPAINTBOT_CONTROLNET_TILE; until then, use controlnet none."
    )
    assert "The model" not in text


def test_single_file_controlnet(
    tiny_sd_regular_path: Path, tiny_tile: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A lone .safetensors ControlNet: diffusers takes its config from the Hub once (here, a cache
    holding what that first online start would have fetched for an SD 1.5 ControlNet)."""
    checkpoint = tmp_path / "my_tile.safetensors"
    shutil.copy(tiny_tile / "diffusion_pytorch_model.safetensors", checkpoint)
    snapshot = tmp_path / "hub/models--lllyasviel--control_v11p_sd15_canny/snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    shutil.copy(tiny_tile / "config.json", snapshot / "config.json")
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs/main").write_text("0" * 40)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))

    engine = make_engine(tiny_sd_regular_path, controlnet_tile=str(checkpoint))
    single, parameters = inpaint(engine, controlnet="tile", strength=1.0)
    folder, _ = inpaint(
        make_engine(tiny_sd_regular_path, controlnet_tile=str(tiny_tile)),
        controlnet="tile",
        strength=1.0,
    )
    assert np.array_equal(single, folder)
    assert "Model: my_tile," in parameters


@pytest.mark.parametrize(
    ("folder", "message"),
    [
        ("empty", "has no config.json: it is not a diffusers ControlNet"),
        ("unet", "is not a ControlNet: its config.json describes a UNet2DConditionModel"),
    ],
)
def test_folder_that_is_not_a_controlnet(
    tiny_sd_regular_path: Path, tmp_path: Path, folder: str, message: str
) -> None:
    name = str(tiny_sd_regular_path / "unet") if folder == "unet" else str(tmp_path)
    engine = make_engine(tiny_sd_regular_path, controlnet_inpaint=name)
    with pytest.raises(ModelLoadError, match=message):
        engine.prepare(request(photo(64, 64), rect_mask(64, 64, (8, 8, 40, 40)), controlnet="inpaint"))


def test_controlnet_that_fails_to_load_fails_the_job(
    tiny_sd_regular_path: Path, tiny_tile: Path, tmp_path: Path
) -> None:
    """Its config is read at submission; broken weights are found when the GPU worker loads them."""
    shutil.copy(tiny_tile / "config.json", tmp_path / "config.json")
    (tmp_path / "diffusion_pytorch_model.safetensors").write_bytes(b"truncated")
    engine = make_engine(tiny_sd_regular_path, controlnet_tile=str(tmp_path))
    job = engine.prepare(request(photo(64, 64), rect_mask(64, 64, (8, 8, 40, 40)), controlnet="tile"))
    with pytest.raises(ModelLoadError) as failed:
        engine.run([job])
    assert str(failed.value).startswith(
        "This server's tile ControlNet (INPAINTBOT_CONTROLNET_TILE) cannot be used. The ControlNet "
        f"{str(tmp_path)!r} could not be loaded as a ControlNet: "
    )
    assert str(failed.value).endswith(
        "The bot's operator must fix INPAINTBOT_CONTROLNET_TILE; until then, use controlnet none."
    )


def test_pickle_controlnet_refused(tiny_sd_regular_path: Path, tmp_path: Path) -> None:
    checkpoint = tmp_path / "control.ckpt"
    checkpoint.write_bytes(b"\x80\x04not really")
    engine = make_engine(tiny_sd_regular_path, controlnet_tile=str(checkpoint))
    with pytest.raises(ModelLoadError, match=r"only \.safetensors"):
        engine.prepare(request(photo(64, 64), rect_mask(64, 64, (8, 8, 40, 40)), controlnet="tile"))


def test_sdxl_uses_the_sdxl_controlnets(
    tiny_sdxl_path: Path, tiny_tile: Path, tiny_sdxl_tile: Path
) -> None:
    sdxl_tile = tiny_sdxl_tile
    engine = make_engine(
        tiny_sdxl_path, controlnet_tile=str(tiny_tile), controlnet_tile_sdxl=str(sdxl_tile)
    )
    image = photo(80, 64)
    box = (20, 16, 50, 40)
    plain = engine.inpaint(request(image, rect_mask(80, 64, box), strength=1.0))
    off = engine.inpaint(
        request(image, rect_mask(80, 64, box), strength=1.0, controlnet="tile", control_weight=0)
    )
    on = engine.inpaint(request(image, rect_mask(80, 64, box), strength=1.0, controlnet="tile"))
    assert np.abs(pixels(off.images[0].png) - pixels(plain.images[0].png)).max() <= 1
    assert np.abs(pixels(on.images[0].png) - pixels(plain.images[0].png)).mean() > 1
    assert_untouched_outside(on.images[0].png, image, far_from(box, (64, 80), margin=14))
    with pytest.raises(SettingsError, match="INPAINTBOT_CONTROLNET_INPAINT_SDXL"):
        engine.prepare(request(image, rect_mask(80, 64, box), controlnet="inpaint"))


@pytest.mark.parametrize("single_file", [False, True])
def test_sd1_controlnet_on_an_sdxl_model_is_refused(
    tiny_sdxl_path: Path, tiny_tile: Path, tmp_path: Path, single_file: bool
) -> None:
    """Found from the ControlNet's config (or a lone file's header), before any weights load."""
    tile = tiny_tile
    if single_file:
        tile = tmp_path / "tile.safetensors"
        shutil.copy(tiny_tile / "diffusion_pytorch_model.safetensors", tile)
    engine = make_engine(tiny_sdxl_path, controlnet_tile_sdxl=str(tile))
    with pytest.raises(ModelLoadError, match="INPAINTBOT_CONTROLNET_TILE_SDXL") as refused:
        engine.prepare(request(photo(64, 64), rect_mask(64, 64, (8, 8, 40, 40)), controlnet="tile"))
    assert f"The ControlNet {str(tile)!r} does not fit the model {str(tiny_sdxl_path)!r} (SDXL)" in str(
        refused.value
    )
    assert not engine.models._loaded


def test_single_file_that_is_not_a_controlnet(tiny_sd_regular_path: Path, tmp_path: Path) -> None:
    checkpoint = save_single_file(tiny_sd_regular_path, tmp_path / "model.safetensors")
    engine = make_engine(tiny_sd_regular_path, controlnet_tile=str(checkpoint))
    with pytest.raises(ModelLoadError, match=r"model\.safetensors is not a ControlNet checkpoint"):
        engine.prepare(request(photo(64, 64), rect_mask(64, 64, (8, 8, 40, 40)), controlnet="tile"))


def test_empty_sdxl_variable_switches_the_default_off(monkeypatch: pytest.MonkeyPatch) -> None:
    assert EngineConfig(_env_file=None).controlnet_tile_sdxl == "xinsir/controlnet-tile-sdxl-1.0"
    monkeypatch.setenv("INPAINTBOT_CONTROLNET_TILE_SDXL", "")
    assert EngineConfig(_env_file=None).controlnet_tile_sdxl is None


# -- settings ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"control_weight": 2.5}, "control_weight must be between 0.0 and 2.0 (got 2.5)."),
        ({"control_start": -0.1}, "control_start must be between 0.0 and 1.0 (got -0.1)."),
        ({"control_end": 1.5}, "control_end must be between 0.0 and 1.0 (got 1.5)."),
        ({"tile_downsample": 9}, "tile_downsample must be between 1.0 and 8.0 (got 9)."),
        ({"tile_downsample": 0.5}, "tile_downsample must be between 1.0 and 8.0 (got 0.5)."),
        (
            {"controlnet": "canny"},
            "controlnet must be one of 'none', 'tile' or 'inpaint' (got 'canny').",
        ),
        (
            {"controlnet": "tile", "control_start": 0.6, "control_end": 0.6},
            "control_start (0.6) must be less than control_end (0.6): the ControlNet guides the "
            "steps between them.",
        ),
    ],
)
def test_bad_controlnet_settings(values: dict[str, object], message: str) -> None:
    with pytest.raises(SettingsError) as refused:
        InpaintSettings.parse(**values)
    assert str(refused.value) == message


def test_settings_round_trip_as_presets_store_them() -> None:
    settings = InpaintSettings.parse(
        controlnet="tile", control_weight=0.6, control_start=0.1, control_end=0.9, tile_downsample=2.5
    )
    for dumped in (settings.model_dump(), settings.model_dump(mode="json")):
        assert InpaintSettings.model_validate(dumped) == settings
    assert settings.model_dump(mode="json")["controlnet"] == "tile"
    stored_before_controlnets = {"prompt": "a hat", "strength": 0.5}
    old = InpaintSettings.model_validate(stored_before_controlnets)
    assert old.controlnet is ControlNet.NONE
    assert (old.control_weight, old.control_start, old.control_end, old.tile_downsample) == (1, 0, 1, 1)
