"""Index jobs by the Discord message that shows them, for 🔁 reaction look-ups.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(op.f("ix_jobs_message_id"), "jobs", ["message_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_jobs_message_id"), table_name="jobs")
