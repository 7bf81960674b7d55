"""run owners, why a batch stopped, damaged shards

A batch run in embedded mode records its owner (host, pid and the lock file its process
holds), so that the next start can tell a run that died (kill -9, a crash, a power cut) from
one still going, and mark it ``interrupted``; ``stop_reason`` says why a batch stopped early
(no space left, Ctrl-C, its process died). ``shards.damaged`` holds why a shard failed its
checksum, until ``genrectl verify --repair`` rebuilds it.

Revision ID: 5f0c2a7e91b3
Revises: dad86364f60e
Create Date: 2026-12-03 08:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "5f0c2a7e91b3"
down_revision = "dad86364f60e"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("batches", schema=None) as batch_op:
        batch_op.add_column(sa.Column("owner", sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column("stop_reason", sa.Text(), nullable=True))

    with op.batch_alter_table("shards", schema=None) as batch_op:
        batch_op.add_column(sa.Column("damaged", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("shards", schema=None) as batch_op:
        batch_op.drop_column("damaged")

    with op.batch_alter_table("batches", schema=None) as batch_op:
        batch_op.drop_column("stop_reason")
        batch_op.drop_column("owner")
