"""Valve segments of pressurised networks (关阀分段) and the model shutoff queries run on.

A valve sits on a pipe at one of its ends, the WNTR valve-layer convention: the pair
``(pipe, node)``; closing it cuts that pipe off from that node. A **segment** is the smallest
part of the network that closing valves can cut off. Put nodes and pipes in one bipartite
graph, join each pipe to each of its end nodes unless a valve sits on that end, and the
connected components are the segments: exactly :func:`wntr.metrics.topographic.valve_segments`,
computed with :func:`scipy.sparse.csgraph.connected_components` in one pass.

For *supply* (what still reaches a source once valves are closed) the model also keeps a
finer partition, the **units**: the same graph without the pipes that are normally closed
(a closed pipe in EPANET, ``常闭`` in the remarks), so every unit lies inside one segment.
Open valves join units; normally-closed valves (boundaries between pressure zones) do not.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp
import sqlalchemy as sa
from scipy.sparse.csgraph import (
    breadth_first_order,
    connected_components,
    depth_first_order,
    dijkstra,
)

from twin.arrow import copy_table
from twin.db import change_mark
from twin.domain import PRESSURISED_UTILITIES
from twin.schema import column, names

__all__ = ["segment_labels", "IsolationModel", "build_model", "network_fingerprint", "Groups"]

log = logging.getLogger(__name__)

#: Remarks that mark a pipe as normally closed (EPANET ``Closed``, survey 常闭).
CLOSED_PIPE_WORDS = ("normally closed", "常闭")


def segment_labels(
    link_from: np.ndarray,
    link_to: np.ndarray,
    valve_link: np.ndarray,
    valve_node: np.ndarray,
    n_nodes: int,
    *,
    cut_links: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, int]:
    """Segment number of every node and link, from integer arrays.

    Parameters
    ----------
    link_from, link_to : int arrays (L,)
        End nodes of each link, as node positions ``0 <= i < n_nodes``.
    valve_link, valve_node : int arrays (V,)
        Each valve's link and the end node it guards.
    n_nodes : int
    cut_links : bool array (L,), optional
        Links joined to neither end (normally-closed pipes, for the supply units).

    Returns
    -------
    node_seg, link_seg, n_segments
        Labels ``0 <= s < n_segments``.

    Examples
    --------
    A line 0 -a- 1 -b- 2 with a valve on ``b`` at node 1 has two segments:

    >>> node_seg, link_seg, n = segment_labels(np.array([0, 1]), np.array([1, 2]),
    ...                                        np.array([1]), np.array([1]), 3)
    >>> n, node_seg.tolist(), link_seg.tolist()
    (2, [0, 0, 1], [0, 1])
    """
    link_from = np.asarray(link_from, dtype=np.int64)
    link_to = np.asarray(link_to, dtype=np.int64)
    valve_link = np.asarray(valve_link, dtype=np.int64)
    valve_node = np.asarray(valve_node, dtype=np.int64)
    n_links = len(link_from)
    links = np.arange(n_links, dtype=np.int64)
    ends_link = np.concatenate([links, links])
    ends_node = np.concatenate([link_from, link_to])
    # An end is joined unless a valve sits on that (link, node) pair: ends 0..L-1 are the
    # links' from-ends, L..2L-1 their to-ends. A valve at neither end of its link counts for nothing.
    joined = np.ones(2 * n_links, dtype=bool)
    joined[valve_link[link_from[valve_link] == valve_node]] = False
    joined[n_links + valve_link[link_to[valve_link] == valve_node]] = False
    if cut_links is not None:
        joined &= ~np.concatenate([cut_links, cut_links])
    rows = n_nodes + ends_link[joined]
    cols = ends_node[joined]
    size = n_nodes + n_links
    graph = sp.coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(size, size)).tocsr()
    n, labels = connected_components(graph, directed=False)
    return labels[:n_nodes], labels[n_nodes:], int(n)


@dataclass(frozen=True)
class Groups:
    """Members of each label, for O(k) lookups: ``members(s) = order[ptr[s]:ptr[s + 1]]``."""

    order: np.ndarray
    ptr: np.ndarray

    @classmethod
    def of(cls, labels: np.ndarray, n: int) -> Groups:
        """Group positions by label."""
        order = np.argsort(labels, kind="stable")
        ptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.bincount(labels, minlength=n), out=ptr[1:])
        return cls(order, ptr)

    def members(self, labels: Iterable[int] | np.ndarray) -> np.ndarray:
        """Positions carrying any of the given labels."""
        labels = np.unique(np.asarray(list(labels) if not isinstance(labels, np.ndarray) else labels,
                                      dtype=np.int64))
        if not len(labels):
            return np.empty(0, dtype=np.int64)
        starts, stops = self.ptr[labels], self.ptr[labels + 1]
        return np.concatenate([self.order[a:b] for a, b in zip(starts, stops, strict=True)])


@dataclass
class IsolationModel:
    """Pressurised networks with their valve segments, supply units and source distances.

    Frames are positional: ``links`` (pipes, pumps, valves as links), ``nodes``, ``valves``,
    ``sources``, ``customers``; the integer arrays index them.
    """

    links: pd.DataFrame
    nodes: pd.DataFrame
    valves: pd.DataFrame
    sources: pd.DataFrame
    customers: pd.DataFrame
    link_from: np.ndarray
    link_to: np.ndarray
    valve_link: np.ndarray
    valve_node: np.ndarray
    node_seg: np.ndarray
    link_seg: np.ndarray
    n_segments: int
    node_unit: np.ndarray
    link_unit: np.ndarray
    n_units: int
    unit_seg: np.ndarray
    source_units: np.ndarray
    node_distance_m: np.ndarray  # network distance from the nearest source (inf: none)
    fingerprint: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    supplied: np.ndarray = field(init=False)  # bool per unit: fed with every open valve open
    link_groups: Groups = field(init=False)
    node_groups: Groups = field(init=False)
    link_unit_groups: Groups = field(init=False)
    node_unit_groups: Groups = field(init=False)
    unit_groups: Groups = field(init=False)
    seg_valves: Groups = field(init=False)

    def __post_init__(self) -> None:
        self.link_groups = Groups.of(self.link_seg, self.n_segments)
        self.node_groups = Groups.of(self.node_seg, self.n_segments)
        self.link_unit_groups = Groups.of(self.link_unit, self.n_units)
        self.node_unit_groups = Groups.of(self.node_unit, self.n_units)
        self.unit_groups = Groups.of(self.unit_seg, self.n_segments)
        # Each valve touches the segment of its link and the segment of its node.
        self.valve_side_link = self.link_seg[self.valve_link]
        self.valve_side_node = self.node_seg[self.valve_node]
        vs = np.concatenate([self.valve_side_link, self.valve_side_node])
        by_seg = Groups.of(vs, self.n_segments)
        self.seg_valves = Groups(np.concatenate([np.arange(len(self.valve_link))] * 2)[by_seg.order], by_seg.ptr)
        v = self.valves
        self.valve_columns = {"id": v["id"].to_numpy(dtype=object), "pipe": v["segment_id"].to_numpy(dtype=object),
                              "node": v["node_id"].to_numpy(dtype=object), "kind": v["kind"].to_numpy(dtype=object),
                              "operable": v["operable"].to_numpy(bool), "x": v["x"].to_numpy(float),
                              "y": v["y"].to_numpy(float)}
        self.valve_inoperable = ~self.valve_columns["operable"]
        self.valve_shut = v["normally_closed"].to_numpy(bool)
        self.valves_by_utility = v["utility"].value_counts().to_dict()
        self.sources_by_utility = self.sources["utility"].value_counts().to_dict()
        # numpy copies of the columns a query reads (pandas string columns convert on every read)
        self.link_ids = self.links["id"].to_numpy(dtype=object)
        self.node_ids = self.nodes["id"].to_numpy(dtype=object)
        self.link_utility = self.links["utility"].to_numpy(dtype=object)
        self.link_length_m = pd.to_numeric(self.links["length_m"], errors="coerce").to_numpy(float)
        self.link_volume_m3 = _volume_m3(self.links)
        self._link_pos = dict(zip(self.link_ids.tolist(), range(len(self.link_ids)), strict=True))
        self._node_pos = dict(zip(self.node_ids.tolist(), range(len(self.node_ids)), strict=True))
        self._valve_pos = dict(zip(self.valve_columns["id"].tolist(), range(len(self.valves)), strict=True))
        (cust_node,) = _positions(self.node_ids, self.customers["node_id"])
        self.customers = self.customers[cust_node >= 0].reset_index(drop=True)
        self.customer_groups = Groups.of(self.node_unit[cust_node[cust_node >= 0]], self.n_units)
        self.customer_columns = {c: self.customers[c].to_numpy(dtype=object) for c in self.customers.columns}
        self._supply_tree()

    def _supply_tree(self) -> None:
        """A breadth-first tree of the supply graph from a hub joined to every source.

        A unit can lose supply only if its tree path to the hub runs through a drained unit,
        so a query looks at the subtrees of the drained units (a slice of the preorder each)
        and re-attaches those with another open valve to a still supplied unit.
        """
        n = self.n_units
        hub = n
        open_v = ~self.valve_shut
        a = self.link_unit[self.valve_link][open_v]
        b = self.node_unit[self.valve_node][open_v]
        keep = a != b
        a, b = a[keep], b[keep]
        src = self.source_units
        rows = np.concatenate([a, b, np.full(len(src), hub), src])
        cols = np.concatenate([b, a, src, np.full(len(src), hub)])
        adj = sp.csr_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(n + 1, n + 1))
        adj.sum_duplicates()
        self.supply_adj = adj
        order, pred = breadth_first_order(adj, hub, directed=True, return_predecessors=True)
        reached = np.zeros(n + 1, dtype=bool)
        reached[order] = True
        self.supplied = reached[:n]
        depth = dijkstra(adj, directed=True, indices=hub, unweighted=True)
        tree_nodes = order[1:]
        parent = pred[tree_nodes]
        tree = sp.csr_matrix((np.ones(len(tree_nodes), dtype=np.int8), (parent, tree_nodes)),
                             shape=(n + 1, n + 1))
        pre = depth_first_order(tree, hub, directed=True, return_predecessors=False)
        tin = np.full(n + 1, -1, dtype=np.int64)
        tin[pre] = np.arange(len(pre))
        size = np.ones(n + 1, dtype=np.int64)
        d = depth[tree_nodes].astype(np.int64)
        by_depth = np.argsort(-d, kind="stable")
        for level in np.split(by_depth, np.flatnonzero(np.diff(d[by_depth])) + 1):  # deepest first
            np.add.at(size, parent[level], size[tree_nodes[level]])
        self.tree_pre, self.tree_tin, self.tree_size = pre, tin, size

    def link_position(self, link_id: str) -> int:
        """Position of a link id, -1 when absent."""
        return self._link_pos.get(link_id, -1)

    def node_position(self, node_id: str) -> int:
        """Position of a node id, -1 when absent."""
        return self._node_pos.get(node_id, -1)

    def valve_positions(self, valve_ids: Iterable[str]) -> np.ndarray:
        """Positions of valve ids (-1 for unknown ones)."""
        return np.array([self._valve_pos.get(v, -1) for v in valve_ids], dtype=np.int64)

    def cut_off_units(self, drained: np.ndarray) -> np.ndarray:
        """Units fed now that lose every way to a source once the ``drained`` units are shut off."""
        drained = np.unique(drained)
        roots = drained[self.supplied[drained]]
        if not len(roots):
            return np.empty(0, dtype=np.int64)
        starts, sizes = self.tree_tin[roots], self.tree_size[roots]
        suspects = np.unique(np.concatenate([self.tree_pre[a:a + k] for a, k in zip(starts, sizes, strict=True)]))
        suspects = suspects[~np.isin(suspects, drained)]
        if not len(suspects):
            return suspects
        adj = self.supply_adj
        lo, hi = adj.indptr[suspects], adj.indptr[suspects + 1]
        counts = hi - lo
        offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        nbr = adj.indices[np.repeat(lo, counts) + offsets]
        src = np.repeat(np.arange(len(suspects)), counts)
        pos = np.minimum(np.searchsorted(suspects, nbr), len(suspects) - 1)
        inside = suspects[pos] == nbr
        gone = np.isin(nbr, drained)
        # a suspect with an open valve to a unit neither suspect nor drained is still fed
        seeds = np.unique(src[~inside & ~gone])
        k = len(suspects)
        rows = np.concatenate([src[inside], np.full(len(seeds), k)])
        cols = np.concatenate([pos[inside], seeds])
        g = sp.coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(k + 1, k + 1)).tocsr()
        _, labels = connected_components(g, directed=False)
        return suspects[labels[:k] != labels[k]]


def _volume_m3(links: pd.DataFrame) -> np.ndarray:
    """Water volume (m³) of each link: its inner section times its length (wall ignored)."""
    length = pd.to_numeric(links["length_m"], errors="coerce").to_numpy(float)
    circ = links["shape"].to_numpy(dtype=object) == "circular"
    d, w, h = (pd.to_numeric(links[c], errors="coerce").to_numpy(float) / 1000.0
               for c in ("diameter_mm", "width_mm", "height_mm"))
    return np.nan_to_num(np.where(circ, np.pi * d * d / 4.0, w * h) * length)


#: What the model reads of each table (the catalogue's ``reads="shutoff"`` and content columns).
_LINK = names("segment", reads="shutoff")
_VALVE = names("valve", versioning=False)
_SOURCE = names("source", versioning=False)
_CUSTOMER = names("customer", versioning=False)
#: Arrow types of the catalogue's column types (ids stay text even when they look like numbers).
_ARROW_TYPES = {"string": pa.string(), "number": pa.float64(), "integer": pa.int64(), "boolean": pa.bool_()}


def network_fingerprint(conn: sa.Connection) -> str:
    """A string that changes whenever a feature the isolation model reads changes.

    The change counter of migration 0007: every write statement on a feature table moves it
    in the writing transaction, so it moves exactly when the change becomes visible.
    """
    return change_mark(conn)


def build_model(
    conn: sa.Connection | sa.Engine,
    utilities: Iterable[str] = tuple(sorted(PRESSURISED_UTILITIES)),
    *,
    scope: str | None = None,
) -> IsolationModel:
    """Read the live pressurised network of the twin and segment it."""
    if isinstance(conn, sa.Engine):
        with conn.connect() as c:
            return build_model(c, utilities, scope=scope)
    t0 = time.perf_counter()
    params: list[object] = [list(utilities)]
    where = "utility = ANY(%s)" + (" AND scope = %s" if scope else "")
    if scope:
        params.append(scope)
    fingerprint = network_fingerprint(conn)

    def frame(kind: str, sql: str, names_: list[str], extra: tuple[str, ...] = ()) -> pd.DataFrame:
        # COPY to Arrow: a million pipes in seconds, where row fetches took tens of seconds
        types = {n: _ARROW_TYPES[column(kind, n).type] for n in names_}
        types.update({n: pa.float64() for n in extra})
        table = copy_table(conn, sql, params, types)
        if table is None:
            return pd.DataFrame({n: pd.Series(dtype=object) for n in [*names_, *extra]})
        out = table.to_pandas()
        out.columns = [*names_, *extra]
        return out

    links = frame("segment", f"SELECT {', '.join(_LINK)} FROM current_segment WHERE {where} "
                  "AND status = 'active' ORDER BY id", list(_LINK))
    links["remarks"] = links["remarks"].fillna("")
    nodes = frame("node", f"SELECT id, utility, ST_X(geom) AS x, ST_Y(geom) AS y, ground_z FROM current_node "
                  f"WHERE {where} ORDER BY id", ["id", "utility"], ("x", "y", "ground_z"))
    valves = frame("valve", f"SELECT {', '.join(_VALVE)}, ST_X(geom) AS x, ST_Y(geom) AS y FROM current_valve "
                   f"WHERE {where} ORDER BY id", list(_VALVE), ("x", "y"))
    sources = frame("source", f"SELECT {', '.join(_SOURCE)} FROM current_source WHERE {where} ORDER BY id",
                    list(_SOURCE))
    customers = frame("customer", f"SELECT {', '.join(_CUSTOMER)} FROM current_customer WHERE {where} "
                      "ORDER BY critical DESC, id", list(_CUSTOMER))
    t_read = time.perf_counter()
    model = model_from_frames(links, nodes, valves, sources, customers, fingerprint=fingerprint)
    model.timings = {"read_s": t_read - t0, **model.timings}
    return model


def _arrow(values: pd.Series | np.ndarray) -> pa.Array:
    if isinstance(values, pd.Series) and isinstance(values.dtype, pd.StringDtype):
        return pa.array(values).cast(pa.string())  # Arrow-backed already: no copy of the strings
    return pa.array(np.asarray(values, dtype=object), type=pa.string())


def _positions(ids: pd.Series | np.ndarray, *values: pd.Series | np.ndarray) -> list[np.ndarray]:
    """Position among ``ids`` of each item of each ``values`` (-1 when absent), in one Arrow hash."""
    arrays = [_arrow(v) for v in values]
    found = pc.index_in(pa.chunked_array(arrays, type=pa.string()), value_set=_arrow(ids))
    flat = found.fill_null(-1).to_numpy().astype(np.int64)
    return np.split(flat, np.cumsum([len(a) for a in arrays])[:-1])


def model_from_frames(
    links: pd.DataFrame,
    nodes: pd.DataFrame,
    valves: pd.DataFrame,
    sources: pd.DataFrame,
    customers: pd.DataFrame,
    *,
    fingerprint: str = "",
) -> IsolationModel:
    """Segment a network given as frames (the columns :func:`build_model` reads)."""
    t0 = time.perf_counter()
    # Ids as numpy object arrays: hashing them is several times faster than Arrow strings.
    links = links.reset_index(drop=True)
    link_from, link_to = _positions(nodes["id"], links["from_node"], links["to_node"])
    # Nodes: the twin's, plus any end a link names that the node table lacks.
    if (link_from < 0).any() or (link_to < 0).any():
        ends = np.concatenate([links["from_node"].to_numpy(object)[link_from < 0],
                               links["to_node"].to_numpy(object)[link_to < 0]])
        extra = pd.DataFrame({"id": pd.unique(ends).astype(object)})
        nodes = pd.concat([nodes, extra], ignore_index=True)
        link_from, link_to = _positions(nodes["id"], links["from_node"], links["to_node"])
    nodes = nodes.reset_index(drop=True)
    (v_link,) = _positions(links["id"], valves["segment_id"])
    v_node, s_node = _positions(nodes["id"], valves["node_id"], sources["node_id"])
    # A valve must sit at an end of a live link of these networks.
    ok = (v_link >= 0) & (v_node >= 0)
    ok[ok] &= (link_from[v_link[ok]] == v_node[ok]) | (link_to[v_link[ok]] == v_node[ok])
    if (~ok).any():
        log.warning("%d valve(s) not at an end of a live pipe are ignored", int((~ok).sum()))
    valves = valves[ok].reset_index(drop=True)
    v_link, v_node = v_link[ok], v_node[ok]
    n_nodes = len(nodes)
    node_seg, link_seg, n_seg = segment_labels(link_from, link_to, v_link, v_node, n_nodes)
    t_seg = time.perf_counter()

    remarks = links["remarks"].fillna("")
    closed = np.zeros(len(links), dtype=bool)
    maybe = remarks.str.len().to_numpy() > 0  # most pipes have no remarks: look only at the others
    closed[maybe] = remarks[maybe].str.contains("|".join(CLOSED_PIPE_WORDS), regex=True).to_numpy(bool)
    node_unit, link_unit, n_units = segment_labels(link_from, link_to, v_link, v_node, n_nodes,
                                                   cut_links=closed)
    unit_seg = np.zeros(n_units, dtype=np.int64)
    unit_seg[node_unit] = node_seg
    unit_seg[link_unit] = link_seg
    sources = sources[s_node >= 0].reset_index(drop=True)
    s_node = s_node[s_node >= 0]
    source_units = np.unique(node_unit[s_node])
    valves = valves.assign(normally_closed=valves["normally_closed"].astype(bool),
                           operable=valves["operable"].astype(bool))

    # Network distance from the nearest source, through open pipes (closing order).
    length = pd.to_numeric(links["length_m"], errors="coerce").fillna(0).to_numpy(float)
    use = ~closed
    w = np.maximum(length[use], 1e-6)
    g = sp.coo_matrix((w, (link_from[use], link_to[use])), shape=(n_nodes, n_nodes)).tocsr()
    if len(s_node):
        dist = dijkstra(g, directed=False, indices=np.unique(s_node), min_only=True)
    else:
        dist = np.full(n_nodes, np.inf)
    t_end = time.perf_counter()

    customers = customers.reset_index(drop=True)
    model = IsolationModel(
        links=links, nodes=nodes, valves=valves, sources=sources, customers=customers,
        link_from=link_from, link_to=link_to, valve_link=v_link, valve_node=v_node,
        node_seg=node_seg, link_seg=link_seg, n_segments=n_seg,
        node_unit=node_unit, link_unit=link_unit, n_units=n_units, unit_seg=unit_seg,
        source_units=source_units, node_distance_m=dist,
        fingerprint=fingerprint,
    )
    model.timings = {"segment_s": t_seg - t0, "supply_s": t_end - t_seg,
                     "index_s": time.perf_counter() - t_end}
    return model
