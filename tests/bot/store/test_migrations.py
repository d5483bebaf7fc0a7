"""The migrations build exactly the schema the models describe, and undo it."""

import io
import sqlite3

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from bot.config import BotConfig
from bot.store.database import Store
from bot.store.migrate import alembic_config, downgrade_database, upgrade_database
from bot.store.models import Base


def _tables(config: BotConfig) -> set[str]:
    path = config.database_url.removeprefix("sqlite+aiosqlite:///")
    with sqlite3.connect(path) as connection:
        rows = connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall()
    return {name for (name,) in rows}


def test_upgrade_to_head_and_back_to_base(bot_config: BotConfig) -> None:
    upgrade_database(bot_config)
    assert _tables(bot_config) == {"alembic_version", *Base.metadata.tables}
    downgrade_database(bot_config, "base")
    assert _tables(bot_config) == {"alembic_version"}
    upgrade_database(bot_config)
    assert _tables(bot_config) == {"alembic_version", *Base.metadata.tables}


async def test_models_and_migrations_agree(store: Store) -> None:
    async with store.engine.connect() as connection:
        diff = await connection.run_sync(
            lambda sync: compare_metadata(MigrationContext.configure(sync), Base.metadata)
        )
    assert diff == [], f"the models differ from the migrations; add a revision: {diff}"


async def test_sqlite_runs_in_wal_mode_with_foreign_keys(store: Store) -> None:
    async with store.engine.connect() as connection:
        assert (await connection.exec_driver_sql("PRAGMA journal_mode")).scalar() == "wal"
        assert (await connection.exec_driver_sql("PRAGMA foreign_keys")).scalar() == 1
        names = await connection.run_sync(lambda sync: inspect(sync).get_table_names())
    assert "jobs" in names


def test_migrations_also_speak_postgresql() -> None:
    """Changing the URL is all PostgreSQL needs: the same scripts render its DDL (no server here)."""
    config = alembic_config("postgresql+asyncpg://bot@localhost/inpaintbot")
    config.output_buffer = io.StringIO()
    command.upgrade(config, "head", sql=True)
    sql = config.output_buffer.getvalue()
    assert "CREATE TABLE jobs" in sql and "TIMESTAMP WITH TIME ZONE" in sql and "BIGINT" in sql
