"""How long the GPU thread works on pictures instead of running the pipeline, on a 12 MP photo.

``Engine.run`` is what the queue's GPU thread calls. Measured in it: the seconds spent in picture work
(Pillow's crop, resize, paste, convert and copy, the fill, the composite, the control images; the
outermost call counted), and all the seconds outside the pipeline's own call (prompt encoding and the
VAE encode are in that share too, the same for every photo size). Three jobs on a 4000x3000 photo,
processed at 512 px:

- faces: four faces, two of them close enough that one's crop shows the other's repaint;
- ControlNet Tile and ControlNet Inpaint on a mask of 600x600 px.

Also timed: ``prepare`` (the prepare thread, beside the GPU) and the first read of the result's
picture (the queue's worker thread, after the GPU's work). Tiny random-weight models on the CPU, so the
pipeline's own seconds mean nothing; the seconds around it are what is measured.

    python -m bench.gpu_thread_work [--runs 5]
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np
import torch
from PIL import Image

from engine import controlnet, masking
from engine.config import EngineConfig
from engine.engine import Engine
from engine.job import InpaintRequest
from engine.settings import InpaintSettings
from tests.pictures import astronaut
from tests.support.tiny_models import build_tiny_controlnet, build_tiny_sd

WIDTH, HEIGHT = 4000, 3000
# Where the faces go (top-left corners); the first two are close together.
FACE_SPOTS = ((600, 800), (900, 800), (2500, 700), (3200, 1900))
FACE_SCALE = 3


def photo() -> Image.Image:
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH]
    pixels = np.stack([x * 255 / WIDTH, y * 255 / HEIGHT, np.full_like(x, 128)], axis=-1)
    return Image.fromarray((pixels + rng.normal(0, 6, pixels.shape)).clip(0, 255).astype(np.uint8))


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def faces_photo() -> Image.Image:
    picture = photo()
    head = astronaut().crop((145, 15, 315, 195))
    head = head.resize((head.width * FACE_SCALE, head.height * FACE_SCALE), Image.Resampling.LANCZOS)
    for spot in FACE_SPOTS:
        picture.paste(head, spot)
    return picture


@contextmanager
def pipeline_seconds(classes: list[type]) -> Iterator[list[float]]:
    """Seconds spent inside the pipelines' ``__call__`` while in the block."""
    spent: list[float] = []
    originals = {cls: cls.__call__ for cls in classes}

    def timed(original: Callable[..., Any]) -> Callable[..., Any]:
        def call(self: Any, *args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return original(self, *args, **kwargs)
            finally:
                spent.append(time.perf_counter() - started)

        return call

    for cls, original in originals.items():
        cls.__call__ = timed(original)  # type: ignore[method-assign]
    try:
        yield spent
    finally:
        for cls, original in originals.items():
            cls.__call__ = original  # type: ignore[method-assign]


@contextmanager
def picture_seconds() -> Iterator[list[float]]:
    """Seconds spent in picture work on this thread while in the block (nested calls not counted)."""
    spent: list[float] = []
    busy = [False]  # in a counted call already
    thread = threading.current_thread()
    targets: list[tuple[object, str]] = [
        (Image.Image, name) for name in ("crop", "resize", "paste", "convert", "copy")
    ]
    targets += [(masking, "fill_masked"), (masking, "composite"), (controlnet, "control_image")]
    originals = [(owner, name, getattr(owner, name)) for owner, name in targets]

    def timed(original: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any, **kwargs: Any) -> Any:
            if threading.current_thread() is not thread or busy[0]:
                return original(*args, **kwargs)
            busy[0] = True
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                spent.append(time.perf_counter() - started)
                busy[0] = False

        return call

    for owner, name, original in originals:
        setattr(owner, name, timed(original))
    try:
        yield spent
    finally:
        for owner, name, original in originals:
            setattr(owner, name, original)


def measure(engine: Engine, request: InpaintRequest, runs: int) -> dict[str, float]:
    """Medians of: prepare, run's picture work and its time outside the pipeline, the first read of
    the picture (composite)."""
    model = engine.load()
    job = engine.prepare(request)
    classes = [type(model.pipe)]
    if job.controlnet is not None:
        classes.append(type(engine.models.controlnet_pipe(model, job.controlnet)))
    figures: dict[str, list[float]] = {
        "prepare": [], "pictures": [], "outside": [], "read": [], "passes": []
    }  # fmt: skip
    for _ in range(runs + 1):  # the first is a warm-up
        started = time.perf_counter()
        job = engine.prepare(request)
        figures["prepare"].append(time.perf_counter() - started)
        with pipeline_seconds(classes) as inside, picture_seconds() as pictures:
            started = time.perf_counter()
            (result,) = engine.run([job])
            figures["outside"].append(time.perf_counter() - started - sum(inside))
        figures["pictures"].append(sum(pictures))
        started = time.perf_counter()
        result.images[0].image.load()
        figures["read"].append(time.perf_counter() - started)
        figures["passes"].append(len(job.passes))
    return {name: statistics.median(values[1:]) for name, values in figures.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    torch.set_grad_enabled(False)
    common = {"steps": 2, "strength": 1.0, "seed": 1, "resolution": 512}
    with tempfile.TemporaryDirectory() as tmp:
        sd = build_tiny_sd(Path(tmp) / "sd")
        regular = build_tiny_sd(Path(tmp) / "regular", inpainting=False)
        engine = Engine(EngineConfig(model=str(sd), device="cpu", _env_file=None))
        cn_engine = Engine(
            EngineConfig(
                model=str(regular),
                controlnet_tile=str(build_tiny_controlnet(Path(tmp) / "tile", regular, seed=1)),
                controlnet_inpaint=str(build_tiny_controlnet(Path(tmp) / "inp", regular, seed=2)),
                device="cpu",
                _env_file=None,
            )
        )
        mask = Image.new("L", (WIDTH, HEIGHT), 0)
        mask.paste(255, (1700, 1200, 2300, 1800))
        jobs = {
            "4 faces": (engine, InpaintRequest(png(faces_photo()), InpaintSettings.parse(
                auto_mask="face", **common))),
            "ControlNet Tile": (cn_engine, InpaintRequest(png(photo()), InpaintSettings.parse(
                controlnet="tile", tile_downsample=2, **common), png(mask))),
            "ControlNet Inpaint": (cn_engine, InpaintRequest(png(photo()), InpaintSettings.parse(
                controlnet="inpaint", **common), png(mask))),
        }  # fmt: skip
        print(f"{WIDTH}x{HEIGHT} photo, 512 px, medians of {args.runs} runs")
        for name, (on, request) in jobs.items():
            f = measure(on, request, args.runs)
            print(
                f"{name} ({f['passes']:.0f} passes): GPU thread: picture work "
                f"{f['pictures'] * 1000:.1f} ms, outside the pipeline {f['outside'] * 1000:.1f} ms; "
                f"prepare {f['prepare'] * 1000:.0f} ms; "
                f"first read of the picture {f['read'] * 1000:.1f} ms"
            )


if __name__ == "__main__":
    main()
