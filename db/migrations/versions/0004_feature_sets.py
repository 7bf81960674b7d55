"""feature sets per segment, track notes, reasons and encoder classes on predictions

A track can now hold the rows of several feature sets (the reference mel, an encoder's
outputs), so the feature version moves from the track to each segment row (backfilled from
its shard); a batch records the feature sets it computes.

Revision ID: dad86364f60e
Revises: fcb5069e4e8b
Create Date: 2026-12-01 23:32:19.121369
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "dad86364f60e"
down_revision = "fcb5069e4e8b"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("batches", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("feature_sets", sa.JSON(), nullable=False, server_default="[]")
        )

    with op.batch_alter_table("predictions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("reason", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("music", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("tags", sa.JSON(), nullable=True))

    with op.batch_alter_table("segments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("feature_version", sa.String(length=32), nullable=True))
    op.execute(
        "UPDATE segments SET feature_version = "
        "(SELECT shards.feature_version FROM shards WHERE shards.id = segments.shard_id)"
    )
    with op.batch_alter_table("segments", schema=None) as batch_op:
        batch_op.alter_column("feature_version", existing_type=sa.String(length=32), nullable=False)
        batch_op.drop_constraint("uq_segment_track_index", type_="unique")
        batch_op.create_unique_constraint(
            "uq_segment_track_index", ["track_id", "feature_version", "index"]
        )
        batch_op.create_index(
            batch_op.f("ix_segments_feature_version"), ["feature_version"], unique=False
        )

    with op.batch_alter_table("tracks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("note", sa.Text(), nullable=True))
        batch_op.drop_column("feature_version")


def downgrade() -> None:
    with op.batch_alter_table("tracks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("feature_version", sa.VARCHAR(length=32), nullable=True))
        batch_op.drop_column("note")

    with op.batch_alter_table("segments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_segments_feature_version"))
        batch_op.drop_constraint("uq_segment_track_index", type_="unique")
        batch_op.create_unique_constraint("uq_segment_track_index", ["track_id", "index"])
        batch_op.drop_column("feature_version")

    with op.batch_alter_table("predictions", schema=None) as batch_op:
        batch_op.drop_column("tags")
        batch_op.drop_column("music")
        batch_op.drop_column("reason")

    with op.batch_alter_table("batches", schema=None) as batch_op:
        batch_op.drop_column("feature_sets")
