"""Indexes for a fast import (issue 18): three indexes fewer to rebuild after a bulk load.

``segment_utility_idx (utility)`` is a prefix of ``segment_utility_id_idx (utility, id)``
(0007): every ``utility = X`` / ``utility = ANY(...)`` filter (network reads, shutoff,
profile, statistics) is served by the longer one. A million-segment import rebuilt both;
now it builds one.

The n-D GiST indexes of node and segment (``gist_geometry_ops_nd``, 0001) serve ``&&&`` and
``ST_3D*`` searches, and no query of PipeTwin makes one: every spatial search goes through the 2D
GiST (``&&``, ``ST_DWithin``, ``<->``) and the third dimension is judged in numpy. They have no
sorted build, so they were half the index time of a million-segment import (15.8 s of segment's
32.7 s, 18.3 s of node's 29 s: bench/RESULTS.md) for nothing.

Revision ID: 0019
Revises: 0018
Create Date: 2026-12-04
"""

from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("DROP INDEX IF EXISTS segment_utility_idx")
    op.execute("DROP INDEX IF EXISTS segment_geom_nd_idx")
    op.execute("DROP INDEX IF EXISTS node_geom_nd_idx")


def downgrade() -> None:
    op.execute("CREATE INDEX IF NOT EXISTS segment_utility_idx ON segment (utility)")
    op.execute("CREATE INDEX IF NOT EXISTS segment_geom_nd_idx ON segment USING gist (geom gist_geometry_ops_nd)")
    op.execute("CREATE INDEX IF NOT EXISTS node_geom_nd_idx ON node USING gist (geom gist_geometry_ops_nd)")
