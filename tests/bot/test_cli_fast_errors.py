"""``inpaintbot inpaint`` refuses bad arguments, settings and pictures before importing torch, which
takes seconds: the three errors below run in one fresh interpreter that must end without it."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from engine.images import flatten
from engine.mask_preview import overlay
from engine.masking import prepare_mask
from tests.pictures import photo, rect_mask

REPO = Path(__file__).resolve().parents[2]

SCRIPT = """
import json, sys
from bot.cli import main
codes = []
for argv in json.loads(sys.argv[1]):
    try:
        main(argv)
    except SystemExit as exit:
        codes.append(exit.code)
heavy = [name for name in ("torch", "diffusers", "transformers") if name in sys.modules]
print(json.dumps({"codes": codes, "heavy": heavy}))
"""


def run_in_a_fresh_interpreter(cases: list[list[str]]) -> subprocess.CompletedProcess[str]:
    """``SCRIPT`` in a new Python: what each command line imported, not what the tests already have."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(cases)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_user_errors_are_told_before_torch_is_imported(tmp_path: Path) -> None:
    image, mask, out = tmp_path / "in.png", tmp_path / "narrow.png", str(tmp_path / "out.png")
    photo(96, 64).save(image)
    Image.new("L", (32, 64), 255).save(mask)  # another shape than the picture
    cases = [
        ["inpaint", str(tmp_path / "missing.png"), "-o", out],
        ["inpaint", str(image), "-o", out, "--mask", str(mask), "--strength", "7"],
        ["inpaint", str(image), "-o", out, "--mask", str(mask)],
    ]
    done = run_in_a_fresh_interpreter(cases)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"codes": [2, 2, 2], "heavy": []}
    assert done.stderr.splitlines() == [
        f"error: image file not found: {tmp_path / 'missing.png'}",
        "error: strength must be between 0.0 and 1.0 (got 7.0).",
        "error: The mask is 32x64 but the image is 96x64: they must have the same shape. "
        "Draw the mask on a copy of the image.",
    ]


def test_mask_preview_writes_the_overlay_without_torch_or_inpainting(tmp_path: Path) -> None:
    """The same overlay ``/inpaint preview_mask`` shows, for a drawn mask and for transparency; no
    model is needed, so none is imported, and nothing is painted."""
    image, mask = tmp_path / "in.png", tmp_path / "mask.png"
    picture = photo(96, 64)
    picture.save(image)
    rect_mask(96, 64, (24, 16, 72, 48)).save(mask)
    erased = picture.convert("RGBA")
    erased.putalpha(Image.eval(rect_mask(96, 64, (24, 16, 72, 48)), lambda v: 255 - v))
    erased.save(tmp_path / "erased.png")
    drawn, clear = tmp_path / "drawn.png", tmp_path / "clear.png"
    cases = [
        [
            "inpaint",
            str(image),
            "-o",
            str(drawn),
            "--mask",
            str(mask),
            "--mask-grow",
            "4",
            "--mask-preview",
        ],
        [
            "inpaint",
            str(tmp_path / "erased.png"),
            "-o",
            str(clear),
            "--mask-grow",
            "4",
            "--mask-preview",
        ],
    ]
    done = run_in_a_fresh_interpreter(cases)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == {"codes": [0, 0], "heavy": []}
    assert done.stdout.splitlines()[:2] == [
        f"{drawn}\tuploaded mask",
        f"{clear}\tthe image's transparent pixels",
    ]
    grown = prepare_mask(rect_mask(96, 64, (24, 16, 72, 48)), invert=False, grow=4, blur=4)
    # Under transparency the job sees colour diffused from around it (images.flatten), and so does this.
    for written, under in ((drawn, picture), (clear, flatten(erased))):
        assert (np.asarray(Image.open(written)) == np.asarray(overlay(under, grown))).all()
