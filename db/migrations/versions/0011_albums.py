"""albums: one genre per album, and the playlists' scope

Album consistency (issue 13): tracks sharing an album get the album's genre unless one
clearly disagrees (db.albums). ``tracks.album_artist`` is read from the tags, and
``tracks.album_key`` (album artist + album, else the folder) groups them, indexed so that
recomputing an album reads only its tracks. ``albums`` holds each album's genre per model;
``predictions.album_genre`` and ``album_confidence`` hold each track's label at album scope,
indexed like the track's own label (0007) so that a listing or playlist at album scope is
an index range at 1M tracks. Existing tracks get their album key from the tags already
stored (their album artist is read at their next change). Existing predictions start with their own label at album
scope until a labelling run (or `genrectl relabel`) computes their albums; existing
playlists keep the track scope they were made with.

Revision ID: 13b2a1b0c0d2
Revises: 13d4c0ffee04
Create Date: 2026-12-03 14:00:00.000000
"""

from __future__ import annotations

import os

import sqlalchemy as sa
from alembic import op

revision = "13b2a1b0c0d2"
down_revision = "13d4c0ffee04"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("tracks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("album_artist", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("album_key", sa.Text(), nullable=True))
        batch_op.create_index("ix_tracks_album_key", ["album_key"], unique=False)
    _backfill_album_keys()
    with op.batch_alter_table("predictions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("album_genre", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("album_confidence", sa.Float(), nullable=True))
        batch_op.create_index(
            "ix_predictions_model_album_genre_confidence",
            ["model_id", "album_genre", "album_confidence", "track_id"],
            unique=False,
        )
    predictions = sa.table(
        "predictions",
        sa.column("genre", sa.String),
        sa.column("confidence", sa.Float),
        sa.column("album_genre", sa.String),
        sa.column("album_confidence", sa.Float),
    )
    op.execute(
        predictions.update().values(
            album_genre=predictions.c.genre, album_confidence=predictions.c.confidence
        )
    )
    with op.batch_alter_table("playlists", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("scope", sa.String(length=8), nullable=False, server_default="track")
        )
    op.create_table(
        "albums",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("genre", sa.String(length=64), nullable=False),
        sa.Column("confidence", sa.Float(), nullable=False),
        sa.Column("probabilities", sa.JSON(), nullable=False),
        sa.Column("tracks", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["model_id"], ["models.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("model_id", "key", name="uq_album_model_key"),
    )
    with op.batch_alter_table("albums", schema=None) as batch_op:
        batch_op.create_index("ix_albums_model_id", ["model_id"], unique=False)


def _key(path: str, artist: str | None, album: str | None) -> str:
    # db.albums.album_key as of this revision (a migration does not import the app).
    if album and album.strip():
        who = " ".join((artist or "").split()).casefold()
        return f"tag:{who}\x1f{' '.join(album.split()).casefold()}"
    return f"dir:{os.path.dirname(path)}"


def _backfill_album_keys() -> None:
    bind = op.get_bind()
    tracks = sa.table(
        "tracks",
        sa.column("id", sa.Integer),
        sa.column("path", sa.Text),
        sa.column("artist", sa.Text),
        sa.column("album", sa.Text),
        sa.column("album_key", sa.Text),
    )
    last = 0
    while True:
        rows = bind.execute(
            sa.select(tracks.c.id, tracks.c.path, tracks.c.artist, tracks.c.album)
            .where(tracks.c.id > last)
            .order_by(tracks.c.id)
            .limit(10_000)
        ).all()
        if not rows:
            return
        bind.execute(
            tracks.update()
            .where(tracks.c.id == sa.bindparam("tid"))
            .values(album_key=sa.bindparam("key")),
            [{"tid": r.id, "key": _key(r.path, r.artist, r.album)} for r in rows],
        )
        last = rows[-1].id


def downgrade() -> None:
    with op.batch_alter_table("albums", schema=None) as batch_op:
        batch_op.drop_index("ix_albums_model_id")
    op.drop_table("albums")
    with op.batch_alter_table("playlists", schema=None) as batch_op:
        batch_op.drop_column("scope")
    with op.batch_alter_table("predictions", schema=None) as batch_op:
        batch_op.drop_index("ix_predictions_model_album_genre_confidence")
        batch_op.drop_column("album_confidence")
        batch_op.drop_column("album_genre")
    with op.batch_alter_table("tracks", schema=None) as batch_op:
        batch_op.drop_index("ix_tracks_album_key")
        batch_op.drop_column("album_key")
        batch_op.drop_column("album_artist")
