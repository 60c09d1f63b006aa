"""The demo district, as `make demo` loads it, lands whole in PostGIS with no error or warning."""

from __future__ import annotations

import sqlalchemy as sa

from ingest.pipeline import ingest_survey
from ingest.sample import generate_district


def test_demo_district_ingests_cleanly(twin_settings, twin_engine, tmp_path):
    summary = generate_district(tmp_path, scale=1, seed=0)
    report = ingest_survey(tmp_path / "points.csv", tmp_path / "segments.csv", twin_settings)
    assert report.status == "applied", report.as_dict()["errors"][:5]
    assert report.error_count == 0 and report.warning_count == 0
    with twin_engine.connect() as conn:
        segments = conn.execute(sa.text("SELECT count(*) FROM current_segment")).scalar()
        utilities = set(conn.execute(sa.text("SELECT DISTINCT utility FROM segment")).scalars())
        subtypes = set(conn.execute(sa.text("SELECT DISTINCT subtype FROM segment")).scalars())
        valves = conn.execute(sa.text("SELECT count(*), count(*) FILTER (WHERE NOT operable), "
                                      "count(*) FILTER (WHERE normally_closed) FROM valve")).one()
        sources = dict(conn.execute(sa.text("SELECT utility, count(*) FROM source GROUP BY utility")).all())
        critical = conn.execute(sa.text("SELECT count(*) FROM customer WHERE critical")).scalar()
        rect = conn.execute(sa.text("SELECT count(*) FROM segment WHERE shape = 'rect'")).scalar()
        # Drainage centrelines sit above their invert; every pipe top is below the ground at its ends.
        above = conn.execute(sa.text(
            "SELECT count(*) FROM segment s JOIN node a ON a.id = s.from_node "
            "WHERE s.from_z + coalesce(s.diameter_mm, s.height_mm) / 2000 > a.ground_z + 1e-6")).scalar()
    assert segments == summary["segments_total"]
    assert utilities == {"JS", "PS", "RQ", "RL", "DL", "TX"} and {"YS", "WS"} <= subtypes
    assert valves[0] == summary["valves"] and valves[1] > 0 and valves[2] > 0
    assert set(sources) == {"JS", "RQ", "RL"}
    assert critical > 0 and rect > 0 and above == 0
