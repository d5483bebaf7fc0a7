"""The migrations build exactly the schema the models describe, and undo it."""

import asyncio
import contextlib
import io
import os
import sqlite3
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from bot.config import BotConfig
from bot.store.database import Store, create_engine
from bot.store.migrate import KEPT_BACKUPS, alembic_config, downgrade_database, upgrade_database
from bot.store.models import Base


def _tables(config: BotConfig) -> set[str]:
    """The database's tables, on SQLite and PostgreSQL alike."""

    async def names() -> set[str]:
        engine = create_engine(config.database_url)
        try:
            async with engine.connect() as connection:
                return set(await connection.run_sync(lambda sync: inspect(sync).get_table_names()))
        finally:
            await engine.dispose()

    return asyncio.run(names())


def test_upgrade_to_head_and_back_to_base(bot_config: BotConfig) -> None:
    upgrade_database(bot_config)
    assert _tables(bot_config) == {"alembic_version", *Base.metadata.tables}
    downgrade_database(bot_config, "base")
    assert _tables(bot_config) == {"alembic_version"}
    upgrade_database(bot_config)
    assert _tables(bot_config) == {"alembic_version", *Base.metadata.tables}


async def test_models_and_migrations_agree(store: Store) -> None:
    async with store.sql_engine.connect() as connection:
        diff = await connection.run_sync(
            lambda sync: compare_metadata(MigrationContext.configure(sync), Base.metadata)
        )
    assert diff == [], f"the models differ from the migrations; add a revision: {diff}"


@pytest.mark.sqlite_only
async def test_sqlite_runs_in_wal_mode_with_foreign_keys(store: Store) -> None:
    async with store.sql_engine.connect() as connection:
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


@pytest.mark.sqlite_only
def test_upgrading_keeps_presets_jobs_and_their_messages_and_maps_the_old_nsfw_policies(
    bot_config: BotConfig,
) -> None:
    upgrade_database(bot_config, "0002")
    path = bot_config.database_url.removeprefix("sqlite+aiosqlite:///")
    with sqlite3.connect(path) as connection:
        connection.execute("INSERT INTO users (id, created_at) VALUES (1, '2026-01-01')")
        connection.execute(
            "INSERT INTO presets (user_id, name, settings, created_at, updated_at) "
            "VALUES (1, 'Épée', '{\"steps\": 40}', '2026-01-01', '2026-01-01')"
        )
        connection.execute(
            "INSERT INTO jobs (user_id, settings, status, attempts, kept, created_at, message_id) "
            "VALUES (1, '{}', 'DONE', 1, 0, '2026-01-01', 77)"
        )
        for guild_id, policy in ((10, "ALLOW"), (11, "AGE_RESTRICTED_CHANNELS"), (12, "BLOCK")):
            connection.execute(
                "INSERT INTO guild_settings (guild_id, allowed_channel_ids, nsfw_policy, updated_at) "
                "VALUES (?, '[]', ?, '2026-01-01')",
                (guild_id, policy),
            )
    upgrade_database(bot_config)
    with sqlite3.connect(path) as connection:
        presets = connection.execute("SELECT name, name_key, guild_id FROM presets").fetchall()
        policies = connection.execute(
            "SELECT guild_id, nsfw_policy FROM guild_settings ORDER BY guild_id"
        ).fetchall()
        jobs = connection.execute("SELECT user_id, hidden FROM jobs").fetchall()
        shown = connection.execute("SELECT message_id, job_id FROM job_messages").fetchall()
    assert presets == [("Épée", "épée", None)]  # case-folded beyond ASCII
    assert jobs == [(1, 0)]  # rebuilding ``users`` must not cascade into its jobs
    assert shown == [(77, 1)]  # 0004: the message that showed the job still finds it
    assert policies == [(10, "OFF"), (11, "BLOCK"), (12, "BLOCK")]
    downgrade_database(bot_config, "0002")
    with sqlite3.connect(path) as connection:
        assert connection.execute("SELECT name FROM presets").fetchall() == [("Épée",)]


@pytest.mark.sqlite_only
def test_an_upgrade_backs_the_database_up_first_with_its_wal(bot_config: BotConfig) -> None:
    """A migration cannot be undone by an older bot; the copy taken before it can."""
    database = Path(bot_config.database_url.removeprefix("sqlite+aiosqlite:///"))
    upgrade_database(bot_config, "0003")
    assert list(database.parent.glob("*before-upgrade*")) == []  # a new database: nothing to keep
    for age, revision in enumerate(["0000", "0001", "0002"], 1):  # older backups, oldest first
        old = database.with_name(f"inpaintbot-before-upgrade-from-{revision}.sqlite3")
        old.write_bytes(b"")
        os.utime(old, (age * 100, age * 100))
    writer = sqlite3.connect(database)  # still open: its change is in the WAL, not the file
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("INSERT INTO users (id, created_at) VALUES (7, '2024-01-01 00:00:00')")
    writer.commit()
    try:
        upgrade_database(bot_config)
    finally:
        writer.close()

    backup = database.with_name("inpaintbot-before-upgrade-from-0003.sqlite3")
    with contextlib.closing(sqlite3.connect(backup)) as copy:
        assert copy.execute("SELECT version_num FROM alembic_version").fetchall() == [("0003",)]
        assert copy.execute("SELECT id FROM users").fetchall() == [(7,)]
    backups = sorted(path.name for path in database.parent.glob("*before-upgrade*"))
    assert len(backups) == KEPT_BACKUPS and "inpaintbot-before-upgrade-from-0000.sqlite3" not in backups
    upgrade_database(bot_config)  # nothing to upgrade: no copy
    assert len(list(database.parent.glob("*before-upgrade*"))) == KEPT_BACKUPS
