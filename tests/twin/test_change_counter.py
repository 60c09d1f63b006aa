"""The change counter (migration 0007) moves with every write, when the write commits."""

from __future__ import annotations

import sqlalchemy as sa

from analysis.segments import network_fingerprint
from ingest.pipeline import ingest_survey
from tests.conftest import SMALL


def test_counter_moves_on_commit_only(twin_settings, twin_engine: sa.Engine) -> None:
    with twin_engine.connect() as reader:
        start = network_fingerprint(reader)
        reader.rollback()
        assert ingest_survey(SMALL / "points.csv", SMALL / "segments.csv", twin_settings).status == "applied"
        after_import = network_fingerprint(reader)
        reader.rollback()
        assert after_import != start
        with twin_engine.connect() as writer:
            writer.execute(sa.text("UPDATE segment SET road = 'changed' WHERE id = (SELECT min(id) FROM segment)"))
            # Not committed: readers still see the old network and the old count.
            assert network_fingerprint(reader) == after_import
            reader.rollback()
            writer.commit()
        moved = network_fingerprint(reader)
        assert int(moved) == int(after_import) + 1
        reader.rollback()
        with twin_engine.begin() as writer:
            writer.execute(sa.text("DELETE FROM customer WHERE id = (SELECT min(id) FROM customer)"))
        assert int(network_fingerprint(reader)) == int(moved) + 1
