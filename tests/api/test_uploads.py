"""Survey uploads as import jobs and as-built batches, through the in-process client.

One empty twin of this module's own; each test measures the change it makes, so the tests
do not depend on their order.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator

import httpx
import pandas as pd
import pytest
import shapely
import sqlalchemy as sa
from pyogrio.raw import write

from tests.api.conftest import Api, make_twin, open_api, wait_job
from tests.conftest import SMALL, drop_schema
from twin.db import make_engine
from twin.settings import TwinSettings

FEATURES = ("node", "segment", "valve", "source", "customer")
LIMIT_MB = 0.1  # this module's upload limit: the small survey and a small GeoPackage fit, 120 kB not


@pytest.fixture(scope="module")
def twin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TwinSettings]:
    settings = make_twin("test_api_uploads", tmp_path_factory.mktemp("uploads"), data="empty")
    yield settings.model_copy(update={"max_upload_mb": LIMIT_MB})
    drop_schema(settings)


@pytest.fixture(scope="module")
def api(twin: TwinSettings) -> Iterator[Api]:
    yield from open_api(twin)


@pytest.fixture(scope="module")
def engine(twin: TwinSettings) -> Iterator[sa.Engine]:
    engine = make_engine(twin)
    yield engine
    engine.dispose()


# ----------------------------------------------------------------------------- helpers
def small_tables(prefix: str = "", shift_m: float = 0.0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The small survey with its point ids prefixed and moved north by ``shift_m``."""
    p = pd.read_csv(SMALL / "points.csv", dtype=str, keep_default_na=False)
    s = pd.read_csv(SMALL / "segments.csv", dtype=str, keep_default_na=False)
    p["物探点号"] = prefix + p["物探点号"]
    p["X"] = (p["X"].astype(float) + shift_m).map("{:.2f}".format)
    s["起点号"] = prefix + s["起点号"]
    s["终点号"] = prefix + s["终点号"]
    return p, s


def csv_bytes(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode("utf-8")


def xlsx_bytes(frame: pd.DataFrame) -> bytes:
    buf = io.BytesIO()
    frame.to_excel(buf, index=False)
    return buf.getvalue()


def upload(
    points: bytes, segments: bytes, names: tuple[str, str] = ("points.csv", "segments.csv")
) -> dict:
    return {
        "points": (names[0], points, "application/octet-stream"),
        "segments": (names[1], segments, "application/octet-stream"),
    }


def small_upload() -> dict:
    return upload((SMALL / "points.csv").read_bytes(), (SMALL / "segments.csv").read_bytes())



def result_of(api: Api, job_id: str, role: str = "editor") -> dict:
    job = wait_job(api, job_id, role)
    assert job["status"] == "successful", job
    r = api.get(f"/jobs/{job_id}/results", role)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    result = r.json()
    if result.get("tile_refresh_job"):  # let the refresh end before the app does
        assert wait_job(api, result["tile_refresh_job"], role)["processID"] == "tiles"
    return result


def import_report(api: Api, files: dict, **form: str) -> dict:
    """Import ``files`` as the editor (``form``: the options) and wait for the job's report."""
    r = api.post("/imports", "editor", files=files, data=form)
    assert r.status_code == 201, r.text
    return result_of(api, r.json()["jobID"])


def live_counts(engine: sa.Engine) -> dict[str, int]:
    sql = ", ".join(f"(SELECT count(*) FROM current_{t}) AS {t}" for t in FEATURES)
    with engine.connect() as conn:
        counts = dict(conn.execute(sa.text(f"SELECT {sql}")).mappings().one())
        counts["applied"] = conn.execute(
            sa.text("SELECT count(*) FROM batch WHERE status = 'applied'")
        ).scalar()
    return counts


def audit_entries(api: Api, action: str, feature: str) -> list[dict]:
    r = api.get("/admin/audit", "admin", params={"action": action, "feature": feature})
    assert r.status_code == 200, r.text
    return r.json()["entries"]


# ----------------------------------------------------------------------------- imports
def test_import_small_survey(api: Api, engine: sa.Engine) -> None:
    before = live_counts(engine)
    r = api.post("/imports", "editor", files=small_upload(), data={"scope": "small"})
    assert r.status_code == 201, r.text
    job = r.json()
    assert r.headers["location"].endswith(f"/jobs/{job['jobID']}")
    assert job["processID"] == "import" and job["owner"] == "editor"
    assert job["status"] in ("accepted", "running", "successful")
    assert [f["name"] for f in job["params"]["files"]] == ["points.csv", "segments.csv"]

    done = wait_job(api, job["jobID"], "editor")
    assert done["status"] == "successful" and done["progress"] == 100
    report = result_of(api, job["jobID"])
    assert report["status"] == "applied" and report["error_count"] == 0
    batch = report["batch_id"]
    changes = report["counts"]["changes"]
    with engine.connect() as conn:
        for t in FEATURES:
            in_batch = conn.execute(
                sa.text(f"SELECT count(*) FROM {t} WHERE batch_id = :b"), {"b": batch}
            ).scalar()
            assert changes[t]["added"] == in_batch, t
        created_by = conn.execute(
            sa.text("SELECT created_by FROM batch WHERE id = :b"), {"b": batch}
        ).scalar()
    assert created_by == "editor"
    after = live_counts(engine)
    assert {t: after[t] - before[t] for t in FEATURES} == {t: changes[t]["added"] for t in FEATURES}
    assert changes["node"]["added"] == 11 and changes["segment"]["added"] == 8

    # The batch, its report, the list, the summary and the audit entry.
    one = api.get(f"/imports/{batch}")
    assert one.status_code == 200
    assert one.json()["status"] == "applied" and one.json()["report"]["batch_id"] == batch
    listed = api.get("/imports", params={"status": "applied"}).json()
    assert batch in [b["id"] for b in listed["imports"]]
    summary = api.get("/network/summary").json()
    assert set(summary) == {
        "segments", "length_m", "nodes", "valves", "sources", "customers", "latest_batch", "as_of"
    }
    assert summary["segments"] == after["segment"] and summary["nodes"] == after["node"]
    assert summary["latest_batch"] == max(b["id"] for b in listed["imports"])
    with engine.connect() as conn:  # the plan length of every live pipe, as twin summary adds it
        length_m = conn.execute(sa.text("SELECT sum(length_m) FROM current_segment")).scalar()
    assert summary["length_m"] == pytest.approx(length_m, abs=1e-3)
    [entry] = audit_entries(api, "import", str(batch))
    assert entry["user_name"] == "editor" and entry["path"] == "/imports"
    assert (
        entry["params"]["points"] == "points.csv" and entry["params"]["segments"] == "segments.csv"
    )
    assert entry["params"]["counts"]["changes"]["segment"]["added"] == 8


def test_reimport_changes_nothing_new(api: Api, engine: sa.Engine) -> None:
    p, s = small_tables("RE-", shift_m=-300)
    first = import_report(api, upload(csv_bytes(p), csv_bytes(s)), scope="reimport")
    assert first["status"] == "applied"
    before = live_counts(engine)
    again = import_report(api, upload(csv_bytes(p), csv_bytes(s)), scope="reimport")
    assert again["status"] == "applied"
    assert all(
        c == {"added": 0, "changed": 0, "retired": 0} for c in again["counts"]["changes"].values()
    )
    assert {t: v for t, v in live_counts(engine).items() if t != "applied"} == {
        t: v for t, v in before.items() if t != "applied"
    }


def _unknown_endpoint() -> dict:
    p, s = small_tables("BAD-")
    s.loc[2, "终点号"] = "BAD-NOWHERE"
    return upload(csv_bytes(p), csv_bytes(s))


def _garbage() -> dict:
    noise = bytes(range(256)) * 8
    return upload(noise, (SMALL / "segments.csv").read_bytes())


def _empty() -> dict:
    return upload(b"", (SMALL / "segments.csv").read_bytes())


@pytest.mark.parametrize(
    "files,code,file_name",
    [  # what is wrong                        code    file the issue names
        (_unknown_endpoint, "E202", "segments.csv"),  # a segment ends at an unknown point
        (_garbage, "F003", None),  # binary noise for the point table
        (_empty, "F002", None),  # an empty point table
    ],
)
def test_rejected_batch_leaves_twin_unchanged(
    api: Api, engine: sa.Engine, files, code: str, file_name: str | None
) -> None:
    before = live_counts(engine)
    report = import_report(api, files(), scope="bad")
    # A rejected batch is a successful job whose report says rejected.
    assert report["status"] == "rejected"
    assert report["error_count"] >= 1 and code in report["issue_counts"]
    error = next(e for e in report["errors"] if e["code"] == code)
    assert error["severity"] == "error" and error["message"]
    if file_name:
        assert error["file"] == file_name and isinstance(error["row"], int) and error["row"] >= 2
    assert live_counts(engine) == before
    batch = api.get(f"/imports/{report['batch_id']}").json()
    assert batch["status"] == "rejected" and batch["report"]["status"] == "rejected"
    assert batch["report"]["issue_counts"][code] >= 1
    assert {f["name"] for f in batch["files"]} == {"points.csv", "segments.csv"}
    [entry] = audit_entries(api, "import", str(report["batch_id"]))
    assert entry["params"]["status"] == "rejected" and entry["params"]["errors"] >= 1


def test_dry_run_checks_and_writes_nothing(api: Api, engine: sa.Engine) -> None:
    p, s = small_tables("DRY-", shift_m=600)
    before = live_counts(engine)
    batches = api.get("/imports").json()["numberMatched"]
    report = import_report(api, upload(csv_bytes(p), csv_bytes(s)), dry_run="true")
    assert report["status"] == "checked" and report["batch_id"] is None
    assert report["counts"]["segments"] == 8
    assert live_counts(engine) == before
    assert api.get("/imports").json()["numberMatched"] == batches


def test_column_mapping_and_axis_order(api: Api, engine: sa.Engine) -> None:
    p, s = small_tables("MAP-", shift_m=900)
    p = p.rename(columns={"物探点号": "Station"})
    # Easting first: swap the two coordinate columns' meaning and say so.
    p = p.rename(columns={"X": "Y", "Y": "X"})
    report = import_report(
        api,
        upload(csv_bytes(p), csv_bytes(s)),
        scope="mapped",
        axis_order="en",
        columns='{"Station": "point_id"}',
    )
    assert report["status"] == "applied", report["errors"]
    with engine.connect() as conn:
        y = conn.execute(sa.text("SELECT ST_Y(geom) FROM node WHERE id = 'MAP-JS1'")).scalar()
    assert y == pytest.approx(4035000.0 + 900)


def test_who_may_import(api: Api) -> None:
    assert api.post("/imports", "viewer", files=small_upload()).status_code == 403
    assert api.post("/imports", "approver", files=small_upload()).status_code == 403
    r = api.client.post("/imports", files=small_upload())
    assert r.status_code == 401 and r.json()["code"] == "UNAUTHORIZED"
    assert api.client.get("/imports").status_code == 401
    assert api.client.get("/network/summary").status_code == 401
    assert api.get("/imports", "viewer").status_code == 200
    assert api.get("/network/summary", "viewer").status_code == 200


def test_malformed_requests(api: Api) -> None:
    def submit(files: dict | None = None, **data: str) -> httpx.Response:
        return api.post(
            "/imports", "editor", files=small_upload() if files is None else files, data=data
        )

    only_points = {"points": ("points.csv", (SMALL / "points.csv").read_bytes(), "text/csv")}
    # A file missing, sent as a plain field, or no multipart body at all.
    r = submit(only_points)
    assert r.status_code == 422 and "segments" in r.json()["description"]
    assert submit(only_points, segments="not a file").status_code == 422
    assert api.post("/imports", "editor", data={"scope": "x"}).status_code == 422
    plain = {"Content-Type": "text/plain"}
    assert api.post("/imports", "editor", content=b"no", headers=plain).status_code == 422
    # Options out of range.
    assert submit(axis_order="xy").status_code == 422
    assert submit(scope="a\x00b").status_code == 422
    assert submit(encoding="ebcdic").status_code == 422
    r = submit(columns="{not json")
    assert r.status_code == 400 and "JSON" in r.json()["description"]
    r = submit(columns='{"Station": "nonsense"}')
    assert r.status_code == 400 and "nonsense" in r.json()["description"]
    # Batches that do not exist.
    assert api.get("/imports/0").status_code == 422
    assert api.get("/imports/99999999").status_code == 404
    assert api.get("/imports", params={"status": "maybe"}).status_code == 422


def test_upload_over_the_limit_is_413(api: Api, engine: sa.Engine) -> None:
    with engine.connect() as conn:
        jobs = conn.execute(sa.text("SELECT count(*) FROM job")).scalar()
    big = b"x" * int(LIMIT_MB * 1e6 * 1.2)
    r = api.post("/imports", "editor", files=upload(big, (SMALL / "segments.csv").read_bytes()))
    assert r.status_code == 413 and r.json()["code"] == "TOO_LARGE"
    r = api.post("/asbuilt", "editor", files=upload(big, b"x"), data={"name": "too big"})
    assert r.status_code == 413
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM job")).scalar() == jobs


# ----------------------------------------------------------------------------- as-built
def submit_asbuilt(
    api: Api, prefix: str, role: str = "editor", *, fmt: str = "csv", break_it: bool = False
) -> dict:
    p, s = small_tables(prefix, shift_m=2000 + 100 * len(prefix))
    if break_it:
        s.loc[0, "起点号"] = prefix + "MISSING"
    write, ext = (xlsx_bytes, "xlsx") if fmt == "xlsx" else (csv_bytes, "csv")
    r = api.post(
        "/asbuilt",
        role,
        files=upload(write(p), write(s), (f"点.{ext}", f"线.{ext}")),
        data={"name": f"as-built {prefix}"},
    )
    assert r.status_code == 201, r.text
    doc = r.json()
    assert r.headers["location"].endswith(f"/asbuilt/{doc['id']}")
    return doc


def review(api: Api, ab: int, role: str, decision: str, note: str | None = None) -> httpx.Response:
    return api.post(f"/asbuilt/{ab}/review", role, json={"decision": decision, "note": note})


def commit(api: Api, ab: int, role: str = "editor") -> httpx.Response:
    return api.post(f"/asbuilt/{ab}/commit", role)


def count_prefixed(engine: sa.Engine, prefix: str) -> tuple[int, int]:
    with engine.connect() as conn:
        nodes = conn.execute(
            sa.text("SELECT count(*) FROM current_node WHERE id LIKE :p"), {"p": prefix + "%"}
        ).scalar()
        segments = conn.execute(
            sa.text("SELECT count(*) FROM current_segment WHERE from_node LIKE :p"),
            {"p": prefix + "%"},
        ).scalar()
    return nodes, segments


def test_asbuilt_round_trip(api: Api, engine: sa.Engine) -> None:
    doc = submit_asbuilt(api, "AB-", fmt="xlsx")
    ab = doc["id"]
    assert doc["status"] == "submitted" and doc["submitted_by"] == "editor"
    assert doc["report"]["status"] == "checked" and doc["report"]["counts"]["segments"] == 8
    assert [f["role"] for f in doc["files"]] == ["points", "segments"]
    stored = api.get(f"/asbuilt/{ab}/files/points")
    assert stored.status_code == 200 and stored.content[:2] == b"PK"  # the workbook as sent
    assert count_prefixed(engine, "AB-") == (0, 0)

    # Commit before review: refused; an editor cannot review; the approver accepts.
    r = commit(api, ab)
    assert r.status_code == 409 and "review" in r.json()["description"]
    assert review(api, ab, "editor", "accept").status_code == 403
    r = review(api, ab, "approver", "accept", "matches the drawings")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "reviewed" and r.json()["reviewed_by"] == "approver"
    assert review(api, ab, "approver", "accept").status_code == 409
    assert commit(api, ab, "approver").status_code == 403  # approvers do not write

    r = commit(api, ab)
    assert r.status_code == 201, r.text
    job = r.json()
    assert job["processID"] == "asbuilt-commit"
    assert r.headers["location"].endswith(f"/jobs/{job['jobID']}")
    assert commit(api, ab).status_code == 409  # running or done: not twice
    report = result_of(api, job["jobID"])
    assert report["status"] == "applied" and report["asbuilt"] == {"id": ab, "status": "committed"}
    assert count_prefixed(engine, "AB-") == (11, 8)

    doc = api.get(f"/asbuilt/{ab}").json()
    assert doc["status"] == "committed" and doc["committed_by"] == "editor"
    assert doc["batch_id"] == report["batch_id"] and doc["options"]["scope"] == f"asbuilt:{ab}"
    with engine.connect() as conn:
        in_batch = conn.execute(
            sa.text("SELECT count(*) FROM current_segment WHERE batch_id = :b"),
            {"b": report["batch_id"]},
        ).scalar()
    assert in_batch == 8
    assert commit(api, ab).status_code == 409
    listed = api.get("/asbuilt", params={"status": "committed"}).json()["asbuilt"]
    assert ab in [a["id"] for a in listed] and all(a["status"] == "committed" for a in listed)
    # Every transition is in the audit log.
    feature = f"asbuilt:{ab}"
    assert [e["user_name"] for e in audit_entries(api, "asbuilt-submit", feature)] == ["editor"]
    [reviewed] = audit_entries(api, "asbuilt-review", feature)
    assert reviewed["params"]["decision"] == "accept" and reviewed["user_name"] == "approver"
    [committed] = audit_entries(api, "asbuilt-commit", feature)
    assert committed["affected"] == [feature, str(report["batch_id"])]


def test_submitter_cannot_review_own_batch(api: Api) -> None:
    ab = submit_asbuilt(api, "SR-", role="admin")["id"]
    r = review(api, ab, "admin", "accept")
    assert r.status_code == 403 and "submitter" in r.json()["description"]
    r = review(api, ab, "approver", "reject")
    assert r.status_code == 400 and "note" in r.json()["description"]
    r = review(api, ab, "approver", "reject", "wrong district")
    assert r.status_code == 200 and r.json()["status"] == "rejected"
    assert r.json()["review_note"] == "wrong district"
    assert commit(api, ab, "admin").status_code == 409


def test_asbuilt_failing_checks_is_rejected_at_once(api: Api) -> None:
    doc = submit_asbuilt(api, "CK-", break_it=True)
    assert doc["status"] == "rejected" and "data checks" in doc["review_note"]
    assert doc["report"]["status"] == "rejected" and "E202" in doc["report"]["issue_counts"]
    assert review(api, doc["id"], "approver", "accept").status_code == 409


def test_asbuilt_bad_requests(api: Api) -> None:
    def submit(role: str, **data: str) -> int:
        return api.post("/asbuilt", role, files=small_upload(), data=data).status_code

    assert submit("viewer", name="x") == 403
    assert submit("editor") == 422  # no name
    assert submit("editor", name="a\x00b") == 400
    assert submit("editor", name="   ") == 400
    assert submit("editor", name="x", scope="no;scope") == 422
    assert api.get("/asbuilt/99999999").status_code == 404
    assert api.get("/asbuilt/-1").status_code == 422
    assert review(api, 99999999, "approver", "accept").status_code == 404
    ab = submit_asbuilt(api, "BR-")["id"]
    assert review(api, ab, "approver", "maybe").status_code == 422
    assert api.get(f"/asbuilt/{ab}/files/other").status_code == 422
    assert api.get("/asbuilt", params={"status": "lost"}).status_code == 422


def test_failed_commit_leaves_asbuilt_reviewed_and_twin_unchanged(
    api: Api, engine: sa.Engine
) -> None:
    ab = submit_asbuilt(api, "FC-")["id"]
    assert review(api, ab, "approver", "accept").status_code == 200
    before = live_counts(engine)
    # A real database failure in the middle of the load: valves are loaded after the
    # nodes and segments, and this trigger refuses them.
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "CREATE FUNCTION test_refuse_valve() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN RAISE EXCEPTION 'valves refused by the test'; END $$; "
                "CREATE TRIGGER test_refuse_valve BEFORE INSERT ON valve "
                "FOR EACH ROW EXECUTE FUNCTION test_refuse_valve()"
            )
        )
    try:
        job = commit(api, ab).json()
        done = wait_job(api, job["jobID"], "editor")
    finally:
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "DROP TRIGGER test_refuse_valve ON valve; DROP FUNCTION test_refuse_valve()"
                )
            )
    assert done["status"] == "failed"
    assert "rolled back" in done["message"] and "valves refused by the test" in done["message"]
    assert api.get(f"/jobs/{job['jobID']}/results", "editor").status_code == 404
    assert live_counts(engine) == before and count_prefixed(engine, "FC-") == (0, 0)
    doc = api.get(f"/asbuilt/{ab}").json()
    assert doc["status"] == "reviewed" and doc["batch_id"] is None and doc["committed_by"] is None
    assert audit_entries(api, "asbuilt-commit", f"asbuilt:{ab}") == []

    # The same batch commits once the fault is gone.
    report = result_of(api, commit(api, ab).json()["jobID"])
    assert report["status"] == "applied" and report["asbuilt"]["status"] == "committed"
    assert count_prefixed(engine, "FC-") == (11, 8)


def test_same_file_names_are_kept_apart(api: Api) -> None:
    p, s = small_tables("SN-", shift_m=5000)
    r = api.post(
        "/asbuilt",
        "editor",
        files=upload(csv_bytes(p), csv_bytes(s), ("table.csv", "table.csv")),
        data={"name": "same names"},
    )
    assert r.status_code == 201, r.text
    assert [f["name"] for f in r.json()["files"]] == ["points-table.csv", "segments-table.csv"]
    assert r.json()["status"] == "submitted"


# ----------------------------------------------------------------------------- GIS sources
def _gis_layers(prefix: str, shift_m: float) -> tuple[tuple, tuple]:
    """The small survey as a point and a line layer (WKB, fields, names), ids prefixed."""
    p, s = small_tables(prefix, shift_m)
    xy = {i: (float(y), float(x)) for i, x, y in zip(p["物探点号"], p["X"], p["Y"], strict=True)}
    pfields = [c for c in p.columns if c not in ("X", "Y")]
    points = (shapely.to_wkb(shapely.points([xy[i] for i in p["物探点号"]])),
              [p[c].to_numpy(dtype=object) for c in pfields], pfields)
    lines = (shapely.to_wkb(shapely.linestrings([[xy[a], xy[b]] for a, b in zip(s["起点号"], s["终点号"],
                                                                              strict=True)])),
             [s[c].to_numpy(dtype=object) for c in s.columns], list(s.columns))
    return points, lines


def test_import_geopackage_source(api: Api, engine: sa.Engine, tmp_path) -> None:
    (pg, pf, pn), (lg, lf, ln) = _gis_layers("GPKG-", shift_m=1500)
    path = tmp_path / "管网.gpkg"
    small = {"SPATIAL_INDEX": "NO"}  # under this module's upload limit
    write(str(path), pg, pf, pn, layer="给水管点", driver="GPKG", geometry_type="Point", crs="EPSG:4548",
          **small)
    write(str(path), lg, lf, ln, layer="给水管线", driver="GPKG", geometry_type="LineString",
          crs="EPSG:4548", append=True, **small)
    before = live_counts(engine)
    files = {"source": (path.name, path.read_bytes(), "application/geopackage+sqlite3")}
    r = api.post("/imports", "editor", files=files, data={"scope": "gpkg", "columns": '{"管径/断面": "size"}'})
    assert r.status_code == 201, r.text
    report = result_of(api, r.json()["jobID"])
    assert report["status"] == "applied", report["errors"]
    assert report["counts"]["segments"] == 8 and report["counts"]["gis"]["points_read"] == 11
    after = live_counts(engine)
    assert after["segment"] == before["segment"] + 8 and after["node"] == before["node"] + 11
    with engine.connect() as conn:
        e, n = conn.execute(sa.text("SELECT ST_X(geom), ST_Y(geom) FROM current_node "
                                    "WHERE id = 'GPKG-JS5'")).one()
    assert abs(e - 410040.0) < 1e-3 and abs(n - (4035005.0 + 1500)) < 1e-3
    entry = audit_entries(api, "import", str(report["batch_id"]))[0]
    assert entry["params"]["source"] == path.name
    # Bad sources and options: 400 before any job, naming the problem.
    files = {"source": ("junk.gpkg", b"not a geopackage" * 50, "application/octet-stream")}
    r = api.post("/imports", "editor", files=files)
    assert r.status_code == 400 and "junk.gpkg" in r.json()["description"]
    files = {"source": (path.name, path.read_bytes(), "application/octet-stream")}
    r = api.post("/imports", "editor", files=files, data={"segments_layer": "pipes"})
    assert r.status_code == 400 and "no layer 'pipes'" in r.json()["description"]
    r = api.post("/imports", "editor", files=files, data={"crs": "EPSG:99999999"})
    assert r.status_code == 400 and "coordinate reference system" in r.json()["description"]
    r = api.post("/imports", "editor", files={**files, **small_upload()})
    assert r.status_code == 400 and "not both" in r.json()["description"]
    assert live_counts(engine)["segment"] == after["segment"]


def test_import_zipped_shapefiles_lines_alone(api: Api, engine: sa.Engine, tmp_path) -> None:
    (_pg, _pf, _pn), (lg, lf, ln) = _gis_layers("SHP-", shift_m=1800)
    lines = shapely.from_wkb(lg)  # 3D: the pipe tops 1.4 m under a 35.2 m ground, as pipes alone
    lines = shapely.force_3d(lines, 33.8)
    keep = [ln.index(c) for c in ("管线类型", "管径/断面", "材质")]
    folder = tmp_path / "给水"
    folder.mkdir()
    write(str(folder / "给水管线.shp"), shapely.to_wkb(lines), [lf[i] for i in keep], [ln[i] for i in keep],
          driver="ESRI Shapefile", geometry_type="LineString Z", crs="EPSG:4548", encoding="GBK")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for f in folder.iterdir():
            z.write(f, f"给水/{f.name}")
    before = live_counts(engine)
    files = {"source": ("给水.zip", buf.getvalue(), "application/zip")}
    report = import_report(api, files, scope="shp", points_layer="", dry_run="true")
    assert report["status"] == "checked", report["errors"]
    assert report["counts"]["gis"]["nodes_built"] == 11 and report["counts"]["segments"] == 8
    assert live_counts(engine) == before
