"""Build the 3D Tiles 1.1 tileset of the live network, in full or incrementally.

The output folder holds ``tileset.json``, the contents ``t/<level>/<x>/<y>.glb`` and a build
manifest (``manifest.json``: frame, root cell, per-tile boxes and counts;
``manifest-features.npz``: every feature's id, key, tile and what placed it there;
``manifest-versions.npy``: their versions). A small change (no feature added, removed or moved)
is found from the rows written since the last build alone, and only its tiles' features are
read and meshed again, in this process. Otherwise an incremental build reads the light index
of the network, tiles it again with the same root cell and frame, compares with the manifest
and rebuilds only the tiles whose features were added, changed, moved or removed (and the
tiles of fittings whose pipes changed); the others are kept. A full build reads the index and
the full records in one pass. Tiles are meshed
in worker processes (one per core) when there are enough of them, or on a Dask cluster
(``cluster=``; by default when ``TWIN_DASK_SCHEDULER`` names one): batches of neighbouring
quadtree cells, whose workers read their features from the twin by id and write the contents
into the tileset folder (storage every worker sees).
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import shutil
import time
import uuid
import zipfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import sqlalchemy as sa

from tiles.content import build_content
from tiles.placement import Frame, ecef_transformer
from tiles.source import read_index, read_nodes, read_segments, segment_end_nodes
from tiles.style import node_level, node_rank, segment_level
from tiles.tiling import CAPACITY, Quadtree, box_volume, build_quadtree, tileset_json
from twin.arrow import copy_frame
from twin.crs import transformer
from twin.dask import Cluster, run_tasks, using_cluster, worker_count
from twin.db import change_mark, make_engine, open_twin, twin_id
from twin.errors import ConfigError, DatabaseError
from twin.settings import TwinSettings

__all__ = ["build_tileset", "tiles_dir", "FORMAT_VERSION", "Progress", "NetworkChanged", "MANIFEST"]


class NetworkChanged(DatabaseError):
    """Features changed between the reads of one build; building again reads a settled network."""


log = logging.getLogger(__name__)

#: Bump when the content changes for the same features: forces a full rebuild.
FORMAT_VERSION = 3  # 2: quantized, meshopt-compressed contents; 3: the coarsest level bounded (issue 18)
MANIFEST = "manifest.json"
FEATURES = "manifest-features.npz"
#: Every feature's version, in the order of FEATURES (apart: the only array a small rebuild writes).
VERSIONS = "manifest-versions.npy"
TILESET = "tileset.json"
CONTENT_URI = "t/{key}.glb"
#: Below this many tiles to build, one process does it all (forking costs more).
PARALLEL_MIN_TILES = 16

#: progress(stage, done, total)
Progress = Callable[[str, int, int], None]


def tiles_dir(settings: TwinSettings) -> Path:
    """The tileset's folder: ``TWIN_TILES_DIR`` or ``<data_dir>/tiles``."""
    return Path(settings.tiles_dir) if settings.tiles_dir else Path(settings.data_dir) / "tiles"


class _Previous:
    """The features of the last build (``manifest-features.npz`` and ``manifest-versions.npy``),
    each array read when first used: a small rebuild reads a few of them.

    Ids are kept as UTF-8 bytes and offsets (``id_bytes``, ``id_offsets``): :meth:`ids` turns
    only the rows asked for into strings.
    """

    def __init__(self, out: Path) -> None:
        self._npz = np.load(out / FEATURES, allow_pickle=False)
        self._cache: dict[str, np.ndarray] = {"versions": np.load(out / VERSIONS, allow_pickle=False)}
        if len(self._cache["versions"]) != len(self["keys"]):
            raise ValueError("versions of another build")

    def __getitem__(self, key: str) -> np.ndarray:
        if key not in self._cache:
            self._cache[key] = self._npz[key]
        return self._cache[key]

    def __contains__(self, key: str) -> bool:
        return key in self._cache or key in self._npz.files

    def ids(self, rows: np.ndarray) -> np.ndarray:
        """The ids (objects) of the features ``rows`` (a mask or indices)."""
        offsets = self["id_offsets"]
        every = pa.LargeStringArray.from_buffers(len(offsets) - 1, pa.py_buffer(offsets),
                                                 pa.py_buffer(self["id_bytes"]))
        rows = np.flatnonzero(rows) if np.asarray(rows).dtype == bool else np.asarray(rows, dtype=np.int64)
        return every.take(pa.array(rows, pa.int64())).to_numpy(zero_copy_only=False).astype(object)

    def row_finder(self) -> Callable[[np.ndarray], np.ndarray]:
        """:func:`_row_finder` of the keys, with the order kept in the file."""
        return _row_finder(self["keys"], self["key_order"] if "key_order" in self else None)

    def close(self) -> None:
        """Close the file."""
        self._npz.close()


def _load_manifest(out: Path) -> tuple[dict | None, _Previous | None]:
    try:
        manifest = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
        return manifest, _Previous(out)
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return None, None


def _id_blob(arr: pa.LargeStringArray) -> dict[str, np.ndarray]:
    """Ids as ``id_bytes`` (UTF-8) and ``id_offsets``: stored and read without a Python object
    per id."""
    if arr.offset:
        arr = pa.concat_arrays([arr])  # unsliced buffers
    _, off_buf, data_buf = arr.buffers()
    offsets = np.frombuffer(off_buf, np.int64)[:len(arr) + 1] if len(arr) else np.zeros(1, np.int64)
    data = (np.frombuffer(data_buf, np.uint8)[:int(offsets[-1])] if data_buf is not None
            else np.zeros(0, np.uint8))
    return {"id_bytes": data.copy(), "id_offsets": offsets.copy()}


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    tmp.write_bytes(data)
    os.replace(tmp, path)


# Worker state, inherited through fork (the tables are large; jobs only name row ranges).
_STATE: dict = {}


def _worker_init() -> None:
    # A PROJ context per process: no transformer inherited through fork.
    ecef_transformer.cache_clear()
    transformer.cache_clear()


def _build_one(job: tuple[int, str, int, int, int, int]) -> tuple[int, list, list, int, int, int]:
    st = _STATE
    index, key, s0, s1, n0, n1 = job
    seg = st["seg"].take(st["s_order"][s0:s1])
    nodes = st["nodes"].take(st["n_order"][n0:n1])
    return _write_tile((index, key, 0, s1 - s0, 0, n1 - n0), seg, nodes, st["frame"], st["out"])


def _write_tile(job: tuple[int, str, int, int, int, int], seg: pd.DataFrame, nodes: pd.DataFrame,
                frame: Frame, out: Path) -> tuple[int, list, list, int, int, int]:
    """Mesh and write tile ``job`` (index, key, its rows ``seg[s0:s1]``, ``nodes[n0:n1]``)."""
    index, key, s0, s1, n0, n1 = job
    content = build_content(seg.iloc[s0:s1], nodes.iloc[n0:n1], frame)
    _atomic_write(out / CONTENT_URI.format(key=key), content.glb)
    return (index, content.box_min.tolist(), content.box_max.tolist(), content.triangles,
            content.features, len(content.glb))


def _params(settings: TwinSettings) -> dict:
    return {"format": FORMAT_VERSION, "crs": settings.crs, "geoid_offset_m": settings.geoid_offset_m,
            "capacity": CAPACITY, "uri": CONTENT_URI}


@dataclass
class _Features:
    """Every feature of the index, segments first, then drawn nodes: what the tiling needs."""

    seg_ids: pd.Series
    node_ids: pd.Series
    keys: np.ndarray  # uint64 hash of the id
    versions: np.ndarray
    level: np.ndarray  # importance: the coarsest tile level that draws it
    rank: np.ndarray  # order within a level (size)
    ax: np.ndarray  # anchor x
    ay: np.ndarray  # anchor y

    @classmethod
    def of(cls, seg: pd.DataFrame, nodes: pd.DataFrame) -> _Features:
        """The features of the light index ``(seg, nodes)``."""
        return cls(
            seg_ids=seg["id"], node_ids=nodes["id"],
            keys=np.concatenate([seg["key"].to_numpy(np.int64), nodes["key"].to_numpy(np.int64)]).view(np.uint64),
            versions=np.concatenate([seg["version"].to_numpy(np.int64), nodes["version"].to_numpy(np.int64)]),
            level=np.concatenate([
                segment_level(seg["shape"].to_numpy(), seg["diameter_mm"].to_numpy(float),
                              seg["width_mm"].to_numpy(float)),
                node_level(nodes["is_source"].fillna(False).to_numpy(bool))]),
            rank=np.concatenate([
                np.nan_to_num(seg["diameter_mm"].to_numpy(float))
                + np.nan_to_num(seg["width_mm"].to_numpy(float)),
                node_rank(nodes["is_source"].fillna(False).to_numpy(bool))]),
            ax=np.concatenate([seg["x"].to_numpy(float), nodes["x"].to_numpy(float)]),
            ay=np.concatenate([seg["y"].to_numpy(float), nodes["y"].to_numpy(float)]),
        )

    @property
    def n_seg(self) -> int:
        """Number of segments (the first features)."""
        return len(self.seg_ids)

    @property
    def n_node(self) -> int:
        """Number of drawn nodes (the last features)."""
        return len(self.node_ids)

    def arrays(self, tree: Quadtree, tile_keys: np.ndarray) -> dict[str, np.ndarray]:
        """The arrays kept in ``manifest-features.npz``."""
        ids = pa.concat_arrays([pa.array(i, type=pa.large_string(), from_pandas=True)
                                for i in (self.seg_ids, self.node_ids)])
        return {"keys": self.keys, "versions": self.versions, "tile": tree.tile_of.astype(np.int32),
                "tile_keys": tile_keys.astype(str), **_id_blob(ids),
                "key_order": np.argsort(self.keys, kind="stable").astype(np.int64),
                "is_segment": np.arange(len(self.keys)) < self.n_seg, "level": self.level,
                "drawn_level": tree.drawn_level,
                "rank": self.rank, "ax": self.ax, "ay": self.ay}


def build_tileset(settings: TwinSettings, out_dir: Path | str | None = None, full: bool = False,
                  progress: Progress | None = None, workers: int | None = None,
                  cluster: Cluster = None) -> dict:
    """Build (or bring up to date) the tileset; returns the build report.

    The report has ``tiles_written``, ``tiles_kept``, ``tiles_removed``, ``tiles``,
    ``features``, ``triangles``, ``bytes`` (all content), ``seconds`` and per-stage timings.
    ``cluster``: a Dask client, True (one from the settings: ``TWIN_DASK_SCHEDULER`` or a
    LocalCluster) or False; None meshes on the named scheduler's cluster when
    ``TWIN_DASK_SCHEDULER`` is set and there are enough tiles. Changes found by the fast
    incremental path are meshed here.
    """
    started = time.perf_counter()
    step = progress or (lambda stage, done, total: None)
    out = Path(out_dir) if out_dir is not None else tiles_dir(settings)
    out.mkdir(parents=True, exist_ok=True)
    step("reading the network", 0, 1)
    engine = open_twin(settings)
    manifest, previous = None, None
    try:
        stamp = _stamp(engine)
        manifest, previous = (None, None) if full else _load_manifest(out)
        if manifest is not None and manifest.get("twin") != stamp["twin"]:
            manifest = None  # another twin's tileset (or an unstamped one): all anew
        if manifest is not None and manifest.get("params") == _params(settings):
            fast = _fast_incremental(engine, out, manifest, previous, workers, step, started, stamp)
            if fast is not None:
                return fast
        else:
            manifest = None
        return _build(settings, engine, out, manifest, previous, stamp, workers, cluster, step, started)
    finally:
        if previous is not None:
            previous.close()
        engine.dispose()


def _build(settings: TwinSettings, engine: sa.Engine, out: Path, manifest: dict | None,
           previous: _Previous | None, stamp: dict, workers: int | None, cluster: Cluster, step: Progress,
           started: float) -> dict:
    """A build from the whole index: incremental against ``manifest`` (of the same parameters)
    when the tiling keeps its root cell, else in full."""
    stages = _Stages()
    with engine.connect() as conn:
        snapshot = _snapshot(conn)
    # A build of every tile here reads the full records with the index, in one pass.
    whole = manifest is None and (cluster is False or (cluster is None and not settings.dask_scheduler))
    seg, nodes = read_index(engine, details=whole)
    stages.lap("index")
    feats = _Features.of(seg, nodes)
    n_seg, n_node = feats.n_seg, feats.n_node
    tree, frame, incremental = _tile(engine, settings, feats, manifest)
    tile_keys = np.array([tl.key for tl in tree.tiles], dtype=object)
    has_content = np.array([len(tl.features) > 0 for tl in tree.tiles], dtype=bool)
    stages.lap("tiling")
    if incremental:
        build = _tiles_to_rebuild(engine, out, previous, feats, tree, tile_keys, has_content)
    else:
        build = list(np.flatnonzero(has_content))
    stages.lap("compare")

    # Full records of the features of the tiles to build.
    tile_of = tree.tile_of
    sel_seg, sel_node = _features_in(tree, build, n_seg, n_node)
    if _on_cluster(settings, cluster, len(build)):
        stages.lap("read")
        results = _mesh_on_cluster(settings, cluster, seg["id"].to_numpy(object)[sel_seg],
                                   nodes["id"].to_numpy(object)[sel_node], tile_of[sel_seg],
                                   tile_of[n_seg + sel_node], build, tile_keys, frame, out, step)
    else:
        step("reading features", 0, 1)
        if whole:
            seg_rows, node_rows = _whole_rows(seg, nodes, sel_seg, sel_node)
        else:
            seg_rows, node_rows = _read_details(engine, seg, nodes, sel_seg, sel_node)
        stages.lap("read")
        results = _mesh_tiles(seg_rows, node_rows, tile_of[sel_seg], tile_of[n_seg + sel_node], build,
                              tile_keys, frame, out, workers, step)
    stages.lap("mesh")

    # Tiles kept keep their manifest entries; built ones get new ones.
    old_tiles = (manifest or {}).get("tiles", {}) if incremental else {}
    entries = {str(tile_keys[i]): old_tiles[str(tile_keys[i])] for i in np.flatnonzero(has_content)
               if str(tile_keys[i]) in old_tiles}
    _enter_results(entries, tile_keys, results)
    removed = _remove_stale_contents(out, manifest, entries, clear=not incremental and not manifest and bool(results))
    content = {i: entries[str(tile_keys[i])] for i in np.flatnonzero(has_content)}
    _write_json(out / TILESET, _stamped(tileset_json(tree, content, tree.drawn_level, frame.enu_to_ecef(),
                                                  uri=CONTENT_URI), stamp))
    _save_features(out, feats.arrays(tree, tile_keys))
    _write_json(out / MANIFEST, {
        **stamp, "params": _params(settings), "frame": frame.as_dict(),
        "root": {"origin": list(tree.origin), "size": tree.size},
        "snapshot": snapshot, "tiles": entries,
    })
    stages.lap("write")
    return _report(out, not incremental, entries, results, n_seg, n_node, time.perf_counter() - started,
                   stages, removed)


def _tile(engine: sa.Engine, settings: TwinSettings, feats: _Features, manifest: dict | None
          ) -> tuple[Quadtree, Frame, bool]:
    """Tile the features; returns the quadtree, the frame and whether the build is incremental.

    With a manifest of the same parameters whose root cell still holds every feature, the
    tiling keeps that root cell and frame (an incremental build); otherwise the root cell is
    new and the frame sits at its centre, at the mean ground height.
    """
    ax, ay = feats.ax, feats.ay
    if manifest is not None:
        x0, y0 = manifest["root"]["origin"]
        size = manifest["root"]["size"]
        inside = feats.n_seg + feats.n_node == 0 or (
            ax.min() >= x0 and ay.min() >= y0 and ax.max() < x0 + size and ay.max() < y0 + size)
        if inside:
            tree = build_quadtree(ax, ay, feats.level, feats.rank, tiebreak=feats.keys, origin=(x0, y0),
                                  size=size)
            return tree, Frame.from_dict(manifest["frame"]), True
    tree = build_quadtree(ax, ay, feats.level, feats.rank, tiebreak=feats.keys)
    cx = tree.origin[0] + tree.size / 2
    cy = tree.origin[1] + tree.size / 2
    with engine.connect() as conn:
        # in numeric: a parallel float8 avg sums in another order each time (its last bits vary)
        ground_z = conn.execute(sa.text("SELECT round(avg(ground_z::numeric), 3)::float8 FROM current_node")).scalar()
    return tree, Frame.at(settings.crs, cx, cy, float(ground_z or 0.0), settings.geoid_offset_m), False


def _tiles_to_rebuild(engine: sa.Engine, out: Path, previous: _Previous, feats: _Features, tree: Quadtree,
                      tile_keys: np.ndarray, has_content: np.ndarray) -> list[int]:
    """Tiles (indices) whose features changed since the manifest, or whose content is missing."""
    dirty = _dirty_tiles(engine, previous, feats.keys, feats.versions, tree.tile_of, tile_keys, feats.n_seg,
                         feats.seg_ids, feats.node_ids)
    missing = [i for i in np.flatnonzero(has_content)
               if not (out / CONTENT_URI.format(key=tile_keys[i])).exists()]
    return sorted({i for i in np.flatnonzero(has_content) if tile_keys[i] in dirty} | set(missing))


def _features_in(tree: Quadtree, build: list[int], n_seg: int, n_node: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows of the segments and of the nodes (among each) that lie in the tiles ``build``."""
    building = np.zeros(len(tree.tiles), bool)
    building[build] = True
    sel_seg = np.flatnonzero(building[tree.tile_of[:n_seg]]) if n_seg else np.zeros(0, int)
    sel_node = np.flatnonzero(building[tree.tile_of[n_seg:]]) if n_node else np.zeros(0, int)
    return sel_seg, sel_node


def _enter_results(entries: dict[str, dict], tile_keys: np.ndarray, results: list[tuple]) -> None:
    """Put the built tiles' boxes and counts into the manifest's entries."""
    for index, lo, hi, tris, feats, nbytes in results:
        entries[str(tile_keys[index])] = {"min": lo, "max": hi, "triangles": tris, "features": feats,
                                          "bytes": nbytes}


def _remove_stale_contents(out: Path, manifest: dict | None, entries: dict, *, clear: bool) -> int:
    """Delete the contents of the manifest's tiles that no longer exist; returns how many.

    ``clear`` (a full build into a folder of another tileset) also removes every content that
    ``entries`` does not list.
    """
    removed = 0
    previous_keys = set((manifest or {}).get("tiles", {})) if manifest else set()
    for k in previous_keys - set(entries):
        try:
            (out / CONTENT_URI.format(key=k)).unlink()
            removed += 1
        except FileNotFoundError:
            pass
    stale = out / "t"
    if clear and stale.exists():
        _remove_unlisted(stale, out, set(entries))
    return removed


def _write_json(path: Path, doc: dict) -> None:
    """Write compact JSON atomically."""
    _atomic_write(path, json.dumps(doc, separators=(",", ":")).encode("utf-8"))


def _mesh_tiles(seg_rows: pd.DataFrame, node_rows: pd.DataFrame, seg_tile: np.ndarray, node_tile: np.ndarray,
                build: list[int], tile_keys: np.ndarray, frame: Frame, out: Path, workers: int | None,
                step: Progress) -> list[tuple]:
    """Mesh and write the tiles ``build``; one (index, min, max, triangles, features, bytes) each."""
    # Each tile's rows are a slice of the rows in tile order (taken by the worker that meshes it:
    # no sorted copy of the frames here).
    s_order = np.argsort(seg_tile, kind="stable")
    n_order = np.argsort(node_tile, kind="stable")
    build_arr = np.asarray(build, dtype=np.int64)
    s_lo, s_hi = np.searchsorted(seg_tile[s_order], build_arr, "left"), np.searchsorted(seg_tile[s_order], build_arr, "right")
    n_lo, n_hi = np.searchsorted(node_tile[n_order], build_arr, "left"), np.searchsorted(node_tile[n_order], build_arr, "right")
    jobs = [(int(i), str(tile_keys[i]), int(a), int(b), int(c), int(d))
            for i, a, b, c, d in zip(build_arr, s_lo, s_hi, n_lo, n_hi, strict=True)]
    # Biggest first, for an even load across workers.
    jobs.sort(key=lambda j: -(j[3] - j[2] + j[5] - j[4]))

    _STATE.update(seg=seg_rows, nodes=node_rows, s_order=s_order, n_order=n_order, frame=frame, out=out)
    results = []
    workers = workers or os.cpu_count() or 1
    step("meshing tiles", 0, len(jobs))
    try:
        if workers > 1 and len(jobs) >= PARALLEL_MIN_TILES:
            ctx = multiprocessing.get_context("fork")
            with ctx.Pool(min(workers, len(jobs)), initializer=_worker_init) as pool:
                for r in pool.imap_unordered(_build_one, jobs, chunksize=1 if len(jobs) < 64 else 2):
                    results.append(r)
                    step("meshing tiles", len(results), len(jobs))
        else:
            for job in jobs:
                results.append(_build_one(job))
                step("meshing tiles", len(results), len(jobs))
    finally:
        _STATE.clear()
    return results


def _stamp(engine: sa.Engine) -> dict:
    """Which twin the tileset is built from, and its change mark when the build began reading
    (read before the snapshot: an edit in between makes the mark look older, never newer)."""
    with engine.connect() as conn:
        return {"twin": twin_id(conn), "changes": change_mark(conn)}


def _stamped(doc: dict, stamp: dict) -> dict:
    """``tileset.json`` carrying the stamp: ``asset.tilesetVersion`` is the change mark, and
    ``extras.pipetwin`` both (the viewer compares them with ``GET /frame``)."""
    doc["asset"]["tilesetVersion"] = stamp["changes"]
    doc.setdefault("extras", {})["pipetwin"] = dict(stamp)
    return doc


def _snapshot(conn: sa.Connection) -> str:
    """The database time from which the next build looks for changes: now, or the start of the
    oldest open transaction (whose rows, once committed, carry that earlier time)."""
    return conn.execute(sa.text(
        "SELECT least(now(), (SELECT min(xact_start) FROM pg_stat_activity "
        "WHERE datname = current_database() AND xact_start IS NOT NULL))::text")).scalar()


def _fast_incremental(engine: sa.Engine, out: Path, manifest: dict, previous: _Previous, workers: int | None,
                      step: Progress, started: float, stamp: dict) -> dict | None:
    """Rebuild the tiles of the features changed since the last build when the tiling stays the same.

    Returns None (the caller then re-tiles from the full index) when a feature was added,
    retired, deleted or moved to another anchor or level, or a source or customer changed.
    Nothing but the changed rows is read to find them (the change mark first: none moved it,
    nothing to do), and only the dirty tiles' features to mesh them, in this process.
    """
    stages = _Stages()
    since = manifest.get("snapshot")
    if not since or "level" not in previous:
        return None
    is_seg = previous["is_segment"]
    n_seg = int(is_seg.sum())
    if stamp["changes"] == manifest.get("changes"):  # no feature written since the last build read
        stages.lap("compare")
        return _report(out, False, manifest["tiles"], [], n_seg, len(is_seg) - n_seg,
                       time.perf_counter() - started, stages, 0)
    rows_of = previous.row_finder()
    changes = _changes_since(engine, since, rows_of)
    if changes is None:
        return None
    snapshot, seg, node = changes
    versions = previous["versions"].copy()
    seg_change = _changed_segments(seg, previous, rows_of, versions)
    if seg_change is None:
        return None
    node_rows = _changed_nodes(engine, node, previous, rows_of, versions)
    if node_rows is None:
        return None
    changed_rows, end_keys = seg_change[0] + node_rows, seg_change[1]
    tile = previous["tile"]
    dirty = set(tile[changed_rows].tolist())
    if end_keys:
        ends = rows_of(np.array(end_keys, dtype=np.int64).view(np.uint64))
        dirty |= set(tile[ends[ends >= 0]].tolist())
    stages.lap("compare")

    seg_rows, node_rows, seg_tile, node_tile = _read_tiles(engine, previous, dirty, rows_of)
    stages.lap("read")
    tile_keys = np.asarray(previous["tile_keys"]).astype(object)
    frame = Frame.from_dict(manifest["frame"])
    results = _mesh_tiles(seg_rows, node_rows, seg_tile, node_tile, sorted(dirty), tile_keys, frame, out,
                          workers, step)
    stages.lap("mesh")

    entries = manifest["tiles"]
    _enter_results(entries, tile_keys, results)
    doc = json.loads((out / TILESET).read_text(encoding="utf-8"))
    _refresh_boxes(doc["root"], entries)
    _write_json(out / TILESET, _stamped(doc, stamp))
    _save_versions(out, versions)
    manifest.update(stamp, snapshot=snapshot)
    _write_json(out / MANIFEST, manifest)
    stages.lap("write")
    return _report(out, False, entries, results, n_seg, len(is_seg) - n_seg, time.perf_counter() - started,
                   stages, 0)


#: Drawn nodes to look at again: written since ``:t``, or their source or customer was.
_CHANGED_NODES = """
    SELECT id, hashtextextended(id, 2), retired_at IS NOT NULL FROM node WHERE valid_from >= :t
    UNION
    SELECT id, hashtextextended(id, 2), retired_at IS NOT NULL FROM node WHERE id IN (
        SELECT node_id FROM source WHERE valid_from >= :t
        UNION SELECT node_id FROM customer WHERE valid_from >= :t
        UNION SELECT node_id FROM source_history WHERE op = 'delete' AND valid_to >= :t
        UNION SELECT node_id FROM customer_history WHERE op = 'delete' AND valid_to >= :t)"""


def _changes_since(engine: sa.Engine, since: str, rows_of: Callable[[np.ndarray], np.ndarray]
                   ) -> tuple[str, list[sa.Row], list[sa.Row]] | None:
    """The snapshot and the segments and nodes written since ``since`` (hashed ids, anchors).

    Every write of a feature row sets its ``valid_from`` (the history trigger; indexed), so the
    rows written since are found without a pass over the tables; a deleted row is in its
    history. The rows may include some the last build already had (``since`` is the start of
    the oldest transaction then open): their versions tell. None when the tiling cannot stay: a
    feature of the tileset was deleted.
    """
    with engine.connect() as conn:
        snapshot = _snapshot(conn)
        deleted = conn.execute(sa.text(
            "SELECT hashtextextended(id, 1) FROM segment_history WHERE op = 'delete' AND valid_to >= :t "
            "UNION ALL SELECT hashtextextended(id, 2) FROM node_history WHERE op = 'delete' AND valid_to >= :t"),
            {"t": since}).scalars().all()
        if deleted and (rows_of(np.array(deleted, dtype=np.int64).view(np.uint64)) >= 0).any():
            return None
        seg = conn.execute(sa.text("""
            SELECT hashtextextended(id, 1), version, shape, diameter_mm, width_mm,
                   (ST_XMin(geom) + ST_XMax(geom)) / 2, (ST_YMin(geom) + ST_YMax(geom)) / 2,
                   retired_at IS NOT NULL, hashtextextended(from_node, 2), hashtextextended(to_node, 2)
              FROM segment WHERE valid_from >= :t"""), {"t": since}).all()
        node = conn.execute(sa.text(_CHANGED_NODES), {"t": since}).all()
    return snapshot, seg, node


def _row_finder(keys: np.ndarray, order: np.ndarray | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """A function giving the row of each key in ``keys`` (-1 where absent); ``order``: the keys'
    stable argsort, when known."""
    order = np.argsort(keys, kind="stable") if order is None else order

    def rows_of(k: np.ndarray) -> np.ndarray:
        pos = np.minimum(np.searchsorted(keys[order], k), max(len(keys) - 1, 0))
        found = order[pos]
        return np.where(keys[found] == k, found, -1) if len(keys) else np.full(len(k), -1)

    return rows_of


def _changed_segments(seg: list[sa.Row], previous: _Previous, rows_of: Callable[[np.ndarray], np.ndarray],
                      versions: np.ndarray) -> tuple[list[int], list[int]] | None:
    """Rows of the changed segments (their versions updated) and their end nodes' keys.

    Rows of another version than the manifest's have changed; None when a segment is new or
    retired, or moved to another anchor, level or rank.
    """
    if not seg:
        return [], []
    k = np.array([r[0] for r in seg], dtype=np.int64).view(np.uint64)
    rows = rows_of(k)
    retired = np.array([r[7] for r in seg], dtype=bool)
    if ((rows < 0) & ~retired).any() or ((rows >= 0) & retired).any():
        return None  # a segment added, or one of the tileset retired
    live = np.flatnonzero(~retired)
    changed = live[np.array([seg[i][1] for i in live], dtype=np.int64) != previous["versions"][rows[live]]]
    seg = [seg[i] for i in changed]
    rows = rows[changed]
    if not seg:
        return [], []
    level = segment_level(np.array([r[2] for r in seg], dtype=object), np.array([r[3] for r in seg], dtype=float),
                          np.array([r[4] for r in seg], dtype=float))
    rank = np.nan_to_num(np.array([r[3] for r in seg], dtype=float)) + np.nan_to_num(
        np.array([r[4] for r in seg], dtype=float))
    x = np.array([r[5] for r in seg], dtype=float)
    y = np.array([r[6] for r in seg], dtype=float)
    if not (np.array_equal(level, previous["level"][rows]) and np.array_equal(rank, previous["rank"][rows])
            and np.array_equal(x, previous["ax"][rows]) and np.array_equal(y, previous["ay"][rows])):
        return None
    versions[rows] = [r[1] for r in seg]
    return rows.tolist(), [r[8] for r in seg] + [r[9] for r in seg]


def _changed_nodes(engine: sa.Engine, node: list[sa.Row], previous: _Previous,
                   rows_of: Callable[[np.ndarray], np.ndarray], versions: np.ndarray) -> list[int] | None:
    """Rows of the changed drawn nodes (their versions updated).

    Rows of another version than the manifest's have changed; None unless every one of them
    was drawn before and after, at the same place and level.
    """
    k = np.array([r[1] for r in node], dtype=np.int64).view(np.uint64)
    rows = rows_of(k)
    retired = np.array([r[2] for r in node], dtype=bool)
    if ((rows >= 0) & retired).any():
        return None  # a drawn node of the tileset retired
    ids = [r[0] for r in node if not r[2]]
    if not ids:
        return []
    node_idx = read_index(engine, seg_ids=[], node_ids=ids)[1]
    drawn_now = set(node_idx["id"].astype(str))
    rows = rows[~retired]
    if any((rows[i] >= 0) != (ids[i] in drawn_now) for i in range(len(ids))):
        return None  # a node drawn now and not then, or the other way round
    if not len(node_idx):
        return []
    nrows = rows_of(node_idx["key"].to_numpy(np.int64).view(np.uint64))
    changed = node_idx["version"].to_numpy(np.int64) != previous["versions"][nrows]
    node_idx, nrows = node_idx[changed], nrows[changed]
    level = node_level(node_idx["is_source"].fillna(False).to_numpy(bool))
    if not (np.array_equal(node_idx["x"].to_numpy(float), previous["ax"][nrows])
            and np.array_equal(node_idx["y"].to_numpy(float), previous["ay"][nrows])
            and np.array_equal(level, previous["level"][nrows])):
        return None
    versions[nrows] = node_idx["version"].to_numpy(np.int64)
    return nrows.tolist()


def _read_tiles(engine: sa.Engine, previous: _Previous, dirty: set[int],
                rows_of: Callable[[np.ndarray], np.ndarray]
                ) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray, np.ndarray]:
    """The features of the tiles ``dirty``, read by id, and the tile of each."""
    tile = previous["tile"]
    in_dirty = np.isin(tile, np.fromiter(dirty, dtype=np.int64, count=len(dirty)))
    is_seg = previous["is_segment"]
    seg_ids, node_ids = previous.ids(in_dirty & is_seg), previous.ids(in_dirty & ~is_seg)
    # the index rows with the full records, and the pipe ends at the nodes, side by side
    with ThreadPoolExecutor(1) as pool:
        f_ends = pool.submit(_read_on, engine, _pipe_ends, node_ids)
        seg_rows, node_rows = read_index(engine, seg_ids=list(seg_ids), node_ids=list(node_ids), details=True)
        ends = f_ends.result()
    if len(node_rows):
        _pipe_heights(node_rows, ends)
    else:
        node_rows = node_rows.assign(pipe_z=np.zeros(0), pipe_d_mm=np.zeros(0))
    seg_tile = tile[rows_of(seg_rows["key"].to_numpy(np.int64).view(np.uint64))]
    node_tile = tile[rows_of(node_rows["key"].to_numpy(np.int64).view(np.uint64))]
    return seg_rows, node_rows, seg_tile, node_tile


def _refresh_boxes(tile: dict, entries: dict) -> tuple[np.ndarray, np.ndarray] | None:
    """Recompute bounding boxes bottom-up from the manifest's content boxes."""
    lo = np.full(3, np.inf)
    hi = np.full(3, -np.inf)
    if "content" in tile:
        e = entries[tile["content"]["uri"].removeprefix("t/").removesuffix(".glb")]
        lo, hi = np.minimum(lo, e["min"]), np.maximum(hi, e["max"])
        tile["content"]["boundingVolume"] = {"box": box_volume(np.asarray(e["min"]), np.asarray(e["max"]))}
    for child in tile.get("children", []):
        box = _refresh_boxes(child, entries)
        if box is not None:
            lo, hi = np.minimum(lo, box[0]), np.maximum(hi, box[1])
    if not np.isfinite(lo).all():
        return None
    tile["boundingVolume"] = {"box": box_volume(lo, hi)}
    return lo, hi


def _save_features(out: Path, arrays: dict) -> None:
    """Write the features' arrays: the versions apart, the rest in one file."""
    _save_versions(out, arrays["versions"])
    np.savez(out / (FEATURES + ".tmp.npz"), **{k: v for k, v in arrays.items() if k != "versions"})
    os.replace(out / (FEATURES + ".tmp.npz"), out / FEATURES)


def _save_versions(out: Path, versions: np.ndarray) -> None:
    tmp = out / (VERSIONS + f".tmp{os.getpid()}.npy")
    np.save(tmp, np.asarray(versions, dtype=np.int64))
    os.replace(tmp, out / VERSIONS)


class _Stages(dict):
    """Wall seconds of each stage of a build, and in ``cpu`` its CPU seconds: this process's and
    its worker processes' (counted once they have ended, as the mesh stage's pool has)."""

    def __init__(self) -> None:
        super().__init__()
        self.cpu: dict[str, float] = {}
        self._wall, self._cpu = time.perf_counter(), _cpu_seconds()

    def lap(self, name: str) -> None:
        """End stage ``name`` (the next one begins)."""
        wall, cpu = time.perf_counter(), _cpu_seconds()
        self[name] = round(wall - self._wall, 3)
        self.cpu[name] = round(cpu - self._cpu, 3)
        self._wall, self._cpu = wall, cpu


def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def _report(out: Path, full: bool, entries: dict, results: list, n_seg: int, n_node: int, seconds: float,
            stages: _Stages, removed: int) -> dict:
    return {
        "out_dir": str(out),
        "tileset": str(out / TILESET),
        "full": full,
        "tiles": len(entries),
        "tiles_written": len(results),
        "tiles_kept": len(entries) - len(results),
        "tiles_removed": removed,
        "features": int(n_seg + n_node),
        "segments": int(n_seg),
        "nodes": int(n_node),
        "features_written": int(sum(r[4] for r in results)),
        "triangles": int(sum(e["triangles"] for e in entries.values())),
        "triangles_written": int(sum(r[3] for r in results)),
        "bytes": int(sum(e["bytes"] for e in entries.values())),
        "bytes_written": int(sum(r[5] for r in results)),
        "seconds": round(seconds, 3),
        "stages": dict(stages),
        "cpu_stages": stages.cpu,
    }


def _remove_unlisted(folder: Path, out: Path, keep: set[str]) -> None:
    for p in folder.rglob("*.glb"):
        key = p.relative_to(folder).with_suffix("").as_posix()
        if key not in keep:
            p.unlink()
    for d in sorted((p for p in folder.rglob("*") if p.is_dir()), reverse=True):
        if not any(d.iterdir()):
            shutil.rmtree(d, ignore_errors=True)


def _read_details(engine: sa.Engine, seg: pd.DataFrame, nodes: pd.DataFrame, sel_seg: np.ndarray,
                  sel_node: np.ndarray, whole: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Index rows ``sel_seg``/``sel_node`` joined with their full records (two connections).

    With ``whole`` (the index is the whole network), most of it is read in one sweep.
    """
    all_seg = whole and len(sel_seg) > len(seg) // 2
    all_node = whole and len(sel_node) > len(nodes) // 2

    def segments() -> pd.DataFrame:
        with engine.connect() as conn:
            return read_segments(conn, None if all_seg else seg["id"].to_numpy()[sel_seg])

    def node_heights() -> pd.DataFrame:
        with engine.connect() as conn:
            # With every segment at hand, pipe heights at nodes come from them (below); else
            # from the pipe ends read here, averaged in the same order (not PostgreSQL's avg)
            if not all_seg:
                return _nodes_with_heights(conn, nodes["id"].to_numpy(object)[sel_node])
            return read_nodes(conn, None if all_node else nodes["id"].to_numpy()[sel_node],
                              pipe_heights=False)

    with ThreadPoolExecutor(2) as pool:
        f_seg, f_node = pool.submit(segments), pool.submit(node_heights)
        seg_detail, node_detail = f_seg.result(), f_node.result()
    seg_rows = _detail(seg, sel_seg, seg_detail)
    if all_seg and not node_detail.empty:
        # Pipe centreline height at a node: mean of the ends of the pipes meeting there.
        d = np.fmax(seg_rows["diameter_mm"].to_numpy(float), seg_rows["height_mm"].to_numpy(float))
        _pipe_heights(node_detail, pd.DataFrame({
            "node": np.concatenate([seg_rows["from_key"].to_numpy(np.int64), seg_rows["to_key"].to_numpy(np.int64)]),
            "z": np.concatenate([seg_rows["from_z"].to_numpy(float), seg_rows["to_z"].to_numpy(float)]),
            "d": np.concatenate([d, d])}))
    node_rows = _detail(nodes, sel_node, node_detail)
    return seg_rows, node_rows


def _whole_rows(seg: pd.DataFrame, nodes: pd.DataFrame, sel_seg: np.ndarray, sel_node: np.ndarray
                ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Rows ``sel_seg``/``sel_node`` of an index read with its details (the whole network), the
    nodes with the heights of the pipes meeting there (as :func:`_read_details` computes them)."""
    seg_rows = seg if len(sel_seg) == len(seg) else seg.iloc[sel_seg].reset_index(drop=True)
    node_rows = nodes.iloc[sel_node].reset_index(drop=True)
    d = np.fmax(seg["diameter_mm"].to_numpy(float), seg["height_mm"].to_numpy(float))
    _pipe_heights(node_rows, pd.DataFrame({
        "node": np.concatenate([seg["from_key"].to_numpy(np.int64), seg["to_key"].to_numpy(np.int64)]),
        "z": np.concatenate([seg["from_z"].to_numpy(float), seg["to_z"].to_numpy(float)]),
        "d": np.concatenate([d, d])}))
    return seg_rows, node_rows


def _pipe_heights(node_detail: pd.DataFrame, ends: pd.DataFrame) -> None:
    """Set ``pipe_z`` (mean height of the pipe ends at each node) and ``pipe_d_mm`` (the largest
    pipe there) from ``ends`` (node key, z, d), summed in one order wherever they were read."""
    ends = ends.iloc[np.lexsort((ends["d"].to_numpy(float), ends["z"].to_numpy(float),
                                 ends["node"].to_numpy(np.int64)))]
    at = ends.groupby("node", sort=False).agg(pipe_z=("z", "mean"), pipe_d_mm=("d", "max"))
    at = at.reindex(node_detail["key"].to_numpy(np.int64))
    node_detail["pipe_z"] = at["pipe_z"].to_numpy()
    node_detail["pipe_d_mm"] = at["pipe_d_mm"].to_numpy()


def _detail(index: pd.DataFrame, rows: np.ndarray, detail: pd.DataFrame) -> pd.DataFrame:
    """Index rows ``rows`` joined on ``key`` with their full records (which may hold more rows)."""
    base = index.iloc[rows].reset_index(drop=True)
    extra = [c for c in detail.columns if c not in ("id", "key")]
    if detail.empty:
        for c in extra:
            base[c] = pd.Series(np.full(len(base), np.nan))
        return base
    keys = detail["key"].to_numpy(np.int64)
    order = np.argsort(keys, kind="stable")
    want = base["key"].to_numpy(np.int64)
    pos = np.minimum(np.searchsorted(keys[order], want), len(keys) - 1)
    take = order[pos]
    if not np.all(keys[take] == want):
        raise NetworkChanged("features changed while the tiles were read; run the build again",
                             zh="读取瓦片期间要素发生了变化；请重新生成")
    picked = detail.iloc[take].reset_index(drop=True)
    for c in extra:
        base[c] = picked[c]
    return base


def _dirty_tiles(engine: sa.Engine, previous: _Previous, keys: np.ndarray, versions: np.ndarray,
                 tile_of: np.ndarray, tile_keys: np.ndarray, n_seg: int, seg_ids: pd.Series,
                 node_ids: pd.Series) -> set[str]:
    """Keys of the tiles whose features differ from the manifest's (their old and new tiles)."""
    old_keys = previous["keys"]
    old_tiles = np.asarray(previous["tile_keys"]).astype(object)[previous["tile"]]
    cur_tiles = tile_keys[tile_of] if len(keys) else np.zeros(0, object)
    order = np.argsort(old_keys, kind="stable")
    pos = np.searchsorted(old_keys[order], keys)
    pos = np.minimum(pos, max(len(old_keys) - 1, 0))
    match = order[pos] if len(old_keys) else np.zeros(len(keys), np.int64)
    found = (old_keys[match] == keys) if len(old_keys) else np.zeros(len(keys), bool)
    same = found & (previous["versions"][match] == versions) & (old_tiles[match] == cur_tiles)
    changed = ~same
    still = np.zeros(len(old_keys), bool)
    still[match[found]] = True
    gone = ~still
    dirty = set(cur_tiles[changed]) | set(old_tiles[match[changed & found]]) | set(old_tiles[gone])
    # Fittings sit at their pipes' height: a changed segment dirties its end nodes' tiles.
    is_seg = np.arange(len(keys)) < n_seg
    changed_seg_rows = np.flatnonzero(changed & is_seg)
    touched = list(seg_ids.to_numpy(object)[changed_seg_rows])
    touched += list(previous.ids(gone & previous["is_segment"]))
    touched += list(previous.ids(match[changed & found & is_seg]))
    with engine.connect() as conn:
        ends = segment_end_nodes(conn, sorted({str(i) for i in touched}))
    if ends:
        at = pd.Index(node_ids.to_numpy(object)).get_indexer(sorted(ends))
        dirty |= {cur_tiles[n_seg + i] for i in at if i >= 0}
    return {str(k) for k in dirty}


# --------------------------------------------------------------------------- meshing on a Dask cluster

#: Features (segments and drawn nodes) of one cluster task: neighbouring tiles, read together.
BATCH_FEATURES = 20_000
#: The marker a worker looks for in the tileset folder (proof that it writes where the build does).
_MARKER = ".dask-{token}"


def _on_cluster(settings: TwinSettings, cluster: Cluster, tiles: int) -> bool:
    """Whether the tiles are meshed on a cluster: when asked for (a client or True), or when
    ``TWIN_DASK_SCHEDULER`` names one and there are enough tiles to build."""
    if cluster is None:
        return bool(settings.dask_scheduler) and tiles >= PARALLEL_MIN_TILES
    return cluster is not False and tiles > 0


def _batches(seg_ids: np.ndarray, node_ids: np.ndarray, seg_tile: np.ndarray, node_tile: np.ndarray,
             build: list[int], tile_keys: np.ndarray, per_task: int) -> list[tuple[list, list, list]]:
    """Tasks of neighbouring tiles (in tile order), about ``per_task`` features each: the tiles
    ``(index, key, s0, s1, n0, n1)`` and the ids of their segments and nodes, in tile order."""
    s_order = np.argsort(seg_tile, kind="stable")
    n_order = np.argsort(node_tile, kind="stable")
    seg_ids, seg_tile = seg_ids[s_order], seg_tile[s_order]
    node_ids, node_tile = node_ids[n_order], node_tile[n_order]
    build_arr = np.sort(np.asarray(build, dtype=np.int64))
    s_lo, s_hi = np.searchsorted(seg_tile, build_arr, "left"), np.searchsorted(seg_tile, build_arr, "right")
    n_lo, n_hi = np.searchsorted(node_tile, build_arr, "left"), np.searchsorted(node_tile, build_arr, "right")
    out: list[tuple[list, list, list]] = []
    first = 0
    size = (s_hi - s_lo) + (n_hi - n_lo)
    while first < len(build_arr):
        last = first + max(1, int(np.searchsorted(np.cumsum(size[first:]), per_task, "left")))
        last = min(last, len(build_arr))
        s0, n0 = int(s_lo[first]), int(n_lo[first])
        tiles = [(int(build_arr[k]), str(tile_keys[build_arr[k]]), int(s_lo[k]) - s0, int(s_hi[k]) - s0,
                  int(n_lo[k]) - n0, int(n_hi[k]) - n0) for k in range(first, last)]
        out.append((tiles, list(seg_ids[s0:int(s_hi[last - 1])]), list(node_ids[n0:int(n_hi[last - 1])])))
        first = last
    return out


def _mesh_on_cluster(settings: TwinSettings, cluster: Cluster, seg_ids: np.ndarray, node_ids: np.ndarray,
                     seg_tile: np.ndarray, node_tile: np.ndarray, build: list[int], tile_keys: np.ndarray,
                     frame: Frame, out: Path, step: Progress) -> list[tuple]:
    """Mesh and write the tiles ``build`` on a Dask cluster; the same results as :func:`_mesh_tiles`."""
    marker = out / _MARKER.format(token=uuid.uuid4().hex)
    marker.write_bytes(b"")
    results: list[tuple] = []
    try:
        with using_cluster(settings, True if cluster is None else cluster) as client:
            # at least four tasks per worker (an even load), each of at least one tile
            per_task = min(BATCH_FEATURES, (len(seg_ids) + len(node_ids)) // (4 * max(worker_count(client), 1)) + 1)
            tasks = _batches(seg_ids, node_ids, seg_tile, node_tile, build, tile_keys, per_task)
            tasks.sort(key=lambda t: -(len(t[1]) + len(t[2])))  # biggest first: an even load
            step("meshing tiles", 0, len(build))

            def heard(batch: list[tuple]) -> None:
                results.extend(batch)
                step("meshing tiles", len(results), len(build))

            run_tasks(client, _mesh_batch, tasks, settings, frame, str(out), marker.name, done=heard)
    finally:
        marker.unlink(missing_ok=True)
    return results


def _mesh_batch(task: tuple[list, list, list], settings: TwinSettings, frame: Frame, out_dir: str,
                marker: str) -> list[tuple]:
    """On a worker: read the task's features from the twin by id, mesh and write its tiles."""
    tiles, seg_ids, node_ids = task
    out = Path(out_dir)
    if not (out / marker).exists():
        raise ConfigError(f"the tileset folder {out} is not visible on the Dask "
                          "worker: give the workers shared storage (TWIN_TILES_DIR)",
                          zh=f"Dask 工作进程看不到瓦片目录 {out}：请为工作进程提供共享存储（TWIN_TILES_DIR）")
    engine = make_engine(settings)
    try:
        seg_idx, node_idx = read_index(engine, seg_ids=seg_ids, node_ids=node_ids)
        seg_idx, node_idx = _in_order(seg_idx, seg_ids), _in_order(node_idx, node_ids)
        with ThreadPoolExecutor(2) as pool:
            f_seg = pool.submit(_read_on, engine, read_segments, np.asarray(seg_ids, dtype=object))
            f_node = pool.submit(_read_on, engine, _nodes_with_heights, np.asarray(node_ids, dtype=object))
            seg_detail, node_detail = f_seg.result(), f_node.result()
    finally:
        engine.dispose()
    seg_rows = _detail(seg_idx, np.arange(len(seg_idx)), seg_detail)
    node_rows = _detail(node_idx, np.arange(len(node_idx)), node_detail)
    return [_write_tile(job, seg_rows, node_rows, frame, out) for job in tiles]


def _read_on(engine: sa.Engine, read: Callable[[sa.Connection, np.ndarray], pd.DataFrame],
             ids: np.ndarray) -> pd.DataFrame:
    with engine.connect() as conn:
        return read(conn, ids)


def _nodes_with_heights(conn: sa.Connection, ids: np.ndarray) -> pd.DataFrame:
    """Heights of the drawn nodes ``ids``, the pipe heights from every pipe meeting there (as a
    full build computes them)."""
    detail = read_nodes(conn, ids, pipe_heights=False)
    if detail.empty:
        return detail
    _pipe_heights(detail, _pipe_ends(conn, ids))
    return detail


def _pipe_ends(conn: sa.Connection, ids: np.ndarray) -> pd.DataFrame:
    """The ends of the pipes at the nodes ``ids``: node key, height ``z`` and size ``d`` (mm)."""
    ends = copy_frame(conn, """
        SELECT hashtextextended(from_node, 2) AS node, from_z AS z, diameter_mm, height_mm
          FROM current_segment WHERE from_node = ANY(%s)
        UNION ALL
        SELECT hashtextextended(to_node, 2), to_z, diameter_mm, height_mm
          FROM current_segment WHERE to_node = ANY(%s)""", [list(ids), list(ids)],
        types={"node": pa.int64(), "z": pa.float64(), "diameter_mm": pa.float64(), "height_mm": pa.float64()})
    if ends.empty:
        ends = pd.DataFrame({"node": np.zeros(0, np.int64), "z": np.zeros(0), "diameter_mm": np.zeros(0),
                             "height_mm": np.zeros(0)})
    ends["d"] = np.fmax(ends["diameter_mm"].to_numpy(float), ends["height_mm"].to_numpy(float))
    return ends


def _in_order(index: pd.DataFrame, ids: list) -> pd.DataFrame:
    """The index rows of ``ids``, in that order (a feature gone since the build began: NetworkChanged)."""
    pos = (pd.Index(index["id"].astype(str)).get_indexer(np.asarray(ids, dtype=object)) if len(index)
           else np.full(len(ids), -1))
    if (pos < 0).any():
        raise NetworkChanged("features changed while the tiles were read; run the build again",
                             zh="读取瓦片期间要素发生了变化；请重新生成")
    return index.iloc[pos].reset_index(drop=True)
