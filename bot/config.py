"""Operator configuration of the bot: the engine's settings plus the store's and the queue's.

One object, read from the environment (``INPAINTBOT_*``) and ``.env``; every variable is documented in
the README's configuration tables.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import NoDecode

from engine.config import EngineConfig

DATABASE_FILE = "inpaintbot.sqlite3"
IMAGES_DIR = "images"
MIN_SECRET_CHARS = 16  # INPAINTBOT_PAINTER_SECRET and the kept painter-secret file


class BotConfig(EngineConfig):
    database_url: str = Field(
        "",
        description="SQLAlchemy async URL; empty means an SQLite file in the data directory.",
    )
    queue_max_per_user: int = Field(3, ge=1, description="Jobs one user may have queued or running.")
    queue_max_total: int = Field(100, ge=1, description="Jobs all users may have queued or running.")
    queue_max_per_guild: int | None = Field(
        None, ge=1, description="Jobs one server's members may have queued or running; unset: no cap."
    )
    batch_size: int | None = Field(
        None, ge=1, description="Most images in one pipeline call; unset means 4 on CUDA, 1 on the CPU."
    )
    job_timeout: float = Field(600.0, gt=0, description="Seconds one job may run before it is stopped.")
    watchdog_grace: float = Field(
        300.0,
        gt=0,
        description="Seconds past the job time limit before a GPU that has not stopped counts as stuck.",
    )
    job_max_attempts: int = Field(
        3,
        ge=1,
        description="Starts a job gets; a job the bot went down running this often fails instead.",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", description="Least important log lines `inpaintbot run` writes."
    )
    shutdown_timeout: float = Field(
        30.0, ge=0, description="Seconds shutdown waits for the running job before re-queueing it."
    )
    retention_days: float | None = Field(
        None, gt=0, description="Delete stored pictures unused for this many days; unset keeps them."
    )
    retention_max_gb: float | None = Field(
        20.0, gt=0, description="Disk budget for stored pictures; the least recently used go first."
    )
    max_presets_per_user: int = Field(25, ge=1)
    progress_previews: bool = Field(
        True, description="Show a small preview of the picture being painted with the progress."
    )
    discord_token: SecretStr | None = Field(
        None,
        # Discord's own conventional name, without the prefix; SecretStr keeps it out of logs and reprs.
        validation_alias=AliasChoices("discord_token", "DISCORD_TOKEN"),
        description="The bot's token from the Discord developer portal.",
    )
    discord_api_base: str | None = Field(
        None, description="REST base URL of a Discord API proxy, e.g. http://proxy:8080/api/v10."
    )
    discord_gateway_url: str | None = Field(
        None, description="Gateway URL of a gateway proxy (ws://...)."
    )
    guild_ids: Annotated[list[int], NoDecode] = Field(
        default_factory=list,
        description="Guilds to sync commands to instantly (comma-separated); empty syncs globally.",
    )
    allowed_guilds: Annotated[list[int], NoDecode] = Field(
        default_factory=list,
        description=(
            "Servers the bot serves (comma-separated ids); it leaves any other. Empty serves any "
            "server it is invited to."
        ),
    )
    allow_dms: bool = Field(False, description="Take jobs in direct messages with the bot.")

    public_url: str | None = Field(
        None,
        description=(
            "Address members open the mask painter at (https://… behind your reverse proxy or tunnel); "
            "unset turns the painter off."
        ),
    )
    web_host: str = Field(
        "127.0.0.1", description="Interface the painter's web server listens on (0.0.0.0: all)."
    )
    web_port: int = Field(8080, ge=0, le=65535, description="Port the painter's web server listens on.")
    painter_secret: SecretStr | None = Field(
        None,
        description=("Key that signs painter links; unset, one is made and kept in the data directory."),
    )
    redis_url: SecretStr | None = Field(
        None,
        description=(
            "Redis 7 server that hands jobs to GPU workers (`redis://` or `rediss://` with TLS); unset: "
            "jobs run in this process only."
        ),
    )
    redis_prefix: str = Field("inpaintbot", min_length=1, description="Prefix of every Redis key.")
    local_worker: bool = Field(
        True,
        description="With INPAINTBOT_REDIS_URL: the bot runs jobs on its own GPU too, as one more worker.",
    )
    worker_name: str = Field(
        "",
        max_length=64,
        pattern=r"^[A-Za-z0-9_.-]*$",
        description="This worker's name in /queue and in Redis keys; empty: the host name.",
    )
    worker_slots: int = Field(
        1, ge=1, le=16, description="Jobs a worker takes at once (the next is prepared while one runs)."
    )
    worker_heartbeat: float = Field(
        5.0, gt=0, description="Seconds between a worker's announcements; 3 missed ones: it is gone."
    )
    worker_lease: float = Field(
        30.0,
        gt=0,
        description="Seconds a job may go unrenewed by its worker before it is taken back and run elsewhere.",
    )
    redis_picture_ttl: float = Field(
        3600.0, gt=0, description="Seconds job pictures and progress may stay in Redis, at most."
    )
    redis_max_picture_mb: float = Field(
        50.0, gt=0, description="Largest job input or result (all its pictures) sent through Redis."
    )

    models: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description=(
            "Other models members may pick with the `model` option (comma-separated); "
            "INPAINTBOT_MODEL is always offered."
        ),
    )

    @field_validator("guild_ids", "allowed_guilds", "models", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        """Operators write ``123,456`` in an env file, not JSON."""
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("public_url")
    @classmethod
    def _web_address(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            return None
        if value is not None and not value.startswith(("https://", "http://")):
            raise ValueError("must start with https:// (or http:// for a test on this machine)")
        return value.rstrip("/") if value is not None else None

    @field_validator("painter_secret")
    @classmethod
    def _long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        """An empty key would sign links with nothing: unset means "make one"; a short one is refused."""
        if value is None or not value.get_secret_value().strip():
            return None
        if len(value.get_secret_value().strip()) < MIN_SECRET_CHARS:
            raise ValueError(f"must be at least {MIN_SECRET_CHARS} characters (a random one is best)")
        return value

    @property
    def selects_objects(self) -> bool:
        """The painter's Select tool uses SAM 2 of masks from words: with them, or not at all."""
        return self.mask_detector is not None and self.mask_segmenter is not None

    @property
    def painter_on(self) -> bool:
        """The painter needs an address members can reach; without one, no Paint buttons either."""
        return self.public_url is not None

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper_case(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    def serves(self, guild_id: int) -> bool:
        """Whether the bot works for this server (``allowed_guilds``); the GPU is the operator's."""
        return not self.allowed_guilds or guild_id in self.allowed_guilds

    def allowed_models(self) -> list[str]:
        """Members may only name these: any other name would let them make the bot download or
        read whatever they like."""
        return [self.model, *(name for name in self.models if name != self.model)]

    @model_validator(mode="after")
    def _default_database_url(self) -> BotConfig:
        if not self.database_url:
            path = (self.data_dir / DATABASE_FILE).expanduser().resolve()
            self.database_url = f"sqlite+aiosqlite:///{path}"
        return self

    @property
    def worker_id(self) -> str:
        """The worker's name as announced: ``worker_name``, else the host name."""
        return self.worker_name or socket.gethostname()

    @property
    def images_dir(self) -> Path:
        """Pictures live next to the database, so one copy of the data directory is a full backup."""
        return self.data_dir / IMAGES_DIR

    def effective_batch_size(self) -> int:
        """The configured batch size, or the device's default (batching pays off on GPUs only)."""
        if self.batch_size is not None:
            return self.batch_size
        from engine.models import resolve_device

        return 4 if resolve_device(self.device).type == "cuda" else 1


def describe_config_error(error: ValidationError) -> str:
    """One line naming each bad variable as the operator wrote it; the input is left out (it may be
    the token)."""
    problems = []
    for item in error.errors():
        field = str(item["loc"][0]).upper() if item["loc"] else ""
        name = field if field == "DISCORD_TOKEN" else f"INPAINTBOT_{field}"
        problems.append(f"{name}: {item['msg']}")
    return "; ".join(problems)
