"""The findings store's writes (issue 18): one index on ``finding``, and room on its pages.

A stored whole-network scan writes a quarter of a million findings at 1M segments, and the
re-scan after it moves every one from ``new`` to ``active``. Each row written went into three
indexes; two of them no query reads:

- ``finding_pair_idx (utility_pair)``: the utility-pair filter compares ``a_utility`` and
  ``b_utility``, never ``utility_pair``;
- ``finding_status_idx (status, verdict)``: a listing's status filter keeps most of the table
  (open findings) and its order is computed, so PostgreSQL reads the table anyway; a status
  filter on a rare status reads the table too now (a few ten milliseconds at 1M segments).

With only the key indexed, a scan's status and content updates change no indexed column, and
with half of each page free (``fillfactor = 50``) the new row version goes on the same page: a
heap-only (HOT) update, no index entry at all. The re-scan's status flip was the store's largest
write (bench/RESULTS.md).

Revision ID: 0020
Revises: 0019
Create Date: 2026-12-04
"""

from alembic import op

revision = "0020"
down_revision = "0019"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("DROP INDEX IF EXISTS finding_pair_idx")
    op.execute("DROP INDEX IF EXISTS finding_status_idx")
    op.execute("ALTER TABLE finding SET (fillfactor = 50)")


def downgrade() -> None:
    op.execute("ALTER TABLE finding RESET (fillfactor)")
    op.execute("CREATE INDEX IF NOT EXISTS finding_status_idx ON finding (status, verdict)")
    op.execute("CREATE INDEX IF NOT EXISTS finding_pair_idx ON finding (utility_pair)")
