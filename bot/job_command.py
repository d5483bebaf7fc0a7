"""``inpaintbot inpaint`` and ``inpaintbot outpaint``: one job through the same engine the bot uses, so
operators can check their GPU and model before connecting Discord. The flags are built from the job
settings (``engine/settings.py``), like the Discord options."""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bot.exits import EXIT_CANCELLED, fail

if TYPE_CHECKING:
    from PIL import Image

    from engine.config import EngineConfig
    from engine.images import UploadedMask
    from engine.job import InpaintResult, Progress
    from engine.settings import InpaintSettings, Setting


def add_job_commands(commands: argparse._SubParsersAction[Any]) -> None:
    """The ``inpaint`` and ``outpaint`` subcommands, their flags built from the job settings."""
    inpaint = _job_parser(commands, "inpaint", "inpaint one image from the command line")
    source = inpaint.add_mutually_exclusive_group()
    source.add_argument("--mask", type=Path, help="mask picture: white (or opaque strokes) = repaint")
    _add_settings(inpaint, "inpaint", mask_sources=source)
    inpaint.add_argument(
        "--mask-preview",
        action="store_true",
        help="write the picture with the mask tinted red to OUT (at most 1024 px long) instead of inpainting",
    )

    outpaint = _job_parser(
        commands,
        "outpaint",
        "extend one image beyond its edges (--zoom, or pixels per side) from the command line",
    )
    _add_settings(outpaint, "outpaint")


def _job_parser(
    commands: argparse._SubParsersAction[Any], name: str, help: str
) -> argparse.ArgumentParser:
    """A subcommand that runs one job: its picture, output and device (its settings come after)."""
    parser = commands.add_parser(name, help=help)
    parser.add_argument("image", type=Path, help="input picture (PNG, JPEG, WebP, GIF, BMP, TIFF)")
    parser.add_argument("-o", "--output", type=Path, required=True, help="output .png file")
    parser.add_argument("--device", choices=["auto", "cuda", "cpu"])
    return parser


def _add_settings(
    parser: argparse.ArgumentParser,
    command: str,
    mask_sources: argparse._ActionsContainer | None = None,
) -> None:
    """One flag per setting ``command`` takes (``--mask-blur`` for ``mask_blur``), all left ``None``
    when not given so ``InpaintSettings`` applies its defaults and range checks; ``--mask``,
    ``--mask-prompt`` and ``--auto-mask`` exclude each other."""
    from engine.settings import SETTINGS

    for setting in (s for s in SETTINGS if command in s.cli):
        flags = ["--" + setting.name.replace("_", "-"), *setting.cli_aliases]
        where: argparse._ActionsContainer = parser
        if mask_sources is not None and setting.name in ("auto_mask", "mask_prompt"):
            where = mask_sources
        if setting.type is bool:
            where.add_argument(*flags, action="store_true", default=None, help=_flag_help(setting))
        elif setting.choices is not None:
            where.add_argument(*flags, choices=setting.choices, help=_flag_help(setting))
        else:
            where.add_argument(*flags, type=setting.type, help=_flag_help(setting))


def _flag_help(setting: Setting) -> str:
    """The setting's help with its range and default: "Sampling steps; 1 to 150 (default 25)"."""
    text = setting.help
    if setting.type is str and setting.high is not None:
        text += f"; at most {setting.high} characters"
    elif setting.low is not None:
        text += f"; {_number(setting.low)} to {_number(setting.high)}"
    if setting.shown_default:
        text += f" (default: {setting.shown_default})"
    return text.replace("%", "%%")  # argparse formats help with %


def _number(value: float) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def run(args: argparse.Namespace) -> int:
    """``inpaint`` or ``outpaint``. Check the arguments, the settings and the pictures first (for an
    outpainting, the canvas's size too), then import torch and the engine: a user error is told in a
    fraction of a second, not after seconds of imports."""
    from engine.config import EngineConfig
    from engine.errors import EngineError, JobCancelled
    from engine.images import load_image, load_pictures
    from engine.outpaint import border_for, check_canvas, require_border
    from engine.settings import SETTINGS, InpaintSettings

    if args.output.suffix.lower() != ".png":
        fail(
            f"the output must be a .png file (it carries the generation parameters), not {args.output.name}"
        )
    if not args.output.parent.is_dir():
        fail(f"the output folder does not exist: {args.output.parent}")

    try:
        given = {s.name: getattr(args, s.name) for s in SETTINGS if args.command in s.cli}
        settings = InpaintSettings.parse(**given)
        image = _read(args.image, "image")
        config = EngineConfig(**({"device": args.device} if args.device else {}))
        if args.command == "outpaint":
            require_border(settings)
            picture = load_image(image, max_pixels=config.max_pixels)
            border = border_for(settings, picture.width, picture.height)
            check_canvas(border, picture.width, picture.height, config.max_pixels)
            result = _run_job(config, image, None, settings)
            return _write_results(args.output, result)
        mask = _read(args.mask, "mask") if args.mask else None
        picture, uploaded = load_pictures(
            image, mask, find_faces=settings.finds_mask, max_pixels=config.max_pixels
        )
        if args.mask_preview:
            return _write_mask_preview(args.output, config, (image, mask), (picture, uploaded), settings)
        result = _run_job(config, image, mask, settings)
    except JobCancelled:
        return EXIT_CANCELLED
    except EngineError as exc:
        fail(str(exc))
    return _write_results(args.output, result)


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        fail(f"{what} file not found: {path}")
    except OSError as exc:
        fail(f"cannot read {what} file {path}: {exc.strerror}")


def _write_results(output: Path, result: InpaintResult | None) -> int:
    """Each picture to ``output`` (numbered when there are several), and its path and seed."""
    if result is None:
        return EXIT_CANCELLED
    outputs = _output_paths(output, len(result.images))
    for path, generated in zip(outputs, result.images, strict=True):
        try:
            path.write_bytes(generated.png)
        except OSError as exc:
            fail(f"cannot write {path}: {exc.strerror}")
        print(f"{path}\tseed {generated.seed}")
    return 0


def _output_paths(output: Path, count: int) -> list[Path]:
    if count == 1:
        return [output]
    return [output.with_name(f"{output.stem}-{i}{output.suffix}") for i in range(1, count + 1)]


def _write_mask_preview(
    output: Path,
    config: EngineConfig,
    files: tuple[bytes, bytes | None],
    pictures: tuple[Image.Image, UploadedMask | None],
    settings: InpaintSettings,
) -> int:
    """Write the overlay ``/inpaint preview_mask`` shows. A mask that needs no model (uploaded, or
    the picture's transparency) is found without importing torch; faces go through the engine."""
    from engine import mask_preview

    picture, uploaded = pictures
    if not settings.finds_mask or (uploaded is not None and settings.mask_prompt is None):
        found, source = mask_preview.plain_masks(picture, uploaded)
        preview = mask_preview.preview(picture, found, source, settings, settings.mask_pick)
    else:
        from engine.engine import Engine
        from engine.job import InpaintRequest

        image, mask = files
        preview = Engine(config).mask_preview(InpaintRequest(image=image, mask=mask, settings=settings))
    try:
        preview.overlay.save(output, format="PNG")
    except OSError as exc:
        fail(f"cannot write {output}: {exc.strerror}")
    matches = f"\t{preview.matches} matches" if preview.matches > 1 else ""
    print(f"{output}\t{preview.source.value}{matches}")
    return 0


def _run_job(
    config: EngineConfig, image: bytes, mask: bytes | None, settings: InpaintSettings
) -> InpaintResult | None:
    """Load the model and run the job, with a progress bar; ``None`` when interrupted."""
    import diffusers

    from engine.engine import Engine
    from engine.job import InpaintRequest

    diffusers.utils.logging.set_verbosity_error()
    engine = Engine(config)
    cancel = threading.Event()
    with _ProgressBar() as bar:
        try:
            request = InpaintRequest(image=image, mask=mask, settings=settings)
            return engine.inpaint(request, on_progress=bar.update, cancel=cancel)
        except KeyboardInterrupt:
            cancel.set()
            print("cancelled", file=sys.stderr)
            return None


class _ProgressBar:
    """A tqdm bar on a terminal; silent when stderr is a file or a pipe."""

    def __init__(self) -> None:
        self._bar: Any = None

    def __enter__(self) -> _ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.close()

    def update(self, progress: Progress) -> None:
        if not sys.stderr.isatty():
            return
        if self._bar is None:
            from tqdm import tqdm

            self._bar = tqdm(total=progress.total, unit="step", file=sys.stderr)
        self._bar.n = progress.step
        self._bar.refresh()
