"""Performance estimation without labels and multivariate drift: two more result kinds.

- ``estimation_scopes``: per (model, window, scope), the performance estimated from the
  model's calibrated confidence, its bands and its trust verdict.
- ``multivariate_scopes``: per (model, window, scope), the PCA reconstruction error and its
  verdict.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 07:03:37.712511
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "estimation_scopes",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("window_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("node_id", sa.Integer(), nullable=True),
        sa.Column("model_version_id", sa.Integer(), nullable=True),
        sa.Column("n_reference", sa.Integer(), nullable=True),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revision", sa.Integer(), server_default="1", nullable=False),
        sa.Column("n_late", sa.Integer(), server_default="0", nullable=False),
        sa.Column("span_start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reference", sa.String(length=160), nullable=True),
        sa.Column("scope_kind", sa.String(length=160), nullable=False),
        sa.Column("scope_key", sa.String(length=160), nullable=False),
        sa.Column("status", sa.String(length=160), nullable=False),
        sa.Column("task", sa.String(length=160), nullable=False),
        sa.Column("n_rows", sa.Integer(), nullable=False),
        sa.Column("n_scored", sa.Integer(), nullable=False),
        sa.Column("accuracy", sa.Float(), nullable=True),
        sa.Column("accuracy_lower", sa.Float(), nullable=True),
        sa.Column("accuracy_upper", sa.Float(), nullable=True),
        sa.Column("precision", sa.Float(), nullable=True),
        sa.Column("precision_lower", sa.Float(), nullable=True),
        sa.Column("precision_upper", sa.Float(), nullable=True),
        sa.Column("recall", sa.Float(), nullable=True),
        sa.Column("recall_lower", sa.Float(), nullable=True),
        sa.Column("recall_upper", sa.Float(), nullable=True),
        sa.Column("f1", sa.Float(), nullable=True),
        sa.Column("f1_lower", sa.Float(), nullable=True),
        sa.Column("f1_upper", sa.Float(), nullable=True),
        sa.Column("roc_auc", sa.Float(), nullable=True),
        sa.Column("roc_auc_lower", sa.Float(), nullable=True),
        sa.Column("roc_auc_upper", sa.Float(), nullable=True),
        sa.Column("sampling_error", sa.Float(), nullable=True),
        sa.Column("shift_allowance", sa.Float(), nullable=True),
        sa.Column("n_labelled", sa.Integer(), nullable=False),
        sa.Column("realised_accuracy", sa.Float(), nullable=True),
        sa.Column("expected_accuracy", sa.Float(), nullable=True),
        sa.Column("calibration_error", sa.Float(), nullable=True),
        sa.Column("trusted", sa.Boolean(), nullable=True),
        sa.Column("trust_evidence", sa.String(length=160), nullable=True),
        sa.Column("trust_reason", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["model_id"],
            ["models.id"],
            name=op.f("fk_estimation_scopes_model_id_models"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["model_version_id"],
            ["model_versions.id"],
            name=op.f("fk_estimation_scopes_model_version_id_model_versions"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["node_id"],
            ["nodes.id"],
            name=op.f("fk_estimation_scopes_node_id_nodes"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_estimation_scopes")),
        sa.UniqueConstraint(
            "model_id",
            "window_start",
            "scope_kind",
            "scope_key",
            name=op.f("uq_estimation_scopes_model_id_window_start_scope_kind_scope_key"),
        ),
    )
    with op.batch_alter_table("estimation_scopes", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_estimation_scopes_model_id_scope_kind_window_start"),
            ["model_id", "scope_kind", "window_start"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_estimation_scopes_node_id_window_start"),
            ["node_id", "window_start"],
            unique=False,
        )

    op.create_table(
        "multivariate_scopes",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=False),
        sa.Column("window_end", sa.DateTime(timezone=True), nullable=False),
        sa.Column("node_id", sa.Integer(), nullable=True),
        sa.Column("model_version_id", sa.Integer(), nullable=True),
        sa.Column("n_reference", sa.Integer(), nullable=True),
        sa.Column("computed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revision", sa.Integer(), server_default="1", nullable=False),
        sa.Column("n_late", sa.Integer(), server_default="0", nullable=False),
        sa.Column("span_start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reference", sa.String(length=160), nullable=True),
        sa.Column("scope_kind", sa.String(length=160), nullable=False),
        sa.Column("scope_key", sa.String(length=160), nullable=False),
        sa.Column("status", sa.String(length=160), nullable=False),
        sa.Column("n_rows", sa.Integer(), nullable=False),
        sa.Column("method", sa.String(length=160), nullable=False),
        sa.Column("n_components", sa.Integer(), nullable=False),
        sa.Column("reconstruction_error", sa.Float(), nullable=True),
        sa.Column("reference_error", sa.Float(), nullable=True),
        sa.Column("sampling_error", sa.Float(), nullable=True),
        sa.Column("lower_threshold", sa.Float(), nullable=True),
        sa.Column("upper_threshold", sa.Float(), nullable=True),
        sa.Column("p_value", sa.Float(), nullable=True),
        sa.Column("adjusted_p_value", sa.Float(), nullable=True),
        sa.Column("drifted", sa.Boolean(), nullable=True),
        sa.Column("nannyml_drifted", sa.Boolean(), nullable=True),
        sa.ForeignKeyConstraint(
            ["model_id"],
            ["models.id"],
            name=op.f("fk_multivariate_scopes_model_id_models"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["model_version_id"],
            ["model_versions.id"],
            name=op.f("fk_multivariate_scopes_model_version_id_model_versions"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["node_id"],
            ["nodes.id"],
            name=op.f("fk_multivariate_scopes_node_id_nodes"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_multivariate_scopes")),
        sa.UniqueConstraint(
            "model_id",
            "window_start",
            "scope_kind",
            "scope_key",
            name=op.f("uq_multivariate_scopes_model_id_window_start_scope_kind_scope_key"),
        ),
    )
    with op.batch_alter_table("multivariate_scopes", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_multivariate_scopes_model_id_scope_kind_window_start"),
            ["model_id", "scope_kind", "window_start"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_multivariate_scopes_node_id_window_start"),
            ["node_id", "window_start"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("multivariate_scopes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_multivariate_scopes_node_id_window_start"))
        batch_op.drop_index(batch_op.f("ix_multivariate_scopes_model_id_scope_kind_window_start"))

    op.drop_table("multivariate_scopes")
    with op.batch_alter_table("estimation_scopes", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_estimation_scopes_node_id_window_start"))
        batch_op.drop_index(batch_op.f("ix_estimation_scopes_model_id_scope_kind_window_start"))

    op.drop_table("estimation_scopes")
