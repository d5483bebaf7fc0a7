"""Model loading: the three ways users name a model, and the errors when that fails."""

from pathlib import Path

import pytest
import torch

from engine.errors import ModelLoadError
from engine.models import ModelManager, resolve_device


@pytest.fixture
def manager() -> ModelManager:
    return ModelManager(torch.device("cpu"), max_loaded=2)


def test_local_folder_loads_inpainting_pipeline(manager: ModelManager, tiny_sd_path: Path) -> None:
    model = manager.get(str(tiny_sd_path))
    assert model.inpainting and not model.sdxl
    assert model.native_size == 64
    assert model.dtype == torch.float32
    assert manager.get(str(tiny_sd_path)) is model, "pipelines stay resident between jobs"


def test_least_recently_used_model_is_unloaded(
    manager: ModelManager, tiny_sd_path: Path, tiny_sd_regular_path: Path, tiny_sdxl_path: Path
) -> None:
    first = manager.get(str(tiny_sd_path))
    manager.get(str(tiny_sd_regular_path))
    manager.get(str(tiny_sdxl_path))
    assert manager.get(str(tiny_sd_path)) is not first


def test_missing_path(manager: ModelManager, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="does not exist"):
        manager.get(str(tmp_path / "nope.safetensors"))


def test_hub_id_offline_is_clear(manager: ModelManager) -> None:
    with pytest.raises(ModelLoadError, match="not in the local Hugging Face cache"):
        manager.get("someone/no-such-inpainting-model")


def test_folder_that_is_not_a_pipeline(manager: ModelManager, tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("not a model")
    with pytest.raises(ModelLoadError, match="could not be loaded"):
        manager.get(str(tmp_path))


def test_pickle_checkpoints_refused(manager: ModelManager, tmp_path: Path) -> None:
    checkpoint = tmp_path / "model.ckpt"
    checkpoint.write_bytes(b"\x80\x04not really")
    with pytest.raises(ModelLoadError, match=r"only \.safetensors"):
        manager.get(str(checkpoint))


def test_corrupt_safetensors(manager: ModelManager, tmp_path: Path) -> None:
    checkpoint = tmp_path / "model.safetensors"
    checkpoint.write_bytes(b"garbage" * 10)
    with pytest.raises(ModelLoadError, match=r"not a readable \.safetensors"):
        manager.get(str(checkpoint))


def test_cuda_requested_without_gpu() -> None:
    if torch.cuda.is_available():
        assert resolve_device("cuda").type == "cuda"
    else:
        with pytest.raises(ModelLoadError, match="no CUDA GPU"):
            resolve_device("cuda")
    assert resolve_device("cpu").type == "cpu"
