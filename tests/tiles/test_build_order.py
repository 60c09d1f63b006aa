"""A tileset does not depend on the order in which PostgreSQL returns the rows.

A large table is scanned in parallel, and a parallel scan (or a parallel float average) gives
its rows in another order each time: at 1M segments the Dask build, reading the network again,
wrote contents that differed from the local build's. Here the same network is read back in
another physical order (CLUSTER rewrites the tables in the order of a hash: the same rows, the
same versions, no trigger) and the full build must write the same bytes.
"""

from __future__ import annotations

import json

import sqlalchemy as sa

from ingest.pipeline import ingest_survey
from tests.conftest import write_survey
from tiles.build import build_tileset
from twin.db import make_engine

E0, N0 = 410000.0, 4035000.0


def _survey() -> tuple[list[tuple], list[tuple]]:
    """A 6 x 6 grid of water mains, 20 m apart, each crossing with a service entry beside it."""
    points, segments = [], []
    for i in range(6):
        for j in range(6):
            ground = 35.0 + 0.137 * i + 0.071 * j
            points.append((f"J{i}{j}", "JS", "三通", E0 + 20 * i, N0 + 20 * j, ground, 1.1 + 0.03 * j))
            points.append((f"S{i}{j}", "JS", "进楼", E0 + 20 * i + 4, N0 + 20 * j + 3, ground + 0.05, 0.9))
            segments.append((f"J{i}{j}", f"S{i}{j}", "JS", "DN25"))
            if i:
                segments.append((f"J{i - 1}{j}", f"J{i}{j}", "JS", "DN200"))
            if j:
                segments.append((f"J{i}{j - 1}", f"J{i}{j}", "JS", "DN150"))
    return points, segments


def _contents(folder) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted((folder / "t").rglob("*.glb"))}


def _heap_order(engine: sa.Engine) -> list[str]:
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT id FROM segment")).scalars().all()


def test_the_tiles_do_not_depend_on_the_order_rows_are_read(twin_settings, twin_engine, tmp_path):
    write_survey(tmp_path, *_survey())
    report = ingest_survey(tmp_path / "points.csv", tmp_path / "segments.csv", twin_settings)
    assert report.status == "applied", report.as_dict()["errors"]
    first = build_tileset(twin_settings, out_dir=tmp_path / "first", full=True)
    assert first["segments"] == 96 and first["nodes"] == 36

    before = _heap_order(twin_engine)
    admin = make_engine(twin_settings, admin=True)  # the tables' owner
    try:
        with admin.begin() as conn:
            for table in ("segment", "node"):
                conn.execute(sa.text(f"CREATE INDEX reorder_{table} ON {table} (md5(id))"))
                conn.execute(sa.text(f"CLUSTER {table} USING reorder_{table}"))
                conn.execute(sa.text(f"DROP INDEX reorder_{table}"))
    finally:
        admin.dispose()
    assert sorted(_heap_order(twin_engine)) == sorted(before) and _heap_order(twin_engine) != before

    again = build_tileset(twin_settings, out_dir=tmp_path / "again", full=True)
    ours, theirs = _contents(tmp_path / "again"), _contents(tmp_path / "first")
    assert ours.keys() == theirs.keys() and len(ours) == again["tiles"] == first["tiles"]
    assert [k for k in ours if ours[k] != theirs[k]] == []
    assert (json.loads((tmp_path / "again" / "tileset.json").read_text())["root"]
            == json.loads((tmp_path / "first" / "tileset.json").read_text())["root"])
