"""bench.gpu builds the real architectures: checked on the meta device, so nothing is allocated."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from bench.gpu import components, pipeline

ROOT = Path(__file__).resolve().parents[2]

# Published parameter counts (diffusers' models at these configs): the UNet with 9 input channels.
EXPECTED_MILLIONS = {
    "sd15": {"unet": 859.5, "vae": 83.7, "text_encoder_1": 123.1},
    "sdxl": {"unet": 2567.5, "vae": 83.7, "text_encoder_1": 123.1, "text_encoder_2": 694.7},
}


@pytest.mark.parametrize("model", ["sd15", "sdxl"])
def test_the_bench_models_are_full_size(model: str) -> None:
    parts = components(model, "meta", torch.float16)
    counts = {name: round(count / 1e6, 1) for name, count in parts.parameters().items()}
    assert counts == EXPECTED_MILLIONS[model]
    assert parts.unet.config.in_channels == 9  # inpainting UNets
    assert all(p.is_meta for p in parts.unet.parameters()), "the weights were allocated"
    assert parts.unet.dtype == torch.float16


@pytest.mark.parametrize(
    ("model", "kind"),
    [("sd15", "StableDiffusionInpaintPipeline"), ("sdxl", "StableDiffusionXLInpaintPipeline")],
)
def test_the_bench_pipelines_assemble(model: str, kind: str) -> None:
    pipe = pipeline(model, torch.device("meta"), torch.float16)
    assert type(pipe).__name__ == kind
    assert pipe.unet.config.in_channels == 9 and pipe.vae.config.scaling_factor == (
        0.13025 if model == "sdxl" else 0.18215
    )


def test_the_cpu_smoke_run_times_full_size_jobs() -> None:
    """The issue's "runs on the CPU with --steps 2": the smallest run that still goes through the
    engine with a full-size SD 1.5 (about a minute here), so the script cannot rot unnoticed."""
    command = [sys.executable, "-m", "bench.gpu", "--steps", "2", "--models", "sd15"]
    command += ["--sizes", "64", "--batch", "2", "--runs", "1"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert re.search(r"sd15: 64 px, 2 steps, one image: [0-9.]+ s", done.stdout), done.stdout
    assert re.search(r"sd15: 64 px, batch of 2 jobs: .* throughput [0-9.]+x", done.stdout), done.stdout
