"""Schema migrations with Alembic, configured in code so ``inpaintbot db upgrade`` needs no ini file.

The scripts live in the top-level ``migrations/`` folder of the checkout; ``alembic.ini`` at the root
points there too, for developers who run ``alembic revision --autogenerate``. A wheel (the Docker image,
``pip install .``) installs a copy under ``<prefix>/share/inpaintbot/migrations`` (pyproject's
``data-files``), where ``migrations_dir`` finds it.

Before an upgrade changes an SQLite database, a copy is kept beside it, named for the revision it had:
a migration cannot be undone by an older version of the bot, and its copy can.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import sysconfig
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy.engine import make_url

from bot.config import BotConfig

CHECKOUT_MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"
INSTALLED_MIGRATIONS = Path("share", "inpaintbot", "migrations")
KEPT_BACKUPS = 3  # copies taken before upgrades; the oldest go beyond this many

log = logging.getLogger(__name__)


def migrations_dir() -> Path:
    """The checkout's scripts (development, editable installs), else those a wheel installed into the
    environment's or the user's data directory."""
    schemes = (sysconfig.get_default_scheme(), sysconfig.get_preferred_scheme("user"))
    candidates = [
        CHECKOUT_MIGRATIONS,
        *(Path(sysconfig.get_path("data", scheme)) / INSTALLED_MIGRATIONS for scheme in schemes),
    ]
    for candidate in candidates:
        if (candidate / "env.py").is_file():
            return candidate
    raise FileNotFoundError(
        "the database migrations are not installed; looked in " + ", ".join(map(str, candidates))
    )


def alembic_config(database_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(migrations_dir()))
    # Passed as an attribute, not an ini option: URLs may hold '%', which ini interpolation would eat.
    config.attributes["database_url"] = database_url
    return config


def upgrade_database(config: BotConfig, revision: str = "head") -> None:
    """Migrate the schema up to ``revision``, backing an SQLite file up first when that changes it.
    Blocking: it runs its own event loop (see ``upgrade``)."""
    alembic = alembic_config(config.database_url)
    backup_before_upgrade(config.database_url, alembic, revision)
    command.upgrade(alembic, revision)


def backup_before_upgrade(database_url: str, alembic: Config, revision: str) -> Path | None:
    """Copy an SQLite database that is about to be migrated to ``<name>-before-upgrade-from-<its
    revision>.sqlite3`` beside it, with SQLite's backup API (consistent, its WAL included); keep the
    newest ``KEPT_BACKUPS`` such copies. ``None``: nothing to copy (another database, a new file, or
    no upgrade to run)."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    path = Path(url.database)
    if not path.is_file():
        return None
    with contextlib.closing(sqlite3.connect(path)) as database:
        try:
            row = database.execute("SELECT version_num FROM alembic_version").fetchone()
        except sqlite3.OperationalError:  # no schema yet
            row = None
        target = ScriptDirectory.from_config(alembic).get_revision(revision)
        if row is None or target is None or row[0] == target.revision:
            return None
        backup = path.with_name(f"{path.stem}-before-upgrade-from-{row[0]}{path.suffix}")
        with contextlib.closing(sqlite3.connect(backup)) as copy:
            database.backup(copy)
            copy.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, no -wal beside it
    log.info("database backed up to %s before the upgrade from revision %s", backup, row[0])
    backups = path.parent.glob(f"{path.stem}-before-upgrade-from-*{path.suffix}")
    for stale in sorted(backups, key=lambda backup: backup.stat().st_mtime)[:-KEPT_BACKUPS]:
        stale.unlink()
    return backup


def downgrade_database(config: BotConfig, revision: str) -> None:
    command.downgrade(alembic_config(config.database_url), revision)


async def upgrade(config: BotConfig, revision: str = "head") -> None:
    """``upgrade_database`` from async code: Alembic's async env needs a thread of its own."""
    await asyncio.to_thread(upgrade_database, config, revision)
