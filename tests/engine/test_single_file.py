"""Single-file (original LDM/A1111 layout) checkpoints load back to the weights they were made from."""

from pathlib import Path

import pytest
import torch
from diffusers import DiffusionPipeline, StableDiffusionInpaintPipeline, StableDiffusionXLInpaintPipeline
from safetensors import safe_open

from engine.config import EngineConfig
from engine.engine import Engine
from engine.job import InpaintRequest
from engine.settings import InpaintSettings
from tests.pictures import photo, png_bytes, rect_mask
from tests.support.tiny_models import save_single_file


@pytest.mark.parametrize(
    ("folder_fixture", "pipeline_class", "in_channels", "text_prefix"),
    [
        ("tiny_sd_path", StableDiffusionInpaintPipeline, 9, "cond_stage_model.transformer."),
        ("tiny_sd_regular_path", StableDiffusionInpaintPipeline, 4, "cond_stage_model.transformer."),
        ("tiny_sdxl_path", StableDiffusionXLInpaintPipeline, 4, "conditioner.embedders.1."),
    ],
)
def test_single_file_loads_the_folder_weights(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    folder_fixture: str,
    pipeline_class: type[DiffusionPipeline],
    in_channels: int,
    text_prefix: str,
) -> None:
    folder: Path = request.getfixturevalue(folder_fixture)
    checkpoint = save_single_file(folder, tmp_path / "model.safetensors")
    with safe_open(str(checkpoint), framework="pt") as file:
        assert any(key.startswith(text_prefix) for key in file.keys())  # noqa: SIM118

    # config must be a str: diffusers' model loaders reject a Path.
    loaded = pipeline_class.from_single_file(str(checkpoint), config=str(folder), local_files_only=True)

    assert type(loaded) is pipeline_class
    assert loaded.unet.config.in_channels == in_channels
    expected = pipeline_class.from_pretrained(folder)
    models = {
        name: model for name, model in expected.components.items() if isinstance(model, torch.nn.Module)
    }
    assert set(models) >= {"unet", "vae", "text_encoder"}
    for name, model in models.items():
        weights, loaded_weights = model.state_dict(), getattr(loaded, name).state_dict()
        assert loaded_weights.keys() == weights.keys(), name
        assert all(torch.equal(loaded_weights[key], value) for key, value in weights.items()), name


def test_engine_runs_a_single_file_checkpoint(tiny_sd_path: Path, tmp_path: Path) -> None:
    """The way operators use it: INPAINTBOT_MODEL names the file, the configs come from a local folder."""
    checkpoint = save_single_file(tiny_sd_path, tmp_path / "my-inpainting.safetensors")
    engine = Engine(
        EngineConfig(
            model=str(checkpoint), single_file_config=str(tiny_sd_path), device="cpu", _env_file=None
        )
    )
    model = engine.load()
    assert model.inpainting and not model.sdxl and model.native_size == 64
    image = photo(80, 64)
    result = engine.inpaint(
        InpaintRequest(
            png_bytes(image),
            InpaintSettings.parse(steps=2, seed=5),
            png_bytes(rect_mask(80, 64, (20, 16, 50, 40))),
        )
    )
    assert (result.images[0].width, result.images[0].height) == (80, 64)
    assert result.model == str(checkpoint)
