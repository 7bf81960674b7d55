"""moods, tempo and energy of tracks; playlists' mood rules

``track_moods(track_id, mood, score)``, one row per track and mood, written when a track is
labelled, with the index ``(mood, score, track_id)``: ``--mood happy`` is one range of it, so
a rule that selects 500 tracks of a million reads about 500 index entries (a JSON column on
tracks would be read whole for every track). ``tracks.tempo_bpm`` and ``tracks.energy``,
measured at featurize time, indexed for ``--tempo`` and ``--min-energy``; they stay empty for
tracks featurized before this revision until they are featurized again.
``playlists.mood_rule``: a playlist's moods, minimum energy and tempo range.

The genre tree needs no column: a label's canonical genre is derived from its raw class when
it is read (genrectl/taxonomy.py).

Revision ID: 13c3d4e5f0d3
Revises: 13a1e9a7c0d1
Create Date: 2026-12-03 14:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "13c3d4e5f0d3"
down_revision = "13a1e9a7c0d1"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "track_moods",
        sa.Column("track_id", sa.Integer(), nullable=False),
        sa.Column("mood", sa.String(length=32), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["track_id"], ["tracks.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("track_id", "mood"),
    )
    with op.batch_alter_table("track_moods", schema=None) as batch_op:
        batch_op.create_index(
            "ix_track_moods_mood_score", ["mood", "score", "track_id"], unique=False
        )
    with op.batch_alter_table("tracks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("tempo_bpm", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("energy", sa.Float(), nullable=True))
        batch_op.create_index(batch_op.f("ix_tracks_tempo_bpm"), ["tempo_bpm"], unique=False)
        batch_op.create_index(batch_op.f("ix_tracks_energy"), ["energy"], unique=False)
    with op.batch_alter_table("playlists", schema=None) as batch_op:
        batch_op.add_column(sa.Column("mood_rule", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("playlists", schema=None) as batch_op:
        batch_op.drop_column("mood_rule")
    with op.batch_alter_table("tracks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tracks_energy"))
        batch_op.drop_index(batch_op.f("ix_tracks_tempo_bpm"))
        batch_op.drop_column("energy")
        batch_op.drop_column("tempo_bpm")
    with op.batch_alter_table("track_moods", schema=None) as batch_op:
        batch_op.drop_index("ix_track_moods_mood_score")
    op.drop_table("track_moods")
