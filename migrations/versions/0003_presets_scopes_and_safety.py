"""Server presets, case-insensitive preset names, users' default presets, safety verdicts on outputs,
and the NSFW policies off / spoiler / block.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Non-native enums store member names. Old policies map to the nearest new one and back.
POLICY_UPGRADE = {"ALLOW": "OFF", "AGE_RESTRICTED_CHANNELS": "BLOCK"}
POLICY_DOWNGRADE = {"OFF": "ALLOW", "SPOILER": "BLOCK"}


def _rename_policies(mapping: dict[str, str]) -> None:
    guild_settings = sa.table("guild_settings", sa.column("nsfw_policy", sa.String))
    for old, new in mapping.items():
        op.execute(
            guild_settings.update().where(guild_settings.c.nsfw_policy == old).values(nsfw_policy=new)
        )


def _fill_name_keys() -> None:
    """``name_key`` is the name case-folded as the code does it (``str.casefold``, all of Unicode). In
    offline mode (``--sql``) there are no rows to read, so SQL's ``lower`` (ASCII only) stands in."""
    if op.get_context().as_sql:
        op.execute(sa.text("UPDATE presets SET name_key = lower(name)"))
        return
    presets = sa.table("presets", sa.column("id"), sa.column("name"), sa.column("name_key"))
    connection = op.get_bind()
    for preset_id, name in connection.execute(sa.select(presets.c.id, presets.c.name)).all():
        connection.execute(
            presets.update().where(presets.c.id == preset_id).values(name_key=name.casefold())
        )


def upgrade() -> None:
    with op.batch_alter_table("presets") as batch:
        batch.add_column(sa.Column("guild_id", sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column("name_key", sa.String(length=64), nullable=True))
        batch.drop_constraint("uq_presets_user_id_name", type_="unique")
    _fill_name_keys()
    with op.batch_alter_table("presets") as batch:
        batch.alter_column("name_key", existing_type=sa.String(length=64), nullable=False)
    op.create_index(
        "uq_presets_user_id_name_key",
        "presets",
        ["user_id", "name_key"],
        unique=True,
        sqlite_where=sa.text("guild_id IS NULL"),
        postgresql_where=sa.text("guild_id IS NULL"),
    )
    op.create_index(
        "uq_presets_guild_id_name_key",
        "presets",
        ["guild_id", "name_key"],
        unique=True,
        sqlite_where=sa.text("guild_id IS NOT NULL"),
        postgresql_where=sa.text("guild_id IS NOT NULL"),
    )
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("default_preset_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            op.f("fk_users_default_preset_id_presets"),
            "presets",
            ["default_preset_id"],
            ["id"],
            ondelete="SET NULL",
        )
    with op.batch_alter_table("job_images") as batch:
        batch.add_column(sa.Column("nsfw", sa.Boolean(), nullable=True))
    _rename_policies(POLICY_UPGRADE)


def downgrade() -> None:
    _rename_policies(POLICY_DOWNGRADE)
    with op.batch_alter_table("job_images") as batch:
        batch.drop_column("nsfw")
    with op.batch_alter_table("users") as batch:
        batch.drop_constraint(op.f("fk_users_default_preset_id_presets"), type_="foreignkey")
        batch.drop_column("default_preset_id")
    op.drop_index("uq_presets_guild_id_name_key", table_name="presets")
    op.drop_index("uq_presets_user_id_name_key", table_name="presets")
    # Server presets cannot be told apart once the column goes: they are removed with it.
    op.execute(sa.text("DELETE FROM presets WHERE guild_id IS NOT NULL"))
    with op.batch_alter_table("presets") as batch:
        batch.drop_column("name_key")
        batch.drop_column("guild_id")
        batch.create_unique_constraint(op.f("uq_presets_user_id_name"), ["user_id", "name"])
