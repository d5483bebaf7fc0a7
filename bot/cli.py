"""The ``inpaintbot`` command line.

``inpaintbot inpaint`` runs one job through the same engine the bot uses, so operators can check their
GPU and model before connecting Discord. User errors exit with status 2 and one ``error:`` line.
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

if TYPE_CHECKING:
    from bot.config import BotConfig
    from engine.job import Progress

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
    from engine.settings import Area, ControlNet, MaskedContent, Sampler

    parser = _Parser(prog="inpaintbot", description="Stable Diffusion inpainting for Discord servers.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    inpaint = commands.add_parser("inpaint", help="inpaint one image from the command line")
    inpaint.add_argument("image", type=Path, help="input picture (PNG, JPEG, WebP, GIF, BMP, TIFF)")
    inpaint.add_argument("-o", "--output", type=Path, required=True, help="output .png file")
    source = inpaint.add_mutually_exclusive_group()
    source.add_argument("--mask", type=Path, help="mask picture: white (or opaque strokes) = repaint")
    source.add_argument("--auto-mask", choices=["face"], help="find faces and inpaint each one")
    inpaint.add_argument(
        "--max-faces", type=int, help="with --auto-mask face: only the N largest (0 = all)"
    )
    inpaint.add_argument("--prompt", default="")
    inpaint.add_argument("--negative-prompt", default="")
    inpaint.add_argument("--strength", type=float, help="denoising strength 0-1 (0.75; faces 0.4)")
    inpaint.add_argument("--steps", type=int, help="sampling steps 1-150 (25)")
    inpaint.add_argument("--guidance", type=float, help="CFG scale 1-30 (7)")
    inpaint.add_argument("--seed", type=int, help="0-4294967295; random when left out")
    inpaint.add_argument("--sampler", choices=[s.value for s in Sampler])
    inpaint.add_argument("--area", choices=[a.value for a in Area], help="inpaint area (masked)")
    inpaint.add_argument("--padding", type=int, help="only-masked padding in px, 0-256 (32)")
    inpaint.add_argument("--masked-content", choices=[m.value for m in MaskedContent])
    inpaint.add_argument("--mask-blur", type=int, help="px, 0-64 (4)")
    inpaint.add_argument(
        "--invert-mask", action="store_true", default=None, help="repaint what is NOT masked"
    )
    inpaint.add_argument("--mask-grow", type=int, help="px, -64..64 (0; faces 4)")
    inpaint.add_argument("--count", type=int, help="images, 1-4 (1)")
    inpaint.add_argument(
        "--resolution", type=int, help="processing long side in px (model's native size)"
    )
    inpaint.add_argument("--model", help="Hub id, local diffusers folder or .safetensors file")
    inpaint.add_argument(
        "--controlnet", choices=[c.value for c in ControlNet], help="tile or inpaint (none)"
    )
    inpaint.add_argument("--control-weight", type=float, help="ControlNet weight 0-2 (1)")
    inpaint.add_argument("--control-start", type=float, help="ControlNet from this step fraction (0)")
    inpaint.add_argument("--control-end", type=float, help="ControlNet until this step fraction (1)")
    inpaint.add_argument("--tile-downsample", type=float, help="tile down-sampling rate 1-8 (1)")
    inpaint.add_argument("--device", choices=["auto", "cuda", "cpu"])

    commands.add_parser("run", help="run the Discord bot (needs DISCORD_TOKEN)")
    commands.add_parser(
        "check", help="check configuration, database, GPU, model and token; print the invite URL"
    )
    commands.add_parser("health", help="exit 0 while the running bot is connected and ready")

    database = commands.add_parser("db", help="manage the database (INPAINTBOT_DATABASE_URL)")
    db_commands = database.add_subparsers(dest="db_command", required=True, parser_class=_Parser)
    upgrade = db_commands.add_parser("upgrade", help="migrate the schema to the newest version")
    upgrade.add_argument("revision", nargs="?", default="head", help="target revision (head)")
    downgrade = db_commands.add_parser("downgrade", help="migrate the schema back to a revision")
    downgrade.add_argument("revision", help="target revision, e.g. -1 or base")
    return parser


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    if not sys.warnoptions:  # library deprecation notices are not for the person at the terminal
        warnings.simplefilter("ignore")
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    if args.command == "inpaint":
        raise SystemExit(_inpaint(args))
    if args.command == "db":
        raise SystemExit(_database(args))
    if args.command == "run":
        raise SystemExit(_run())
    if args.command == "check":
        raise SystemExit(_check())
    if args.command == "health":
        raise SystemExit(_health())


def _run() -> int:
    import asyncio

    import discord

    from bot.check import TOKEN_REFUSED
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


def _config() -> BotConfig:
    from pydantic import ValidationError

    from bot.check import describe_config_error
    from bot.config import BotConfig

    try:
        return BotConfig()
    except ValidationError as exc:
        _fail(f"bad configuration: {describe_config_error(exc)}")


def _check() -> int:
    import asyncio

    from bot.check import print_checks

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
    import diffusers

    from engine.config import EngineConfig
    from engine.engine import Engine
    from engine.errors import EngineError, JobCancelled
    from engine.job import InpaintRequest
    from engine.settings import InpaintSettings

    diffusers.utils.logging.set_verbosity_error()
    if args.output.suffix.lower() != ".png":
        _fail(
            f"the output must be a .png file (it carries the generation parameters), not {args.output.name}"
        )
    if not args.output.parent.is_dir():
        _fail(f"the output folder does not exist: {args.output.parent}")

    try:
        settings = InpaintSettings.parse(
            prompt=args.prompt,
            negative_prompt=args.negative_prompt,
            strength=args.strength,
            steps=args.steps,
            guidance=args.guidance,
            seed=args.seed,
            sampler=args.sampler,
            area=args.area,
            padding=args.padding,
            masked_content=args.masked_content,
            mask_blur=args.mask_blur,
            invert_mask=args.invert_mask,
            mask_grow=args.mask_grow,
            count=args.count,
            resolution=args.resolution,
            model=args.model,
            auto_mask=args.auto_mask,
            max_faces=args.max_faces,
            controlnet=args.controlnet,
            control_weight=args.control_weight,
            control_start=args.control_start,
            control_end=args.control_end,
            tile_downsample=args.tile_downsample,
        )
        request = InpaintRequest(
            image=_read(args.image, "image"),
            mask=_read(args.mask, "mask") if args.mask else None,
            settings=settings,
        )
        overrides = {"device": args.device} if args.device else {}
        engine = Engine(EngineConfig(**overrides))
        cancel = threading.Event()
        with _ProgressBar() as bar:
            try:
                result = engine.inpaint(request, on_progress=bar.update, cancel=cancel)
            except KeyboardInterrupt:
                cancel.set()
                print("cancelled", file=sys.stderr)
                return EXIT_CANCELLED
    except JobCancelled:
        return EXIT_CANCELLED
    except EngineError as exc:
        _fail(str(exc))

    for path, image in zip(_output_paths(args.output, len(result.images)), result.images, strict=True):
        try:
            path.write_bytes(image.png)
        except OSError as exc:
            _fail(f"cannot write {path}: {exc.strerror}")
        print(f"{path}\tseed {image.seed}")
    return 0


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
