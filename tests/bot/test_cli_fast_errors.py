"""``inpaintbot inpaint`` refuses bad arguments, settings and pictures before importing torch, which
takes seconds: the three errors below run in one fresh interpreter that must end without it."""

import json
import os
import subprocess
import sys
from pathlib import Path

from PIL import Image

from tests.pictures import photo

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


def test_user_errors_are_told_before_torch_is_imported(tmp_path: Path) -> None:
    image, mask, out = tmp_path / "in.png", tmp_path / "narrow.png", str(tmp_path / "out.png")
    photo(96, 64).save(image)
    Image.new("L", (32, 64), 255).save(mask)  # another shape than the picture
    cases = [
        ["inpaint", str(tmp_path / "missing.png"), "-o", out],
        ["inpaint", str(image), "-o", out, "--mask", str(mask), "--strength", "7"],
        ["inpaint", str(image), "-o", out, "--mask", str(mask)],
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, json.dumps(cases)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"codes": [2, 2, 2], "heavy": []}
    assert done.stderr.splitlines() == [
        f"error: image file not found: {tmp_path / 'missing.png'}",
        "error: strength must be between 0.0 and 1.0 (got 7.0).",
        "error: The mask is 32x64 but the image is 96x64: they must have the same shape. "
        "Draw the mask on a copy of the image.",
    ]
