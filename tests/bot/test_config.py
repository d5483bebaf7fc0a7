from pathlib import Path

import pytest

from bot.config import BotConfig


def test_database_defaults_to_a_file_in_the_data_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("INPAINTBOT_DATABASE_URL", raising=False)
    config = BotConfig(data_dir=tmp_path, _env_file=None)
    assert config.database_url == f"sqlite+aiosqlite:///{tmp_path.resolve()}/inpaintbot.sqlite3"
    assert config.images_dir == tmp_path / "images"


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INPAINTBOT_DATABASE_URL", "postgresql+asyncpg://bot@db/inpaintbot")
    monkeypatch.setenv("INPAINTBOT_QUEUE_MAX_PER_USER", "5")
    monkeypatch.setenv("INPAINTBOT_RETENTION_DAYS", "30")
    config = BotConfig(_env_file=None)
    assert config.database_url == "postgresql+asyncpg://bot@db/inpaintbot"
    assert config.queue_max_per_user == 5
    assert config.retention_days == 30


def test_batch_size_follows_the_device_unless_set() -> None:
    assert BotConfig(device="cpu", _env_file=None).effective_batch_size() == 1
    assert BotConfig(device="cpu", batch_size=3, _env_file=None).effective_batch_size() == 3


def test_models_members_may_pick(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INPAINTBOT_MODEL", "base/inpainting")
    monkeypatch.setenv("INPAINTBOT_MODELS", "extra/sdxl, base/inpainting ,/models/mine.safetensors")
    config = BotConfig(_env_file=None)
    assert config.allowed_models() == ["base/inpainting", "extra/sdxl", "/models/mine.safetensors"]
