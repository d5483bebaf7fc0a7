"""Shared fixtures: tiny random-weight pipelines, built once per test session.

Nothing here may reach the network: the Hub is switched off before diffusers is imported.
"""

import os

os.environ["HF_HUB_OFFLINE"] = "1"
# Once torch has computed on two threads of one process (the queue's worker and the test's), OpenMP's
# per-thread pools make CPU inference ~3x slower for the rest of the run; one thread each avoids it.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from pathlib import Path

import pytest

from engine.config import EngineConfig
from engine.engine import Engine
from tests.support.tiny_mask_models import build_tiny_grounding_dino, build_tiny_sam2
from tests.support.tiny_models import build_tiny_controlnet, build_tiny_sd, build_tiny_sdxl


@pytest.fixture(scope="session")
def tiny_sd_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 9-channel (inpainting) SD1.x-architecture pipeline folder."""
    return build_tiny_sd(tmp_path_factory.mktemp("tiny-sd"))


@pytest.fixture(scope="session")
def tiny_sd_regular_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 4-channel (regular) SD1.x-architecture pipeline folder."""
    return build_tiny_sd(tmp_path_factory.mktemp("tiny-sd-regular"), inpainting=False)


@pytest.fixture(scope="session")
def tiny_sdxl_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_sdxl(tmp_path_factory.mktemp("tiny-sdxl"))


@pytest.fixture(scope="session")
def engine(tiny_sd_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Engine:
    """One engine for the session, like the bot's: pipelines stay resident between tests."""
    config = EngineConfig(
        model=str(tiny_sd_path), device="cpu", data_dir=tmp_path_factory.mktemp("data"), _env_file=None
    )
    return Engine(config)


@pytest.fixture(scope="session")
def tiny_tile(tiny_sd_regular_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_controlnet(tmp_path_factory.mktemp("tile"), tiny_sd_regular_path, seed=1)


@pytest.fixture(scope="session")
def tiny_inpaint(tiny_sd_regular_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_controlnet(tmp_path_factory.mktemp("inpaint"), tiny_sd_regular_path, seed=2)


@pytest.fixture(scope="session")
def cn_engine(tiny_sd_regular_path: Path, tiny_tile: Path, tiny_inpaint: Path) -> Engine:
    """A regular checkpoint, as ControlNets need, with both tiny ControlNets configured."""
    config = EngineConfig(
        model=str(tiny_sd_regular_path),
        device="cpu",
        controlnet_tile=str(tiny_tile),
        controlnet_inpaint=str(tiny_inpaint),
        _env_file=None,
    )
    return Engine(config)


@pytest.fixture(scope="session")
def tiny_word_models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Tiny Grounding DINO and SAM 2 folders, for INPAINTBOT_MASK_DETECTOR and _SEGMENTER."""
    return (
        build_tiny_grounding_dino(tmp_path_factory.mktemp("dino")),
        build_tiny_sam2(tmp_path_factory.mktemp("sam2")),
    )


@pytest.fixture
def word_models_engine(tiny_sd_path: Path, tiny_word_models: tuple[Path, Path]) -> Engine:
    """An engine configured as an operator turns masks from words on: the tiny mask models."""
    detector, segmenter = tiny_word_models
    config = EngineConfig(
        model=str(tiny_sd_path),
        device="cpu",
        mask_detector=str(detector),
        mask_segmenter=str(segmenter),
        _env_file=None,
    )
    return Engine(config)
