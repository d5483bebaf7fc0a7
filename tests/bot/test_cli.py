"""The ``inpaintbot inpaint`` contract: files written, seeds printed, user errors as one ``error:`` line."""

import io
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from bot.cli import main
from engine.engine import Engine, PreparedJob
from engine.job import InpaintRequest, MaskSource
from engine.settings import OUTPAINT_FIELDS, InpaintSettings
from tests.pictures import astronaut, circled_face_copy, phone_copy, photo, rect_mask

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def inputs(tmp_path: Path) -> tuple[Path, Path]:
    image, mask = tmp_path / "photo.jpg", tmp_path / "mask.png"
    photo(96, 64).save(image, quality=95)
    rect_mask(96, 64, (30, 16, 70, 48)).save(mask)
    return image, mask


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", *args], capture_output=True, text=True, env=env, timeout=300
    )


def test_inpaint_end_to_end_in_a_subprocess(
    inputs: tuple[Path, Path], tmp_path: Path, tiny_sd_path: Path
) -> None:
    image, mask = inputs
    out = tmp_path / "result.png"
    done = run_cli(
        "inpaint", str(image), "-o", str(out), "--mask", str(mask), "--prompt", "a (red:1.2) hat",
        "--steps", "4", "--resolution", "64", "--seed", "7", "--count", "2",
        "--model", str(tiny_sd_path), "--device", "cpu",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    first, second = tmp_path / "result-1.png", tmp_path / "result-2.png"
    assert done.stdout.splitlines() == [f"{first}\tseed 7", f"{second}\tseed 8"]
    assert not out.exists()
    for path, seed in ((first, 7), (second, 8)):
        with Image.open(path) as result:
            assert result.size == (96, 64)
            assert f"Seed: {seed}," in result.text["parameters"]
            assert result.text["parameters"].startswith("a (red:1.2) hat\n")


def test_a_marked_up_copy_is_the_mask(
    tmp_path: Path, tiny_sd_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image, mask, out = tmp_path / "astronaut.png", tmp_path / "copy.jpg", tmp_path / "out.png"
    astronaut().save(image)
    mask.write_bytes(circled_face_copy()[0])
    with pytest.raises(SystemExit) as exit_info:
        main(["inpaint", str(image), "-o", str(out), "--mask", str(mask), "--steps", "2", "--resolution", "64",
              "--seed", "3", "--model", str(tiny_sd_path), "--device", "cpu"])  # fmt: skip
    assert exit_info.value.code == 0, capsys.readouterr().err
    with Image.open(out) as result:
        assert f"Mask source: {MaskSource.SCRIBBLE.value}" in result.text["parameters"]


def test_a_copy_with_nothing_drawn_is_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image, mask = tmp_path / "astronaut.png", tmp_path / "copy.jpg"
    astronaut().save(image)
    mask.write_bytes(phone_copy(astronaut()))
    line = cli_error(capsys, "inpaint", str(image), "-o", str(tmp_path / "o.png"), "--mask", str(mask))
    assert line.startswith("error: The mask looks like a copy of the image with nothing drawn on it")


def test_user_error_is_one_line_without_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing.png"
    line = cli_error(capsys, "inpaint", str(missing), "-o", str(tmp_path / "out.png"))
    assert line == f"error: image file not found: {missing}"


def cli_error(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def test_single_image_goes_to_the_named_file(
    inputs: tuple[Path, Path], tmp_path: Path, tiny_sd_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image, mask = inputs
    out = tmp_path / "one.png"
    with pytest.raises(SystemExit) as exit_info:
        main(["inpaint", str(image), "-o", str(out), "--mask", str(mask), "--steps", "2", "--resolution", "64",
              "--seed", "3", "--model", str(tiny_sd_path), "--device", "cpu"])  # fmt: skip
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == f"{out}\tseed 3\n"
    assert Image.open(io.BytesIO(out.read_bytes())).size == (96, 64)


# A value other than the default for every setting, so a flag that does not reach the engine shows.
FLAG_VALUES: dict[str, object] = {
    "prompt": "a (red:1.2) hat",
    "negative_prompt": "blurry",
    "strength": 0.6,
    "steps": 3,
    "guidance": 5.5,
    "seed": 77,
    "sampler": "ddim",
    "area": "whole",
    "padding": 12,
    "masked_content": "fill",
    "mask_blur": 2,
    "invert_mask": True,
    "mask_grow": 3,
    "count": 2,
    "resolution": 64,
    "controlnet": "tile",
    "control_weight": 0.5,
    "control_start": 0.1,
    "control_end": 0.9,
    "tile_downsample": 2.0,
}
# Flags that go with --auto-mask instead of --mask.
FACE_FLAG_VALUES: dict[str, object] = {"auto_mask": "face", "max_faces": 2, "mask_pick": "1"}
# Flags that go with --mask-prompt instead of --mask.
WORDS_FLAG_VALUES: dict[str, object] = {"mask_prompt": "person | hat", "mask_pick": "left"}
# Settings Discord alone offers.
DISCORD_ONLY = {"preview_mask"}


def flags(values: dict[str, object]) -> list[str]:
    """``--name value`` for each setting, as README's settings table says: underscores become dashes."""
    argv: list[str] = []
    for name, value in values.items():
        flag = "--" + name.replace("_", "-")
        argv += [flag] if value is True else [flag, str(value)]
    return argv


@pytest.fixture
def received(monkeypatch: pytest.MonkeyPatch) -> list[tuple[InpaintSettings, str]]:
    """The settings (and device) of each job the command line gives the engine, which still runs it."""
    seen: list[tuple[InpaintSettings, str]] = []
    prepare = Engine.prepare

    def recording(engine: Engine, request: InpaintRequest) -> PreparedJob:
        seen.append((request.settings, engine.config.device))
        return prepare(engine, request)

    monkeypatch.setattr(Engine, "prepare", recording)
    return seen


def test_every_settings_flag_reaches_the_engine(
    inputs: tuple[Path, Path],
    tmp_path: Path,
    tiny_sd_regular_path: Path,
    tiny_tile: Path,
    tiny_word_models: tuple[Path, Path],
    received: list[tuple[InpaintSettings, str]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    defaults = InpaintSettings()
    every = set(FLAG_VALUES) | set(FACE_FLAG_VALUES) | set(WORDS_FLAG_VALUES) | {"model"}
    every |= set(OUTPAINT_FIELDS)  # ``inpaintbot outpaint``'s: tests/bot/test_cli_outpaint.py
    assert every | DISCORD_ONLY == set(InpaintSettings.model_fields)
    assert all(getattr(defaults, name) != value for name, value in FLAG_VALUES.items())
    monkeypatch.setenv("INPAINTBOT_CONTROLNET_TILE", str(tiny_tile))
    image, mask = inputs
    out = tmp_path / "all.png"
    model = ["--model", str(tiny_sd_regular_path), "--device", "cpu"]
    with pytest.raises(SystemExit) as exit_info:
        main(["inpaint", str(image), "-o", str(out), "--mask", str(mask), *model, *flags(FLAG_VALUES)])
    assert exit_info.value.code == 0, capsys.readouterr().err
    expected = InpaintSettings.parse(**FLAG_VALUES, model=str(tiny_sd_regular_path))
    assert received == [(expected, "cpu")]
    # ... and the pictures: the file carries what the engine ran.
    parameters = Image.open(tmp_path / "all-2.png").text["parameters"]
    assert parameters.startswith("a (red:1.2) hat\nNegative prompt: blurry\nSteps: 3, Sampler: DDIM, ")
    for part in (
        "CFG scale: 5.5, Seed: 78,",
        "Denoising strength: 0.6, Mask blur: 2, Masked content: fill, Inpaint area: Whole picture, "
        "Only masked padding, pixels: 12,",
        "Mask mode: Inpaint not masked, Mask grow: 3,",
        f'"Module: tile_resample, Model: {tiny_tile.name}, Weight: 0.5, Resize Mode: Crop and Resize, '
        'Threshold A: 2, Guidance Start: 0.1, Guidance End: 0.9, Control Mode: Balanced"',
    ):
        assert part in parameters

    # The face flags: the engine gets them, then finds no face in this photo.
    cli_error(capsys, "inpaint", str(image), "-o", str(out), *model, *flags(FACE_FLAG_VALUES))
    assert received[1] == (
        InpaintSettings.parse(**FACE_FLAG_VALUES, model=str(tiny_sd_regular_path)),
        "cpu",
    )

    # The words flags: the engine gets them, and the tiny (random) models find something to paint.
    detector, segmenter = tiny_word_models
    monkeypatch.setenv("INPAINTBOT_MASK_DETECTOR", str(detector))
    monkeypatch.setenv("INPAINTBOT_MASK_SEGMENTER", str(segmenter))
    words_out = tmp_path / "words.png"
    with pytest.raises(SystemExit) as exit_info:
        main(["inpaint", str(image), "-o", str(words_out), *model, *flags(WORDS_FLAG_VALUES)])
    assert exit_info.value.code == 0, capsys.readouterr().err
    assert received[2] == (
        InpaintSettings.parse(**WORDS_FLAG_VALUES, model=str(tiny_sd_regular_path)),
        "cpu",
    )
    parameters = Image.open(words_out).text["parameters"]
    assert "Mask source: mask from words, Mask prompt: person | hat, Mask pick: left" in parameters


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--strength", "1.5"], "error: strength must be between 0.0 and 1.0 (got 1.5)."),
        (["--steps", "0"], "error: steps must be between 1 and 150 (got 0)."),
        (["--count", "5"], "error: count must be between 1 and 4 (got 5)."),
        (["--resolution", "100"], "error: resolution must be a multiple of 8 (got 100)"),
        (["--seed", "-2"], "error: seed must be between -1 and 4294967295 (got -2)."),
        (["--sampler", "plms"], "error: argument --sampler: invalid choice: 'plms'"),
        (["--steps", "many"], "error: argument --steps: invalid int value: 'many'"),
        (["--auto-mask", "face"], "error: argument --auto-mask: not allowed with argument --mask"),
        (["--mask-prompt", "hat"], "error: argument --mask-prompt: not allowed with argument --mask"),
        (["--mask-pick", "middle"], "error: mask_pick must be one of all, largest, left, right, top,"),
        (["--controlnet", "canny"], "error: argument --controlnet: invalid choice: 'canny'"),
        (["--control-weight", "3"], "error: control_weight must be between 0.0 and 2.0 (got 3.0)."),
        (["--tile-downsample", "9"], "error: tile_downsample must be between 1.0 and 8.0 (got 9.0)."),
        (
            ["--control-start", "0.8", "--control-end", "0.2"],
            "error: control_start (0.8) must be less than control_end (0.2)",
        ),
    ],
)
def test_bad_settings(
    inputs: tuple[Path, Path],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    extra: list[str],
    message: str,
) -> None:
    image, mask = inputs
    line = cli_error(
        capsys, "inpaint", str(image), "-o", str(tmp_path / "o.png"), "--mask", str(mask), *extra
    )
    assert line.startswith(message)


def test_output_must_be_png(
    inputs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image, mask = inputs
    line = cli_error(capsys, "inpaint", str(image), "-o", str(tmp_path / "o.jpg"), "--mask", str(mask))
    assert "must be a .png file" in line


def test_output_folder_must_exist(
    inputs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image, mask = inputs
    line = cli_error(
        capsys, "inpaint", str(image), "-o", str(tmp_path / "no" / "o.png"), "--mask", str(mask)
    )
    assert "output folder does not exist" in line


@pytest.mark.parametrize(
    ("make_image", "make_mask", "message"),
    [
        (lambda p: p.write_text("hello"), None, "The image could not be read"),
        (lambda p: photo(64, 64).save(p, format="PNG"), None, "No mask to work with"),
        (
            lambda p: photo(64, 64).save(p, format="PNG"),
            lambda p: Image.new("L", (64, 64)).save(p),
            "all black",
        ),
        (
            lambda p: photo(64, 64).save(p, format="PNG"),
            lambda p: Image.new("L", (32, 64)).save(p),
            "32x64",
        ),
    ],
)
def test_bad_inputs(
    tmp_path: Path,
    tiny_sd_path: Path,
    capsys: pytest.CaptureFixture[str],
    make_image,
    make_mask,
    message: str,
) -> None:
    image = tmp_path / "in.png"
    make_image(image)
    args = [
        "inpaint",
        str(image),
        "-o",
        str(tmp_path / "o.png"),
        "--model",
        str(tiny_sd_path),
        "--device",
        "cpu",
    ]
    if make_mask is not None:
        make_mask(tmp_path / "m.png")
        args += ["--mask", str(tmp_path / "m.png")]
    assert message in cli_error(capsys, *args)


def test_missing_model_is_a_user_error(
    inputs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    image, mask = inputs
    line = cli_error(capsys, "inpaint", str(image), "-o", str(tmp_path / "o.png"), "--mask", str(mask),
                     "--model", str(tmp_path / "nowhere"), "--device", "cpu")  # fmt: skip
    assert "does not exist" in line


def test_db_upgrade_and_bad_revision(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env
    monkeypatch.setenv("INPAINTBOT_DATA_DIR", str(tmp_path / "data"))
    with pytest.raises(SystemExit) as exit_info:
        main(["db", "upgrade"])
    assert exit_info.value.code == 0
    assert capsys.readouterr().out == "database upgraded to head\n"
    with sqlite3.connect(tmp_path / "data" / "inpaintbot.sqlite3") as connection:
        tables = {
            row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type='table'")
        }
    assert {"jobs", "alembic_version"} <= tables
    assert "Can't locate revision" in cli_error(capsys, "db", "downgrade", "nonsense")


def test_a_worker_without_redis_is_one_error_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)  # no stray .env
    monkeypatch.delenv("INPAINTBOT_REDIS_URL", raising=False)
    line = cli_error(capsys, "worker")
    assert line == (
        "error: INPAINTBOT_REDIS_URL is not set: a worker takes its jobs from the bot's Redis server"
    )
