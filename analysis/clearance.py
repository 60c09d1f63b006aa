"""Clearance (水平净距 / 垂直净距) between pipes, against a rule table keyed by utility pair.

- **Horizontal**, between parallel runs: two straight pieces whose plan directions differ by
  less than ``parallel_angle_deg`` (15 degrees) and whose projections onto each other overlap
  by at least ``min_parallel_overlap_m``. Measured in plan, outer wall to outer wall, over the
  overlapping stretch: the plan distance of the clipped centrelines minus both half widths.
- **Vertical**, at crossings: where two centrelines cross in plan, the bottom of the upper
  pipe minus the top of the lower one, at the crossing point (half heights of the sections;
  the tilt of a sloped box is ignored, a few millimetres at drainage slopes).

Vertical risers and zero-length pieces have no plan direction: collision covers them,
clearance does not. Pieces of one segment and segments sharing a node are not compared.

The rules are data (:data:`DEFAULT_RULES`, ``analysis/data/clearance_rules.csv``, defaults
from GB 50289-2016 with their clause and a ``verified`` flag); a deployment replaces the file
(``TWIN_CLEARANCE_RULES`` or a path argument). A row names a utility pair (parent code or
``*``), optionally per side a subtype, burial codes (``ZM|GK``), a diameter class
(``dn_min_mm`` < DN <= ``dn_max_mm``) and gas pressure classes (GB 50028: ``low``,
``medium_b``, ``medium_a``, ``subhigh_b``, ``subhigh_a``, ``high_b``, ``high_a``). Where
several rows match a pair, the most specific wins (most conditions), ties to the largest
clearance. A subtype, burial or material condition starting with ``!`` excludes those codes
(water ``!ZS``: not reclaimed water); the pressure class ``unknown`` matches gas of unknown
pressure. Rows naming things the twin does not hold as pipes (``BUILDING``, ``TREE``,
``RAIL``, ...: :data:`NOT_CHECKED`) complete the standard's table and are not checked.

Survey accuracy (:mod:`analysis.accuracy`): each finding carries ``measured_m``,
``required_m``, ``uncertainty_m`` (the two pipes' plan tolerances for horizontal clearance,
their depth tolerances for vertical) and a ``verdict``: ``violation`` (fails even at the most
favourable positions), ``uncertain`` (依探测精度无法判定) or ``compliant``. A report lists the
violations and the uncertain pairs apart.

No pair is silent: a parallel run or crossing within reach of the table (closer than its
largest clearance of that kind, tolerance included) that no row covers is a
:class:`NoRuleFinding` (kind ``no_rule``, 无规则: cannot judge), listed and counted
(``unruled`` keeps the counts by utility pair).
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import pandas as pd
import sqlalchemy as sa

from analysis.accuracy import verdicts
from analysis.network import Network, text_array
from analysis.pieces import (
    Pieces,
    candidate_pairs,
    combine,
    connected_pairs,
    first_findings,
    pair_label,
    proposal_first,
    segment_closest_points,
)
from analysis.rule_tables import (
    RuleSource,
    open_source,
    read_error,
    rule_source,
    source_bytes,
)
from twin.errors import InputError
from twin.settings import TwinSettings

__all__ = [
    "DEFAULT_RULES",
    "GAS_PRESSURE_CLASSES",
    "ClearanceViolation",
    "NoRuleFinding",
    "ClearanceReport",
    "NOT_CHECKED",
    "NO_RULE_LABEL",
    "UNCERTAIN_LABEL",
    "rule_reach_m",
    "rule_margins",
    "load_clearance_rules",
    "gas_pressure_class",
    "clearances",
    "ClearancePrep",
    "prepare_clearances",
    "rule_arrays",
    "segment_attributes",
    "match_side",
]

DEFAULT_RULES = Path(__file__).with_name("data") / "clearance_rules.csv"

#: Gas pressure classes (GB 50028-2006 table 6.1.6), MPa: name -> (lower, upper, lower inclusive).
GAS_PRESSURE_CLASSES: dict[str, tuple[float, float, bool]] = {
    "low": (-np.inf, 0.01, False),
    "medium_b": (0.01, 0.2, True),
    "medium_a": (0.2, 0.4, False),
    "subhigh_b": (0.4, 0.8, False),
    "subhigh_a": (0.8, 1.6, False),
    "high_b": (1.6, 2.5, False),
    "high_a": (2.5, 4.0, False),
}

#: Utility code of excavations in a proposal (see analysis.proposal_input).
EXCAVATION_UTILITY = "EX"
#: Rule table "utilities" the twin does not hold as pipes: in the table for completeness, not checked.
NOT_CHECKED = frozenset({"BUILDING", "TREE", "SHRUB", "POLE", "TOWER", "KERB", "TRAM", "RAIL", "CULVERT"})
#: How people read a finding no rule covers, and an uncertain verdict.
NO_RULE_LABEL = "无规则 no rule, cannot judge"
UNCERTAIN_LABEL = "依探测精度无法判定 uncertain within survey accuracy"
_RULE_COLUMNS = ("id", "kind", "a_utility", "b_utility", "clearance_m", "source", "verified")
_SIDE = ("utility", "subtype", "burial", "dn_min_mm", "dn_max_mm", "pressure_class", "material")


def gas_pressure_class(pressure_mpa: np.ndarray) -> np.ndarray:
    """Gas pressure class names (GB 50028) of pressures in MPa; ``''`` where unknown."""
    p = np.asarray(pressure_mpa, dtype=float)
    out = np.full(p.shape, "", dtype=object)
    for name, (lo, hi, incl) in GAS_PRESSURE_CLASSES.items():
        above = p >= lo if incl else p > lo
        out[np.isfinite(p) & above & (p <= hi)] = name
    return out


def _read_rule_csv(path: RuleSource, required: tuple[str, ...], what: str) -> pd.DataFrame:
    try:
        table = pd.read_csv(open_source(path), dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except FileNotFoundError:
        raise InputError(f"{what} file {path} does not exist",
                         zh=f"规则文件（{what}）{path} 不存在") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read {what} file {path}: {read_error(exc)}",
                         zh=f"无法读取规则文件（{what}）{path}：{read_error(exc)}") from None
    table.columns = [c.strip().lower() for c in table.columns]
    missing = [c for c in required if c not in table.columns]
    if missing:
        raise InputError(f"{what} file {path} lacks column(s) {', '.join(missing)}",
                         zh=f"规则文件（{what}）{path} 缺少列：{'、'.join(missing)}")
    table = table.apply(lambda col: col.str.strip())
    dup = table["id"].duplicated()
    if dup.any():
        raise InputError(f"{what} file {path}: duplicate rule id {table['id'][dup].iloc[0]!r}",
                         zh=f"规则文件（{what}）{path}：规则编号 {table['id'][dup].iloc[0]!r} 重复")
    table["verified"] = table["verified"].str.lower().isin(("true", "yes", "1", "y"))
    return table


def _numeric(table: pd.DataFrame, cols: tuple[str, ...], path: RuleSource, what: str) -> pd.DataFrame:
    for c in cols:
        if c not in table.columns:
            table[c] = ""
        vals = pd.to_numeric(table[c].replace("", np.nan), errors="coerce")
        bad = vals.isna() & (table[c] != "")
        if bad.any():
            row = table[bad].iloc[0]
            raise InputError(f"{what} file {path}: rule {row['id']}: {c} {row[c]!r} is not a number",
                             zh=f"规则文件（{what}）{path}：规则 {row['id']}：{c} {row[c]!r} 不是数字")
        table[c] = vals.astype(float)
    return table


_RULE_CACHE: dict[tuple[str, str, bytes], pd.DataFrame] = {}


def _cached_rules(what: str, path: RuleSource,
                  build: Callable[[RuleSource], pd.DataFrame]) -> pd.DataFrame:
    """``build(path)``, parsed once per content (a proposal check reads the tables every time).

    Keyed by the file's (or stored table's) bytes, so an edited table is read again; callers
    get a copy.
    """
    try:
        raw = source_bytes(path)
    except OSError:
        return build(path)  # the builder raises the proper error
    key = (what, str(path), hashlib.sha1(raw).digest())
    table = _RULE_CACHE.get(key)
    if table is None:
        table = build(path)
        if len(_RULE_CACHE) >= 32:
            _RULE_CACHE.clear()
        _RULE_CACHE[key] = table
    return table.copy()


def load_clearance_rules(path: Path | str | RuleSource | None = None, settings: TwinSettings | None = None, *,
                         db: sa.Engine | sa.Connection | None = None) -> pd.DataFrame:
    """Read a clearance rule table: ``path``, else the one stored in the twin ``db``, else
    ``settings.clearance_rules``, else the shipped one (see :mod:`analysis.rule_tables`)."""
    source = rule_source("clearance_rules", path, getattr(settings, "clearance_rules", None), DEFAULT_RULES, db)
    return _cached_rules("clearance", source, _build_clearance_rules)


def _build_clearance_rules(path: RuleSource) -> pd.DataFrame:
    table = _read_rule_csv(path, _RULE_COLUMNS, "clearance rules")
    for side in ("a", "b"):
        for c in _SIDE:
            if f"{side}_{c}" not in table.columns:
                table[f"{side}_{c}"] = ""
        table = _numeric(table, (f"{side}_dn_min_mm", f"{side}_dn_max_mm"), path, "clearance rules")
        table[f"{side}_utility"] = table[f"{side}_utility"].str.upper()
        bad_classes = ({c.lstrip("!") for v in table[f"{side}_pressure_class"] for c in v.split("|") if c}
                       - set(GAS_PRESSURE_CLASSES) - {"unknown"})
        if bad_classes:
            raise InputError(f"clearance rules file {path}: unknown pressure class {sorted(bad_classes)[0]!r}",
                             zh=f"净距规则文件 {path}：未知压力级别 {sorted(bad_classes)[0]!r}")
    table = _numeric(table, ("clearance_m",), path, "clearance rules")
    bad = ~table["kind"].isin(("horizontal", "vertical")) | table["clearance_m"].isna() | (table["a_utility"] == "")
    if bad.any():
        row = table[bad].iloc[0]
        raise InputError(f"clearance rules file {path}: rule {row['id']!r} needs kind horizontal|vertical, "
                         "a utility on side a and a clearance_m",
                         zh=f"净距规则文件 {path}：规则 {row['id']!r} 须有 kind（horizontal 水平或 vertical 垂直）、"
                            "a 侧管线类别和 clearance_m 净距")
    table["b_utility"] = table["b_utility"].replace("", "*")
    table["_checked"] = _checked_rows(table)
    # text as plain object columns: the checks read them as numpy arrays, which an Arrow-backed
    # column builds anew on every read (a third of a proposal's clearance check)
    table = table.astype({c: object for c in table.columns if isinstance(table[c].dtype, pd.StringDtype)})
    table.attrs["path"] = str(path)
    return table


def _checked_rows(table: pd.DataFrame) -> np.ndarray:
    """Rows between pipes (not against buildings, trees, rail, ...: :data:`NOT_CHECKED`)."""
    if "_checked" in table.columns:  # the loader's (tables are parsed once, checks run often)
        return table["_checked"].to_numpy(bool)
    return ~(table["a_utility"].isin(NOT_CHECKED) | table["b_utility"].isin(NOT_CHECKED)).to_numpy()


class _RuleArrays:
    """A rule table's columns as numpy arrays, each read (and factorised) once per run.

    A proposal check matches a hundred pipes: reading an Arrow-backed column of the table
    costs as much as matching them, and the table is read many times over.
    """

    def __init__(self, table: pd.DataFrame) -> None:
        self.table = table
        self.path = str(table.attrs.get("path", ""))
        self._columns: dict[str, np.ndarray] = {}
        self._distinct: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._picked: dict[tuple, int] = {}
        self.kind = self.column("kind")  # a table without one is refused here (KeyError), as before
        self.checked = _checked_rows(table)
        self.value = table["clearance_m"].to_numpy(float)

    def column(self, name: str) -> np.ndarray:
        """The column as an array (object for text); KeyError when the table has none."""
        if name not in self._columns:
            self._columns[name] = self.table[name].to_numpy()
        return self._columns[name]

    def texts(self, name: str) -> list:
        """The column as a list of ``str`` (booleans for ``verified``), made once."""
        key = "texts:" + name
        if key not in self._columns:
            col = self.column(name)
            self._columns[key] = col.astype(bool).tolist() if name == "verified" else [str(v) for v in col]
        return self._columns[key]  # type: ignore[return-value]

    def picked(self, kind: str, attrs: dict[str, np.ndarray], a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """:func:`_pick_rules` of the segment pairs ``(a, b)``, each pair of attribute values
        matched once per table (a proposal check meets the same few dozen pairs every time)."""
        values = [attrs[k] for k in _PAIR_KEYS]
        seg = np.r_[a, b]
        keys = list(zip(*([None if isinstance(v, float) and v != v else v for v in col[seg].tolist()]
                          for col in values), strict=True))
        pairs = [(kind, keys[n], keys[len(a) + n]) for n in range(len(a))]
        memo = self._picked
        todo = [n for n, p in enumerate(pairs) if p not in memo]
        found = dict(zip((pairs[n] for n in todo), _pick_rules(self, kind, attrs, a[todo], b[todo]).tolist(),
                         strict=True)) if todo else {}
        try:
            picked = [found[p] if p in found else memo[p] for p in pairs]
        except KeyError:  # another check started the memo again meanwhile
            return _pick_rules(self, kind, attrs, a, b)
        if len(memo) > 100_000:  # a table met by very many kinds of pipe: start again
            memo.clear()
        memo.update(found)
        return np.array(picked, dtype=np.int64).reshape(len(a))

    def distinct(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """Codes and distinct values of a column (one ``""`` for a column the table lacks: no condition)."""
        if name not in self._distinct:
            if name in self.table.columns:
                code, uniq = pd.factorize(self.column(name).astype(object), use_na_sentinel=False)
                self._distinct[name] = code, np.asarray(uniq, dtype=object)
            else:
                self._distinct[name] = np.zeros(len(self.value), dtype=np.int64), np.array([""], dtype=object)
        return self._distinct[name]


def _rule_arrays(table: pd.DataFrame | _RuleArrays) -> _RuleArrays:
    return table if isinstance(table, _RuleArrays) else _RuleArrays(table)


def rule_arrays(table: pd.DataFrame) -> _RuleArrays:
    """A rule table read once for several calls (:func:`rule_margins`, :func:`rule_reach_m`,
    :func:`prepare_clearances`): each reads its columns again from a DataFrame."""
    return _rule_arrays(table)


def rule_margins(table: pd.DataFrame | _RuleArrays, segments: pd.DataFrame) -> np.ndarray:
    """Per segment, the largest clearance of a rule that may apply to its utility.

    A pair's rule is at most the smaller of its two segments' margins, so a candidate search
    widened by half of each finds every pair a rule could judge (gas and heat reach 4 m, the
    others 2 m or less).
    """
    t = _rule_arrays(table)
    rows = t.checked
    code, codes = pd.factorize(_upper_text(segments["utility"]))
    a, b = t.column("a_utility").astype(object), t.column("b_utility").astype(object)
    value = t.value
    wild = rows & ((a == "*") | (b == "*"))
    base = float(value[wild].max()) if wild.any() else 0.0
    # a utility no row names is judged as far as the farthest rule reaches (its pairs are no-rule)
    unnamed = rule_reach_m(t)
    margin = np.array([max(base, float(value[rows & ((a == c) | (b == c))].max(initial=0.0)))
                       if (rows & ((a == c) | (b == c))).any() else unnamed for c in codes], dtype=float)
    return margin[code] if len(code) else np.empty(0)


def rule_reach_m(table: pd.DataFrame | _RuleArrays, kind: str | None = None) -> float:
    """The largest clearance between pipes in ``table`` (of ``kind``): how far a pair is judged."""
    t = _rule_arrays(table)
    rows = t.checked & ((t.kind == kind) if kind else True)
    return float(t.value[rows].max()) if rows.any() else 0.0


def _upper_text(values: pd.Series) -> np.ndarray:
    """``values.fillna("").astype(str).str.upper()`` as an object array, through the distinct
    values (a few codes; string methods on Arrow-backed columns cost more than the check of a
    proposal's hundred pipes); a few hundred plain values one by one (factorising costs more)."""
    if len(values) <= 512 and values.dtype == object:
        return np.array(["" if v is None or v is pd.NA or (isinstance(v, float) and v != v) else str(v).upper()
                         for v in values.tolist()], dtype=object)
    code, uniq = pd.factorize(values)
    text = np.array([*(str(u).upper() for u in uniq), ""], dtype=object)
    return text[code]  # code -1 (missing) -> ""


def segment_attributes(segments: pd.DataFrame) -> dict[str, np.ndarray]:
    """Per-segment arrays the rules test: utility, subtype, burial, dn_mm, pressure class, material."""
    rect = segments["shape"].to_numpy() == "rect"
    dn = np.where(rect, segments["width_mm"].to_numpy(float), segments["diameter_mm"].to_numpy(float))
    utility = _upper_text(segments["utility"])
    pclass = np.where(utility == "RQ", gas_pressure_class(segments["pressure_mpa"].to_numpy(float)), "")
    return {
        "utility": utility,
        "subtype": _upper_text(segments["subtype"]),
        "burial": _upper_text(segments["burial"]),
        "material": _upper_text(segments["material"]),
        "dn_mm": dn,
        "pressure_class": pclass.astype(object),
    }


#: Every attribute a rule side may test (:func:`segment_attributes`): a pair's rule depends on these alone.
_PAIR_KEYS = ("utility", "subtype", "burial", "material", "dn_mm", "pressure_class")
#: The attributes a rule side names as a set of codes (``A|B``, ``!A``).
_SET_CONDITIONS = ("subtype", "burial", "material", "pressure_class")


def _condition(name: str, raw: object) -> tuple[bool, frozenset[str]] | None:
    """A rule side's condition on attribute ``name``: (negated, allowed codes); None: no condition."""
    value = str(raw or "")
    if not value:
        return None
    allowed = [v.strip().upper() if name != "pressure_class" else v.strip()
               for v in value.lstrip("!").split("|") if v.strip()]
    if name == "pressure_class":
        allowed = ["" if v == "unknown" else v for v in allowed]
    return value.startswith("!"), frozenset(allowed)


def _dn_limit(raw: object) -> float:
    """A rule's DN bound, NaN when it sets none."""
    return float(raw) if isinstance(raw, float) and np.isfinite(raw) else np.nan


def match_side(attrs: dict[str, np.ndarray], idx: np.ndarray, rule: pd.Series | Mapping[str, object],
               prefix: str = "") -> tuple[np.ndarray, int]:
    """Mask of segments ``idx`` meeting one side of a rule row (Series or dict), and its number of conditions."""
    ok = np.ones(len(idx), dtype=bool)
    spec = 0

    def col(name: str) -> object:
        return rule.get(prefix + name, "")

    util = str(col("utility") or "*").upper()
    if util != "*":
        ok &= attrs["utility"][idx] == util
        spec += 1
    for name in _SET_CONDITIONS:
        cond = _condition(name, col(name))
        if cond is not None:
            hit = np.isin(attrs[name][idx], list(cond[1]))
            ok &= ~hit if cond[0] else hit
            spec += 1
    lo, hi = _dn_limit(col("dn_min_mm")), _dn_limit(col("dn_max_mm"))
    dn = attrs["dn_mm"][idx]
    if np.isfinite(lo):
        ok &= dn > lo
        spec += 1
    if np.isfinite(hi):
        ok &= dn <= hi
        spec += 1
    return ok, spec


def _side_matrix(rules: _RuleArrays, rows: np.ndarray, prefix: str, attrs: dict[str, np.ndarray],
                 segs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """:func:`match_side` of segments ``segs`` against rule rows ``rows`` at once.

    Returns the mask ``(len(segs), len(rows))`` and each row's number of conditions. Each
    column is read through its distinct values (a rule table repeats a few dozen conditions).
    """
    ok = np.ones((len(segs), len(rows)), dtype=bool)
    spec = np.zeros(len(rows), dtype=np.int64)

    def distinct(name: str) -> tuple[np.ndarray, np.ndarray]:
        code, uniq = rules.distinct(prefix + name)
        return code[rows], uniq

    code, uniq = distinct("utility")
    util = np.array([str(u or "*").upper() for u in uniq], dtype=object)[code]
    named = util != "*"
    ok &= ~named | (attrs["utility"][segs][:, None] == util[None, :])
    spec += named
    for name in _SET_CONDITIONS:
        code, uniq = distinct(name)
        conds = [_condition(name, u) for u in uniq]
        vals, where = np.unique(attrs[name][segs], return_inverse=True)
        allow = np.array([[c is None or (v in c[1]) != c[0] for c in conds] for v in vals], dtype=bool)
        ok &= allow.reshape(len(vals), len(conds))[where][:, code]
        spec += np.array([c is not None for c in conds], dtype=np.int64)[code]
    dn = attrs["dn_mm"][segs][:, None]
    for name, test in (("dn_min_mm", np.greater), ("dn_max_mm", np.less_equal)):
        code, uniq = distinct(name)
        limit = np.array([_dn_limit(u) for u in uniq], dtype=float)[code]
        has = np.isfinite(limit)
        ok &= ~has | test(dn, np.where(has, limit, 0.0)[None, :])
        spec += has
    return ok, spec


#: Pairs matched against the rules in one array (``pairs x rules`` booleans, a few MB).
_PAIRS_AT_ONCE = 16384


def _pick_rules(rules: pd.DataFrame | _RuleArrays, kind: str, attrs: dict[str, np.ndarray], a: np.ndarray,
                b: np.ndarray) -> np.ndarray:
    """Row position of the rule applying to each segment pair (-1: none).

    The rule matching the pair either way round with the most conditions, then the largest
    clearance, then the first in the table; all rules against all pairs in one array
    (``pairs x rules``, a few hundred distinct pairs of attribute groups at most).
    """
    t = _rule_arrays(rules)
    best = np.full(len(a), -1)
    mine = np.flatnonzero((t.kind == kind) & t.checked)  # the rules of this kind between pipes
    if not len(a) or not len(mine):
        return best
    if len(a) > _PAIRS_AT_ONCE:  # a bounded (pairs x rules) array at a time
        return np.concatenate([_pick_rules(t, kind, attrs, a[k:k + _PAIRS_AT_ONCE], b[k:k + _PAIRS_AT_ONCE])
                               for k in range(0, len(a), _PAIRS_AT_ONCE)])
    segs, where = np.unique(np.r_[a, b], return_inverse=True)
    x, y = where[:len(a)], where[len(a):]
    ma, spec_a = _side_matrix(t, mine, "a_", attrs, segs)
    mb, spec_b = _side_matrix(t, mine, "b_", attrs, segs)
    match = (ma[x] & mb[y]) | (ma[y] & mb[x])
    spec = np.where(match, spec_a + spec_b, -1)
    top = match & (spec == spec.max(axis=1, initial=-1)[:, None])
    value = np.where(top, t.value[mine], -np.inf)
    top &= value == value.max(axis=1, initial=-np.inf)[:, None]
    return np.where(top.any(axis=1), mine[np.argmax(top, axis=1)], best)


def _attribute_groups(attrs: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Group number of each segment by the attributes rules test, and one segment per group."""
    n = len(attrs["utility"])
    gid = np.zeros(n, dtype=np.int64)
    for values in attrs.values():  # one attribute at a time, renumbered: the key stays below n^2
        code, uniq = pd.factorize(values, use_na_sentinel=False)
        gid, _ = pd.factorize(gid * max(len(uniq), 1) + code)
    rep = np.zeros(int(gid.max()) + 1 if len(gid) else 0, dtype=np.int64)
    rep[gid[::-1]] = np.arange(len(gid))[::-1]
    return gid, rep


def _rules_for_pairs(rules: _RuleArrays, kind: str, attrs: dict[str, np.ndarray],
                     groups: tuple[np.ndarray, np.ndarray], a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """:func:`_pick_rules` once per distinct pair of attribute groups (a few hundred, not millions),
    each pair's answer kept with the table (:meth:`_RuleArrays.picked`) for the next run."""
    gid, rep = groups
    if not len(a):
        return np.empty(0, dtype=np.int64)
    code = gid[a].astype(np.int64) * len(rep) + gid[b]
    uniq, inverse = np.unique(code, return_inverse=True)
    ua, ub = rep[uniq // len(rep)], rep[uniq % len(rep)]
    return rules.picked(kind, attrs, ua, ub)[inverse]


def _shallow(finding: object) -> dict:
    """A dataclass of plain values as a dict (``dataclasses.asdict`` deep-copies every value): its
    instance dict, which holds exactly its fields in their order (a quarter million per scan)."""
    kind = type(finding)
    if kind not in _FIELD_COUNT:
        _FIELD_COUNT[kind] = len(fields(finding))  # type: ignore[arg-type]
    d = getattr(finding, "__dict__", None)
    if d is not None and len(d) == _FIELD_COUNT[kind]:
        return dict(d)
    return {f.name: getattr(finding, f.name) for f in fields(finding)}  # type: ignore[arg-type]


#: Number of fields of each finding class :func:`_shallow` has met.
_FIELD_COUNT: dict[type, int] = {}


@dataclass(frozen=True)
class ClearanceViolation:
    """Two pipes whose clearance fails (or may fail, within survey accuracy) their rule.

    ``verdict``: ``violation`` or ``uncertain`` (a report leaves compliant pairs out);
    ``uncertainty_m``: the two pipes' survey tolerances along the measured direction.
    """

    key: str
    kind: str
    a_id: str
    b_id: str
    a_utility: str
    b_utility: str
    measured_m: float
    required_m: float
    rule_id: str
    rule_source: str
    rule_verified: bool
    x: float
    y: float
    z: float | None
    road: str
    owners: str
    proposal: bool = False
    uncertainty_m: float = 0.0
    verdict: str = "violation"

    @property
    def shortfall_m(self) -> float:
        """How much clearance is missing (as measured)."""
        return round(self.required_m - self.measured_m, 4)

    def as_dict(self) -> dict:
        """Plain dict for JSON."""
        d = _shallow(self)  # every field is a plain value: no deep copy (1,000s per scan)
        d["shortfall_m"] = self.shortfall_m
        d["rule"] = {"id": self.rule_id, "source": self.rule_source, "verified": self.rule_verified}
        if self.verdict == "uncertain":
            d["verdict_label"] = UNCERTAIN_LABEL
        return d


@dataclass(frozen=True)
class NoRuleFinding:
    """A parallel run or crossing within reach that no rule of the table covers (无规则)."""

    key: str
    clearance: str  # horizontal | vertical
    a_id: str
    b_id: str
    a_utility: str
    b_utility: str
    measured_m: float
    uncertainty_m: float
    x: float
    y: float
    z: float | None
    road: str
    owners: str
    a_class: str = ""
    b_class: str = ""
    proposal: bool = False
    kind: str = "no_rule"
    verdict: str = "no_rule"
    required_m: float | None = None
    rule_id: str | None = None

    def as_dict(self) -> dict:
        """Plain dict for JSON."""
        return {**_shallow(self), "label": NO_RULE_LABEL}


@dataclass
class ClearanceReport:
    """Violations of one run (worst shortfall first), the uncertain pairs and the pairs no rule
    covers, with what was checked."""

    violations: list[ClearanceViolation]
    checked: dict[str, int] = field(default_factory=dict)
    unruled: dict[str, int] = field(default_factory=dict)
    rules_path: str = ""
    timings_s: dict[str, float] = field(default_factory=dict)
    uncertain: list[ClearanceViolation] = field(default_factory=list)
    no_rule: list[NoRuleFinding] = field(default_factory=list)

    @property
    def findings(self) -> list[ClearanceViolation | NoRuleFinding]:
        """Violations, uncertain pairs and pairs no rule covers, in that order."""
        return [*self.violations, *self.uncertain, *self.no_rule]

    def by_road(self) -> dict[str, int]:
        """Number of violations per road (``A / B`` across roads)."""
        return dict(Counter(v.road for v in self.violations).most_common())

    def by_owner_pair(self) -> dict[str, int]:
        """Number of violations per owner pair."""
        return dict(Counter(v.owners for v in self.violations).most_common())

    def as_dict(self, limit: int | None = None) -> dict:
        """Plain dict for JSON; with ``limit``, the first ``limit`` of each list and whether some
        were left out (``truncated``)."""
        kinds = Counter(v.kind for v in self.violations)
        unsure = Counter(v.kind for v in self.uncertain)
        shown, truncated = first_findings(self.violations, limit)
        unsure_shown, t2 = first_findings(self.uncertain, limit)
        none_shown, t3 = first_findings(self.no_rule, limit)
        d = {
            "counts": {"horizontal": kinds.get("horizontal", 0), "vertical": kinds.get("vertical", 0),
                       "uncertain": len(self.uncertain), "no_rule": len(self.no_rule)},
            "uncertain_counts": {"horizontal": unsure.get("horizontal", 0), "vertical": unsure.get("vertical", 0)},
            "checked_pairs": self.checked,
            "unruled_pairs": self.unruled,
            "rules": self.rules_path,
            "by_road": self.by_road(),
            "by_owner_pair": self.by_owner_pair(),
            "timings_s": self.timings_s,
            "violations": [v.as_dict() for v in shown],
            "uncertain": [v.as_dict() for v in unsure_shown],
            "no_rule": [v.as_dict() for v in none_shown],
        }
        return d if limit is None else {**d, "truncated": truncated or t2 or t3}


def _parallel_measure(pieces: Pieces, i: np.ndarray, j: np.ndarray, cos_limit: float, min_overlap: float):
    """For parallel, overlapping piece pairs: mask, plan clearance (outer walls) and location."""
    a0, a1 = pieces.p0[i, :2], pieces.p1[i, :2]
    b0, b1 = pieces.p0[j, :2], pieces.p1[j, :2]
    da, db = a1 - a0, b1 - b0
    la, lb = np.linalg.norm(da, axis=1), np.linalg.norm(db, axis=1)
    plan = (la > 1e-6) & (lb > 1e-6)
    ua = da / np.where(plan, la, 1.0)[:, None]
    ub = db / np.where(plan, lb, 1.0)[:, None]
    cos = np.abs(np.einsum("ij,ij->i", ua, ub))
    tb0 = np.einsum("ij,ij->i", b0 - a0, ua)
    tb1 = np.einsum("ij,ij->i", b1 - a0, ua)
    lo = np.maximum(0.0, np.minimum(tb0, tb1))
    hi = np.minimum(la, np.maximum(tb0, tb1))
    ok = plan & (cos >= cos_limit) & (hi - lo >= min_overlap)
    span = np.where(np.abs(tb1 - tb0) > 1e-12, tb1 - tb0, 1.0)
    ca0, ca1 = a0 + ua * lo[:, None], a0 + ua * hi[:, None]
    sb_lo, sb_hi = (lo - tb0) / span, (hi - tb0) / span
    cb0, cb1 = b0 + db * sb_lo[:, None], b0 + db * sb_hi[:, None]
    s, t, d = segment_closest_points(ca0, ca1, cb0, cb1)
    where = (ca0 + (ca1 - ca0) * s[:, None] + cb0 + (cb1 - cb0) * t[:, None]) / 2
    measured = d - pieces.half_width[i] - pieces.half_width[j]
    return ok, measured, where


def _crossing_measure(pieces: Pieces, i: np.ndarray, j: np.ndarray):
    """For pairs whose centrelines cross in plan: mask, vertical clearance and location (x, y, z)."""
    p0, p1 = pieces.p0, pieces.p1
    a0, a1, b0, b1 = p0[i], p1[i], p0[j], p1[j]
    la = np.linalg.norm(a1[:, :2] - a0[:, :2], axis=1)
    lb = np.linalg.norm(b1[:, :2] - b0[:, :2], axis=1)
    s, t, d = segment_closest_points(a0[:, :2], a1[:, :2], b0[:, :2], b1[:, :2])
    ok = (la > 1e-6) & (lb > 1e-6) & (d <= 1e-6)
    za = a0[:, 2] + (a1[:, 2] - a0[:, 2]) * s
    zb = b0[:, 2] + (b1[:, 2] - b0[:, 2]) * t
    ha, hb = pieces.half_height[i], pieces.half_height[j]
    a_up = za >= zb
    bottom_up = np.where(a_up, za - ha, zb - hb)
    top_low = np.where(a_up, zb + hb, za + ha)
    measured = bottom_up - top_low
    xy = a0[:, :2] + (a1[:, :2] - a0[:, :2]) * s[:, None]
    where = np.column_stack([xy, (bottom_up + top_low) / 2])
    return ok, measured, where


@dataclass
class ClearancePrep:
    """What clearance reads of the segments before it sees a pair (:func:`prepare_clearances`):
    the rule table as arrays, each segment's rule attributes, attribute group and margin, and the
    columns findings name. The whole-network scan makes it in a child process while the parent
    still looks for the candidate pairs."""

    table: _RuleArrays
    pieces: Pieces
    margins: np.ndarray
    attrs: dict[str, np.ndarray]
    groups: tuple[np.ndarray, np.ndarray]
    cols: dict[str, np.ndarray]


def prepare_clearances(pieces: Pieces, rules: pd.DataFrame | _RuleArrays | Path | str | None = None,
                       settings: TwinSettings | None = None) -> ClearancePrep:
    """The per-segment part of :func:`clearances` for ``pieces`` (see :class:`ClearancePrep`);
    ``rules`` as :func:`clearances` takes them, or from :func:`rule_arrays`."""
    table = _rule_arrays(rules if isinstance(rules, (pd.DataFrame, _RuleArrays))
                         else load_clearance_rules(rules, settings))
    attrs = segment_attributes(pieces.segments)
    return ClearancePrep(table, pieces, rule_margins(table, pieces.segments), attrs, _attribute_groups(attrs),
                         _segment_columns(pieces.segments))


def clearances(
    existing: Network,
    proposal: Network | None = None,
    *,
    rules: pd.DataFrame | Path | str | None = None,
    settings: TwinSettings | None = None,
    parallel_angle_deg: float = 15.0,
    min_parallel_overlap_m: float = 0.5,
    tolerance_m: float = 0.0,
    pieces: Pieces | None = None,
    pairs: tuple[np.ndarray, np.ndarray] | None = None,
    prepared: ClearancePrep | None = None,
) -> ClearanceReport:
    """Horizontal and vertical clearance findings in ``existing`` or of ``proposal`` against it.

    ``rules``: a table from :func:`load_clearance_rules` or a CSV path (default: the settings'
    or the shipped GB 50289 table). Verdicts see :func:`analysis.accuracy.verdicts`;
    ``tolerance_m`` is an extra allowance on top of the survey tolerance. ``prepared``: what
    :func:`prepare_clearances` made of these pieces and rules (then ``rules`` is not read).

    Examples
    --------
    >>> report = clearances(load_network(engine))  # doctest: +SKIP
    >>> report.as_dict()["counts"]  # doctest: +SKIP
    {'horizontal': 0, 'vertical': 120, 'uncertain': 31, 'no_rule': 2}
    """
    t0 = time.perf_counter()
    if prepared is None:
        pieces = combine(existing, proposal) if pieces is None else pieces
        prepared = prepare_clearances(pieces, rules, settings)
    table, pieces, margins, attrs = prepared.table, prepared.pieces, prepared.margins, prepared.attrs
    if pairs is None:
        pairs = candidate_pairs(pieces, margin_m=margins)
    i, j = pairs
    # excavations are checked by collision: clearance rules are between pipes
    pipe = attrs["utility"] != EXCAVATION_UTILITY
    keep = ~connected_pairs(pieces, i, j) & pipe[pieces.seg[i]] & pipe[pieces.seg[j]]
    i, j = i[keep], j[keep]
    t1 = time.perf_counter()
    report = ClearanceReport([], rules_path=table.path)
    unruled: Counter[str] = Counter()
    cos_limit = float(np.cos(np.radians(parallel_angle_deg)))
    groups, cols = prepared.groups, prepared.cols
    for kind in ("horizontal", "vertical"):
        if kind == "horizontal":
            ok, measured, where = _parallel_measure(pieces, i, j, cos_limit, min_parallel_overlap_m)
        else:
            ok, measured, where = _crossing_measure(pieces, i, j)
        lo_s, hi_s, measured, where = _worst_per_segment_pair(pieces, i[ok], j[ok], measured[ok], where[ok])
        report.checked[kind] = int(len(lo_s))
        tol = pieces.plan_tol if kind == "horizontal" else pieces.depth_tol
        uncertainty = tol[lo_s] + tol[hi_s]
        rule_pos = _rules_for_pairs(table, kind, attrs, groups, lo_s, hi_s)
        none = rule_pos < 0
        # within reach of the table: a rule of this kind could have asked for more
        reach = np.minimum(rule_reach_m(table, kind), np.minimum(margins[lo_s], margins[hi_s]))
        none &= measured - uncertainty < reach
        if none.any():
            labels = pair_label(attrs["utility"][lo_s[none]], attrs["utility"][hi_s[none]])
            unruled.update({f"{kind} {k}": int(v) for k, v in Counter(labels).items()})
            report.no_rule += _no_rule(pieces, cols, attrs, kind, lo_s[none], hi_s[none], measured[none],
                                       uncertainty[none], where[none])
        ruled = rule_pos >= 0
        required = np.where(ruled, table.value[np.maximum(rule_pos, 0)], np.nan)
        verdict = verdicts(measured, required, uncertainty + tolerance_m)
        for name, out in (("violation", report.violations), ("uncertain", report.uncertain)):
            bad = ruled & (verdict == name)
            out += _violations(pieces, cols, table, kind, lo_s[bad], hi_s[bad], measured[bad], required[bad],
                               rule_pos[bad], where[bad], uncertainty[bad], name)
    for findings in (report.violations, report.uncertain):
        findings.sort(key=lambda v: (-(v.required_m - v.measured_m), v.kind, v.a_id, v.b_id))
    report.no_rule.sort(key=lambda v: (v.measured_m, v.clearance, v.a_id, v.b_id))
    report.unruled = dict(unruled)
    report.timings_s = {"candidates": round(t1 - t0, 3), "exact": round(time.perf_counter() - t1, 3)}
    return report


def _worst_per_segment_pair(pieces: Pieces, i: np.ndarray, j: np.ndarray, measured: np.ndarray,
                            where: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The worst piece pair of each segment pair: segments (lower, higher), measured, location."""
    sa_, sb = pieces.seg[i], pieces.seg[j]
    lo_s, hi_s = np.minimum(sa_, sb), np.maximum(sa_, sb)
    order = np.lexsort((measured, hi_s, lo_s))
    lo_s, hi_s, measured, where = lo_s[order], hi_s[order], measured[order], where[order]
    first = np.ones(len(lo_s), dtype=bool)
    first[1:] = (lo_s[1:] != lo_s[:-1]) | (hi_s[1:] != hi_s[:-1])
    return lo_s[first], hi_s[first], measured[first], where[first]


def _segment_columns(segments: pd.DataFrame) -> dict[str, np.ndarray]:
    """The segment columns findings name, as numpy arrays (read once per run: Arrow-backed columns
    cost a pass over all segments each time)."""
    return {"id": text_array(segments["id"]), "utility": text_array(segments["utility"]),
            "road": segments["road"].to_numpy(object), "owner": segments["owner"].to_numpy(object),
            "proposal": segments["_proposal"].to_numpy(bool)}


def _pair_fields(pieces: Pieces, cols: dict[str, np.ndarray], sa_: np.ndarray, sb: np.ndarray, where: np.ndarray,
                 kind: str) -> dict:
    """What every finding of segment pairs carries: ids, utilities, road and owner groups, place."""
    a, b = proposal_first((cols["id"], cols["proposal"]), sa_, sb)
    prop = cols["proposal"]
    xy = where[:, :2] + pieces.origin[:2]
    return {
        "a": a, "b": b, "ids": cols["id"], "util": cols["utility"],
        "roads": pair_label(cols["road"][a], cols["road"][b]),
        "owners": pair_label(cols["owner"][a], cols["owner"][b]),
        "proposal": prop[a] | prop[b], "x": np.round(xy[:, 0], 3), "y": np.round(xy[:, 1], 3),
        "z": np.round(where[:, 2] + pieces.origin[2], 3) if kind == "vertical" else np.full(len(a), None),
    }


def _pair_keys(kind: str, x: np.ndarray, y: np.ndarray) -> list[str]:
    """:func:`analysis.pieces.finding_key` of each id pair ``(x[n], y[n])`` (``str`` ids), a
    comparison of the pairs in numpy and one hash each (222,000 findings in a scan)."""
    first = x <= y
    lo, hi = np.where(first, x, y).tolist(), np.where(first, y, x).tolist()
    sha1, prefix = hashlib.sha1, kind + "|"
    return [sha1(f"{prefix}{p}|{q}".encode()).hexdigest()[:16] for p, q in zip(lo, hi, strict=True)]


def _violations(pieces: Pieces, cols: dict[str, np.ndarray], table: _RuleArrays, kind: str, sa_: np.ndarray,
                sb: np.ndarray, measured: np.ndarray, required: np.ndarray, rule_pos: np.ndarray, where: np.ndarray,
                uncertainty: np.ndarray, verdict: str) -> list[ClearanceViolation]:
    f = _pair_fields(pieces, cols, sa_, sb, where, kind)
    a, b, ids, util = f["a"], f["b"], f["ids"], f["util"]
    keys = _pair_keys(f"clearance-{kind}", ids[a], ids[b])
    rid, src, ver = table.texts("id"), table.texts("source"), table.texts("verified")
    fields_ = zip(keys, ids[a].tolist(), ids[b].tolist(), util[a].tolist(), util[b].tolist(), measured.tolist(),
                  required.tolist(), rule_pos.tolist(), f["x"].tolist(), f["y"].tolist(), f["z"].tolist(),
                  f["roads"].tolist(), f["owners"].tolist(), f["proposal"].tolist(), uncertainty.tolist(),
                  strict=True)
    return [ClearanceViolation(  # one object per finding, from plain lists
        key=key, kind=kind, a_id=ia, b_id=ib, a_utility=ua, b_utility=ub, measured_m=round(m, 4),
        required_m=float(req), rule_id=rid[r], rule_source=src[r], rule_verified=ver[r],
        x=float(x), y=float(y), z=None if z is None else float(z), road=str(road), owners=str(owners),
        proposal=bool(prop), uncertainty_m=round(u, 4), verdict=verdict,
    ) for key, ia, ib, ua, ub, m, req, r, x, y, z, road, owners, prop, u in fields_]


def _describe(attrs: dict[str, np.ndarray], segs: np.ndarray) -> list[str]:
    """What a rule would be matched on, per segment: ``RQ high_b ZM DN300``."""
    parts = [attrs["utility"][segs], attrs["subtype"][segs], attrs["pressure_class"][segs], attrs["burial"][segs]]
    dn = attrs["dn_mm"][segs]
    return [" ".join(str(p) for p in (*vals, f"DN{d:.0f}" if np.isfinite(d) else "") if p)
            for *vals, d in zip(*parts, dn, strict=True)]


def _no_rule(pieces: Pieces, cols: dict[str, np.ndarray], attrs: dict[str, np.ndarray], kind: str, sa_: np.ndarray,
             sb: np.ndarray, measured: np.ndarray, uncertainty: np.ndarray, where: np.ndarray) -> list[NoRuleFinding]:
    f = _pair_fields(pieces, cols, sa_, sb, where, kind)
    a, b, ids = f["a"], f["b"], f["ids"]
    da, db = _describe(attrs, a), _describe(attrs, b)
    keys = _pair_keys(f"no_rule-{kind}", ids[a], ids[b])
    return [NoRuleFinding(
        key=keys[n], clearance=kind,
        a_id=ids[a[n]], b_id=ids[b[n]], a_utility=f["util"][a[n]], b_utility=f["util"][b[n]],
        measured_m=round(float(measured[n]), 4), uncertainty_m=round(float(uncertainty[n]), 4),
        x=float(f["x"][n]), y=float(f["y"][n]), z=None if f["z"][n] is None else float(f["z"][n]),
        road=str(f["roads"][n]), owners=str(f["owners"][n]), a_class=da[n], b_class=db[n],
        proposal=bool(f["proposal"][n]),
    ) for n in range(len(a))]  # one object per finding
