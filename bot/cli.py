"""The ``inpaintbot`` command line.

``inpaintbot inpaint`` and ``inpaintbot outpaint`` run one job through the same engine the bot uses, so
operators can check their GPU and model before connecting Discord. User errors exit with status 2 and
one ``error:`` line.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn
from urllib.parse import urlsplit

if TYPE_CHECKING:
    from PIL import Image

    from bot.config import BotConfig
    from engine.config import EngineConfig
    from engine.images import UploadedMask
    from engine.job import InpaintResult, Progress
    from engine.settings import InpaintSettings, Setting

EXIT_USER_ERROR = 2
EXIT_CANCELLED = 130

NO_TOKEN_MESSAGE = """\
error: DISCORD_TOKEN is not set.

To create the bot:
  1. https://discord.com/developers/applications -> New Application.
  2. Bot -> Reset Token; put it in the environment or in .env as DISCORD_TOKEN=...
  3. Invite it to your server with this URL (APPLICATION_ID is on the General Information page):
     {invite}
     Scopes: bot applications.commands. Permissions: Send Messages, Attach Files, Embed Links,
     Add Reactions, Read Message History.
Then run `inpaintbot run` again."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a bad argument is one ``error:`` line, as for every other user error."""

    def error(self, message: str) -> NoReturn:
        _fail(message)


def _fail(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(EXIT_USER_ERROR)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="inpaintbot", description="Stable Diffusion inpainting for Discord servers.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

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

    commands.add_parser("run", help="run the Discord bot (needs DISCORD_TOKEN)")
    commands.add_parser(
        "check", help="check configuration, database, GPU, model and token; print the invite URL"
    )
    commands.add_parser("health", help="exit 0 while the running bot is connected and ready")
    commands.add_parser(
        "worker", help="run jobs for a bot on this machine's GPU, through INPAINTBOT_REDIS_URL"
    )

    database = commands.add_parser("db", help="manage the database (INPAINTBOT_DATABASE_URL)")
    db_commands = database.add_subparsers(dest="db_command", required=True, parser_class=_Parser)
    upgrade = db_commands.add_parser("upgrade", help="migrate the schema to the newest version")
    upgrade.add_argument("revision", nargs="?", default="head", help="target revision (head)")
    downgrade = db_commands.add_parser("downgrade", help="migrate the schema back to a revision")
    downgrade.add_argument("revision", help="target revision, e.g. -1 or base")
    return parser


def _job_parser(
    commands: argparse._SubParsersAction[_Parser], name: str, help: str
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


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    if not sys.warnoptions:  # library deprecation notices are not for the person at the terminal
        warnings.simplefilter("ignore")
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    if args.command in ("inpaint", "outpaint"):
        raise SystemExit(_inpaint(args))
    if args.command == "db":
        raise SystemExit(_database(args))
    if args.command == "run":
        raise SystemExit(_run())
    if args.command == "check":
        raise SystemExit(_check())
    if args.command == "health":
        raise SystemExit(_health())
    if args.command == "worker":
        raise SystemExit(_worker())


def _run() -> int:
    import asyncio

    import discord

    from bot.check.services import TOKEN_REFUSED
    from bot.client import invite_url
    from bot.logs import configure_logging
    from bot.runner import run_bot
    from engine.errors import EngineError

    config = _config()
    if not config.discord_token:  # unset, or `DISCORD_TOKEN=` left empty in .env
        print(NO_TOKEN_MESSAGE.format(invite=invite_url("APPLICATION_ID")), file=sys.stderr)
        return EXIT_USER_ERROR
    configure_logging(config.log_level, [config.discord_token.get_secret_value()])
    try:
        asyncio.run(run_bot(config))
    except EngineError as exc:  # e.g. the default model cannot be loaded
        _fail(str(exc))
    except discord.LoginFailure:
        _fail(TOKEN_REFUSED)
    except KeyboardInterrupt:
        return EXIT_CANCELLED
    return 0


def _worker() -> int:
    import asyncio

    from bot.logs import configure_logging
    from bot.worker import run_worker
    from engine.errors import EngineError

    config = _config()
    if config.redis_url is None:
        _fail("INPAINTBOT_REDIS_URL is not set: a worker takes its jobs from the bot's Redis server")
    url = config.redis_url.get_secret_value()
    configure_logging(config.log_level, [url, urlsplit(url).password or ""])
    try:
        asyncio.run(run_worker(config))
    except EngineError as exc:  # e.g. the default model cannot be loaded
        _fail(str(exc))
    except KeyboardInterrupt:
        return EXIT_CANCELLED
    return 0


def _config() -> BotConfig:
    from pydantic import ValidationError

    from bot.config import BotConfig, describe_config_error

    try:
        return BotConfig()
    except ValidationError as exc:
        _fail(f"bad configuration: {describe_config_error(exc)}")


def _check() -> int:
    import asyncio

    from bot.check.report import print_checks

    return asyncio.run(print_checks())


def _health() -> int:
    """The container's health check (see ``bot.health``): 0 healthy, 1 not, as Docker expects."""
    from bot.health import heartbeat_path, problem

    reason = problem(heartbeat_path(_config().data_dir))
    if reason is not None:
        print(f"unhealthy: {reason}", file=sys.stderr)
        return 1
    print("healthy")
    return 0


def _database(args: argparse.Namespace) -> int:
    from alembic.util.exc import CommandError

    from bot.config import BotConfig
    from bot.store.migrate import downgrade_database, upgrade_database

    config = BotConfig()
    config.data_dir.mkdir(parents=True, exist_ok=True)
    try:
        if args.db_command == "upgrade":
            upgrade_database(config, args.revision)
        else:
            downgrade_database(config, args.revision)
    except CommandError as exc:
        _fail(str(exc))
    print(f"database {args.db_command}d to {args.revision}")
    return 0


def _output_paths(output: Path, count: int) -> list[Path]:
    if count == 1:
        return [output]
    return [output.with_name(f"{output.stem}-{i}{output.suffix}") for i in range(1, count + 1)]


def _read(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        _fail(f"{what} file not found: {path}")
    except OSError as exc:
        _fail(f"cannot read {what} file {path}: {exc.strerror}")


def _inpaint(args: argparse.Namespace) -> int:
    """``inpaint`` or ``outpaint``. Check the arguments, the settings and the pictures first (for an
    outpainting, the canvas's size too), then import torch and the engine: a user error is told in a
    fraction of a second, not after seconds of imports."""
    from engine.config import EngineConfig
    from engine.errors import EngineError, JobCancelled
    from engine.images import load_image, load_pictures
    from engine.outpaint import border_for, check_canvas, require_border
    from engine.settings import SETTINGS, InpaintSettings

    if args.output.suffix.lower() != ".png":
        _fail(
            f"the output must be a .png file (it carries the generation parameters), not {args.output.name}"
        )
    if not args.output.parent.is_dir():
        _fail(f"the output folder does not exist: {args.output.parent}")

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
        _fail(str(exc))
    return _write_results(args.output, result)


def _write_results(output: Path, result: InpaintResult | None) -> int:
    """Each picture to ``output`` (numbered when there are several), and its path and seed."""
    if result is None:
        return EXIT_CANCELLED
    outputs = _output_paths(output, len(result.images))
    for path, generated in zip(outputs, result.images, strict=True):
        try:
            path.write_bytes(generated.png)
        except OSError as exc:
            _fail(f"cannot write {path}: {exc.strerror}")
        print(f"{path}\tseed {generated.seed}")
    return 0


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
        _fail(f"cannot write {output}: {exc.strerror}")
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


if __name__ == "__main__":
    main()
