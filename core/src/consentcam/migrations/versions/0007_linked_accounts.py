"""linked accounts: an owner's account at a camera vendor's cloud, only its encrypted refresh secret

Revision ID: 0007
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

from consentcam.db.types import UTCDateTime

revision = "0007"
down_revision = "0004"  # a branch beside 0005 and 0006; `consentcam db upgrade` targets "heads"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "linked_accounts",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("owner_id", sa.String(length=36), nullable=False),
        sa.Column("provider", sa.String(length=40), nullable=False),
        sa.Column("secret", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["owner_id"], ["users.id"], name=op.f("fk_linked_accounts_owner_id_users"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_linked_accounts")),
        sa.UniqueConstraint("owner_id", "provider", name="uq_linked_accounts_owner_provider"),
    )
    with op.batch_alter_table("linked_accounts", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_linked_accounts_owner_id"), ["owner_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("linked_accounts", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_linked_accounts_owner_id"))
    op.drop_table("linked_accounts")
