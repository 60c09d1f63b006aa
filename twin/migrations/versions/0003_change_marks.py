"""Indexes that tell cheaply when the network last changed (valid_from, valid_to).

Analyses that hold the network in memory (the shutoff model) ask for the latest change of
each feature table before answering; with these indexes that is a few index probes instead
of a scan of a million rows.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-21
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

FEATURES = ("node", "segment", "valve", "source", "customer")


def upgrade() -> None:
    for t in FEATURES:
        op.execute(f"CREATE INDEX {t}_valid_from_idx ON {t} (valid_from)")
        op.execute(f"CREATE INDEX {t}_history_valid_to_idx ON {t}_history (valid_to)")


def downgrade() -> None:
    for t in FEATURES:
        op.execute(f"DROP INDEX {t}_valid_from_idx")
        op.execute(f"DROP INDEX {t}_history_valid_to_idx")
