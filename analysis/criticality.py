"""Criticality of every valve segment (关阀影响) and the N-1 next ring of every valve, stored.

For each segment: what a burst in it cuts off, exactly as :func:`analysis.shutoff.isolate`
answers it (the segment, grown through valves that cannot close, plus everything no longer
reaching a source), and the valves it needs. For each valve: what more is cut off when it fails
to close (the two segments it separates are shut off together, 二次关阀).

All of it is computed at once, not by a shutoff per segment. Segments joined by valves that
cannot close are one **region** (a burst anywhere in it isolates all of it). Each region whose
supply units are connected among themselves becomes one vertex of the supply graph (open
valves as edges, a hub joined to every source). Shutting a region off is then deleting a
vertex, and what loses supply is read from one depth-first tree of that graph (Tarjan's
low-link: a child subtree is cut off when none of its edges climbs above the vertex), with
subtree sums over the preorder and range minima from a sparse table, all in numpy. A valve
joins two adjacent vertices; deleting both is read from the same tree too (for a back edge, the
highest edge each child subtree has below its parent tells whether the piece between the two
vertices stays fed). Only regions whose units are split by normally-closed pipes (they cannot
be one vertex) fall back to :meth:`~analysis.segments.IsolationModel.cut_off_units`, the
shutoff's own query, one by one.

The results go to the twin (migration 0015) with the network change mark they were computed
at; :func:`criticality` recomputes them when the mark has moved.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import scipy.sparse as sp
import sqlalchemy as sa
from scipy.sparse.csgraph import connected_components, depth_first_order, dijkstra

from analysis.segments import Groups, IsolationModel
from analysis.shutoff import cached_model
from twin.db import CHANGE_MARK_SQL
from twin.errors import InputError, NotFound
from twin.jsonable import plain

__all__ = ["MEASURES", "Criticality", "compute", "store", "ensure_current", "criticality",
           "pipe_criticality", "stored_state", "Audit"]

#: The outage measures, in the order of the weight columns.
MEASURES = ("pipes", "length_m", "customers", "critical_customers", "demand")

#: progress(percent, message)
Progress = Callable[[int, str], None]


def _quiet(percent: int, message: str) -> None:
    pass


@dataclass
class Criticality:
    """Per segment and per valve outage, as arrays over the model's segments and valves."""

    mark: str
    seg_region: np.ndarray  # region of each segment
    region_outage: np.ndarray  # (regions, 5): what shutting the region off cuts off, itself included
    region_valves: Groups  # boundary valves of each region
    region_segments: np.ndarray  # segments in each region
    valve_pos: np.ndarray  # the valves with a next ring: operable, open, between two regions
    valve_regions: np.ndarray  # (k, 2)
    valve_merged: np.ndarray  # (k, 5): both regions shut off together
    valve_extra: np.ndarray  # (k, 5): merged minus the smaller side's own outage (the worse case)
    fallback: int  # regions + valves answered one by one
    seconds: float


# ---------------------------------------------------------------- array helpers


def _sparse_min(values: np.ndarray) -> list[np.ndarray]:
    """Sparse table: ``t[k][i] = min(values[i : i + 2**k])``."""
    table = [values]
    k = 1
    while (1 << k) <= len(values):
        prev, half = table[-1], 1 << (k - 1)
        table.append(np.minimum(prev[:-half], prev[half:]))
        k += 1
    return table


def _range_min(table: list[np.ndarray], lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """``min(values[lo:hi])`` for non-empty ranges, in O(1) each."""
    k = np.floor(np.log2(np.maximum(hi - lo, 1))).astype(np.int64)
    out = np.empty(len(lo), dtype=table[0].dtype)
    for level in np.unique(k):
        sel = k == level
        t = table[level]
        out[sel] = np.minimum(t[lo[sel]], t[hi[sel] - (1 << level)])
    return out


def _subtree_end(depth_pre: np.ndarray) -> np.ndarray:
    """End (exclusive) in preorder of each position's subtree: the next position no deeper."""
    m = len(depth_pre)
    table = _sparse_min(depth_pre)
    pos = np.arange(1, m + 1, dtype=np.int64)
    for k in range(len(table) - 1, -1, -1):
        step = 1 << k
        ok = np.flatnonzero(pos + step <= m)
        deeper = table[k][pos[ok]] > depth_pre[ok]
        pos[ok[deeper]] += step
    return pos


def _unit_weights(model: IsolationModel) -> np.ndarray:
    """(units, 5) weights: pipes, length, customers, critical customers, demand."""
    n = model.n_units
    w = np.zeros((n, len(MEASURES)))
    w[:, 0] = np.bincount(model.link_unit, minlength=n)
    w[:, 1] = np.bincount(model.link_unit, weights=np.nan_to_num(model.link_length_m), minlength=n)
    g = model.customer_groups
    cust_unit = np.empty(len(g.order), dtype=np.int64)
    cust_unit[g.order] = np.repeat(np.arange(n), np.diff(g.ptr))
    cc = model.customer_columns
    critical = np.asarray(cc.get("critical", np.zeros(len(cust_unit))), dtype=bool)
    demand = pd.to_numeric(pd.Series(cc.get("demand", np.zeros(len(cust_unit)))), errors="coerce")
    w[:, 2] = np.bincount(cust_unit, minlength=n)
    w[:, 3] = np.bincount(cust_unit, weights=critical.astype(float), minlength=n)
    w[:, 4] = np.bincount(cust_unit, weights=np.nan_to_num(demand.to_numpy(float)), minlength=n)
    return w


def _regions(model: IsolationModel) -> tuple[np.ndarray, int]:
    """Segments joined by open valves that cannot close: a burst isolates the whole region."""
    sl, sn = model.valve_side_link, model.valve_side_node
    j = model.valve_inoperable & ~model.valve_shut & (sl != sn)
    n = model.n_segments
    g = sp.coo_matrix((np.ones(int(j.sum()), dtype=np.int8), (sl[j], sn[j])), shape=(n, n)).tocsr()
    n_reg, seg_region = connected_components(g, directed=False)
    return seg_region.astype(np.int64), int(n_reg)


@dataclass
class _Tree:
    """The supply graph of vertices (regions or single units) and its depth-first tree."""

    unit_vertex: np.ndarray
    region_vertex: np.ndarray  # -1 for regions not contracted
    adj: sp.csr_matrix
    hub: int
    tin: np.ndarray  # preorder position, -1 unreached
    pred: np.ndarray
    end: np.ndarray  # subtree end in preorder (by vertex)
    low: np.ndarray
    weight: np.ndarray  # (vertices, 5)
    subtree: np.ndarray  # (vertices, 5): subtree sums
    cut: np.ndarray  # (vertices, 5): what deleting the vertex cuts off
    cut2: np.ndarray  # (vertices, 5): children cut off when the vertex and its parent go
    direct_min: list[np.ndarray]  # sparse table of the lowest neighbour, by preorder
    high: np.ndarray  # highest preorder position the subtree touches above its parent
    children: Groups  # tree children of each vertex, in preorder


def _supply_graph(model: IsolationModel, unit_region: np.ndarray, n_reg: int
                  ) -> tuple[np.ndarray, np.ndarray, sp.csr_matrix, int]:
    """Vertices: one per region whose units connect among themselves, else one per unit."""
    open_v = ~model.valve_shut
    a = model.link_unit[model.valve_link][open_v]
    b = model.node_unit[model.valve_node][open_v]
    keep = a != b
    a, b = a[keep], b[keep]
    n = model.n_units
    inner = unit_region[a] == unit_region[b]
    g = sp.coo_matrix((np.ones(int(inner.sum()), dtype=np.int8), (a[inner], b[inner])), shape=(n, n))
    _, comp = connected_components(g.tocsr(), directed=False)
    pairs = np.unique(np.stack([unit_region, comp]), axis=1)
    contracted = np.bincount(pairs[0], minlength=n_reg) == 1
    raw = np.where(contracted[unit_region], unit_region, n_reg + np.arange(n))
    _, unit_vertex = np.unique(raw, return_inverse=True)
    nv = int(unit_vertex.max()) + 1 if n else 0
    region_vertex = np.full(n_reg, -1, dtype=np.int64)
    region_vertex[unit_region[contracted[unit_region]]] = unit_vertex[contracted[unit_region]]
    hub = nv
    va, vb = unit_vertex[a], unit_vertex[b]
    keep = va != vb
    src = np.unique(unit_vertex[model.source_units])
    rows = np.concatenate([va[keep], vb[keep], np.full(len(src), hub), src])
    cols = np.concatenate([vb[keep], va[keep], src, np.full(len(src), hub)])
    adj = sp.csr_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(nv + 1, nv + 1))
    adj.sum_duplicates()
    return unit_vertex, region_vertex, adj, hub


def _tree(model: IsolationModel, unit_region: np.ndarray, n_reg: int, unit_w: np.ndarray) -> _Tree:
    """Depth-first tree of the supply graph with low-links, subtree sums and cut-off sums."""
    unit_vertex, region_vertex, adj, hub = _supply_graph(model, unit_region, n_reg)
    nv = hub + 1
    weight = np.zeros((nv, len(MEASURES)))
    np.add.at(weight, unit_vertex, unit_w)
    pre, pred = depth_first_order(adj, hub, directed=True, return_predecessors=True)
    m = len(pre)
    tin = np.full(nv, -1, dtype=np.int64)
    tin[pre] = np.arange(m)
    children = pre[1:]
    tree = sp.csr_matrix((np.ones(m - 1, dtype=np.int8), (pred[children], children)), shape=(nv, nv))
    depth = dijkstra(tree, directed=True, indices=hub, unweighted=True)[pre].astype(np.int64)
    end = np.full(nv, -1, dtype=np.int64)
    end[pre] = _subtree_end(depth)
    depth_v = np.zeros(nv, dtype=np.int64)
    depth_v[pre] = depth
    # lowest preorder position each vertex touches (itself included), by preorder position
    rows = np.repeat(np.arange(nv), np.diff(adj.indptr))
    direct = tin.copy()
    np.minimum.at(direct, rows, tin[adj.indices])
    direct_min = _sparse_min(direct[pre])
    low = np.full(nv, -1, dtype=np.int64)
    low[pre] = _range_min(direct_min, tin[pre], end[pre])
    cum = np.vstack([np.zeros((1, len(MEASURES))), np.cumsum(weight[pre], axis=0)])
    subtree = np.zeros_like(weight)
    subtree[pre] = cum[end[pre]] - cum[tin[pre]]
    parent = pred[children]
    cut = np.zeros_like(weight)
    gone = (parent != hub) & (low[children] >= tin[parent])
    np.add.at(cut, parent[gone], subtree[children[gone]])
    cut2 = np.zeros_like(weight)
    inner = parent != hub
    c, p = children[inner], parent[inner]
    g = pred[p]
    gone2 = (g != hub) & (low[c] >= tin[g])
    np.add.at(cut2, p[gone2], subtree[c[gone2]])
    by_parent = Groups.of(pred[children], nv)
    return _Tree(unit_vertex, region_vertex, adj, hub, tin, pred, end, low, weight, subtree, cut, cut2,
                 direct_min, _high(adj, tin, pred, depth_v, hub),
                 Groups(children[by_parent.order], by_parent.ptr))


def _high(adj: sp.csr_matrix, tin: np.ndarray, pred: np.ndarray, depth: np.ndarray, hub: int
          ) -> np.ndarray:
    """For each vertex ``d`` with parent ``p``: the highest preorder position below ``tin[p]``
    that the subtree of ``d`` has an edge to (-1: none).

    An edge from ``x`` up to its ancestor ``w`` counts for ``x`` and its ancestors down to the
    grandchildren of ``w``: a path update of ``max``, done on a binary-lifting table.
    """
    nv = len(tin)
    rows = np.repeat(np.arange(nv), np.diff(adj.indptr))
    x, w = rows, adj.indices
    up_edge = (tin[x] >= 0) & (tin[w] >= 0) & (tin[w] < tin[x])
    x, w = x[up_edge], w[up_edge]
    span = depth[x] - depth[w] - 1  # x, its parent, ... down to w's grandchildren
    keep = span > 0
    x, value, span = x[keep], tin[w[keep]], span[keep]
    up = [np.where(pred >= 0, pred, hub).astype(np.int64)]
    while (1 << len(up)) <= max(int(span.max(initial=0)), 1):
        up.append(up[-1][up[-1]])
    best = [np.full(nv, -1, dtype=np.int64) for _ in up]
    cur = x.copy()
    for j in range(len(up)):
        sel = ((span >> j) & 1).astype(bool)
        np.maximum.at(best[j], cur[sel], value[sel])
        cur[sel] = up[j][cur[sel]]
    for j in range(len(up) - 1, 0, -1):  # push each 2**j run down to its two halves
        np.maximum(best[j - 1], best[j], out=best[j - 1])
        np.maximum.at(best[j - 1], up[j - 1], best[j])
    return best[0]


# ---------------------------------------------------------------- the computation


def compute(model: IsolationModel, progress: Progress = _quiet) -> Criticality:
    """Criticality of every segment and the next ring of every valve of a model."""
    t0 = time.perf_counter()
    progress(5, "regions and supply graph")
    seg_region, n_reg = _regions(model)
    unit_region = seg_region[model.unit_seg]
    unit_w = _unit_weights(model)
    own = np.zeros((n_reg, len(MEASURES)))
    np.add.at(own, unit_region, unit_w)
    t = _tree(model, unit_region, n_reg, unit_w)
    region_units = Groups.of(unit_region, n_reg)
    progress(40, "what each segment cuts off")
    outage = own.copy()
    rv = t.region_vertex
    ok = (rv >= 0) & (np.maximum(rv, 0) < t.hub)
    ok[ok] &= t.tin[rv[ok]] >= 0
    outage[ok] += t.cut[rv[ok]]
    slow = np.flatnonzero(rv < 0)
    for r in slow.tolist():
        outage[r] = own[r] + _cut_off(model, region_units.members([r]), unit_w)
    progress(60, "the next ring of every valve")
    ra, rb = seg_region[model.valve_side_link], seg_region[model.valve_side_node]
    closes = ~model.valve_inoperable & ~model.valve_shut & (ra != rb)
    valve_pos = np.flatnonzero(closes)
    va, vb = ra[valve_pos], rb[valve_pos]
    merged, todo = _merged(t, own, va, vb)
    for i in todo.tolist():
        units = region_units.members([int(va[i]), int(vb[i])])
        merged[i] = own[va[i]] + own[vb[i]] + _cut_off(model, units, unit_w)
    extra = np.maximum(merged - outage[va], merged - outage[vb])
    pairs = np.concatenate([np.stack([va, valve_pos], 1), np.stack([vb, valve_pos], 1)])
    by_region = Groups.of(pairs[:, 0], n_reg)
    region_valves = Groups(pairs[by_region.order, 1], by_region.ptr)
    progress(90, "done")
    return Criticality(
        mark=model.fingerprint, seg_region=seg_region, region_outage=outage,
        region_valves=region_valves, region_segments=np.bincount(seg_region, minlength=n_reg),
        valve_pos=valve_pos, valve_regions=np.stack([va, vb], 1), valve_merged=merged,
        valve_extra=extra, fallback=len(slow) + len(todo), seconds=time.perf_counter() - t0,
    )


def _cut_off(model: IsolationModel, drained: np.ndarray, unit_w: np.ndarray) -> np.ndarray:
    """Weights of what loses supply when the ``drained`` units are shut off (the shutoff's query)."""
    return unit_w[model.cut_off_units(drained)].sum(axis=0)


def _merged(t: _Tree, own: np.ndarray, ra: np.ndarray, rb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Outage of two adjacent regions shut off together, where the tree tells it.

    Returns the outage rows and the positions left for the one-by-one query.
    """
    merged = own[ra] + own[rb]
    a, b = t.region_vertex[ra], t.region_vertex[rb]
    todo = (a < 0) | (b < 0)
    a, b = np.maximum(a, 0), np.maximum(b, 0)
    reached = ~todo & (t.tin[a] >= 0) & (t.tin[b] >= 0)
    todo |= ~todo & ((t.tin[a] >= 0) != (t.tin[b] >= 0))  # cannot happen: an open valve joins them
    # the ancestor first
    swap = t.tin[a] > t.tin[b]
    a, b = np.where(swap, b, a), np.where(swap, a, b)
    # 1. a tree edge: b's children go unless they climb above a
    tree_edge = reached & (t.pred[b] == a)
    i = np.flatnonzero(tree_edge)
    b_gone = (t.low[b[i]] >= t.tin[a[i]])[:, None]
    merged[i] += t.cut[a[i]] - b_gone * t.subtree[b[i]] + t.cut2[b[i]]
    # 2. a back edge from b down below a's child c
    i = np.flatnonzero(reached & ~tree_edge)
    c = _child_towards(t, a[i], b[i])
    c_gone = t.low[c] >= t.tin[a[i]]
    j = i[c_gone]  # b was cut off by a alone: nothing more goes
    merged[j] += t.cut[a[j]] - t.weight[b[j]]
    i, c = i[~c_gone], c[~c_gone]
    ai, bi = a[i], b[i]
    # the middle piece: c's subtree without b's; fed if it climbs above a, or a child of b
    # that climbs above a touches it
    low_mid = np.minimum(_range_min(t.direct_min, t.tin[c], t.tin[bi]),
                         _range_min_or(t.direct_min, t.end[bi], t.end[c], np.iinfo(np.int64).max))
    owner, kids = _children(t, bi)
    top, bottom = t.tin[ai][owner], t.tin[bi][owner]
    climbs, touches = t.low[kids] < top, t.high[kids] > top
    mid_fed = low_mid < t.tin[ai]
    mid_fed |= np.bincount(owner, weights=climbs & touches, minlength=len(i)) > 0
    fed_kids = np.zeros((len(i), len(MEASURES)))
    np.add.at(fed_kids, owner[climbs], t.subtree[kids[climbs]])
    lost_kids = np.zeros((len(i), len(MEASURES)))
    gone = (t.low[kids] >= bottom) | ((t.low[kids] == top) & ~touches)
    np.add.at(lost_kids, owner[gone], t.subtree[kids[gone]])
    merged[i] += t.cut[ai] + np.where(mid_fed[:, None], lost_kids,
                                      t.subtree[c] - t.weight[bi] - fed_kids)
    return merged, np.flatnonzero(todo)


def _range_min_or(table: list[np.ndarray], lo: np.ndarray, hi: np.ndarray, empty: int) -> np.ndarray:
    out = np.full(len(lo), empty, dtype=np.int64)
    sel = hi > lo
    out[sel] = _range_min(table, lo[sel], hi[sel])
    return out


def _child_towards(t: _Tree, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The child of each ``a`` whose subtree holds the descendant ``b``."""
    children = np.flatnonzero((t.tin >= 0) & (t.pred >= 0))
    n = np.int64(len(t.tin) + 1)
    key = t.tin[t.pred[children]] * n + t.tin[children]
    order = np.argsort(key)
    pos = np.searchsorted(key[order], t.tin[a] * n + t.tin[b], side="right") - 1
    return children[order[pos]]


def _children(t: _Tree, parents: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The tree children of each of ``parents``: (position in ``parents``, child) pairs."""
    by_parent = t.children
    starts, stops = by_parent.ptr[parents], by_parent.ptr[parents + 1]
    counts = stops - starts
    owner = np.repeat(np.arange(len(parents)), counts)
    offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
    return owner, by_parent.order[np.repeat(starts, counts) + offsets]


# ---------------------------------------------------------------- stored in the twin

#: Worst first: critical customers cut off, then customers, then length (criticality_segment_worst_idx).
_WORST = "s.critical_customers DESC, s.customers DESC, s.length_m DESC, s.segment"


def _frames(model: IsolationModel, crit: Criticality) -> dict[str, pd.DataFrame]:
    """The rows of the four tables."""
    out = crit.region_outage
    reg = crit.seg_region
    n_seg = model.n_segments
    utility = np.full(n_seg, None, dtype=object)
    utility[model.node_seg] = model.nodes["utility"].to_numpy(dtype=object)
    utility[model.link_seg] = model.link_utility
    valves_needed = np.diff(crit.region_valves.ptr)
    segment = pd.DataFrame({
        "segment": np.arange(n_seg), "region": reg, "utility": utility,
        "own_pipes": np.bincount(model.link_seg, minlength=n_seg),
        "own_length_m": np.bincount(model.link_seg, weights=np.nan_to_num(model.link_length_m),
                                    minlength=n_seg),
        "region_segments": crit.region_segments[reg], "valves": valves_needed[reg],
        **{m: out[reg, i] for i, m in enumerate(MEASURES)},
        "pipe_ids": _pg_arrays(model.link_seg, model.link_ids, n_seg),
        "valve_ids": _pg_arrays(np.repeat(np.arange(len(valves_needed)), valves_needed),
                                model.valve_columns["id"][crit.region_valves.order], len(valves_needed))[reg],
    })
    pipe = pd.DataFrame({"pipe_id": model.link_ids, "segment": model.link_seg})
    k = crit.valve_pos
    seg_a, seg_b = model.valve_side_link[k], model.valve_side_node[k]
    vc = model.valve_columns
    valve = pd.DataFrame({
        "valve_id": vc["id"][k], "pipe_id": vc["pipe"][k], "node_id": vc["node"][k],
        "segment_a": seg_a, "segment_b": seg_b,
        "region_a": crit.valve_regions[:, 0], "region_b": crit.valve_regions[:, 1],
        **{m: crit.valve_merged[:, i] for i, m in enumerate(MEASURES)},
        **{f"extra_{m}": crit.valve_extra[:, i] for i, m in enumerate(MEASURES)},
    })
    for frame in (segment, valve):
        for c in frame.columns:
            if c in ("pipes", "customers", "critical_customers") or c in (
                    "extra_pipes", "extra_customers", "extra_critical_customers"):
                frame[c] = np.rint(frame[c].to_numpy(float)).astype(np.int64)
    return {"criticality_segment": segment, "criticality_pipe": pipe, "criticality_valve": valve}


def _pg_arrays(labels: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """PostgreSQL array literals of ``values`` grouped by ``labels`` (0 <= label < n), in the
    order given (the model's ids come sorted from the twin)."""
    labels = np.asarray(labels)
    out = np.full(n, "{}", dtype=object)
    if not len(labels):
        return out
    order = np.argsort(labels, kind="stable")
    quoted = pd.Series(np.asarray(values, dtype=object)[order], dtype=object).astype(str)
    if quoted.str.contains('["\\\\]', regex=True).any():  # only then escape
        quoted = quoted.str.replace("\\", "\\\\", regex=False).str.replace('"', '\\"', regex=False)
    items = ('"' + quoted + '",').to_numpy(dtype=object)
    lab = labels[order]
    starts = np.flatnonzero(np.r_[True, lab[1:] != lab[:-1]])
    joined = pd.Series(np.add.reduceat(items, starts), dtype=object).str[:-1]
    out[lab[starts]] = ("{" + joined + "}").to_numpy(dtype=object)
    return out


def _copy_in(cur, table: str, frame: pd.DataFrame) -> None:
    """COPY a frame into a table (CSV written by Arrow)."""
    buf = io.BytesIO()
    arrow = pa.Table.from_pandas(frame, preserve_index=False)
    pacsv.write_csv(arrow, buf, write_options=pacsv.WriteOptions(include_header=False))
    with cur.copy(f"COPY {table} ({', '.join(frame.columns)}) FROM STDIN (FORMAT csv)") as copy:
        copy.write(buf.getbuffer())


#: audit(conn, state) writes the audit entry of a recomputation inside its transaction.
Audit = Callable[[sa.Connection, dict], None]


def store(engine: sa.Engine, model: IsolationModel, crit: Criticality, *, user: str | None = None,
          progress: Progress = _quiet, audit: Audit | None = None) -> None:
    """Replace the stored results with ``crit`` in one transaction (with its audit entry)."""
    frames = _frames(model, crit)
    with engine.begin() as conn:
        conn.execute(sa.text("TRUNCATE criticality_segment, criticality_pipe, criticality_valve"))
        # secondary indexes are built once after the rows are in: faster than row by row
        indexes = conn.execute(sa.text(
            "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() AND "
            "tablename = ANY(:t) AND indexname NOT LIKE '%\\_pkey'"), {"t": list(frames)}).all()
        for name, _ in indexes:
            conn.execute(sa.text(f'DROP INDEX "{name}"'))
        cur = conn.connection.driver_connection.cursor()
        for n, (table, frame) in enumerate(frames.items()):
            progress(90 + 3 * n, f"storing {len(frame):,} rows of {table}")
            _copy_in(cur, table, frame)
        for _, definition in indexes:
            conn.execute(sa.text(definition))
        conn.execute(sa.text(
            "INSERT INTO criticality_run (id, mark, computed_at, computed_by, segments, regions, valves, "
            "fallback, seconds) VALUES (1, :mark, now(), :user, :s, :r, :v, :f, :t) "
            "ON CONFLICT (id) DO UPDATE SET mark = EXCLUDED.mark, computed_at = now(), "
            "computed_by = EXCLUDED.computed_by, segments = EXCLUDED.segments, regions = EXCLUDED.regions, "
            "valves = EXCLUDED.valves, fallback = EXCLUDED.fallback, seconds = EXCLUDED.seconds"),
            {"mark": crit.mark, "user": user, "s": model.n_segments, "r": len(crit.region_segments),
             "v": len(crit.valve_pos), "f": crit.fallback, "t": crit.seconds})
        if audit is not None:
            audit(conn, {"mark": crit.mark, "segments": model.n_segments, "valves": len(crit.valve_pos),
                         "seconds": round(crit.seconds, 3)})


#: The stored run and the network's change mark now, as one row (a row of nulls before any run).
_STATE_SQL = (
    "SELECT r.mark AS run_mark, r.computed_at AS run_computed_at, r.computed_by AS run_computed_by, "
    "r.segments AS run_segments, r.regions AS run_regions, r.valves AS run_valves, "
    f"r.fallback AS run_fallback, r.seconds AS run_seconds, {CHANGE_MARK_SQL} AS network_mark "
    "FROM (SELECT 1) AS one LEFT JOIN criticality_run r ON true")

#: A segment's row with its pipe ids and the ids of the valves its region needs (alias ``s``).
_SEGMENT_COLUMNS = (
    "s.segment, s.region, s.utility, s.own_pipes, s.own_length_m, s.region_segments, "
    f"s.valves AS valves_needed, {', '.join('s.' + m for m in MEASURES)}, "
    "s.pipe_ids, s.valve_ids")

#: The next ring of each valve a segment's region needs, as JSON, worst first (alias ``s``).
_VALVE_DOCS = (
    "(SELECT coalesce(json_agg(json_build_object('id', v.valve_id, 'pipe', v.pipe_id, 'node', v.node_id, "
    "'segment_a', v.segment_a, 'segment_b', v.segment_b, "
    + ", ".join(f"'{m}', v.{m}, 'extra_{m}', v.extra_{m}" for m in MEASURES)
    + ") ORDER BY v.extra_critical_customers DESC, v.extra_customers DESC, v.extra_length_m DESC, v.valve_id), "
    "'[]'::json) FROM criticality_valve v WHERE v.region_a = s.region OR v.region_b = s.region) AS valve_docs")


def _state(row: sa.RowMapping) -> dict:
    """The ``state`` of an answer from the columns of :data:`_STATE_SQL`."""
    mark = str(row["network_mark"])
    if row["run_mark"] is None:
        return {"computed": False, "stale": True, "mark": None, "network_mark": mark}
    run = {k.removeprefix("run_"): row[k] for k in row.keys() if k.startswith("run_")}
    return plain({"computed": True, "stale": run["mark"] != mark, **run, "network_mark": mark})


def stored_state(conn: sa.Connection) -> dict:
    """The stored run (mark, when, by whom, sizes) and whether the network has moved since."""
    return _state(conn.execute(sa.text(_STATE_SQL)).mappings().one())


def ensure_current(engine: sa.Engine, *, user: str | None = None, progress: Progress = _quiet,
                   audit: Audit | None = None, force: bool = False) -> dict:
    """Recompute and store the results when they are stale (or ``force``); returns
    :func:`stored_state`."""
    with engine.connect() as conn:
        state = stored_state(conn)
    if not state["stale"] and not force:
        return state
    progress(2, "reading the network")
    model = cached_model(engine)  # the shutoff's model, rebuilt only when the network moved
    crit = compute(model, progress)
    store(engine, model, crit, user=user, progress=progress, audit=audit)
    with engine.connect() as conn:
        return stored_state(conn)


def _segment_doc(row: sa.RowMapping) -> dict:
    """A segment with its pipe ids, the ids of the valves it needs and its outage."""
    d = {k: row[k] for k in ("segment", "region", "utility", "own_pipes", "own_length_m", "region_segments",
                             "valves_needed")}
    doc = plain({**d, "outage": {m: row[m] for m in MEASURES}})
    # ids are text already: no need to walk thousands of them through plain()
    return {**doc, "pipes": list(row["pipe_ids"]), "valves": list(row["valve_ids"])}


def _valve_doc(v: dict) -> dict:
    """A valve's next ring: the outage if it fails to close, and the extra over its own segment's."""
    return plain({"id": v["id"], "pipe": v["pipe"], "node": v["node"], "segment_a": v["segment_a"],
                  "segment_b": v["segment_b"], "outage_if_fails": {m: v[m] for m in MEASURES},
                  "extra_if_fails": {m: v[f"extra_{m}"] for m in MEASURES}})


def _valves_of(rows: list[sa.RowMapping]) -> list[dict]:
    """The next rings of the valves the listed segments need, each once, worst first."""
    seen: dict[str, dict] = {}
    for r in rows:
        for v in r["valve_docs"]:
            seen.setdefault(v["id"], v)
    key = lambda v: (-v["extra_critical_customers"], -v["extra_customers"], -v["extra_length_m"], v["id"])  # noqa: E731
    return [_valve_doc(v) for v in sorted(seen.values(), key=key)]


def criticality(engine: sa.Engine, *, top: int = 20, min_valves: int | None = None,
                with_valves: bool = False, refresh: bool = True, user: str | None = None,
                progress: Progress = _quiet, audit: Audit | None = None) -> dict:
    """The ``top`` worst segments (those needing at least ``min_valves`` valves, when given).

    Worst: most critical customers cut off, then most customers, then the longest outage.
    ``refresh`` recomputes stale results first; otherwise stale results are answered and
    flagged. ``with_valves`` adds the next ring (N-1) of every valve the listed segments need.
    One statement answers it all (the stored answer in one round trip).
    """
    if top < 1 or top > 10_000:
        raise InputError("top is a number of segments from 1 to 10000", zh="top 是管段数，取 1 到 10000")
    if min_valves is not None and min_valves < 0:
        raise InputError("min_valves is a number of valves, 0 or more",
                         zh="min_valves 是阀门数，取 0 或以上")
    if refresh:
        ensure_current(engine, user=user, progress=progress, audit=audit)
    where, params = ("WHERE s.valves >= :k", {"k": min_valves}) if min_valves is not None else ("", {})
    sql = (f"WITH st AS ({_STATE_SQL}) SELECT st.*, x.* FROM st LEFT JOIN LATERAL (SELECT {_SEGMENT_COLUMNS}"
           f"{', ' + _VALVE_DOCS if with_valves else ''} FROM criticality_segment s {where} "
           f"ORDER BY {_WORST} "
           "LIMIT :n) x ON true")
    with engine.connect() as conn:
        rows = conn.execute(sa.text(sql), {**params, "n": top}).mappings().all()
    segments = [r for r in rows if r["segment"] is not None]
    result = {"state": _state(rows[0]), "segments": [_segment_doc(r) for r in segments]}
    if with_valves:
        result["valves"] = _valves_of(segments)
    return result


def pipe_criticality(engine: sa.Engine, pipe: str, *, with_valves: bool = True) -> dict:
    """The stored criticality of the segment holding ``pipe`` (answered as stored, flagged stale)."""
    sql = (f"WITH st AS ({_STATE_SQL}) SELECT st.*, x.* FROM st LEFT JOIN LATERAL (SELECT {_SEGMENT_COLUMNS}"
           f"{', ' + _VALVE_DOCS if with_valves else ''} FROM criticality_pipe p "
           "JOIN criticality_segment s USING (segment) WHERE p.pipe_id = :p) x ON true")
    with engine.connect() as conn:
        row = conn.execute(sa.text(sql), {"p": pipe}).mappings().one()
    state = _state(row)
    if row["segment"] is None:
        why, why_zh = (("no criticality has been computed yet", "尚未计算重要性") if not state["computed"] else
                       ("it is not a live water, gas or heat pipe of the stored results",
                        "它不是已存结果中在用的给水、燃气或热力管线"))
        raise NotFound(f"no criticality for pipe {pipe!r}: {why}", zh=f"管线 {pipe!r} 没有重要性结果：{why_zh}")
    result = {"state": state, "pipe": pipe, "segment": _segment_doc(row)}
    if with_valves:
        result["valves"] = _valves_of([row])
    return result
