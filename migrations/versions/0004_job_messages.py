"""Every message that shows a job (its result, and re-posts by /show), and jobs hidden by 🗑.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "job_messages",
        sa.Column("message_id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_job_messages_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("message_id", name=op.f("pk_job_messages")),
    )
    op.create_index(op.f("ix_job_messages_job_id"), "job_messages", ["job_id"])
    op.execute(
        "INSERT INTO job_messages (message_id, job_id) "
        "SELECT message_id, MIN(id) FROM jobs WHERE message_id IS NOT NULL GROUP BY message_id"
    )
    op.drop_index(op.f("ix_jobs_message_id"), table_name="jobs")
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(
            sa.Column("hidden", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("hidden")
    op.create_index(op.f("ix_jobs_message_id"), "jobs", ["message_id"])
    op.drop_index(op.f("ix_job_messages_job_id"), table_name="job_messages")
    op.drop_table("job_messages")
