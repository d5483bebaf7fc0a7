"""What outpainting costs next to an inpainting: a 2x zoom of a 512 px and of a 2048 px picture against
a 512 px inpaint of the whole picture, all at the model's 512 px.

The work is counted where it is done: every UNet call's latent pixels (batch x height x width, so
classifier-free guidance's doubled batch counts), summed over the job, and the wall time of preparing
(the canvas, its mask and fill) and of running. It uses the tests' tiny random-weight inpainting model
(``tests.support.tiny_models``) at ``--resolution`` (512), so it runs anywhere offline: the latent
pixel counts are what a real model would do; the times only say how they scale on this machine.

    python -m bench.outpaint [--steps 5] [--resolution 512] [--device cpu]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from PIL import Image

from engine.config import EngineConfig
from engine.engine import Engine
from engine.job import InpaintRequest
from engine.settings import InpaintSettings
from tests.pictures import photo, png_bytes
from tests.support.tiny_models import build_tiny_sd


@contextmanager
def counted(unet: Any) -> Iterator[list[int]]:
    """The latent pixels of each UNet call made within, in a list."""
    calls: list[int] = []
    forward = unet.forward

    def counting(sample: Any, *args: Any, **kwargs: Any) -> Any:
        calls.append(sample.shape[0] * sample.shape[-2] * sample.shape[-1])
        return forward(sample, *args, **kwargs)

    unet.forward = counting
    try:
        yield calls
    finally:
        del unet.forward  # the class's own method again


def measure(engine: Engine, side: int, **asked: Any) -> dict[str, float]:
    settings = InpaintSettings.parse(**asked)
    picture = photo(side, side, seed=1)
    if settings.outpaints:
        request = InpaintRequest(png_bytes(picture), settings)
    else:  # the baseline: the whole picture repainted, its mask the middle half
        mask = Image.new("L", (side, side))
        mask.paste(255, (side // 4, side // 4, side * 3 // 4, side * 3 // 4))
        request = InpaintRequest(png_bytes(picture), settings, mask=png_bytes(mask))
    started = time.perf_counter()
    job = engine.prepare(request)
    prepared = time.perf_counter()
    with counted(engine.load().pipe.unet) as calls:
        result = engine.run([job])[0]
    ran = time.perf_counter()
    out = result.images[0].image
    return {
        "size": out.width,
        "passes": len(job.passes),
        "unet_calls": len(calls),
        "latent_pixels": sum(calls),
        "prepare_s": prepared - started,
        "run_s": ran - prepared,
        "new_pixels": out.width * out.height - side * side,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--resolution", type=int, default=512, help="the model's size, px")
    parser.add_argument("--device", default="cpu", choices=["auto", "cpu", "cuda"])
    args = parser.parse_args()
    common = {"steps": args.steps, "strength": 0.8, "seed": 1, "resolution": args.resolution}
    with tempfile.TemporaryDirectory() as tmp:
        model = build_tiny_sd(Path(tmp) / "tiny-sd")
        config = EngineConfig(model=str(model), device=args.device, data_dir=Path(tmp), _env_file=None)
        engine = Engine(config)
        engine.load()
        measure(engine, 64, **common, area="whole")  # warm-up: first calls allocate
        rows = {
            "inpaint 512 px (whole picture)": measure(engine, 512, **common, area="whole"),
            "zoom 2x of 512 px": measure(engine, 512, **common, zoom=2),
            "zoom 2x of 2048 px": measure(engine, 2048, **common, zoom=2),
        }
    base = rows["inpaint 512 px (whole picture)"]
    print(
        f"tiny inpainting model at {args.resolution} px, {args.steps} steps x strength 0.8, {config.device}"
    )
    print(
        f"{'job':34} {'output':>7} {'passes':>6} {'UNet latent px':>15} {'x inpaint':>9} "
        f"{'new px':>11} {'prepare':>8} {'run':>8} {'x inpaint':>9}"
    )
    for name, row in rows.items():
        print(
            f"{name:34} {row['size']:>7.0f} {row['passes']:>6.0f} {row['latent_pixels']:>15,.0f} "
            f"{row['latent_pixels'] / base['latent_pixels']:>9.1f} {row['new_pixels']:>11,.0f} "
            f"{row['prepare_s']:>7.2f}s {row['run_s']:>7.2f}s {row['run_s'] / base['run_s']:>9.1f}"
        )
    small, large = rows["zoom 2x of 512 px"], rows["zoom 2x of 2048 px"]
    print(
        f"2048 vs 512 px zoom: {large['new_pixels'] / small['new_pixels']:.0f}x the new pixels, "
        f"{large['latent_pixels'] / small['latent_pixels']:.1f}x the UNet's work"
    )


if __name__ == "__main__":
    main()
