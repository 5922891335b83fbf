"""Your own model and data: window policies, per-scope baselines, version schemas, clock skew,
result revisions and pooled spans, row-count windows.

- ``models.window_policy`` and ``models.baseline``: how a model's records are cut into windows,
  and what its nodes are judged against (NULL: the settings' window, the version's reference).
- ``model_versions.schema``: the version's data schema (features and kinds, prediction,
  probabilities, label, task), from its card or inferred from a reference-only registration.
- ``nodes.clock_skew_seconds`` / ``clock_skew_at``: the last implausible record time a node sent.
- Each result scope table: ``revision`` (1, then one more per re-analysis), ``n_late`` (rows that
  arrived after the previous revision), ``span_start`` (a small scope judged on pooled windows)
  and ``reference`` (what the scope was judged against). Existing rows are revision 1.
- ``row_windows``: the cut windows of models whose policy counts rows.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30 23:05:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)
_SCOPE_TABLES = ("drift_scopes", "quality_scopes", "performance_scopes")


def upgrade() -> None:
    with op.batch_alter_table("models", schema=None) as batch_op:
        batch_op.add_column(sa.Column("window_policy", sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column("baseline", sa.JSON(), nullable=True))
    with op.batch_alter_table("model_versions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("schema", sa.JSON(), nullable=True))
    with op.batch_alter_table("nodes", schema=None) as batch_op:
        batch_op.add_column(sa.Column("clock_skew_seconds", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("clock_skew_at", _TS, nullable=True))
    for table in _SCOPE_TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(
                sa.Column("revision", sa.Integer(), server_default="1", nullable=False)
            )
            batch_op.add_column(
                sa.Column("n_late", sa.Integer(), server_default="0", nullable=False)
            )
            batch_op.add_column(sa.Column("span_start", _TS, nullable=True))
            batch_op.add_column(sa.Column("reference", sa.String(length=160), nullable=True))
    op.create_table(
        "row_windows",
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("window_start", _TS, nullable=False),
        sa.Column("window_end", _TS, nullable=False),
        sa.Column("n_rows", sa.Integer(), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["model_id"],
            ["models.id"],
            name=op.f("fk_row_windows_model_id_models"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("model_id", "window_start", name=op.f("pk_row_windows")),
    )


def downgrade() -> None:
    op.drop_table("row_windows")
    for table in _SCOPE_TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("reference")
            batch_op.drop_column("span_start")
            batch_op.drop_column("n_late")
            batch_op.drop_column("revision")
    with op.batch_alter_table("nodes", schema=None) as batch_op:
        batch_op.drop_column("clock_skew_at")
        batch_op.drop_column("clock_skew_seconds")
    with op.batch_alter_table("model_versions", schema=None) as batch_op:
        batch_op.drop_column("schema")
    with op.batch_alter_table("models", schema=None) as batch_op:
        batch_op.drop_column("baseline")
        batch_op.drop_column("window_policy")
