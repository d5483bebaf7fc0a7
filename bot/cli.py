"""The ``inpaintbot`` command line: its parser, and one function per command (``inpaint`` and
``outpaint`` are ``bot.job_command``). User errors exit with status 2 and one ``error:`` line."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import warnings
from typing import TYPE_CHECKING, NoReturn
from urllib.parse import urlsplit

from bot import job_command
from bot.exits import EXIT_CANCELLED, EXIT_USER_ERROR, fail

if TYPE_CHECKING:
    from bot.config import BotConfig

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
        fail(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="inpaintbot", description="Stable Diffusion inpainting for Discord servers.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    job_command.add_job_commands(commands)

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


def main(argv: list[str] | None = None) -> None:
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    if not sys.warnoptions:  # library deprecation notices are not for the person at the terminal
        warnings.simplefilter("ignore")
    logging.basicConfig(level=logging.ERROR, format="%(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    if args.command in ("inpaint", "outpaint"):
        raise SystemExit(job_command.run(args))
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
    from bot.errors import BotError
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
    except (EngineError, BotError) as exc:  # e.g. the default model cannot be loaded
        fail(str(exc))
    except discord.LoginFailure:
        fail(TOKEN_REFUSED)
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
        fail("INPAINTBOT_REDIS_URL is not set: a worker takes its jobs from the bot's Redis server")
    url = config.redis_url.get_secret_value()
    configure_logging(config.log_level, [url, urlsplit(url).password or ""])
    try:
        asyncio.run(run_worker(config))
    except EngineError as exc:  # e.g. the default model cannot be loaded
        fail(str(exc))
    except KeyboardInterrupt:
        return EXIT_CANCELLED
    return 0


def _config() -> BotConfig:
    from pydantic import ValidationError

    from bot.config import BotConfig, describe_config_error

    try:
        return BotConfig()
    except ValidationError as exc:
        fail(f"bad configuration: {describe_config_error(exc)}")


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
        fail(str(exc))
    print(f"database {args.db_command}d to {args.revision}")
    return 0


if __name__ == "__main__":
    main()
