"""The shutoff model on disk (analysis.model_store): what is loaded is what was built, a change
of the twin files a new state, a folder that cannot be read is rebuilt, and processes that
start together build the model once."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

import analysis.shutoff as shutoff_module
from analysis.model_store import ModelStore
from analysis.shutoff import cached_model, isolate
from ingest.pipeline import ingest_survey
from ingest.sample import generate_district
from twin.db import open_twin

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def stored(twin_settings, tmp_path_factory):
    """The demo district in a twin whose models are kept in a folder of this module's."""
    settings = twin_settings.model_copy(update={"model_dir": tmp_path_factory.mktemp("models")})
    out = tmp_path_factory.mktemp("district")
    generate_district(out, scale=1, seed=0)
    assert ingest_survey(out / "points.csv", out / "segments.csv", settings).status == "applied"
    engine = open_twin(settings)
    yield settings, engine
    engine.dispose()


@pytest.fixture
def fresh(monkeypatch):
    """No model in this process's memory: the next one comes from the store or is built."""
    monkeypatch.setattr(shutoff_module, "_cache", {})


def _folders(settings) -> list[Path]:
    return sorted(p for p in Path(settings.model_dir).iterdir() if p.is_dir() and not p.name.startswith("."))


def _answers(model, pipes) -> list[dict]:
    return [dataclasses.asdict(isolate(model, pipe=p)) for p in pipes]


def test_the_stored_model_is_the_built_one(stored, fresh):
    settings, engine = stored
    built = cached_model(engine)
    assert {"read_s", "segment_s", "store_s"} <= set(built.timings)
    (folder,) = _folders(settings)
    assert folder.stat().st_mode & 0o077 == 0  # confidential: no other account reads it
    shutoff_module._cache.clear()
    loaded = cached_model(engine)
    assert loaded is not built and set(loaded.timings) == {"load_s"}
    assert loaded.fingerprint == built.fingerprint
    assert (loaded.n_segments, loaded.n_units) == (built.n_segments, built.n_units)
    for name in ("links", "nodes", "valves", "sources", "customers"):
        pd.testing.assert_frame_equal(getattr(loaded, name), getattr(built, name))
    for name in ("link_from", "link_to", "valve_link", "valve_node", "node_seg", "link_seg", "node_unit",
                 "link_unit", "unit_seg", "source_units", "node_distance_m", "supplied", "tree_pre"):
        np.testing.assert_array_equal(getattr(loaded, name), getattr(built, name))
    pipes = built.valves["segment_id"].drop_duplicates().head(40).tolist()
    assert len(pipes) >= 20
    assert _answers(loaded, pipes) == _answers(built, pipes)


def test_a_change_files_a_new_state_and_drops_the_old(stored, fresh):
    settings, engine = stored
    before = cached_model(engine)
    (old,) = _folders(settings)
    with engine.connect() as conn:
        valve, pipe = conn.execute(sa.text("SELECT id, segment_id FROM current_valve WHERE utility = 'JS' "
                                           "AND operable ORDER BY id LIMIT 1")).one()
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE valve SET operable = false WHERE id = :v"), {"v": valve})
    try:
        after = cached_model(engine)
        assert after.fingerprint != before.fingerprint and "read_s" in after.timings
        (new,) = _folders(settings)  # the old state is gone
        assert new != old and new.name.split("-")[0] == old.name.split("-")[0]
        assert valve in {f["id"] for f in isolate(after, pipe=pipe).failed_valves}
        shutoff_module._cache.clear()
        again = cached_model(engine)  # the changed twin, from the store
        assert set(again.timings) == {"load_s"}
        assert not again.valves.loc[again.valves["id"] == valve, "operable"].any()
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE valve SET operable = true WHERE id = :v"), {"v": valve})


def test_a_folder_that_cannot_be_read_is_rebuilt(stored, fresh, caplog):
    settings, engine = stored
    cached_model(engine)
    (folder,) = _folders(settings)
    (folder / "links.arrow").write_bytes(b"not an arrow file")
    shutoff_module._cache.clear()
    rebuilt = cached_model(engine)
    assert "read_s" in rebuilt.timings
    assert "not read" in caplog.text
    store = ModelStore(Path(settings.model_dir))
    with engine.connect() as conn:
        name = store.name(conn, shutoff_module._COVERS)
    assert name == folder.name
    assert store.load(name) is not None  # replaced by a good one


def test_processes_started_together_build_the_model_once(stored):
    """Two commands start while a third process holds the builder's lock: when it lets go, one
    builds the model and the other loads it (without the lock both would build)."""
    settings, engine = stored
    for folder in _folders(settings):
        for f in folder.iterdir():
            f.unlink()
        folder.rmdir()
    store = ModelStore(Path(settings.model_dir))
    with engine.connect() as conn:
        name = store.name(conn, shutoff_module._COVERS)
    env = {**os.environ, "TWIN_DB_SCHEMA": settings.db_schema, "TWIN_MODEL_DIR": str(settings.model_dir)}
    code = ("import json; from twin.settings import get_settings; from twin.db import open_twin; "
            "from analysis.shutoff import cached_model; "
            "print(json.dumps(sorted(cached_model(open_twin(get_settings())).timings)))")
    with store.building(name):
        procs = [subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(2)]
        time.sleep(6)  # both reach the lock (imports, the twin's state) while it is held
    results = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err[-2000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert sorted("read_s" in r for r in results) == [False, True], results
    assert ["load_s"] in results
    assert [f.name for f in _folders(settings)] == [name]


def test_a_builder_that_hangs_does_not_keep_others_waiting(tmp_path, caplog):
    """A process stuck while it builds (a command stopped with ^Z) holds the lock: another one
    builds too after ``wait_s`` instead of waiting for ever."""
    store = ModelStore(tmp_path, wait_s=0.4)
    with ModelStore(tmp_path).building("abc-1"):  # a second open file: the lock is really contended
        t0 = time.monotonic()
        with store.building("abc-1"):
            waited = time.monotonic() - t0
    assert 0.4 <= waited < 5
    assert "building it here too" in caplog.text
    t0 = time.monotonic()
    with store.building("abc-1"):  # free again: taken at once
        assert time.monotonic() - t0 < 0.3
