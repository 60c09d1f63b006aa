"""The whole-network scan: collision and clearance over every live pipe of the twin.

One read (:func:`load_scan_network`, a COPY parsed by Arrow), one set of straight pieces and
one candidate search (widened per utility by its largest clearance rule and by the survey
tolerance) shared by both analyses. Where
the platform forks, clearance runs in a child process beside collision: the child gets the
arrays by ``fork`` (nothing is pickled on the way in), sends its report back through a pipe
and exits; without fork, or with ``workers=1``, the two run one after the other.

The server's ``network-scan`` process, ``twin analyze scan`` and ``bench/analysis.py`` all
call :func:`scan_network`, so the benchmark times what the server runs.

Examples
--------
>>> result = scan_network(engine, limit=10)  # doctest: +SKIP
>>> result["collision"]["counts"], result["clearance"]["counts"]  # doctest: +SKIP
({'hard': 41, 'duplicate': 0, 'candidate_pairs': 5120}, {'horizontal': 0, 'vertical': 120})
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import shapely
import sqlalchemy as sa

from analysis.clash import ClashReport, collisions
from analysis.clearance import ClearanceReport, clearances, load_clearance_rules, rule_margins
from analysis.network import Network
from analysis.pieces import Pieces, candidate_pairs, combine, first_findings
from twin.arrow import copy_table
from twin.domain import STATUSES
from twin.errors import InputError
from twin.schema import names
from twin.settings import TwinSettings

__all__ = ["scan_network", "load_scan_network", "truncate_findings", "DEFAULT_INCLUDE"]

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
                         f"{', '.join(STATUSES)}")
    return wanted


def load_scan_network(engine: sa.Engine, include: Iterable[str] = DEFAULT_INCLUDE) -> Network:
    """The live segments with only the columns collision and clearance read, streamed with COPY.

    About twice as fast as :func:`analysis.network.load_network` on a million segments (one
    COPY in CSV read by Arrow); the Network's ``nodes`` hold only what the survey tolerance needs
    of the end points (survey class, appurtenance, feature, ground: a second COPY, cheaper than
    joining them onto the segments; :func:`analysis.accuracy.segment_tolerances`).
    """
    types = {c: (pa.float64() if c in _NUMERIC else pa.string()) for c in (*_SCAN_COLUMNS, "wkb")}
    query = (f"SELECT {', '.join(_SCAN_COLUMNS)}, encode(ST_AsBinary(geom), 'hex') AS wkb "
             "FROM current_segment WHERE status = ANY(%s)")
    node_types = {c: (pa.float64() if c in _END_NUMERIC else pa.string()) for c in ("id", *_END_COLUMNS)}
    with engine.connect() as conn:
        table = copy_table(conn, query, [_statuses(include)], types)
        node_table = copy_table(conn, f"SELECT id, {', '.join(_END_COLUMNS)} FROM current_node", None, node_types)
    if table is None:
        table = pa.table({c: pa.array([], type=t) for c, t in types.items()})
    seg = table.drop_columns(["wkb"]).to_pandas()
    for c in _SCAN_COLUMNS:  # plain object strings: Arrow-backed ones are slow to index per finding
        if c not in _NUMERIC:
            seg[c] = seg[c].to_numpy(dtype=object, na_value=None)
    geoms = shapely.from_wkb(table.column("wkb").to_numpy(zero_copy_only=False))
    vertices, index = shapely.get_coordinates(geoms, include_z=True, return_index=True)
    offsets = np.zeros(len(seg) + 1, dtype=np.int64)
    np.cumsum(np.bincount(index, minlength=len(seg)), out=offsets[1:])
    nodes = (node_table.to_pandas() if node_table is not None
             else pd.DataFrame({c: pd.Series(dtype=object) for c in node_types}))
    return Network(seg, nodes, np.empty((0, 3)), vertices, offsets)


def truncate_findings(report: dict, key: str, limit: int | None) -> dict:
    """Keep the first ``limit`` entries of the list ``report[key]`` (all with None); say whether some
    were left out (``truncated``). Counts and groups stay complete."""
    report[key], report["truncated"] = first_findings(report.get(key) or [], limit)
    return report


def _quiet(percent: int, message: str) -> None:
    """A progress callback that reports nowhere."""


class _ClearanceChild:
    """``run`` in a forked child: it gets everything ``run`` closes over by fork (nothing is
    pickled on the way in), sends its report back through a pipe and exits (``os._exit``: no
    cleanup of the parent's connections)."""

    def __init__(self, run: Callable[[], dict]) -> None:
        self.run = run
        ctx = mp.get_context("fork")
        self._receive, send = ctx.Pipe(duplex=False)

        def child() -> None:
            t = time.perf_counter()
            send.send((run(), time.perf_counter() - t))

        self._proc = ctx.Process(target=child, name="scan-clearance", daemon=True)
        self._proc.start()
        send.close()  # the child holds the writing end now: EOF when it exits without a result

    def result(self) -> tuple[dict, float]:
        """The child's report and seconds; should it fail or die, ``run`` here instead (so a real
        error is raised where it belongs)."""
        try:
            return self._receive.recv()
        except EOFError:
            log.warning("the clearance child exited with %s without a result; running clearance here",
                        self._proc.exitcode)
            t = time.perf_counter()
            return self.run(), time.perf_counter() - t
        finally:
            self._receive.close()
            self._proc.join()

    def stop(self) -> None:
        """End the child unheard (the parent's side failed)."""
        self._proc.terminate()
        self._proc.join()
        self._receive.close()


def _can_fork(workers: int) -> bool:
    """Whether clearance may run in a forked child beside collision."""
    return (workers >= 2 and "fork" in mp.get_all_start_methods()
            and not mp.current_process().daemon)  # a daemonic process may not have children


def _analyses(net: Network, pieces: Pieces, pairs: tuple[np.ndarray, np.ndarray], rules: pd.DataFrame,
              limit: int | None, forked: bool, progress: Progress) -> tuple[dict, dict, dict[str, float]]:
    """Collision and clearance reports (findings cut to ``limit``) and the seconds each took."""

    def listed(report: ClashReport | ClearanceReport) -> dict:
        d = report.as_dict(limit)  # only the findings listed become dicts: ~20 s less at a million pipes
        d.setdefault("truncated", False)
        return d

    def clearance() -> dict:
        return listed(clearances(net, rules=rules, pieces=pieces, pairs=pairs))

    t0 = time.perf_counter()
    child = _ClearanceChild(clearance) if forked else None
    try:
        # near misses are pairs clearance judges (uncertain): listed once, there
        clash = listed(collisions(net, pieces=pieces, pairs=pairs, near_misses=False))
    except BaseException:
        if child is not None:
            child.stop()
        raise
    t_clash = time.perf_counter() - t0
    if child is not None:
        progress(70, f"{clash['counts']['hard']:,} hard clashes; waiting for clearance")
        clear, t_clear = child.result()
    else:
        progress(70, f"{clash['counts']['hard']:,} hard clashes; clearance")
        t1 = time.perf_counter()
        clear, t_clear = clearance(), time.perf_counter() - t1
    return clash, clear, {"collision": t_clash, "clearance": t_clear, "analyses_wall": time.perf_counter() - t0}


def scan_network(
    engine: sa.Engine,
    *,
    include: Iterable[str] = DEFAULT_INCLUDE,
    rules: pd.DataFrame | Path | str | None = None,
    settings: TwinSettings | None = None,
    limit: int | None = None,
    progress: Progress | None = None,
    workers: int = 2,
) -> dict:
    """Hard clashes, duplicates and clearance violations across the whole live network.

    ``include``: pipe statuses scanned; ``rules``: a clearance table or CSV path (default: the
    one stored in the twin, else ``settings``' or the shipped one); ``limit``: findings listed
    per analysis (counts are complete); ``progress(percent, message)`` hears how far it is;
    ``workers>=2`` runs clearance in a forked process beside collision where fork exists.

    Returns ``segments``, ``pieces``, ``candidate_pairs``, ``include``, the ``collision`` and
    ``clearance`` reports (as their ``as_dict`` with ``truncated``: clashes, near misses and
    clearance findings each carry ``verdict``, ``measured_m``, ``required_m``,
    ``uncertainty_m``; the clearance report lists ``uncertain`` and ``no_rule`` findings apart),
    ``verdicts`` (counts of violation, uncertain and no_rule over both), ``workers`` and
    ``timings_s`` (load, candidates, collision, clearance, analyses_wall, total).
    """
    report = progress or _quiet
    statuses = _statuses(include)
    t0 = time.perf_counter()
    report(2, "reading the network")
    net = load_scan_network(engine, statuses)
    t1 = time.perf_counter()
    n = int(len(net.segments))
    if not n:
        raise InputError(f"the twin has no pipes of status {', '.join(statuses)} to scan")
    report(30, f"{n:,} segments read; finding candidate pairs")
    table = rules if isinstance(rules, pd.DataFrame) else load_clearance_rules(rules, settings, db=engine)
    pieces = combine(net)
    pairs = candidate_pairs(pieces, margin_m=rule_margins(table, pieces.segments))
    t2 = time.perf_counter()
    forked = _can_fork(workers)
    report(45, f"{len(pairs[0]):,} candidate pairs; collision" + (" and clearance" if forked else ""))
    clash, clear, seconds = _analyses(net, pieces, pairs, table, limit, forked, report)
    t3 = time.perf_counter()
    report(95, "writing the result")
    timings = {"load": t1 - t0, "candidates": t2 - t1, **seconds, "total": t3 - t0}
    return {
        "segments": n,
        "pieces": int(len(pieces.seg)),
        "candidate_pairs": int(len(pairs[0])),
        "include": statuses,
        "collision": clash,
        "clearance": clear,
        "verdicts": {
            "violation": clash["counts"]["violation"] + clear["counts"]["horizontal"] + clear["counts"]["vertical"],
            "uncertain": clash["counts"]["uncertain"] + clear["counts"]["uncertain"],
            "no_rule": clear["counts"]["no_rule"],
        },
        "workers": 2 if forked else 1,
        "timings_s": {k: round(v, 2) for k, v in timings.items()},
    }
