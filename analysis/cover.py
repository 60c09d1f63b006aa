"""Cover depth (覆土): ground minus pipe top along each pipe, against the minimum cover.

Each centreline is sampled at its vertices and every ``step_m`` metres between them; the
ground there comes from :class:`analysis.ground.GroundModel` (the survey's ground points),
the pipe top is the centreline plus half the section height. The minimum cover comes from a
rule table (``analysis/data/cover_rules.csv``, GB 50289-2016 table 4.1.1 defaults, each row
with its clause and a ``verified`` flag; ``TWIN_COVER_RULES`` or a path replaces it) keyed by
utility, optional subtype, burial codes (power direct-buried ``ZM`` vs conduit, ...),
materials (telecom plastic vs steel) and the location class ``motor_lane`` or ``sidewalk``.

The location class of a sample point: a ``location`` column on the segments where the
caller has one (a road attribute), else the polygon ``zones`` given (last match wins), else
``default_location`` (``TWIN_COVER_LOCATION``, ``motor_lane``: the stricter class). The twin
has no sidewalk polygon layer yet; ``zones`` is where one plugs in.

Reported: the worst sample point of each pipe that lacks cover anywhere. Excavations in a
proposal are not pipes and are skipped.

Survey accuracy (:mod:`analysis.accuracy`): an existing pipe's cover is known to its depth
tolerance (``uncertainty_m``); a pipe is a ``violation`` when even the shallowest reading
passes short, ``uncertain`` when only some would (listed apart). A proposal is exact.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import shapely
import sqlalchemy as sa

from analysis.accuracy import segment_tolerances, verdicts
from analysis.clearance import (
    _cached_rules,
    _numeric,
    _read_rule_csv,
    match_side,
    segment_attributes,
)
from analysis.ground import GroundModel
from analysis.network import Network
from analysis.pieces import finding_key
from analysis.rule_tables import RuleSource, rule_source
from twin.errors import InputError
from twin.settings import TwinSettings

__all__ = ["DEFAULT_COVER_RULES", "LOCATIONS", "CoverViolation", "CoverReport", "CoverRules", "load_cover_rules",
           "cover_depths", "sample_centrelines"]

DEFAULT_COVER_RULES = Path(__file__).with_name("data") / "cover_rules.csv"
#: Location classes of GB 50289 table 4.1.1.
LOCATIONS = ("motor_lane", "sidewalk")
_ALIASES = {"motor": "motor_lane", "motor_lane": "motor_lane", "车行道": "motor_lane", "机动车道": "motor_lane",
            "sidewalk": "sidewalk", "non_motor_lane": "sidewalk", "人行道": "sidewalk", "非机动车道": "sidewalk"}


def _location(value: object) -> str:
    key = str(value).strip().lower().replace(" ", "_").replace("-", "_")
    if key not in _ALIASES:
        raise InputError(f"unknown location class {value!r}: use motor_lane or sidewalk",
                         zh=f"未知位置类别 {value!r}：请用 motor_lane（机动车道）或 sidewalk（人行道）")
    return _ALIASES[key]


def load_cover_rules(path: Path | str | RuleSource | None = None, settings: TwinSettings | None = None, *,
                     db: sa.Engine | sa.Connection | None = None) -> pd.DataFrame:
    """Read a cover rule table: ``path``, else the one stored in the twin ``db``, else
    ``settings.cover_rules``, else the shipped one (see :mod:`analysis.rule_tables`)."""
    source = rule_source("cover_rules", path, getattr(settings, "cover_rules", None), DEFAULT_COVER_RULES, db)
    return _cached_rules("cover", source, _build_cover_rules)


def _build_cover_rules(path: RuleSource) -> pd.DataFrame:
    table = _read_rule_csv(path, ("id", "utility", "location", "min_cover_m", "source", "verified"), "cover rules")
    for c in ("subtype", "burial", "material"):
        if c not in table.columns:
            table[c] = ""
    table = _numeric(table, ("min_cover_m",), path, "cover rules")
    if table["min_cover_m"].isna().any():
        raise InputError(f"cover rules file {path}: rule {table[table['min_cover_m'].isna()]['id'].iloc[0]!r} "
                         "has no min_cover_m",
                         zh=f"覆土规则文件 {path}：规则 {table[table['min_cover_m'].isna()]['id'].iloc[0]!r} "
                            "缺少 min_cover_m 最小覆土")
    table["location"] = [_location(v) for v in table["location"]]
    table["utility"] = table["utility"].str.upper()
    table.attrs["path"] = str(path)  # the table's label, never a server path
    return table


class CoverRules:
    """A cover rule table read once for many checks: its rows as records, its columns as arrays.

    :func:`cover_depths` takes one in place of the table (a proposal check runs often; reading
    the rows out of the frame cost more than matching a proposal's pipes against them).
    """

    def __init__(self, table: pd.DataFrame) -> None:
        self.table = table
        self.path = str(table.attrs.get("path", ""))
        self.records = table.to_dict("records")
        self.location = np.array([LOCATIONS.index(r["location"]) for r in self.records], dtype=np.int64)
        self.min_cover = table["min_cover_m"].to_numpy(float)
        self.id = [str(v) for v in table["id"].to_numpy(object)]
        self.source = [str(v) for v in table["source"].to_numpy(object)]
        self.verified = table["verified"].to_numpy(bool).tolist()
        #: Rule per location class by a pipe's attribute values (:func:`_rules_by_location`).
        self.memo: dict[tuple, list[int]] = {}


#: The attributes a cover rule may test (:func:`analysis.clearance.segment_attributes`).
_ATTRIBUTES = ("utility", "subtype", "burial", "material", "dn_mm", "pressure_class")


def sample_centrelines(network: Network, step_m: float = 2.0) -> tuple[np.ndarray, np.ndarray]:
    """Points along every centreline: its vertices and every ``step_m`` between them.

    Returns ``(segment_index, xyz)``.

    >>> # a 5 m piece with step 2 gives t = 0, 1/3, 2/3, 1 (3 equal steps of 1.67 m)
    """
    seg, a, b = network.pieces()
    length = np.linalg.norm(b[:, :2] - a[:, :2], axis=1)
    steps = np.maximum(np.ceil(length / step_m).astype(np.int64), 1)
    n = steps + 1
    total = int(n.sum())
    piece = np.repeat(np.arange(len(seg)), n)
    start = np.repeat(np.cumsum(n) - n, n)
    k = np.arange(total) - start
    t = k / np.repeat(steps, n)
    xyz = a[piece] + (b[piece] - a[piece]) * t[:, None]
    # zero-length segments (one vertex) still get their point
    single = np.flatnonzero(np.diff(network.offsets) == 1)
    if len(single):
        seg_all = np.concatenate([seg[piece], single])
        xyz = np.vstack([xyz, network.vertices[network.offsets[single]]])
        return seg_all, xyz
    return seg[piece], xyz


@dataclass(frozen=True)
class CoverViolation:
    """The worst point of a pipe whose cover is less than its rule asks."""

    key: str
    id: str
    utility: str
    location: str
    cover_m: float
    required_m: float
    rule_id: str
    rule_source: str
    rule_verified: bool
    x: float
    y: float
    top_z: float
    ground_z: float
    road: str | None
    owner: str | None
    proposal: bool = False
    uncertainty_m: float = 0.0
    verdict: str = "violation"

    @property
    def measured_m(self) -> float:
        """The cover as measured (m)."""
        return self.cover_m

    def as_dict(self) -> dict:
        """Plain dict for JSON."""
        d = asdict(self)
        d["measured_m"] = self.cover_m
        d["shortfall_m"] = round(self.required_m - self.cover_m, 4)
        d["rule"] = {"id": self.rule_id, "source": self.rule_source, "verified": self.rule_verified}
        return d


@dataclass
class CoverReport:
    """Cover violations (worst shortfall first), what was checked and what no rule covers."""

    violations: list[CoverViolation]
    checked_segments: int = 0
    unruled: dict[str, int] = field(default_factory=dict)
    default_location: str = "motor_lane"
    rules_path: str = ""
    timings_s: dict[str, float] = field(default_factory=dict)
    uncertain: list[CoverViolation] = field(default_factory=list)

    def as_dict(self) -> dict:
        """Plain dict for JSON."""
        return {
            "counts": {"violations": len(self.violations), "checked_segments": self.checked_segments,
                       "above_ground": sum(v.cover_m < 0 for v in self.violations),
                       "uncertain": len(self.uncertain)},
            "by_utility": dict(Counter(v.utility for v in self.violations).most_common()),
            "unruled_segments": self.unruled,
            "default_location": self.default_location,
            "rules": self.rules_path,
            "timings_s": self.timings_s,
            "violations": [v.as_dict() for v in self.violations],
            "uncertain": [v.as_dict() for v in self.uncertain],
        }


def cover_depths(
    existing: Network,
    proposal: Network | None = None,
    *,
    rules: pd.DataFrame | CoverRules | Path | str | None = None,
    settings: TwinSettings | None = None,
    default_location: str | None = None,
    zones: Sequence[tuple[shapely.Geometry, str]] | None = None,
    step_m: float = 2.0,
    ground: GroundModel | None = None,
    tolerance_m: float = 0.0,
) -> CoverReport:
    """Pipes of ``existing`` (or of ``proposal`` only, when given) with less cover than required.

    ``ground`` defaults to the model of the existing network's nodes (and the proposal's).
    ``zones``: ``(polygon, location class)`` pairs in the twin CRS. A violation is
    ``cover < required - tolerance_m``.

    Examples
    --------
    >>> report = cover_depths(load_network(engine))  # doctest: +SKIP
    >>> report.as_dict()["counts"]  # doctest: +SKIP
    {'violations': 204, 'checked_segments': 1530, 'above_ground': 0}
    """
    if step_m <= 0:
        raise InputError("the sampling step must be positive", zh="采样步长须为正数")
    t0 = time.perf_counter()
    table = (rules if isinstance(rules, CoverRules)
             else CoverRules(rules if isinstance(rules, pd.DataFrame) else load_cover_rules(rules, settings)))
    default = _location(default_location or (settings.cover_location if settings else "motor_lane"))
    if ground is None:
        ground = GroundModel.from_network(existing, *([proposal] if proposal is not None else []))
    net = proposal if proposal is not None else existing
    segs = net.segments
    pipe = segs["kind"].fillna("pipe").to_numpy() != "excavation" if "kind" in segs.columns else np.ones(len(segs), bool)
    seg, xyz = sample_centrelines(net, step_m)
    keep = pipe[seg]
    seg, xyz = seg[keep], xyz[keep]
    loc = _sample_locations(segs, seg, xyz, default, zones)
    attrs = segment_attributes(segs)
    rule_pos = _rules_by_location(table, attrs, len(segs))[seg, loc]
    ruled = rule_pos >= 0
    unruled_segs = np.unique(seg[~ruled])
    unruled = dict(Counter(attrs["utility"][unruled_segs]).most_common())
    seg, xyz, loc, rule_pos = seg[ruled], xyz[ruled], loc[ruled], rule_pos[ruled]
    half = np.nan_to_num(net.half_height_m)
    top = xyz[:, 2] + half[seg]
    gz = ground(xyz[:, 0], xyz[:, 1])
    cover = gz - top
    required = table.min_cover[rule_pos]
    margin = cover - required
    depth_tol = (np.zeros(len(segs)) if proposal is not None
                 else segment_tolerances(segs, net.nodes, net.vertices, net.offsets)[1])
    verdict = verdicts(cover, required, depth_tol[seg] + tolerance_m)
    bad = verdict != "compliant"
    # the worst point per pipe
    order = np.lexsort((margin[bad], seg[bad]))
    b = np.flatnonzero(bad)[order]
    first = np.ones(len(b), dtype=bool)
    first[1:] = seg[b][1:] != seg[b][:-1]
    w = b[first]
    samples = {"seg": seg[w], "location": loc[w], "rule": rule_pos[w], "xyz": xyz[w], "top_z": top[w],
               "ground_z": gz[w], "cover_m": cover[w], "required_m": required[w],
               "uncertainty_m": depth_tol[seg[w]] + tolerance_m, "verdict": verdict[w]}
    out = _violations(segs, table, samples, proposal=proposal is not None)
    out.sort(key=lambda v: (v.cover_m - v.required_m, v.id))
    return CoverReport([v for v in out if v.verdict == "violation"], int(pipe.sum()), unruled, default,
                       table.path, {"total": round(time.perf_counter() - t0, 3)},
                       uncertain=[v for v in out if v.verdict == "uncertain"])


def _sample_locations(segs: pd.DataFrame, seg: np.ndarray, xyz: np.ndarray, default: str,
                      zones: Sequence[tuple[shapely.Geometry, str]] | None) -> np.ndarray:
    """Location class (index into :data:`LOCATIONS`) of each sample point: the segment's
    ``location``, else the last zone holding it, else ``default``."""
    loc = np.full(len(seg), LOCATIONS.index(default))
    for geom, name in zones or ():
        inside = shapely.contains_xy(geom, xyz[:, 0], xyz[:, 1])
        loc[inside] = LOCATIONS.index(_location(name))
    if "location" in segs.columns:
        own = segs["location"].to_numpy(object)[seg]
        has = pd.notna(own)
        if has.any():
            loc[has] = [LOCATIONS.index(_location(v)) for v in own[has]]
    return loc


#: Below this many segments, :func:`_rules_by_location` matches each kind of pipe once per table.
_MEMO_SEGMENTS = 256


def _rules_by_location(table: CoverRules, attrs: dict[str, np.ndarray], n_segments: int) -> np.ndarray:
    """The rule (row of ``table``, -1: none) for each segment in each location class.

    The most specific matching rule wins, then the deepest cover. A few pipes (a proposal's) are
    matched through the table's memo of attribute values (:attr:`CoverRules.memo`).
    """
    if not 0 < n_segments <= _MEMO_SEGMENTS:
        return _match_rules(table, attrs, n_segments)
    keys = list(zip(*([None if isinstance(v, float) and v != v else v for v in attrs[k].tolist()]
                      for k in _ATTRIBUTES), strict=True))
    first: dict[tuple, int] = {}
    for n, k in enumerate(keys):  # a proposal's few pipes
        if k not in table.memo:
            first.setdefault(k, n)
    todo = list(first.values())
    found = dict(zip(first, _match_rules(table, {k: v[todo] for k, v in attrs.items()}, len(todo)).tolist(),
                     strict=True)) if todo else {}
    try:
        rules = [found[k] if k in found else table.memo[k] for k in keys]
    except KeyError:  # another check started the memo again meanwhile
        return _match_rules(table, attrs, n_segments)
    if len(table.memo) > 10_000:
        table.memo.clear()
    table.memo.update(found)
    return np.array(rules, dtype=np.int64).reshape(n_segments, len(LOCATIONS))


def _match_rules(table: CoverRules, attrs: dict[str, np.ndarray], n_segments: int) -> np.ndarray:
    """:func:`_rules_by_location` rule by rule over all segments."""
    idx = np.arange(n_segments)
    rule_of = np.full((n_segments, len(LOCATIONS)), -1)
    spec_of = np.full((n_segments, len(LOCATIONS)), -1)
    val_of = np.full((n_segments, len(LOCATIONS)), -np.inf)
    for r, rule in enumerate(table.records):  # a few dozen rules, each vectorised
        m, spec = match_side(attrs, idx, rule)
        c = int(table.location[r])
        v = float(table.min_cover[r])
        better = m & ((spec > spec_of[:, c]) | ((spec == spec_of[:, c]) & (v > val_of[:, c])))
        rule_of[better, c], spec_of[better, c], val_of[better, c] = r, spec, v
    return rule_of


def _violations(segs: pd.DataFrame, table: CoverRules, samples: dict[str, np.ndarray], *,
                proposal: bool) -> list[CoverViolation]:
    """One :class:`CoverViolation` per worst sample point (arrays of ``samples``, one per pipe)."""
    ids = [str(v) for v in segs["id"].tolist()]  # astype(str) of the few violating pipes' frame
    util = [str(v) for v in segs["utility"].tolist()]
    road = segs["road"].to_numpy(object) if "road" in segs.columns else np.full(len(segs), None)
    owner = segs["owner"].to_numpy(object) if "owner" in segs.columns else np.full(len(segs), None)
    rid, src, ver = table.id, table.source, table.verified
    out = []
    for k, (s, r) in enumerate(zip(samples["seg"], samples["rule"], strict=True)):  # one per violating pipe
        xyz = samples["xyz"][k]
        out.append(CoverViolation(
            key=finding_key("cover", (ids[s],)), id=ids[s], utility=util[s], location=LOCATIONS[samples["location"][k]],
            cover_m=round(float(samples["cover_m"][k]), 4), required_m=float(samples["required_m"][k]),
            rule_id=rid[r], rule_source=src[r], rule_verified=bool(ver[r]), x=round(float(xyz[0]), 3),
            y=round(float(xyz[1]), 3), top_z=round(float(samples["top_z"][k]), 3),
            ground_z=round(float(samples["ground_z"][k]), 3),
            road=None if pd.isna(road[s]) else str(road[s]), owner=None if pd.isna(owner[s]) else str(owner[s]),
            proposal=proposal, uncertainty_m=round(float(samples["uncertainty_m"][k]), 4),
            verdict=str(samples["verdict"][k]),
        ))
    return out
