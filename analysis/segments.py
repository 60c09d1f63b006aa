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
import scipy.sparse as sp
import sqlalchemy as sa
from scipy.sparse.csgraph import connected_components, dijkstra

from twin.domain import PRESSURISED_UTILITIES

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
    n_links = len(link_from)
    links = np.arange(n_links, dtype=np.int64)
    ends_link = np.concatenate([links, links])
    ends_node = np.concatenate([link_from, link_to])
    # An end is joined unless a valve sits on that (link, node) pair.
    end_key = ends_link * n_nodes + ends_node
    valve_key = np.asarray(valve_link, dtype=np.int64) * n_nodes + np.asarray(valve_node, dtype=np.int64)
    joined = ~np.isin(end_key, valve_key)
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
    supplied: np.ndarray  # bool per unit: reaches a source with every open valve open
    node_distance_m: np.ndarray  # network distance from the nearest source (inf: none)
    fingerprint: str = ""
    timings: dict[str, float] = field(default_factory=dict)
    link_groups: Groups = field(init=False)
    node_groups: Groups = field(init=False)
    link_unit_groups: Groups = field(init=False)
    node_unit_groups: Groups = field(init=False)
    seg_valves: Groups = field(init=False)

    def __post_init__(self) -> None:
        self.link_groups = Groups.of(self.link_seg, self.n_segments)
        self.node_groups = Groups.of(self.node_seg, self.n_segments)
        self.link_unit_groups = Groups.of(self.link_unit, self.n_units)
        self.node_unit_groups = Groups.of(self.node_unit, self.n_units)
        # Each valve touches the segment of its link and the segment of its node.
        vs = np.concatenate([self.link_seg[self.valve_link], self.node_seg[self.valve_node]])
        vi = np.concatenate([np.arange(len(self.valve_link))] * 2)
        order = np.argsort(vs, kind="stable")
        ptr = np.zeros(self.n_segments + 1, dtype=np.int64)
        np.cumsum(np.bincount(vs, minlength=self.n_segments), out=ptr[1:])
        self.seg_valves = Groups(vi[order], ptr)
        self._link_pos = pd.Index(self.links["id"])
        self._node_pos = pd.Index(self.nodes["id"])
        self._valve_pos = pd.Index(self.valves["id"])
        # Open valves join units in the supply graph; normally-closed ones are already shut.
        self._open = ~self.valves["normally_closed"].to_numpy(bool)
        self._valve_units = (self.link_unit[self.valve_link], self.node_unit[self.valve_node])

    def link_position(self, link_id: str) -> int:
        """Position of a link id, -1 when absent."""
        return int(self._link_pos.get_indexer([link_id])[0])

    def node_position(self, node_id: str) -> int:
        """Position of a node id, -1 when absent."""
        return int(self._node_pos.get_indexer([node_id])[0])

    def valve_positions(self, valve_ids: Iterable[str]) -> np.ndarray:
        """Positions of valve ids (-1 for unknown ones)."""
        return self._valve_pos.get_indexer(list(valve_ids))

    def reached_units(self, closed_units: np.ndarray, closed_valves: np.ndarray) -> np.ndarray:
        """Bool per unit: still reaches a source with these units drained and valves shut."""
        a, b = self._valve_units
        keep = self._open.copy()
        keep[closed_valves] = False
        dead = np.zeros(self.n_units, dtype=bool)
        dead[closed_units] = True
        keep &= ~dead[a] & ~dead[b] & (a != b)
        return _reach(a[keep], b[keep], self.source_units[~dead[self.source_units]], self.n_units)


def _reach(a: np.ndarray, b: np.ndarray, starts: np.ndarray, n: int) -> np.ndarray:
    """Bool per vertex: connected to any of ``starts`` through the undirected edges a-b."""
    # One extra vertex joined to every start: its component is everything supplied.
    hub = n
    rows = np.concatenate([a, np.full(len(starts), hub)])
    cols = np.concatenate([b, starts])
    g = sp.coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, cols)), shape=(n + 1, n + 1)).tocsr()
    _, labels = connected_components(g, directed=False)
    return labels[:n] == labels[hub]


def network_fingerprint(conn: sa.Connection) -> str:
    """A string that changes whenever a feature the isolation model reads changes."""
    parts = []
    for t in ("segment", "valve", "source", "customer", "node"):
        n, last = conn.execute(sa.text(f"SELECT count(*), max(valid_from) FROM {t}")).one()
        parts.append(f"{t}:{n}:{last.isoformat() if last else '-'}")
    return "|".join(parts)


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
    params: dict[str, object] = {"u": list(utilities)}
    where = "utility = ANY(:u)" + (" AND scope = :scope" if scope else "")
    if scope:
        params["scope"] = scope
    fingerprint = network_fingerprint(conn)

    def frame(sql: str, columns: list[str]) -> pd.DataFrame:
        return pd.DataFrame(conn.execute(sa.text(sql), params).all(), columns=columns)

    links = frame(
        "SELECT id, from_node, to_node, utility, shape, diameter_mm, width_mm, height_mm, length_m, "
        "coalesce(remarks, '') FROM current_segment "
        f"WHERE {where} AND status = 'active' ORDER BY id",
        ["id", "from_node", "to_node", "utility", "shape", "diameter_mm", "width_mm", "height_mm",
         "length_m", "remarks"],
    )
    nodes = frame(
        f"SELECT id, utility, ST_X(geom), ST_Y(geom), ground_z FROM current_node WHERE {where} ORDER BY id",
        ["id", "utility", "x", "y", "ground_z"],
    )
    valves = frame(
        "SELECT id, segment_id, node_id, utility, kind, operable, normally_closed, ST_X(geom), ST_Y(geom) "
        f"FROM current_valve WHERE {where} ORDER BY id",
        ["id", "segment_id", "node_id", "utility", "kind", "operable", "normally_closed", "x", "y"],
    )
    sources = frame(
        f"SELECT id, node_id, utility, kind, name FROM current_source WHERE {where} ORDER BY id",
        ["id", "node_id", "utility", "kind", "name"],
    )
    customers = frame(
        f"SELECT id, node_id, utility, name, kind, critical, demand FROM current_customer WHERE {where} "
        "ORDER BY critical DESC, id",
        ["id", "node_id", "utility", "name", "kind", "critical", "demand"],
    )
    t_read = time.perf_counter()
    model = model_from_frames(links, nodes, valves, sources, customers, fingerprint=fingerprint)
    model.timings = {"read_s": t_read - t0, **model.timings}
    return model


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
    links = links.reset_index(drop=True)
    # Nodes: the twin's, plus any end a link names that the node table lacks.
    known = pd.Index(nodes["id"])
    missing = pd.Index(pd.unique(np.concatenate([links["from_node"], links["to_node"]]))).difference(known)
    if len(missing):
        nodes = pd.concat([nodes, pd.DataFrame({"id": missing})], ignore_index=True)
    nodes = nodes.reset_index(drop=True)
    node_pos = pd.Index(nodes["id"])
    link_from = node_pos.get_indexer(links["from_node"])
    link_to = node_pos.get_indexer(links["to_node"])
    link_pos = pd.Index(links["id"])
    v_link = link_pos.get_indexer(valves["segment_id"])
    v_node = node_pos.get_indexer(valves["node_id"])
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

    closed = links["remarks"].fillna("").str.contains("|".join(CLOSED_PIPE_WORDS), regex=True).to_numpy()
    node_unit, link_unit, n_units = segment_labels(link_from, link_to, v_link, v_node, n_nodes,
                                                   cut_links=closed)
    unit_seg = np.zeros(n_units, dtype=np.int64)
    unit_seg[node_unit] = node_seg
    unit_seg[link_unit] = link_seg
    s_node = node_pos.get_indexer(sources["node_id"])
    sources = sources[s_node >= 0].reset_index(drop=True)
    s_node = s_node[s_node >= 0]
    source_units = np.unique(node_unit[s_node])
    valves = valves.assign(normally_closed=valves["normally_closed"].astype(bool),
                           operable=valves["operable"].astype(bool))
    open_v = ~valves["normally_closed"].to_numpy(bool)
    a, b = link_unit[v_link], node_unit[v_node]
    supplied = _reach(a[open_v], b[open_v], source_units, n_units)

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
        source_units=source_units, supplied=supplied, node_distance_m=dist,
        fingerprint=fingerprint,
    )
    model.timings = {"segment_s": t_seg - t0, "supply_s": t_end - t_seg,
                     "index_s": time.perf_counter() - t_end}
    return model
