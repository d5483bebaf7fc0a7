"""Schema migrations with Alembic, configured in code so ``inpaintbot db upgrade`` needs no ini file.

The scripts live in the top-level ``migrations/`` folder of the checkout; ``alembic.ini`` at the root
points there too, for developers who run ``alembic revision --autogenerate``. A wheel (the Docker image,
``pip install .``) installs a copy under ``<prefix>/share/inpaintbot/migrations`` (pyproject's
``data-files``), where ``migrations_dir`` finds it.
"""

from __future__ import annotations

import asyncio
import sysconfig
from pathlib import Path

from alembic import command
from alembic.config import Config

from bot.config import BotConfig

CHECKOUT_MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"
INSTALLED_MIGRATIONS = Path("share", "inpaintbot", "migrations")


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
    """Migrate the schema up to ``revision``. Blocking: it runs its own event loop (see ``upgrade``)."""
    command.upgrade(alembic_config(config.database_url), revision)


def downgrade_database(config: BotConfig, revision: str) -> None:
    command.downgrade(alembic_config(config.database_url), revision)


async def upgrade(config: BotConfig, revision: str = "head") -> None:
    """``upgrade_database`` from async code: Alembic's async env needs a thread of its own."""
    await asyncio.to_thread(upgrade_database, config, revision)
