"""The VAE's precision: float32 only where the model needs it, and a NaN decode done again in float32.

The engine runs float32 on the CPU, so these load the tiny models in float16, as a GPU runs them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL

from engine import latents
from engine.config import EngineConfig
from engine.engine import Engine
from tests.engine.test_engine import pixels, request
from tests.pictures import photo, rect_mask
from tests.support.tiny_models import tiny_vae


def half_vae(*, force_upcast: bool) -> Any:
    vae = tiny_vae()
    vae.register_to_config(force_upcast=force_upcast)
    return vae.to(torch.float16)


@pytest.mark.parametrize(
    ("sdxl", "force_upcast", "expected"),
    [
        (False, True, torch.float16),  # SD 1.x configs lack the flag, which reads True by default
        (True, True, torch.float32),  # SDXL's original VAE overflows in float16
        (True, False, torch.float16),  # an fp16-fix SDXL VAE
    ],
)
def test_encode_upcasts_only_an_sdxl_vae_that_asks_for_it(
    monkeypatch: pytest.MonkeyPatch, sdxl: bool, force_upcast: bool, expected: torch.dtype
) -> None:
    vae = half_vae(force_upcast=force_upcast)
    seen: list[tuple[torch.dtype, torch.dtype]] = []
    encode = AutoencoderKL.encode

    def recorded(self: Any, pixels: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        seen.append((self.dtype, pixels.dtype))
        return encode(self, pixels, *args, **kwargs)

    monkeypatch.setattr(AutoencoderKL, "encode", recorded)
    pixels = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    encoded = latents.encode(vae, pixels, torch.float16, sdxl=sdxl)
    assert seen == [(expected, expected)]
    assert encoded.dtype == torch.float16 and vae.dtype == torch.float16


def nan_in_half(monkeypatch: pytest.MonkeyPatch) -> list[torch.dtype]:
    """Make every half-precision VAE decode return NaN, as a real VAE's overflow does; the dtypes of
    the decodes are recorded."""
    decode = AutoencoderKL.decode
    calls: list[torch.dtype] = []

    def overflowing(self: Any, z: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        calls.append(self.dtype)
        decoded = decode(self, z, *args, **kwargs)
        if self.dtype == torch.float16:
            decoded[0].fill_(float("nan"))
        return decoded

    monkeypatch.setattr(AutoencoderKL, "decode", overflowing)
    return calls


def test_a_nan_half_decode_is_done_again_in_float32(monkeypatch: pytest.MonkeyPatch) -> None:
    vae = half_vae(force_upcast=False)
    z = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0)).half()
    calls = nan_in_half(monkeypatch)
    with latents.nan_checked_decode(vae):
        decoded = vae.decode(z).sample
    assert calls == [torch.float16, torch.float32]
    assert vae.dtype == torch.float16
    assert not decoded.isnan().any()
    assert torch.equal(decoded, AutoencoderKL.decode(vae.float(), z.float()).sample)


def test_a_sound_half_decode_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    vae = half_vae(force_upcast=False)
    z = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0)).half()
    with latents.nan_checked_decode(vae):
        decoded = vae.decode(z, return_dict=False)[0]
    assert decoded.dtype == torch.float16 and not decoded.isnan().any()
    assert "decode" not in vars(vae)  # the VAE's own decode again afterwards


def test_the_engine_delivers_the_float32_decode_when_the_half_one_overflows(
    tiny_sd_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A whole job in float16: the picture is the one a float32 decode gives, not a black one."""
    engine = Engine(EngineConfig(model=str(tiny_sd_path), device="cpu", _env_file=None))
    engine.models.dtype = torch.float16
    job = request(photo(64, 64), rect_mask(64, 64, (8, 8, 48, 48)), strength=1.0, seed=3)
    decode = AutoencoderKL.decode

    def in_float32(self: Any, z: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        with latents.vae_dtype_kept(self):
            return decode(self.float(), z.float(), *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(AutoencoderKL, "decode", in_float32)
        expected = pixels(engine.inpaint(job).images[0].png)
    calls = nan_in_half(monkeypatch)
    result = pixels(engine.inpaint(job).images[0].png)
    assert calls == [torch.float16, torch.float32]
    np.testing.assert_array_equal(result, expected)


@pytest.mark.parametrize(
    ("side", "dtype", "sdxl", "force_upcast", "tiled"),
    [
        (1024, torch.float32, False, True, False),  # float32 at 1024 px: just under the budget
        (1088, torch.float32, False, True, True),
        (1024, torch.float16, True, True, False),  # SDXL's own VAE, upcast: counts as float32
        (1152, torch.float16, True, True, True),
        (1152, torch.float16, True, False, False),  # fp16-fix: half the memory, whole up to ~1448 px
        (1440, torch.float16, False, True, False),  # SD 1.x in float16
        (1536, torch.float16, False, True, True),
    ],
)
def test_the_vae_tiles_only_pictures_too_big_to_decode_whole(
    side: int, dtype: torch.dtype, sdxl: bool, force_upcast: bool, tiled: bool
) -> None:
    vae = half_vae(force_upcast=force_upcast).to(dtype)
    latents.tile_if_large(vae, side * side, sdxl=sdxl)
    assert vae.use_tiling is tiled


def test_a_job_too_big_for_the_budget_encodes_and_decodes_in_tiles(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the budget below a 64 px decode, the engine's VAE works in tiles (the tiny model's tiles
    are 32 px) and the job still paints its picture; the next small job decodes whole again."""
    job = request(photo(64, 64), rect_mask(64, 64, (8, 8, 48, 48)), strength=0.7, seed=3)
    vae = engine.load().pipe.vae
    vae.tile_sample_min_size, vae.tile_latent_min_size = 32, 4  # tiles smaller than the picture
    tiling_seen = record_tiling(vae, monkeypatch)
    try:
        whole = pixels(engine.inpaint(job).images[0].png)
        monkeypatch.setattr(latents, "TILE_ABOVE_BYTES", 1)
        tiles = pixels(engine.inpaint(job).images[0].png)
        monkeypatch.setattr(latents, "TILE_ABOVE_BYTES", 4 * 2**30)
        engine.inpaint(job)
    finally:
        vae.tile_sample_min_size, vae.tile_latent_min_size = 64, 8

    def one_job(tiled: bool) -> list[tuple[str, bool]]:  # the picture, the masked picture, the result
        return [("encode", tiled), ("encode", tiled), ("decode", tiled)]

    assert tiling_seen == one_job(False) + one_job(True) + one_job(False)
    assert tiles.shape == whole.shape and np.abs(tiles - whole).max() > 0, "the tiles were used"


def record_tiling(vae: Any, monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, bool]]:
    seen: list[tuple[str, bool]] = []
    for work in ("encode", "decode"):
        method = getattr(AutoencoderKL, work)

        def recorded(self: Any, *args: Any, _work: str = work, _method: Any = method, **kw: Any) -> Any:
            seen.append((_work, self.use_tiling))
            return _method(self, *args, **kw)

        monkeypatch.setattr(AutoencoderKL, work, recorded)
    return seen


def test_a_batch_is_encoded_and_decoded_one_picture_at_a_time(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """VAE slicing: the VAE's peak memory is one picture's, whatever the batch."""
    vae = engine.load().pipe.vae
    rows: list[tuple[str, int]] = []
    for part in ("encoder", "decoder"):
        module = getattr(vae, part)
        monkeypatch.setattr(
            module,
            "forward",
            lambda x, *a, _part=part, _forward=module.forward, **kw: (
                rows.append((_part, x.shape[0])) or _forward(x, *a, **kw)
            ),
        )
    jobs = [
        engine.prepare(
            request(photo(64, 64, seed=s), rect_mask(64, 64, (8, 8, 48, 48)), seed=s, count=2)
        )
        for s in (1, 2)
    ]
    results = engine.run(jobs)
    assert sum(len(result.images) for result in results) == 4
    assert {count for _, count in rows} == {1}, "the VAE saw more than one picture at once"
    assert [part for part, _ in rows].count("decoder") == 4
