"""Every store test runs on SQLite and on a real PostgreSQL server (a fresh database each), as the
README promises both; a test of SQLite's own behaviour is marked ``sqlite_only``."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from bot.config import BotConfig
from tests.support.servers import postgres_server


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "database" in metafunc.fixturenames:
        sqlite_only = metafunc.definition.get_closest_marker("sqlite_only") is not None
        kinds = ["sqlite"] if sqlite_only else ["sqlite", "postgresql"]
        metafunc.parametrize("database", kinds, indirect=True)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    with postgres_server() as url:
        yield url


@pytest.fixture(autouse=True)
async def database(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """The database URL of this run: empty for the default SQLite file, else a new PostgreSQL one."""
    if request.param == "sqlite":
        yield ""
        return
    server = make_url(request.getfixturevalue("postgres_url"))
    name = f"test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(
        host=server.host, port=server.port, user=server.username, database="postgres"
    )
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture
def bot_config(bot_config: BotConfig, database: str) -> BotConfig:
    return bot_config.model_copy(update={"database_url": database}) if database else bot_config
