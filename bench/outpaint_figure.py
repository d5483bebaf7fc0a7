"""Draw README's outpainting figure, ``docs/outpaint-zoom.png``: a 2x zoom of a photo, step by step.

Panels: the picture; the canvas the model starts from (the border filled with colours diffused from the
picture's edge), with the windows the model paints outlined in the order it paints them; the mask (white:
repainted; the grey ramp just inside the picture is the overlap band); and what the tests' tiny
random-weight model paints. That model was never trained, so its border is noise: the figure shows where
and how the engine paints, not what a real model would. Runs offline on the CPU in seconds:

    python -m bench.outpaint_figure [--out docs/outpaint-zoom.png]
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

from PIL import Image, ImageDraw

from engine import outpaint
from engine.config import EngineConfig
from engine.engine import Engine
from engine.job import InpaintRequest
from engine.settings import InpaintSettings
from tests.pictures import astronaut, png_bytes
from tests.support.tiny_models import build_tiny_sd

SIDE = 384  # the photo's size: its 768 px canvas takes several 512 px windows
PANEL = 256
WINDOW_COLOURS = ("#ff4040", "#40c0ff", "#ffd040", "#60ff60", "#ff60ff")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/outpaint-zoom.png"))
    args = parser.parse_args()
    picture = astronaut().resize((SIDE, SIDE), Image.Resampling.LANCZOS)
    settings = InpaintSettings.parse(zoom=2, steps=8, seed=3, resolution=512)
    planned = outpaint.plan(picture, settings, 512, 10**8)
    start = planned.canvas.copy()
    draw = ImageDraw.Draw(start)
    for number, window in enumerate(planned.windows):
        colour = WINDOW_COLOURS[number % len(WINDOW_COLOURS)]
        draw.rectangle(window.box.as_tuple(), outline=colour, width=4)
        draw.text((window.box.x0 + 8, window.box.y0 + 6), str(number + 1), fill=colour)
    with tempfile.TemporaryDirectory() as tmp:
        model = build_tiny_sd(Path(tmp) / "tiny-sd")
        config = EngineConfig(model=str(model), device="cpu", data_dir=Path(tmp), _env_file=None)
        painted = Engine(config).inpaint(InpaintRequest(png_bytes(picture), settings)).images[0].image
    before = Image.new("RGB", planned.canvas.size, "white")
    before.paste(picture, (planned.picture.x0, planned.picture.y0))
    panels = [before, start, planned.mask.convert("RGB"), painted]
    figure = Image.new("RGB", (PANEL * len(panels) + 8 * (len(panels) - 1), PANEL), "white")
    for index, panel in enumerate(panels):
        small = panel.resize((PANEL, PANEL), Image.Resampling.LANCZOS)
        ImageDraw.Draw(small).rectangle((0, 0, PANEL - 1, PANEL - 1), outline="#888888")
        figure.paste(small, (index * (PANEL + 8), 0))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    figure.save(args.out, optimize=True)
    print(f"{args.out}: {len(planned.windows)} windows of at most 512 px on a {start.width} px canvas")


if __name__ == "__main__":
    main()
