"""pipeline stages, training jobs and leases

A batch names the model that labels its tracks (its jobs gain a ``label`` stage); training
runs on the cluster are rows that reconcile can send again; leases give one worker at a time
the periodic reconcile and gc. Batches from before have no model: they end when featurized.

Revision ID: b31674a81d3d
Revises: 5f0c2a7e91b3
Create Date: 2026-12-03 07:03:32.418300
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "b31674a81d3d"
down_revision = "5f0c2a7e91b3"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "leases",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("holder", sa.String(length=255), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ran_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("report", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("name"),
    )
    op.create_table(
        "train_jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("worker", sa.String(length=255), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("progress", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["model_id"], ["models.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    with op.batch_alter_table("train_jobs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_train_jobs_status"), ["status"], unique=False)

    with op.batch_alter_table("batches", schema=None) as batch_op:
        batch_op.add_column(sa.Column("model_id", sa.Integer(), nullable=True))
        batch_op.create_index(batch_op.f("ix_batches_model_id"), ["model_id"], unique=False)
        batch_op.create_foreign_key(
            "fk_batches_model_id", "models", ["model_id"], ["id"], ondelete="SET NULL"
        )


def downgrade() -> None:
    with op.batch_alter_table("batches", schema=None) as batch_op:
        batch_op.drop_constraint("fk_batches_model_id", type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_batches_model_id"))
        batch_op.drop_column("model_id")

    with op.batch_alter_table("train_jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_train_jobs_status"))

    op.drop_table("train_jobs")
    op.drop_table("leases")
