"""The store: one database and one folder of pictures, opened together and backed up together."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from bot.config import BotConfig
from bot.store.files import ImageFiles

SQLITE_BUSY_TIMEOUT_SECONDS = 30


class Store:
    def __init__(self, database_url: str, images_dir: Path) -> None:
        self.sql_engine = create_engine(database_url)  # SQLAlchemy's; the diffusion engine is elsewhere
        self.sessions = async_sessionmaker(self.sql_engine, expire_on_commit=False)
        self.files = ImageFiles(images_dir)

    @classmethod
    def from_config(cls, config: BotConfig) -> Store:
        return cls(config.database_url, config.images_dir)

    async def close(self) -> None:
        await self.sql_engine.dispose()


async def open_store(config: BotConfig) -> Store:
    """What the bot does at start-up: bring the schema to the newest revision, then open the store."""
    from bot.store.migrate import upgrade

    await upgrade(config)
    return Store.from_config(config)


def create_engine(database_url: str) -> AsyncEngine:
    """An async engine; SQLite gets WAL (readers never block the writer) and enforced foreign keys."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite":
        return create_async_engine(url, pool_pre_ping=True)
    if url.database and url.database != ":memory:":
        Path(url.database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS})
    event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, connection_record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def dialect_insert(session: AsyncSession, table: Any) -> Any:
    """An INSERT with ``on_conflict_do_nothing``/``_do_update``: SQLite and PostgreSQL share that API."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return postgresql.insert(table)
    if dialect == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"upserts are written for SQLite and PostgreSQL, not {dialect}")
