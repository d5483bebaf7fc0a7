"""``inpaintbot outpaint``: the flags ``inpaint`` has where they apply, plus the border; the canvas's
size checked before torch is imported."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bot.cli import main
from tests.bot.test_cli import cli_error
from tests.bot.test_cli_fast_errors import run_in_a_fresh_interpreter
from tests.pictures import photo


@pytest.fixture
def image(tmp_path: Path) -> Path:
    path = tmp_path / "photo.png"
    photo(96, 64).save(path)
    return path


def outpaint(image: Path, out: Path, model: Path, *flags: str) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["outpaint", str(image), "-o", str(out), "--steps", "2", "--seed", "3",
              "--model", str(model), "--device", "cpu", *flags])  # fmt: skip
    assert exit_info.value.code == 0


@pytest.mark.parametrize(
    ("flags", "size", "parameters"),
    [
        (["--zoom", "1.5"], (144, 96), "Outpaint zoom: 1.5"),
        (
            ["--left", "16", "--right", "8", "--top", "8", "--bottom", "4"],
            (120, 76),
            "left 16, right 8, up 8, down 4",
        ),
    ],
)
def test_outpaint_writes_the_larger_picture(
    image: Path,
    tmp_path: Path,
    tiny_sd_path: Path,
    capsys: pytest.CaptureFixture[str],
    flags: list[str],
    size: tuple[int, int],
    parameters: str,
) -> None:
    out = tmp_path / "wide.png"
    outpaint(image, out, tiny_sd_path, *flags)
    assert capsys.readouterr().out == f"{out}\tseed 3\n"
    with Image.open(out) as result:
        assert result.size == size
        assert parameters in result.text["parameters"]
        picture = np.asarray(result.convert("RGB"))
    left, up = (24, 16) if "--zoom" in flags else (16, 8)
    # Far from the border, the picture as it was.
    middle = np.asarray(photo(96, 64))[30:34, 40:56]
    assert np.array_equal(picture[up + 30 : up + 34, left + 40 : left + 56], middle)


def test_outpaint_errors_are_one_line(
    image: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = str(tmp_path / "o.png")
    line = cli_error(capsys, "outpaint", str(image), "-o", out, "--right", "0")
    assert line.startswith("error: Nothing to add: give a zoom")
    line = cli_error(capsys, "outpaint", str(image), "-o", out, "--mask", str(image), "--zoom", "2")
    assert line.startswith("error: ambiguous option: --mask could match --masked-content")
    monkeypatch.setenv("INPAINTBOT_MAX_PIXELS", str(96 * 64 * 2))
    line = cli_error(capsys, "outpaint", str(image), "-o", out, "--zoom", "2")
    assert line.startswith("error: Outpainting this 96x64 picture makes it 192x128")


def test_outpaint_errors_come_before_torch(image: Path, tmp_path: Path) -> None:
    out = str(tmp_path / "o.png")
    cases = [
        ["outpaint", str(image), "-o", out, "--zoom", "9"],
        ["outpaint", str(image), "-o", out, "--left", "5000", "--right", "5000", "--up", "5000"],
    ]
    done = run_in_a_fresh_interpreter(cases)
    assert json.loads(done.stdout) == {"codes": [2, 2], "heavy": []}
    assert done.stderr.splitlines() == [
        "error: zoom must be between 1.0 and 4.0 (got 9.0).",
        "error: left must be between 0 and 4096 (got 5000). right must be between 0 and 4096 "
        "(got 5000). up must be between 0 and 4096 (got 5000).",
    ]
