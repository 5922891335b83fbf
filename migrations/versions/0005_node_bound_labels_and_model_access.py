"""Labels bound to the node whose record they label; back-office labeller tokens; the models a
node is registered for.

- ``labels.node_id`` was who sent a label (NULL: the admin token) and labels were unique per
  (model, request id), so any node could overwrite any other node's label. It is now the node
  whose record the label names, part of the unique key, with 0 for a back-office label that
  applies to any node's record. Labels a node sent stay bound to that node; the admin's
  become back-office labels.
- ``nodes.role``: "node" (every existing node) or "labeller".
- ``node_models``: which models' assignments and artifacts a node may read. Every node is
  registered for the models it has already sent records for, so a fleet keeps updating.

Downgrading keeps one label per (model, request id), the latest received, as the old schema
can hold no more; labeller tokens become ordinary node tokens.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30 18:50:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("nodes", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("role", sa.String(length=16), server_default="node", nullable=False)
        )
        batch_op.create_check_constraint(op.f("ck_nodes_role"), "role IN ('node', 'labeller')")

    op.create_table(
        "node_models",
        sa.Column("node_id", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.ForeignKeyConstraint(
            ["node_id"], ["nodes.id"], name=op.f("fk_node_models_node_id_nodes"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["model_id"],
            ["models.id"],
            name=op.f("fk_node_models_model_id_models"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("node_id", "model_id", name=op.f("pk_node_models")),
    )
    op.get_bind().execute(
        sa.text(
            "INSERT INTO node_models (node_id, model_id, created_at) "
            "SELECT DISTINCT node_id, model_id, :now FROM batches"
        ).bindparams(sa.bindparam("now", type_=_TS)),
        {"now": datetime.now(UTC)},
    )

    with op.batch_alter_table("labels", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("fk_labels_node_id_nodes"), type_="foreignkey")
        batch_op.drop_constraint(op.f("uq_labels_model_id_request_id"), type_="unique")
    op.execute("UPDATE labels SET node_id = 0 WHERE node_id IS NULL")
    with op.batch_alter_table("labels", schema=None) as batch_op:
        batch_op.alter_column(
            "node_id", existing_type=sa.Integer(), nullable=False, server_default="0"
        )
        batch_op.create_unique_constraint(
            op.f("uq_labels_model_id_request_id_node_id"), ["model_id", "request_id", "node_id"]
        )


def downgrade() -> None:
    op.execute(
        "DELETE FROM labels WHERE id NOT IN "
        "(SELECT max(id) FROM labels GROUP BY model_id, request_id)"
    )
    with op.batch_alter_table("labels", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("uq_labels_model_id_request_id_node_id"), type_="unique")
        batch_op.alter_column(
            "node_id", existing_type=sa.Integer(), nullable=True, server_default=None
        )
    op.execute("UPDATE labels SET node_id = NULL WHERE node_id = 0")
    with op.batch_alter_table("labels", schema=None) as batch_op:
        batch_op.create_unique_constraint(
            op.f("uq_labels_model_id_request_id"), ["model_id", "request_id"]
        )
        batch_op.create_foreign_key(
            op.f("fk_labels_node_id_nodes"), "nodes", ["node_id"], ["id"], ondelete="SET NULL"
        )

    op.drop_table("node_models")
    with op.batch_alter_table("nodes", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_nodes_role"), type_="check")
        batch_op.drop_column("role")
