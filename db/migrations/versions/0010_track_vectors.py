"""track vectors and "more like this" playlists

``track_vectors``: one vector per track and recipe (``worker.inference.vectors``), written
when the track is labelled, so that ``playlist create --like`` ranks the library from the
database without opening a shard. Unique by (key, track id); (key, id) gives one key's
count and newest id from the index alone (the state ``db.similar``'s cache file is keyed
on; AUTOINCREMENT so that SQLite never reuses an id); by track id for the cascade.
``playlists.like_track_ids`` (the seeds, by track id) and ``playlists.exclude_genres``.

Revision ID: 13d4c0ffee04
Revises: 13c3d4e5f0d3
Create Date: 2026-12-03 14:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "13d4c0ffee04"
down_revision = "13c3d4e5f0d3"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "track_vectors",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("track_id", sa.Integer(), nullable=False),
        sa.Column("dim", sa.Integer(), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        sa.ForeignKeyConstraint(["track_id"], ["tracks.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key", "track_id", name="uq_track_vector_key_track"),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("track_vectors", schema=None) as batch_op:
        batch_op.create_index("ix_track_vectors_key_id", ["key", "id"], unique=False)
        batch_op.create_index(batch_op.f("ix_track_vectors_track_id"), ["track_id"], unique=False)
    with op.batch_alter_table("playlists", schema=None) as batch_op:
        batch_op.add_column(sa.Column("like_track_ids", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("exclude_genres", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("playlists", schema=None) as batch_op:
        batch_op.drop_column("exclude_genres")
        batch_op.drop_column("like_track_ids")
    with op.batch_alter_table("track_vectors", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_track_vectors_track_id"))
        batch_op.drop_index("ix_track_vectors_key_id")
    op.drop_table("track_vectors")
