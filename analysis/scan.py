"""The whole-network scan: collision and clearance over every live pipe of the twin.

One read (:func:`load_scan_network`, a COPY parsed by Arrow), one set of straight pieces and
one candidate search (widened per utility by its largest clearance rule and by the survey
tolerance) shared by both analyses. Where
the platform forks, clearance runs in a child process beside collision: the child gets the
arrays by ``fork`` (nothing is pickled on the way in), sends its report back through a pipe
and exits; without fork, or with ``workers=1``, the two run one after the other.

The server's ``network-scan`` process, ``twin analyze scan`` and ``bench/analysis.py`` all
call :func:`scan_network` (storing its findings, through :func:`scan_findings`: the same scan
with every finding as one Arrow table, so no dict is made per finding), so the benchmark times
what the server runs. Python's cyclic garbage collector is paused while a scan runs here: it
makes millions of objects that live to its end and no cycles.

Examples
--------
>>> result = scan_network(engine, limit=10)  # doctest: +SKIP
>>> result["collision"]["counts"], result["clearance"]["counts"]  # doctest: +SKIP
({'hard': 41, 'duplicate': 0, 'candidate_pairs': 5120}, {'horizontal': 0, 'vertical': 120})
"""

from __future__ import annotations

import contextlib
import contextvars
import gc
import logging
import math
import multiprocessing as mp
import os
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, fields, replace
from itertools import groupby
from operator import attrgetter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import sqlalchemy as sa

from analysis.accuracy import load_survey_accuracy
from analysis.clash import ClashReport, collisions
from analysis.clearance import (
    ClearancePrep,
    ClearanceReport,
    clearances,
    load_clearance_rules,
    prepare_clearances,
    rule_margins,
    rule_reach_m,
)
from analysis.network import Network, line_vertices
from analysis.pieces import Pieces, candidate_pairs, combine, first_findings
from twin.arrow import copy_table
from twin.dask import Cluster, run_tasks, using_cluster, worker_count
from twin.db import engine_settings, make_engine, twin_srid
from twin.domain import STATUSES
from twin.errors import DatabaseError, InputError
from twin.schema import names
from twin.settings import TwinSettings

__all__ = ["scan_network", "scan_findings", "load_scan_network", "truncate_findings", "finding_table",
           "FINDING_TEXT", "FINDING_NUMBERS", "DEFAULT_INCLUDE"]

log = logging.getLogger(__name__)

#: Pipe statuses a scan reads unless told otherwise.
DEFAULT_INCLUDE = ("active", "planned")
#: progress(percent, message): how far a scan is.
Progress = Callable[[int, str], None]

#: What the scan reads of the segments (the catalogue's ``reads="scan"`` columns).
_SCAN_COLUMNS = names("segment", reads="scan")
_NUMERIC = names("segment", reads="scan", type="number")
#: What the survey tolerance needs of the segments' end points (analysis.accuracy; the node
#: catalogue's ``reads="scan"`` columns).
_END_COLUMNS = names("node", reads="scan")
_END_NUMERIC = names("node", reads="scan", type="number")


def _statuses(include: Iterable[str]) -> list[str]:
    """The statuses asked for, once each; an unknown one is an input error."""
    wanted = list(dict.fromkeys(include))
    unknown = [s for s in wanted if s not in STATUSES]
    if unknown or not wanted:
        raise InputError(f"pipe status {unknown[0] if unknown else '(none)'!r} is not one of "
                         f"{', '.join(STATUSES)}",
                         zh=f"管线状态 {unknown[0] if unknown else '(无)'!r} 不是 {'、'.join(STATUSES)} 之一")
    return wanted


def load_scan_network(engine: sa.Engine, include: Iterable[str] = DEFAULT_INCLUDE,
                      box: tuple[float, float, float, float] | None = None) -> Network:
    """The live segments with only the columns collision and clearance read, streamed with COPY.

    Two COPYs parsed by Arrow, the end points' on a second connection at the same time (the
    database works on the other core meanwhile); the Network's ``nodes`` hold only what the
    survey tolerance needs of the end points (survey class, appurtenance, feature, ground:
    cheaper than joining them onto the segments; :func:`analysis.accuracy.segment_tolerances`).
    Centrelines come as hex WKB decoded in numpy (:func:`analysis.network.line_vertices`); text
    columns are plain object arrays (NaN where missing), read by the analyses without a copy.
    ``box`` (xmin, ymin, xmax, ymax in the twin's CRS): only the segments whose extent meets it,
    whole, and their end points (a partition of the scan on a cluster).
    """
    types = {c: (pa.float64() if c in _NUMERIC else pa.string()) for c in (*_SCAN_COLUMNS, "wkb")}
    where, params = "status = ANY(%s)", [_statuses(include)]
    node_query = f"SELECT id, {', '.join(_END_COLUMNS)} FROM current_node"
    node_types = {c: (pa.float64() if c in _END_NUMERIC else pa.string()) for c in ("id", *_END_COLUMNS)}
    with engine.connect() as conn:
        if box is not None:
            where += f" AND geom && ST_MakeEnvelope(%s, %s, %s, %s, {twin_srid(conn)})"
            params += [float(v) for v in box]
            node_query += (" WHERE id IN (SELECT unnest(ARRAY[from_node, to_node]) FROM current_segment"
                           f" WHERE {where})")
        query = (f"SELECT {', '.join(_SCAN_COLUMNS)}, encode(ST_AsBinary(geom, 'NDR'), 'hex') AS wkb "
                 f"FROM current_segment WHERE {where}")
        with ThreadPoolExecutor(1) as pool:
            # the caller's context (twin.db.unlimited_statements: a job's statements run long)
            nodes_read = pool.submit(contextvars.copy_context().run, _copy_on_own_connection, engine,
                                     node_query, params if box is not None else None, node_types)
            table = copy_table(conn, query, params, types)
            node_table = nodes_read.result()
    if table is None:
        table = pa.table({c: pa.array([], type=t) for c, t in types.items()})
    seg = pd.DataFrame({c: _plain(table.column(c)) for c in _SCAN_COLUMNS}, copy=False)
    vertices, offsets = line_vertices(table.column("wkb"))
    nodes = (node_table.to_pandas() if node_table is not None
             else pd.DataFrame({c: pd.Series(dtype=object) for c in node_types}))
    return Network(seg, nodes, np.empty((0, 3)), vertices, offsets)


def _copy_on_own_connection(engine: sa.Engine, query: str, params: list | None,
                            types: dict[str, pa.DataType]) -> pa.Table | None:
    """:func:`twin.arrow.copy_table` on a connection of its own (a thread beside another COPY)."""
    with engine.connect() as conn:
        return copy_table(conn, query, params, types)


def _plain(column: pa.ChunkedArray) -> pd.Series:
    """An Arrow column as pandas: numbers as float64, text as an object array of ``str`` with NaN
    where missing (what a ``str`` column's ``to_numpy()`` gives, without building it anew on
    every read: an Arrow-backed column makes a million Python strings each time)."""
    if pa.types.is_floating(column.type):
        return pd.Series(column.to_numpy(), dtype=float)
    values = column.to_numpy(zero_copy_only=False)
    if column.null_count:
        values[column.is_null().to_numpy(zero_copy_only=False)] = np.nan
    return pd.Series(values, dtype=object)


def truncate_findings(report: dict, key: str, limit: int | None) -> dict:
    """Keep the first ``limit`` entries of the list ``report[key]`` (all with None); say whether some
    were left out (``truncated``). Counts and groups stay complete."""
    report[key], report["truncated"] = first_findings(report.get(key) or [], limit)
    return report


#: What :func:`finding_table` keeps of every finding: text fields, then numbers (m; ``overlap_m``
#: of a clash, the others' measured clearance in ``measured_m``). A field a finding class lacks
#: is null.
FINDING_TEXT = ("key", "kind", "verdict", "a_id", "b_id", "a_utility", "b_utility", "a_owner", "b_owner",
                "owners", "road", "rule_id")
FINDING_NUMBERS = ("measured_m", "required_m", "uncertainty_m", "x", "y", "z", "overlap_m")


def finding_table(findings: Sequence[object]) -> pa.Table:
    """Findings (clashes, clearance violations, pairs no rule covers) as one Arrow table, in their
    order, column by column: what the scan hands the findings store instead of a dict per finding
    (a quarter of a million at 1M segments; a table crosses the clearance child's pipe as a few
    buffers). Text missing (None or NaN) is null, as are numbers missing."""
    columns: dict[str, list] = {c: [] for c in (*FINDING_TEXT, *FINDING_NUMBERS)}
    for cls, run in groupby(findings, key=type):  # runs of one finding class
        run = list(run)
        known = {f.name for f in fields(cls)} | {n for n in dir(cls) if isinstance(getattr(cls, n), property)}
        for name, values in columns.items():
            values.extend(map(attrgetter(name), run) if name in known else [None] * len(run))
    arrays = [pa.array(columns[c], type=pa.string(), from_pandas=True) for c in FINDING_TEXT]
    arrays += [pa.array(columns[c], type=pa.float64(), from_pandas=True) for c in FINDING_NUMBERS]
    return pa.Table.from_arrays(arrays, names=[*FINDING_TEXT, *FINDING_NUMBERS])


def _quiet(percent: int, message: str) -> None:
    """A progress callback that reports nowhere."""


#: Candidate pairs (piece positions ``i``, ``j``).
Pairs = tuple[np.ndarray, np.ndarray]


class _ClearanceChild:
    """Clearance in a forked child: ``prepare()`` at once (the per-segment part, while the parent
    still looks for the candidate pairs), then ``run(prepared, pairs)`` when the parent sends the
    pairs. The child gets everything both close over by fork (nothing is pickled on the way in
    but the pairs), sends its report back through a pipe and exits (``os._exit``: no cleanup of
    the parent's connections)."""

    def __init__(self, prepare: Callable[[], object], run: Callable[[object, Pairs], dict]) -> None:
        self.prepare, self.run = prepare, run
        ctx = mp.get_context("fork")
        self._receive, send = ctx.Pipe(duplex=False)
        pairs_in, self._pairs_out = ctx.Pipe(duplex=False)

        def child() -> None:
            self._pairs_out.close()  # the parent's end: EOF here should the parent die
            t = time.perf_counter()
            prepared = prepare()
            busy = time.perf_counter() - t
            pairs = pairs_in.recv()
            t = time.perf_counter()
            send.send((run(prepared, pairs), busy + time.perf_counter() - t))

        self._proc = ctx.Process(target=child, name="scan-clearance", daemon=True)
        self._proc.start()
        send.close()  # the child holds the writing end now: EOF when it exits without a result
        pairs_in.close()

    def send_pairs(self, pairs: Pairs) -> None:
        """Hand the child the candidate pairs (a broken pipe is heard in :meth:`result`)."""
        try:
            self._pairs_out.send(pairs)
        except OSError:
            log.warning("the clearance child is gone (exit code %s)", self._proc.exitcode)
        finally:
            self._pairs_out.close()

    def result(self, pairs: Pairs) -> tuple[dict, float]:
        """The child's report and busy seconds; should it fail or die, clearance here instead (so a
        real error is raised where it belongs)."""
        try:
            return self._receive.recv()
        except EOFError:
            log.warning("the clearance child exited with %s without a result; running clearance here",
                        self._proc.exitcode)
            t = time.perf_counter()
            return self.run(self.prepare(), pairs), time.perf_counter() - t
        finally:
            self._receive.close()
            self._proc.join()

    def stop(self) -> None:
        """End the child unheard (the parent's side failed)."""
        self._proc.terminate()
        self._proc.join()
        self._receive.close()
        self._pairs_out.close()


def _can_fork(workers: int) -> bool:
    """Whether clearance may run in a forked child beside collision."""
    return (workers >= 2 and "fork" in mp.get_all_start_methods()
            and not mp.current_process().daemon)  # a daemonic process may not have children


def _analyses(net: Network, pieces: Pieces, rules: pd.DataFrame, limit: int | None, forked: bool,
              progress: Progress, tabulate: bool) -> tuple[Pairs, dict, dict, list[pa.Table], dict[str, float]]:
    """Candidate pairs, then collision and clearance reports (findings cut to ``limit``), every finding
    of each as a table (``tabulate``; else none) and the seconds each took. Forked: clearance
    prepares in a child while the pairs are found here."""

    def prepare() -> ClearancePrep:
        return prepare_clearances(pieces, rules)

    def clearance(prepared: object, pairs: Pairs) -> tuple[dict, pa.Table | None]:
        return _reported(clearances(net, pieces=pieces, pairs=pairs, prepared=prepared), limit, tabulate)

    t0 = time.perf_counter()
    child = _ClearanceChild(prepare, clearance) if forked else None
    try:
        pairs = candidate_pairs(pieces, margin_m=rule_margins(rules, pieces.segments))
        t1 = time.perf_counter()
        if child is not None:
            child.send_pairs(pairs)
        progress(45, f"{len(pairs[0]):,} candidate pairs; collision" + (" and clearance" if forked else ""))
        # near misses are pairs clearance judges (uncertain): listed once, there
        clash, clash_table = _reported(collisions(net, pieces=pieces, pairs=pairs, near_misses=False), limit,
                                       tabulate)
    except BaseException:
        if child is not None:
            child.stop()
        raise
    t_clash = time.perf_counter() - t1
    if child is not None:
        progress(70, f"{clash['counts']['hard']:,} hard clashes; waiting for clearance")
        (clear, clear_table), t_clear = child.result(pairs)
    else:
        progress(70, f"{clash['counts']['hard']:,} hard clashes; clearance")
        t2 = time.perf_counter()
        (clear, clear_table), t_clear = clearance(prepare(), pairs), time.perf_counter() - t2
    tables = [t for t in (clash_table, clear_table) if t is not None]
    return pairs, clash, clear, tables, {"pairs": t1 - t0, "collision": t_clash, "clearance": t_clear,
                                         "analyses_wall": time.perf_counter() - t1}


def _reported(report: ClashReport | ClearanceReport, limit: int | None,
              tabulate: bool) -> tuple[dict, pa.Table | None]:
    """A report as its dict (findings cut to ``limit``) and, with ``tabulate``, all its findings as a
    table (:func:`finding_table`)."""
    return _listed(report, limit), (finding_table(report.findings) if tabulate else None)


def scan_network(
    engine: sa.Engine,
    *,
    include: Iterable[str] = DEFAULT_INCLUDE,
    rules: pd.DataFrame | Path | str | None = None,
    settings: TwinSettings | None = None,
    limit: int | None = None,
    progress: Progress | None = None,
    workers: int = 2,
    cluster: Cluster = None,
    partition_m: float | None = None,
) -> dict:
    """Hard clashes, duplicates and clearance violations across the whole live network.

    ``include``: pipe statuses scanned; ``rules``: a clearance table or CSV path (default: the
    one stored in the twin, else ``settings``' or the shipped one); ``limit``: findings listed
    per analysis (counts are complete); ``progress(percent, message)`` hears how far it is;
    ``workers>=2`` runs clearance in a forked process beside collision where fork exists.
    ``cluster``: a Dask client, True (one from ``settings``: ``TWIN_DASK_SCHEDULER`` or a
    LocalCluster) or False; None uses one when ``TWIN_DASK_SCHEDULER`` names it. On a cluster
    the network is cut into square partitions (``partition_m`` wide; by default about
    150,000 segments or four per worker), each read and scanned by a worker with an overlap
    wide enough for every pair a rule could judge; the result is the same. Without a cluster, a
    network of more than ``TWIN_SCAN_PARTITION_ABOVE`` segments (or any, when ``partition_m``
    is given) is scanned by the same partitions on ``workers`` spawned processes of this machine
    (one a core; one at a time in this process with ``workers=1``): the memory of a partition
    instead of the whole network's.

    Returns ``segments``, ``pieces``, ``candidate_pairs``, ``include``, the ``collision`` and
    ``clearance`` reports (as their ``as_dict`` with ``truncated``: clashes, near misses and
    clearance findings each carry ``verdict``, ``measured_m``, ``required_m``,
    ``uncertainty_m``; the clearance report lists ``uncertain`` and ``no_rule`` findings apart),
    ``verdicts`` (counts of violation, uncertain and no_rule over both), ``workers`` and
    ``timings_s`` (load, candidates, collision, clearance, analyses_wall, total; by partitions
    load, partitions, merge, total, and ``partitions``).
    """
    return _scan(engine, include=include, rules=rules, settings=settings, limit=limit, progress=progress,
                 workers=workers, cluster=cluster, partition_m=partition_m, tabulate=False)[0]


def scan_findings(engine: sa.Engine, **scan: Any) -> tuple[dict, pa.Table]:
    """:func:`scan_network` (``scan``: its keyword arguments) and every finding of it, collision's
    then clearance's, as one table (:func:`finding_table`) whatever ``limit`` lists: what the
    findings store reads (:func:`analysis.findings.scan_and_store`), without a dict per finding."""
    result, table = _scan(engine, **scan, tabulate=True)
    return result, table


def _scan(
    engine: sa.Engine,
    *,
    include: Iterable[str] = DEFAULT_INCLUDE,
    rules: pd.DataFrame | Path | str | None = None,
    settings: TwinSettings | None = None,
    limit: int | None = None,
    progress: Progress | None = None,
    workers: int = 2,
    cluster: Cluster = None,
    partition_m: float | None = None,
    tabulate: bool,
) -> tuple[dict, pa.Table | None]:
    """:func:`scan_network`, with every finding as a table too when ``tabulate``."""
    report = progress or _quiet
    statuses = _statuses(include)
    if partition_m is not None and not partition_m > 0:
        raise InputError(f"partition_m must be above 0, not {partition_m}",
                         zh=f"partition_m 分区尺寸须大于 0，不是 {partition_m}")
    with using_cluster(settings, cluster) as client:
        if client is not None:
            table = rules if isinstance(rules, pd.DataFrame) else load_clearance_rules(rules, settings, db=engine)
            return _scan_by_partitions(engine, _on_cluster(client), max(worker_count(client), 1), settings,
                                       statuses, table, limit, partition_m, report, tabulate)
    own = settings or engine_settings(engine)
    if own is not None and (partition_m is not None or _more_segments(engine, statuses, own.scan_partition_above)):
        # Too large to hold at once (about 2.5 GiB a million segments): a partition at a time here.
        table = rules if isinstance(rules, pd.DataFrame) else load_clearance_rules(rules, own, db=engine)
        processes = _processes(workers)
        with _cyclic_gc_paused():
            return _scan_by_partitions(engine, _in_processes(processes) if processes > 1 else _here, processes,
                                       own, statuses, table, limit, partition_m, report, tabulate)
    with _cyclic_gc_paused():
        return _scan_here(engine, statuses, rules, settings, limit, report, workers, tabulate)


def _more_segments(engine: sa.Engine, statuses: list[str], limit: int) -> bool:
    """Whether a scan would read more than ``limit`` segments of these statuses: counted only when
    the planner's estimate of the whole table (every status; kept by ANALYZE) is above it."""
    with engine.connect() as conn:
        estimate = conn.execute(sa.text("SELECT reltuples FROM pg_class WHERE oid = 'segment'::regclass")).scalar()
        if estimate is not None and 0 <= estimate <= limit:
            return False
        return int(conn.execute(sa.text("SELECT count(*) FROM current_segment WHERE status = ANY(:st)"),
                                {"st": statuses}).scalar()) > limit


@contextlib.contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off meanwhile: the scan makes millions of objects that
    live to its end (geometries of the candidate search, findings) and no cycles, and every few
    hundred thousand of them the collector walked them all again (seconds at 1M segments).
    Memory is still freed by reference counting."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def _scan_here(engine: sa.Engine, statuses: list[str], rules: pd.DataFrame | Path | str | None,
               settings: TwinSettings | None, limit: int | None, report: Progress, workers: int,
               tabulate: bool) -> tuple[dict, pa.Table | None]:
    """:func:`scan_network` in this process (and a forked child)."""
    t0 = time.perf_counter()
    report(2, "reading the network")
    net = load_scan_network(engine, statuses)
    t1 = time.perf_counter()
    n = int(len(net.segments))
    if not n:
        raise InputError(f"the twin has no pipes of status {', '.join(statuses)} to scan",
                         zh=f"孪生库中没有状态为 {'、'.join(statuses)} 的管线可扫描")
    report(30, f"{n:,} segments read; finding candidate pairs")
    table = rules if isinstance(rules, pd.DataFrame) else load_clearance_rules(rules, settings, db=engine)
    pieces = _in_frame(combine(net), net, _extent_origin(net.vertices))
    t2 = time.perf_counter()
    forked = _can_fork(workers)
    pairs, clash, clear, tables, seconds = _analyses(net, pieces, table, limit, forked, report, tabulate)
    t3 = time.perf_counter()
    report(95, "writing the result")
    timings = {"load": t1 - t0, "candidates": t2 - t1 + seconds.pop("pairs"), **seconds, "total": t3 - t0}
    return (_result(n, int(len(pieces.seg)), int(len(pairs[0])), statuses, clash, clear, 2 if forked else 1,
                    timings), pa.concat_tables(tables) if tabulate else None)


def _result(n: int, n_pieces: int, n_pairs: int, statuses: list[str], clash: dict, clear: dict, workers: int,
            timings: dict[str, float]) -> dict:
    """The scan's result (see :func:`scan_network`)."""
    return {
        "segments": n,
        "pieces": n_pieces,
        "candidate_pairs": n_pairs,
        "include": statuses,
        "collision": clash,
        "clearance": clear,
        "verdicts": {
            "violation": clash["counts"]["violation"] + clear["counts"]["horizontal"] + clear["counts"]["vertical"],
            "uncertain": clash["counts"]["uncertain"] + clear["counts"]["uncertain"],
            "no_rule": clear["counts"]["no_rule"],
        },
        "workers": workers,
        "timings_s": {k: round(v, 2) for k, v in timings.items()},
    }


# --------------------------------------------------------------------------- the scan on a cluster
#
# The extent is cut into square cells. A worker reads every segment whose extent meets its cell
# widened by the overlap (whole segments, their end points) and scans them as the single
# process does, in the same local frame (origin: the centre of the network's extent), so every
# pair it shares with the single process is measured to the bit. Each segment pair belongs to
# one cell: the one holding the centre of the intersection of the two segments' extents, each
# grown as the candidate search grows it (reach + half the rule margin + survey tolerance). The
# overlap bounds that growth, so a cell's worker holds both segments of every pair it owns
# (and the duplicates beside them, which make their nodes one); it keeps the findings and
# counts of the pairs it owns, and the merge sorts them as collision and clearance do.

#: Metres added to the overlap: duplicates (a few cm apart) chained beside a pair.
PARTITION_SLACK_M = 1.0
#: Segments a partition holds, about, when its size is not given (and at least four per worker).
PARTITION_SEGMENTS = 150_000


@dataclass(frozen=True)
class _Grid:
    """Square cells over the network's extent; the last row and column reach past it."""

    x0: float
    y0: float
    size_m: float
    nx: int
    ny: int
    overlap_m: float
    origin: tuple[float, float, float]

    def cell_of(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """The cell of each point (points outside the extent go to the nearest cell)."""
        ix = np.clip(np.floor((np.asarray(x) - self.x0) / self.size_m), 0, self.nx - 1).astype(np.int64)
        iy = np.clip(np.floor((np.asarray(y) - self.y0) / self.size_m), 0, self.ny - 1).astype(np.int64)
        return iy * self.nx + ix

    def read_box(self, cell: int) -> tuple[float, float, float, float]:
        """What the cell's worker reads: the cell widened by the overlap (edge cells: unbounded)."""
        iy, ix = divmod(cell, self.nx)
        far = 1e12
        lo_x = self.x0 + ix * self.size_m - self.overlap_m if ix else -far
        lo_y = self.y0 + iy * self.size_m - self.overlap_m if iy else -far
        hi_x = self.x0 + (ix + 1) * self.size_m + self.overlap_m if ix < self.nx - 1 else far
        hi_y = self.y0 + (iy + 1) * self.size_m + self.overlap_m if iy < self.ny - 1 else far
        return lo_x, lo_y, hi_x, hi_y


def _extent_origin(vertices: np.ndarray) -> np.ndarray:
    """The local frame's origin: the centre of the vertices' extent, in whole metres."""
    if not len(vertices):
        return np.zeros(3)
    lo, hi = np.nanmin(vertices, axis=0), np.nanmax(vertices, axis=0)
    origin = np.round((lo + hi) / 2, 0)
    return np.where(np.isfinite(origin), origin, 0.0)


def _in_frame(pieces: Pieces, net: Network, origin: np.ndarray) -> Pieces:
    """``pieces`` with their coordinates taken from ``net``'s vertices less ``origin`` (one rounding,
    as :func:`analysis.pieces.combine` does with its own origin): a frame every partition shares."""
    _, a, b = net.pieces()
    nv = np.diff(net.offsets)
    has = nv > 0
    st = np.full((len(nv), 3), np.nan)
    en = np.full((len(nv), 3), np.nan)
    st[has] = net.vertices[net.offsets[:-1][has]]
    en[has] = net.vertices[net.offsets[1:][has] - 1]
    return replace(pieces, p0=a - origin, p1=b - origin, seg_start=st - origin, seg_end=en - origin,
                   origin=np.asarray(origin, dtype=float))


def _grid(engine: sa.Engine, statuses: list[str], table: pd.DataFrame, partition_m: float | None,
          workers: int) -> tuple[_Grid, int]:
    """The cells of a scan and the number of segments, from the extent and bounds PostGIS gives.

    The overlap bounds how far a candidate pair's segments grow: the largest reach, half the
    largest rule margin and the largest survey tolerance (from the deepest end point).
    """
    with engine.connect() as conn:
        row = conn.execute(sa.text("""
            SELECT count(*), min(ST_XMin(s.geom)), min(ST_YMin(s.geom)), min(ST_ZMin(s.geom)),
                   max(ST_XMax(s.geom)), max(ST_YMax(s.geom)), max(ST_ZMax(s.geom)),
                   max(greatest(coalesce(s.diameter_mm, 0),
                                sqrt(coalesce(s.width_mm, 0) ^ 2 + coalesce(s.height_mm, 0) ^ 2))) / 2000,
                   max(greatest(nf.ground_z - ST_ZMin(s.geom), nt.ground_z - ST_ZMin(s.geom),
                                greatest(s.from_depth_m, s.to_depth_m)
                                + greatest(coalesce(s.diameter_mm, 0), coalesce(s.height_mm, 0)) / 1000))
              FROM current_segment s
              LEFT JOIN current_node nf ON nf.id = s.from_node
              LEFT JOIN current_node nt ON nt.id = s.to_node
             WHERE s.status = ANY(:st)"""), {"st": statuses}).one()
    n = int(row[0])
    if not n:
        raise InputError(f"the twin has no pipes of status {', '.join(statuses)} to scan",
                         zh=f"孪生库中没有状态为 {'、'.join(statuses)} 的管线可扫描")
    lo, hi = np.array(row[1:4], dtype=float), np.array(row[4:7], dtype=float)
    limits = load_survey_accuracy()
    depth = max(float(row[8] or 0.0), float(limits["min_depth_m"].max()))
    tolerance = float(max((limits["plan_m"] + limits["plan_factor"] * depth).max(),
                          (limits["depth_m"] + limits["depth_factor"] * depth).max()))
    overlap = float(row[7] or 0.0) + rule_reach_m(table) / 2 + tolerance + PARTITION_SLACK_M
    width, height = float(hi[0] - lo[0]), float(hi[1] - lo[1])
    if partition_m is None:
        cells = max(4 * workers, math.ceil(n / PARTITION_SEGMENTS))
        partition_m = max(math.sqrt(max(width * height, 1.0) / cells), 8 * overlap)
    nx, ny = max(1, math.ceil(width / partition_m)), max(1, math.ceil(height / partition_m))
    origin = np.where(np.isfinite(lo + hi), np.round((lo + hi) / 2, 0), 0.0)
    return _Grid(float(lo[0]), float(lo[1]), float(partition_m), nx, ny, overlap, tuple(origin.tolist())), n


def _pair_cells(grid: _Grid, net: Network, pieces: Pieces, margins: np.ndarray, sa_: np.ndarray,
                sb: np.ndarray) -> np.ndarray:
    """The cell owning each segment pair ``(sa_, sb)``: where their grown extents meet, centred."""
    nv = np.diff(net.offsets)
    lo = np.full((len(nv), 2), np.nan)
    hi = np.full((len(nv), 2), np.nan)
    has = np.flatnonzero(nv > 0)
    if len(has):
        starts = net.offsets[:-1][has]
        lo[has] = np.minimum.reduceat(net.vertices[:, :2], starts, axis=0)
        hi[has] = np.maximum.reduceat(net.vertices[:, :2], starts, axis=0)
    rect = net.segments["shape"].to_numpy() == "rect"
    hw, hh = np.nan_to_num(net.half_width_m), np.nan_to_num(net.half_height_m)
    grow = (np.where(rect, np.hypot(hw, hh), hw) + margins / 2.0
            + np.maximum(pieces.plan_tol, pieces.depth_tol))[:, None]
    meet_lo = np.maximum(lo[sa_] - grow[sa_], lo[sb] - grow[sb])
    meet_hi = np.minimum(hi[sa_] + grow[sa_], hi[sb] + grow[sb])
    centre = (meet_lo + meet_hi) / 2
    return grid.cell_of(centre[:, 0], centre[:, 1])


def _scan_partition(cell: int, settings: TwinSettings, statuses: list[str], table: pd.DataFrame,
                    grid: _Grid) -> dict:
    """One cell's share of the scan, read by the worker from the twin: the findings and counts of
    the segment pairs (and segments) the cell owns."""
    t0 = time.perf_counter()
    engine = make_engine(settings)
    try:
        net = load_scan_network(engine, statuses, box=grid.read_box(cell))
    finally:
        engine.dispose()
    out = {"cell": cell, "segments": 0, "pieces": 0, "candidate_pairs": 0, "clashes": [], "violations": [],
           "uncertain": [], "no_rule": [], "checked": {}, "unruled": {}, "load_s": time.perf_counter() - t0}
    if not len(net.segments):
        return out
    pieces = _in_frame(combine(net), net, np.asarray(grid.origin))
    margins = rule_margins(table, pieces.segments)
    i, j = candidate_pairs(pieces, margin_m=margins)
    mine = _pair_cells(grid, net, pieces, margins, pieces.seg[i], pieces.seg[j]) == cell
    # collision sees every pair of the partition (duplicates beside a pair join its nodes)
    clash = collisions(net, pieces=pieces, pairs=(i, j), near_misses=False)
    ids = pd.Index(net.segments["id"].astype(str))
    a = ids.get_indexer([c.a_id for c in clash.clashes])
    b = ids.get_indexer([c.b_id for c in clash.clashes])
    owned = _pair_cells(grid, net, pieces, margins, a, b) == cell if len(a) else np.zeros(0, bool)
    clear = clearances(net, rules=table, pieces=pieces, pairs=(i[mine], j[mine]))
    seg_cell = _segment_cells(grid, net)
    out.update(segments=int((seg_cell == cell).sum()), pieces=int((seg_cell[pieces.seg] == cell).sum()),
               candidate_pairs=int(mine.sum()), clashes=[c for c, k in zip(clash.clashes, owned, strict=True) if k],
               violations=clear.violations, uncertain=clear.uncertain, no_rule=clear.no_rule,
               checked=clear.checked, unruled=clear.unruled, seconds=time.perf_counter() - t0)
    return out


def _segment_cells(grid: _Grid, net: Network) -> np.ndarray:
    """The cell owning each segment (for the counts): the one holding its first vertex."""
    nv = np.diff(net.offsets)
    first = net.vertices[np.minimum(net.offsets[:-1], max(len(net.vertices) - 1, 0))]
    return np.where(nv > 0, grid.cell_of(first[:, 0], first[:, 1]), -1)


#: run(fn, jobs, *args, done=): ``fn(job, *args)`` for every job, the results as they finish.
Runner = Callable[..., list]


def _on_cluster(client: object) -> Runner:
    """The partitions' runner on a Dask cluster."""
    return lambda fn, jobs, *args, done: run_tasks(client, fn, jobs, *args, done=done)


def _here(fn: Callable[..., dict], jobs: Iterable[Any], *args: Any, done: Callable[[dict], None]) -> list[dict]:
    """The partitions' runner in this process, one after another: one partition's arrays held at a time."""
    out = []
    for job in jobs:
        out.append(fn(job, *args))
        done(out[-1])
    return out


def _processes(workers: int) -> int:
    """Processes that scan partitions here at once: ``workers``, at most one a core, and one in a
    daemonic process (which may not have children)."""
    if mp.current_process().daemon:
        return 1
    return max(1, min(workers, os.cpu_count() or 1))


def _in_processes(processes: int) -> Runner:
    """The partitions' runner on ``processes`` child processes of this machine (spawned: a server's
    threads are not forked), one partition each at a time."""

    def run(fn: Callable[..., dict], jobs: Iterable[Any], *args: Any, done: Callable[[dict], None]) -> list[dict]:
        out = []
        with ProcessPoolExecutor(processes, mp_context=mp.get_context("spawn")) as pool:
            futures = [pool.submit(fn, job, *args) for job in jobs]
            try:
                for future in as_completed(futures):
                    out.append(future.result())
                    done(out[-1])
            except BaseException:
                for f in futures:
                    f.cancel()
                raise
        return out

    return run


def _scan_by_partitions(engine: sa.Engine, run: Runner, n_workers: int, settings: TwinSettings | None,
                        statuses: list[str], table: pd.DataFrame, limit: int | None, partition_m: float | None,
                        report: Progress, tabulate: bool) -> tuple[dict, pa.Table | None]:
    """:func:`scan_network` by partitions (see the comment above), on a Dask cluster or here
    (``run``); every finding as a table too with ``tabulate``."""
    if settings is None:
        raise InputError("a scan on a cluster needs the twin's settings: its workers read the twin",
                         zh="集群扫描需要孪生库的设置：其工作进程读取孪生库数据")
    t0 = time.perf_counter()
    report(2, "cutting the network into partitions")
    grid, n = _grid(engine, statuses, table, partition_m, n_workers)
    cells = grid.nx * grid.ny
    t1 = time.perf_counter()
    report(5, f"{n:,} segments in {cells:,} partitions on {n_workers} workers")
    done: list[dict] = []

    def heard(part: dict) -> None:
        done.append(part)
        report(5 + int(85 * len(done) / cells), f"{len(done):,} of {cells:,} partitions scanned")

    parts = run(_scan_partition, range(cells), settings, statuses, table, grid, done=heard)
    t2 = time.perf_counter()
    report(92, "merging the partitions")
    clash, clear = _merged(parts, str(table.attrs.get("path", "")))
    t3 = time.perf_counter()
    n_seg = sum(p["segments"] for p in parts)
    if n_seg != n:
        raise DatabaseError(f"the network changed during the scan ({n:,} segments, then {n_seg:,}); scan again",
                            zh=f"扫描期间管网发生变化（先 {n:,} 段，后 {n_seg:,} 段）；请重新扫描")
    timings = {"load": t1 - t0, "partitions": t2 - t1, "merge": t3 - t2, "total": t3 - t0,
               "worker_seconds": sum(p.get("seconds", p["load_s"]) for p in parts)}
    (clash_d, clash_t), (clear_d, clear_t) = _reported(clash, limit, tabulate), _reported(clear, limit, tabulate)
    result = _result(n, sum(p["pieces"] for p in parts), sum(p["candidate_pairs"] for p in parts), statuses,
                     clash_d, clear_d, n_workers, timings)
    result["partitions"] = cells
    return result, (pa.concat_tables([clash_t, clear_t]) if tabulate else None)


def _listed(report: ClashReport | ClearanceReport, limit: int | None) -> dict:
    d = report.as_dict(limit)
    d.setdefault("truncated", False)
    return d


def _merged(parts: list[dict], rules_path: str) -> tuple[ClashReport, ClearanceReport]:
    """The partitions' findings as one collision and one clearance report, sorted as those analyses
    sort theirs (each pair belongs to one partition; a key met twice is kept once)."""

    def unique(key: str) -> list:
        seen: dict[str, object] = {}
        for p in parts:
            for f in p[key]:
                seen.setdefault(f.key, f)
        return list(seen.values())

    clashes = unique("clashes")
    clashes.sort(key=lambda c: (c.kind != "hard", -c.overlap_m, c.a_id, c.b_id))
    violations, uncertain, no_rule = unique("violations"), unique("uncertain"), unique("no_rule")
    for findings in (violations, uncertain):
        findings.sort(key=lambda v: (-(v.required_m - v.measured_m), v.kind, v.a_id, v.b_id))
    no_rule.sort(key=lambda v: (v.measured_m, v.clearance, v.a_id, v.b_id))
    checked: Counter[str] = Counter({"horizontal": 0, "vertical": 0})
    unruled: Counter[str] = Counter()
    for p in parts:
        checked.update(p["checked"])
        unruled.update(p["unruled"])
    clash = ClashReport(clashes, candidate_pairs=sum(p["candidate_pairs"] for p in parts))
    clear = ClearanceReport(violations, checked=dict(checked), unruled=dict(sorted(unruled.items())),
                            rules_path=rules_path, uncertain=uncertain, no_rule=no_rule)
    return clash, clear
