"""labels: what analysers saw in a clip, stored beside the evidence with the model's hash

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

from consentcam.db.types import UTCDateTime

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql")


def upgrade() -> None:
    op.create_table(
        "evidence_labels",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("evidence_id", sa.String(length=36), nullable=False),
        sa.Column("label", sa.String(length=100), nullable=False),
        sa.Column("start_s", sa.Float(), nullable=False),
        sa.Column("end_s", sa.Float(), nullable=False),
        sa.Column("start_at", UTCDateTime(), nullable=True),
        sa.Column("end_at", UTCDateTime(), nullable=True),
        sa.Column("box", JSON, nullable=True),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("colour", sa.String(length=30), nullable=True),
        sa.Column("attributes", JSON, nullable=False),
        sa.Column("analyser", sa.String(length=100), nullable=False),
        sa.Column("model_name", sa.String(length=200), nullable=False),
        sa.Column("model_sha256", sa.String(length=64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["evidence_id"], ["evidence.id"], name=op.f("fk_evidence_labels_evidence_id_evidence")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_evidence_labels")),
    )
    with op.batch_alter_table("evidence_labels", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_evidence_labels_evidence_id"), ["evidence_id"], unique=False)
        batch_op.create_index("ix_evidence_labels_label_start", ["label", "start_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("evidence_labels", schema=None) as batch_op:
        batch_op.drop_index("ix_evidence_labels_label_start")
        batch_op.drop_index(batch_op.f("ix_evidence_labels_evidence_id"))
    op.drop_table("evidence_labels")
