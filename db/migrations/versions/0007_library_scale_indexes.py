"""indexes for a library of a million tracks

``predictions(model_id, genre, confidence, track_id)``: a genre of the promoted model, above
a confidence, is one range of this index, and it holds the track id, so that a playlist's
rule or a count of a genre reads only the matching entries (the index on genre alone
spans every model's predictions, and each entry cost a read of the row).

Revision ID: 97e1fb93f9d0
Revises: b31674a81d3d
Create Date: 2026-12-03 10:45:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "97e1fb93f9d0"
down_revision = "b31674a81d3d"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("predictions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_predictions_model_genre_confidence",
            ["model_id", "genre", "confidence", "track_id"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("predictions", schema=None) as batch_op:
        batch_op.drop_index("ix_predictions_model_genre_confidence")
