"""The database tables, as typed SQLAlchemy 2 models.

Identities from Discord (users, guilds, channels, messages) are plain 64-bit ids stored as data, so
nothing here imports Discord. Types are portable: SQLite today, PostgreSQL by changing the URL.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Dialect,
    Enum,
    ForeignKey,
    Index,
    MetaData,
    String,
    Text,
    TypeDecorator,
    and_,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.sql.elements import ColumnElement

from engine.job import MaskSource
from engine.settings import InpaintSettings

# Named constraints: Alembic's batch mode (how SQLite alters tables) needs names to drop or change them.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC in and out; SQLite keeps no zone, so naive values read back are UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime; use bot.store.models.utcnow()")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


def _enum(cls: type[StrEnum]) -> Enum:
    """Member names as plain strings, not a native enum type: adding a member needs no migration."""
    return Enum(cls, native_enum=False, create_constraint=False, length=32)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UtcDateTime, dict[str, Any]: JSON}


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


LIVE_STATUSES = (JobStatus.QUEUED, JobStatus.RUNNING)


class ImageRole(StrEnum):
    INPUT = "input"
    MASK = "mask"
    FOUND_MASK = "found mask"  # what the job's mask_prompt found at submission; re-runs reuse it
    OUTPUT = "output"


class NsfwPolicy(StrEnum):
    """What happens to a result the safety checker flags; age-restricted channels are always exempt."""

    OFF = "off"  # post it as it is
    SPOILER = "spoiler"  # post it behind a spoiler
    BLOCK = "block"  # post a note instead of the picture


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # ``use_alter``: users and presets point at each other, so this key is added after both tables.
    default_preset_id: Mapped[int | None] = mapped_column(
        ForeignKey("presets.id", ondelete="SET NULL", use_alter=True)
    )


class Image(Base):
    """A picture file under the data directory, addressed by the SHA-256 of its bytes.

    Rows outlive their files: retention sets ``purged_at`` and deletes the file, history stays.
    """

    __tablename__ = "images"

    id: Mapped[int] = mapped_column(primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    size: Mapped[int] = mapped_column(BigInteger)
    width: Mapped[int]
    height: Mapped[int]
    format: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    purged_at: Mapped[datetime | None]


class Preset(Base):
    """A user's named settings, or (``guild_id`` set) a server preset that every member there sees.

    Names are unique per owner ignoring case: ``name_key`` is the case-folded name, and two partial
    unique indexes cover the two kinds of owner (a user's own presets, a server's presets).
    """

    __tablename__ = "presets"
    __table_args__ = (
        Index(
            "uq_presets_user_id_name_key",
            "user_id",
            "name_key",
            unique=True,
            sqlite_where=text("guild_id IS NULL"),
            postgresql_where=text("guild_id IS NULL"),
        ),
        Index(
            "uq_presets_guild_id_name_key",
            "guild_id",
            "name_key",
            unique=True,
            sqlite_where=text("guild_id IS NOT NULL"),
            postgresql_where=text("guild_id IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))  # who saved it
    guild_id: Mapped[int | None] = mapped_column(BigInteger)  # set for server presets
    name: Mapped[str] = mapped_column(String(64))
    name_key: Mapped[str] = mapped_column(String(64))
    settings: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_user_id_created_at", "user_id", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    guild_id: Mapped[int | None] = mapped_column(BigInteger)
    channel_id: Mapped[int | None] = mapped_column(BigInteger)
    # The Discord message that shows the job now (its status, then its result; /show moves it). Every
    # message that ever showed it is in ``job_messages``, where 🔁 reactions look jobs up.
    message_id: Mapped[int | None] = mapped_column(BigInteger)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"), index=True)
    settings: Mapped[dict[str, Any]]  # InpaintSettings with the concrete seed, so a re-run is identical
    status: Mapped[JobStatus] = mapped_column(_enum(JobStatus), default=JobStatus.QUEUED, index=True)
    model: Mapped[str | None] = mapped_column(String(500))
    mask_source: Mapped[MaskSource | None] = mapped_column(_enum(MaskSource))
    error: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(default=0)
    kept: Mapped[bool] = mapped_column(default=False)  # retention never deletes a kept job's pictures
    hidden: Mapped[bool] = mapped_column(default=False)  # its result was deleted (🗑): not shown again
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    delivered_at: Mapped[datetime | None]  # set by the bot once the result is shown
    run_seconds: Mapped[float | None]
    timings: Mapped[dict[str, Any] | None]

    images: Mapped[list[JobImage]] = relationship(
        back_populates="job", cascade="all, delete-orphan", order_by="JobImage.position"
    )

    def images_with(self, role: ImageRole) -> list[JobImage]:
        return [link for link in self.images if link.role is role]

    def inpaint_settings(self) -> InpaintSettings:
        return InpaintSettings.model_validate(self.settings)


def undelivered() -> ColumnElement[bool]:
    """Finished jobs whose outcome the bot has not confirmed showing: it is reported again after a
    restart, so retention keeps their pictures."""
    return and_(Job.status.in_((JobStatus.DONE, JobStatus.FAILED)), Job.delivered_at.is_(None))


class JobMessage(Base):
    """A Discord message that shows a job: its own result, and each re-post by ``/show``."""

    __tablename__ = "job_messages"

    message_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)


class JobImage(Base):
    """Which pictures a job used and made; outputs carry the seed that made them."""

    __tablename__ = "job_images"

    job_id: Mapped[int] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    role: Mapped[ImageRole] = mapped_column(_enum(ImageRole), primary_key=True)
    position: Mapped[int] = mapped_column(primary_key=True)
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id", ondelete="RESTRICT"), index=True)
    seed: Mapped[int | None] = mapped_column(BigInteger)
    nsfw: Mapped[bool | None]  # the safety checker's verdict on an output; None: not checked

    job: Mapped[Job] = relationship(back_populates="images")
    image: Mapped[Image] = relationship(lazy="joined")


class GuildSettings(Base):
    __tablename__ = "guild_settings"

    guild_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    allowed_channel_ids: Mapped[list[int]] = mapped_column(JSON, default=list)  # empty: every channel
    max_jobs_per_user: Mapped[int | None]  # None: the global INPAINTBOT_QUEUE_MAX_PER_USER
    default_preset_id: Mapped[int | None] = mapped_column(ForeignKey("presets.id", ondelete="SET NULL"))
    nsfw_policy: Mapped[NsfwPolicy] = mapped_column(_enum(NsfwPolicy), default=NsfwPolicy.BLOCK)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)

    @classmethod
    def defaults(cls, guild_id: int) -> GuildSettings:
        """What a guild that never changed a setting gets (column defaults apply only on insert)."""
        return cls(
            guild_id=guild_id, allowed_channel_ids=[], nsfw_policy=NsfwPolicy.BLOCK, updated_at=utcnow()
        )

    def allows_channel(self, channel_id: int) -> bool:
        return not self.allowed_channel_ids or channel_id in self.allowed_channel_ids


class PainterLink(Base):
    """A link to the mask painter (``bot.web``): what it opens, and whether it was used.

    Kept in the database, not in memory, so that a restart cannot make a used link valid again; the
    link's signature covers the member, the channel, the picture and the expiry stored here.
    """

    __tablename__ = "painter_links"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[int] = mapped_column(BigInteger)
    guild_id: Mapped[int | None] = mapped_column(BigInteger)
    channel_id: Mapped[int] = mapped_column(BigInteger)
    image_sha256: Mapped[str] = mapped_column(String(64))
    settings: Mapped[dict[str, Any]]  # the form's starting values (InpaintSettings, no seed)
    job_id: Mapped[int | None] = mapped_column(BigInteger)  # the result it was opened from, if any
    expires_at: Mapped[datetime] = mapped_column(index=True)
    used_at: Mapped[datetime | None]
