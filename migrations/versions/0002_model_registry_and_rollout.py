"""Model registry and rollout: version artifacts, cards, reference data and stages;
deployments with canary and group pins; the rollout history.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 11:45:15.271794
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "deployment_pins",
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("group_name", sa.String(length=128), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_id"],
            ["models.id"],
            name=op.f("fk_deployment_pins_model_id_models"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["model_versions.id"],
            name=op.f("fk_deployment_pins_version_id_model_versions"),
        ),
        sa.PrimaryKeyConstraint("model_id", "group_name", name=op.f("pk_deployment_pins")),
    )
    op.create_table(
        "deployments",
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("production_version_id", sa.Integer(), nullable=True),
        sa.Column("previous_version_id", sa.Integer(), nullable=True),
        sa.Column("canary_version_id", sa.Integer(), nullable=True),
        sa.Column("canary_share", sa.Float(), server_default="0", nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "canary_share >= 0 AND canary_share <= 1", name=op.f("ck_deployments_canary_share")
        ),
        sa.ForeignKeyConstraint(
            ["canary_version_id"],
            ["model_versions.id"],
            name=op.f("fk_deployments_canary_version_id_model_versions"),
        ),
        sa.ForeignKeyConstraint(
            ["model_id"],
            ["models.id"],
            name=op.f("fk_deployments_model_id_models"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["previous_version_id"],
            ["model_versions.id"],
            name=op.f("fk_deployments_previous_version_id_model_versions"),
        ),
        sa.ForeignKeyConstraint(
            ["production_version_id"],
            ["model_versions.id"],
            name=op.f("fk_deployments_production_version_id_model_versions"),
        ),
        sa.PrimaryKeyConstraint("model_id", name=op.f("pk_deployments")),
    )
    op.create_table(
        "rollout_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("version_id", sa.Integer(), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_id"],
            ["models.id"],
            name=op.f("fk_rollout_events_model_id_models"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["version_id"],
            ["model_versions.id"],
            name=op.f("fk_rollout_events_version_id_model_versions"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rollout_events")),
    )
    with op.batch_alter_table("rollout_events", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_rollout_events_model_id_at"), ["model_id", "at"], unique=False
        )

    with op.batch_alter_table("model_versions", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("stage", sa.String(length=16), server_default="candidate", nullable=False)
        )
        batch_op.add_column(sa.Column("artifact", sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column("sha256", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("size", sa.BigInteger(), nullable=True))
        batch_op.add_column(sa.Column("card", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("reference", sa.LargeBinary(), nullable=True))
        batch_op.add_column(sa.Column("reference_rows", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("metrics", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("registered_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("promoted_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_check_constraint(
            op.f("ck_model_versions_stage"), "stage IN ('candidate', 'production', 'archived')"
        )


def downgrade() -> None:
    with op.batch_alter_table("model_versions", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_model_versions_stage"), type_="check")
        batch_op.drop_column("promoted_at")
        batch_op.drop_column("registered_at")
        batch_op.drop_column("metrics")
        batch_op.drop_column("reference_rows")
        batch_op.drop_column("reference")
        batch_op.drop_column("card")
        batch_op.drop_column("size")
        batch_op.drop_column("sha256")
        batch_op.drop_column("artifact")
        batch_op.drop_column("stage")

    with op.batch_alter_table("rollout_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_rollout_events_model_id_at"))

    op.drop_table("rollout_events")
    op.drop_table("deployments")
    op.drop_table("deployment_pins")
