"""Full-size SD 1.5 and SDXL inpainting pipelines with random weights, timed on the GPU.

The pipelines have the real architectures (configs written out below, as the Hub repos publish them),
so they cost what the real models cost, without any download. They are handed to the engine as a
loaded model (``ModelManager.adopt``), so a job runs the same code a member's job runs: prepare, the
batch's pipeline call, the composite.

    python -m bench.gpu                      # on a GPU: the whole set, float16, under 5 minutes
    python -m bench.gpu --compile            # the same, then again with INPAINTBOT_COMPILE's torch.compile
    python -m bench.gpu --steps 2 --models sd15 --sizes 64 --batch 2 --runs 1   # CPU smoke run (tests)

Reports per model: seconds per job at each size (``--steps`` steps, one image), the throughput of a
batch of ``--batch`` jobs divided by that of one job, and for SDXL the peak GPU memory
(``torch.cuda.max_memory_allocated``) of one job with count 4 at 1024 px.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import torch
from diffusers import (
    AutoencoderKL,
    EulerDiscreteScheduler,
    StableDiffusionInpaintPipeline,
    StableDiffusionXLInpaintPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

from bench.engine_overhead import mask_bytes, photo_bytes
from engine.config import EngineConfig
from engine.engine import Engine, PreparedJob
from engine.gpu_memory import release_memory
from engine.job import InpaintRequest
from engine.settings import InpaintSettings
from tests.support.tiny_models import tiny_tokenizer

# UNet configs of stable-diffusion-v1-5/stable-diffusion-inpainting and
# diffusers/stable-diffusion-xl-1.0-inpainting-0.1 (unet/config.json), the keys that differ from
# UNet2DConditionModel's defaults.
SD15_UNET: dict[str, Any] = {
    "in_channels": 9,
    "out_channels": 4,
    "sample_size": 64,
    "block_out_channels": (320, 640, 1280, 1280),
    "layers_per_block": 2,
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
}
SDXL_UNET: dict[str, Any] = {
    "in_channels": 9,
    "out_channels": 4,
    "sample_size": 128,
    "block_out_channels": (320, 640, 1280),
    "down_block_types": ("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    "up_block_types": ("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    "layers_per_block": 2,
    "transformer_layers_per_block": (1, 2, 10),
    "attention_head_dim": (5, 10, 20),
    "cross_attention_dim": 2048,
    "use_linear_projection": True,
    "addition_embed_type": "text_time",
    "addition_time_embed_dim": 256,
    "projection_class_embeddings_input_dim": 2816,
}
# vae/config.json of both (SDXL's: 1024 px samples, its own scaling factor, force_upcast).
SD15_VAE: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 4,
    "block_out_channels": (128, 256, 512, 512),
    "down_block_types": ("DownEncoderBlock2D",) * 4,
    "up_block_types": ("UpDecoderBlock2D",) * 4,
    "layers_per_block": 2,
    "sample_size": 512,
    "scaling_factor": 0.18215,
}
SDXL_VAE: dict[str, Any] = SD15_VAE | {
    "sample_size": 1024,
    "scaling_factor": 0.13025,
    "force_upcast": True,
}
# text_encoder (CLIP ViT-L/14) and SDXL's text_encoder_2 (OpenCLIP ViT-bigG/14) configs.
CLIP_L: dict[str, Any] = {
    "vocab_size": 49408,
    "hidden_size": 768,
    "intermediate_size": 3072,
    "num_hidden_layers": 12,
    "num_attention_heads": 12,
    "max_position_embeddings": 77,
    "hidden_act": "quick_gelu",
    "projection_dim": 768,
}
CLIP_BIG_G: dict[str, Any] = CLIP_L | {
    "hidden_size": 1280,
    "intermediate_size": 5120,
    "num_hidden_layers": 32,
    "num_attention_heads": 20,
    "hidden_act": "gelu",
    "projection_dim": 1280,
}
SCHEDULER: dict[str, Any] = {
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "steps_offset": 1,
}
MODELS = ("sd15", "sdxl")
NATIVE = {"sd15": 512, "sdxl": 1024}


@dataclass(frozen=True)
class Components:
    """A pipeline's models, before a tokenizer and scheduler make them a pipeline."""

    unet: UNet2DConditionModel
    vae: AutoencoderKL
    text_encoders: tuple[torch.nn.Module, ...]

    def parameters(self) -> dict[str, int]:
        counts = {"unet": _count(self.unet), "vae": _count(self.vae)}
        for index, encoder in enumerate(self.text_encoders, 1):
            counts[f"text_encoder_{index}"] = _count(encoder)
        return counts


def components(model: str, device: torch.device | str, dtype: torch.dtype) -> Components:
    """The full-size models, their weights made on ``device`` (on ``meta`` nothing is allocated:
    what tests use to check the architectures without the gigabytes)."""
    sdxl = model == "sdxl"
    with _default_dtype(dtype), torch.device(device):
        unet = UNet2DConditionModel(**(SDXL_UNET if sdxl else SD15_UNET))
        vae = AutoencoderKL(**(SDXL_VAE if sdxl else SD15_VAE))
        first = CLIPTextModel(CLIPTextConfig(**CLIP_L))
        if not sdxl:
            return Components(unet, vae, (first,))
        second = CLIPTextModelWithProjection(CLIPTextConfig(**CLIP_BIG_G))
    return Components(unet, vae, (first, second))


def pipeline(model: str, device: torch.device, dtype: torch.dtype) -> Any:
    """A random-weight inpainting pipeline of the full-size architecture, on ``device``."""
    parts = components(model, device, dtype)
    # Prompts only need to tokenize: the tiny tokenizer's vocabulary fits inside CLIP's.
    tokenizer = tiny_tokenizer()
    scheduler = EulerDiscreteScheduler(**SCHEDULER)
    if model == "sdxl":
        return StableDiffusionXLInpaintPipeline(
            vae=parts.vae,
            text_encoder=parts.text_encoders[0],
            text_encoder_2=parts.text_encoders[1],
            tokenizer=tokenizer,
            tokenizer_2=tokenizer,
            unet=parts.unet,
            scheduler=scheduler,
        )
    return StableDiffusionInpaintPipeline(
        vae=parts.vae,
        text_encoder=parts.text_encoders[0],
        tokenizer=tokenizer,
        unet=parts.unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )


def _count(module: Any) -> int:
    return sum(parameter.numel() for parameter in module.parameters())


@contextmanager
def _default_dtype(dtype: torch.dtype) -> Iterator[None]:
    before = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(before)


def engine_with(model: str, device: torch.device, *, compile_unet: bool) -> Engine:
    """An engine whose default model is the random-weight ``model``, adopted as if loaded."""
    config = EngineConfig(
        _env_file=None,
        model=f"bench-{model}",
        device="cuda" if device.type == "cuda" else "cpu",
        compile=compile_unet,
        safety_checker=None,
        mask_detector=None,
        mask_segmenter=None,
    )
    engine = Engine(config)
    dtype = engine.models.dtype
    with torch.no_grad():
        engine.models.adopt(config.model, pipeline(model, device, dtype))
    return engine


def job(engine: Engine, size: int, steps: int, *, seed: int = 1, count: int = 1) -> PreparedJob:
    """A square photo with a square mask in the middle, repainted whole at ``size`` px."""
    settings = InpaintSettings.parse(
        prompt="a portrait photo, soft light",
        steps=steps,
        seed=seed,
        count=count,
        resolution=size,
        area="whole",
    )
    quarter = size // 4
    request = InpaintRequest(
        photo_bytes(size, size),
        settings,
        mask_bytes(size, size, (quarter, quarter, size - quarter, size - quarter)),
    )
    return engine.prepare(request)


def seconds(run: Callable[[], object], runs: int) -> tuple[float, float]:
    """Seconds of the first run (with any compile) and the median of ``runs`` more."""
    times = []
    for _ in range(runs + 1):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return times[0], statistics.median(times[1:])


def run_jobs(engine: Engine, jobs: list[PreparedJob]) -> None:
    for result in engine.run(jobs):
        for image in result.images:
            _ = image.image  # the composite too, as the queue's finishing step makes it


def measure(model: str, device: torch.device, args: argparse.Namespace, compile_unet: bool) -> None:
    label = f"{model}{' compiled' if compile_unet else ''}"
    started = time.perf_counter()
    engine = engine_with(model, device, compile_unet=compile_unet)
    print(f"{label}: built in {time.perf_counter() - started:.1f} s", flush=True)
    report(label, engine, model, device, args)
    del engine  # the next model's weights must not meet these
    release_memory()


def report(
    label: str, engine: Engine, model: str, device: torch.device, args: argparse.Namespace
) -> None:
    for size in args.sizes:
        one = job(engine, size, args.steps)
        first, median = seconds(partial(run_jobs, engine, [one]), args.runs)
        print(f"{label}: {size} px, {args.steps} steps, one image: {median:.2f} s (first {first:.2f} s)")
    size = min(NATIVE[model], max(args.sizes))
    batch = [job(engine, size, args.steps, seed=seed) for seed in range(1, args.batch + 1)]
    _, alone = seconds(partial(run_jobs, engine, batch[:1]), args.runs)
    first, together = seconds(partial(run_jobs, engine, batch), args.runs)
    print(
        f"{label}: {size} px, batch of {args.batch} jobs: {together:.2f} s (first {first:.2f} s), "
        f"throughput {args.batch * alone / together:.2f}x one job's ({alone:.2f} s)",
        flush=True,
    )
    if model == "sdxl" and device.type == "cuda":
        four = job(engine, 1024, args.steps, count=4)
        release_memory()
        torch.cuda.reset_peak_memory_stats()
        run_jobs(engine, [four])
        peak = torch.cuda.max_memory_allocated() / 2**30
        print(f"{label}: 1024 px, count 4: peak GPU memory {peak:.2f} GiB", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--sizes", type=int, nargs="+", default=[512, 1024])
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--runs", type=int, default=2, help="timed runs after the first")
    parser.add_argument("--compile", action="store_true", help="also with the UNet compiled")
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name() if device.type == "cuda" else "CPU"
    print(f"device: {name}, torch {torch.__version__}", flush=True)
    started = time.perf_counter()
    for compile_unet in [False, True] if args.compile else [False]:
        for model in args.models:
            measure(model, device, args, compile_unet)
    print(f"whole run: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
