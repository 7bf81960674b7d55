"""the tag journal: every change ``tags write`` makes, so ``tags undo`` can take it back

``tag_batches``: one row per ``tags write`` run that changed files. ``tag_changes``: one row
per file changed, with the exact old values (absent as null), the new ones, the file's
sha256/size/mtime before and after, and a patch that rebuilds the old bytes from the new
ones: an undo gives the file back byte for byte, and refuses a file changed since.

Revision ID: 13a1e9a7c0d1
Revises: 97e1fb93f9d0
Create Date: 2026-12-10 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "13a1e9a7c0d1"
down_revision = "97e1fb93f9d0"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tag_batches",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("field", sa.String(length=16), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("written", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("undone_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "tag_changes",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("batch_id", sa.Integer(), nullable=False),
        sa.Column("track_id", sa.Integer(), nullable=True),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("field", sa.String(length=16), nullable=False),
        sa.Column("old_values", sa.JSON(), nullable=False),
        sa.Column("new_values", sa.JSON(), nullable=False),
        sa.Column("sha256_before", sa.String(length=64), nullable=False),
        sa.Column("sha256_after", sa.String(length=64), nullable=False),
        sa.Column("size_before", sa.BigInteger(), nullable=False),
        sa.Column("mtime_ns_before", sa.BigInteger(), nullable=False),
        sa.Column("size_after", sa.BigInteger(), nullable=False),
        sa.Column("mtime_ns_after", sa.BigInteger(), nullable=False),
        sa.Column("patch", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("undone_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("undo", sa.String(length=16), nullable=True),
        sa.ForeignKeyConstraint(["batch_id"], ["tag_batches.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["track_id"], ["tracks.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("tag_changes", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_tag_changes_batch_id"), ["batch_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_tag_changes_track_id"), ["track_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("tag_changes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tag_changes_track_id"))
        batch_op.drop_index(batch_op.f("ix_tag_changes_batch_id"))
    op.drop_table("tag_changes")
    op.drop_table("tag_batches")
