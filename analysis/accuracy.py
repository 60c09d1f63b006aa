"""Survey accuracy (CJJ 61-2017) and the three verdicts a clearance or collision finding gets.

A surveyed pipe lies somewhere within its survey's tolerance of where the twin draws it.
CJJ 61-2017 limits a **concealed** point's error (隐蔽管线点, located with a detector) to
``0.10·h`` in plan and ``0.15·h`` in depth, ``h`` the pipe's centre depth taken as at least
1 m; an **exposed** point (明显管线点, measured in a manhole, chamber or trench) is surveyed to
a few centimetres. The limits are data (``analysis/data/survey_accuracy.csv``, each row with
its source and a ``verified`` flag): per class, ``plan_m + plan_factor·max(h, min_depth_m)``
and the same for depth.

A point's class is its ``survey_class`` (migration 0011) where the survey gives one, else
``exposed`` for the appurtenances one measures at the surface (:data:`EXPOSED_APPURTENANCES`:
manholes, chambers, valves, hydrants, ...) and risers, else ``concealed``. A segment carries
the larger tolerance of its two end points (the pipe between them is interpolated). A
proposal is a design: its own geometry is exact (tolerance 0).

Verdicts (:func:`verdicts`), with ``u`` the sum of both pipes' tolerances along the measured
direction: **violation** when even the most favourable positions fail
(``measured + u < required``), **compliant** when even the least favourable pass
(``measured - u >= required``), else **uncertain** (依探测精度无法判定: a trial trench or a
new detection is needed).

>>> verdicts(np.array([0.30, 0.45, 0.70]), np.array([0.5, 0.5, 0.5]), np.array([0.1, 0.1, 0.1])).tolist()
['violation', 'uncertain', 'compliant']
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from twin.errors import InputError

__all__ = [
    "DEFAULT_ACCURACY",
    "SURVEY_CLASSES",
    "EXPOSED_APPURTENANCES",
    "EXPOSED_FEATURES",
    "VERDICTS",
    "load_survey_accuracy",
    "point_classes",
    "point_tolerances",
    "segment_tolerances",
    "verdicts",
]

DEFAULT_ACCURACY = Path(__file__).with_name("data") / "survey_accuracy.csv"
#: Survey accuracy classes of CJJ 61-2017.
SURVEY_CLASSES = ("exposed", "concealed")
#: Appurtenances measured where the pipe is seen (a manhole, chamber or the fitting itself).
EXPOSED_APPURTENANCES = frozenset(
    {
        "valve",
        "valve_chamber",
        "manhole",
        "hydrant",
        "meter",
        "air_valve",
        "drain_valve",
        "gully",
        "regulator",
        "cable_manhole",
        "handhole",
        "outfall",
    }
)
#: Features where the pipe leaves the ground.
EXPOSED_FEATURES = frozenset({"riser"})
#: The verdicts of a clearance or collision finding, and what a finding no rule covers gets.
VERDICTS = ("violation", "uncertain", "compliant")
_COLUMNS = (
    "class",
    "plan_factor",
    "depth_factor",
    "min_depth_m",
    "plan_m",
    "depth_m",
    "source",
    "verified",
)
_CACHE: dict[str, pd.DataFrame] = {}


def load_survey_accuracy(path: Path | str | None = None) -> pd.DataFrame:
    """The accuracy limits per class (``analysis/data/survey_accuracy.csv`` unless ``path``), by class."""
    source = Path(path) if path is not None else DEFAULT_ACCURACY
    key = str(source)
    if key in _CACHE:
        return _CACHE[key]
    try:
        table = pd.read_csv(source, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the survey accuracy table {source.name}: {exc}",
                         zh=f"无法读取测量精度表 {source.name}：{exc}") from None
    table.columns = [c.strip().lower() for c in table.columns]
    missing = [c for c in _COLUMNS if c not in table.columns]
    if missing:
        raise InputError(
            f"survey accuracy table {source.name} lacks column(s) {', '.join(missing)}",
            zh=f"测量精度表 {source.name} 缺少列：{'、'.join(missing)}"
        )
    table["class"] = table["class"].str.strip().str.lower()
    if sorted(table["class"]) != sorted(SURVEY_CLASSES):
        raise InputError(
            f"survey accuracy table {source.name} needs one row each for "
            f"{' and '.join(SURVEY_CLASSES)}",
            zh=f"测量精度表 {source.name} 须为 {'和'.join(SURVEY_CLASSES)} 各给一行"
        )
    for c in ("plan_factor", "depth_factor", "min_depth_m", "plan_m", "depth_m"):
        values = pd.to_numeric(table[c].replace("", "0"), errors="coerce")
        if values.isna().any() or (values < 0).any():
            raise InputError(f"survey accuracy table {source.name}: {c} must be a number >= 0",
                             zh=f"测量精度表 {source.name}：{c} 须为不小于 0 的数")
        table[c] = values.astype(float)
    table = table.set_index("class")
    _CACHE[key] = table
    return table


def _by_value(values: np.ndarray, judge) -> np.ndarray:
    """``judge`` applied to the distinct values only (a few dozen among a million points)."""
    codes, uniques = pd.factorize(pd.Series(np.asarray(values, dtype=object)), use_na_sentinel=True)
    answers = np.asarray(judge(np.append(np.asarray(uniques, dtype=object), None)))
    return answers[codes]  # code -1 (missing) picks the appended None's answer


def point_classes(
    survey_class: np.ndarray, appurtenance: np.ndarray, feature: np.ndarray
) -> np.ndarray:
    """Each point's class: its ``survey_class`` where given, else by appurtenance or feature."""

    def given(v: np.ndarray) -> np.ndarray:
        text = np.array([str(x).strip().lower() if x is not None else "" for x in v], dtype=object)
        return np.where(np.isin(text, SURVEY_CLASSES), text, "")

    def exposed(names: frozenset[str]):
        return lambda v: np.array([x in names for x in v])

    own = _by_value(survey_class, given)
    default = _by_value(appurtenance, exposed(EXPOSED_APPURTENANCES)) | _by_value(
        feature, exposed(EXPOSED_FEATURES)
    )
    return np.where(own != "", own, np.where(default, "exposed", "concealed")).astype(object)


def point_tolerances(
    classes: np.ndarray, centre_depth_m: np.ndarray, limits: pd.DataFrame | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Plan and depth tolerance (m) of points of the given classes at the given centre depths.

    An unknown depth counts as ``min_depth_m`` (the concealed limit's floor).

    >>> p, d = point_tolerances(np.array(["concealed", "concealed", "exposed"]), np.array([0.6, 2.0, 2.0]))
    >>> p.round(3).tolist(), d.round(3).tolist()
    ([0.1, 0.2, 0.05], [0.15, 0.3, 0.05])
    """
    t = load_survey_accuracy() if limits is None else limits
    row = np.where(
        np.asarray(classes, dtype=object) == "exposed",
        t.index.get_loc("exposed"),
        t.index.get_loc("concealed"),
    )

    def col(name: str) -> np.ndarray:
        return t[name].to_numpy(float)[row]

    h = np.fmax(np.nan_to_num(np.asarray(centre_depth_m, dtype=float), nan=0.0), col("min_depth_m"))
    return col("plan_m") + col("plan_factor") * h, col("depth_m") + col("depth_factor") * h


def segment_tolerances(
    segments: pd.DataFrame,
    nodes: pd.DataFrame,
    vertices: np.ndarray,
    offsets: np.ndarray,
    limits: pd.DataFrame | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Plan and depth tolerance (m) of each segment: the larger of its two end points'.

    The centre depth at an end is the end point's ground elevation minus the centreline's
    elevation there; where the end point was not read (a network read around a proposal), the
    segment's own depth there (``from_depth_m`` to its depth reference, plus or minus half its
    height); unknown: the class's ``min_depth_m``. Classes are judged once per node.
    """
    n = len(segments)
    if not n:
        return np.empty(0), np.empty(0)
    pos = _end_nodes(segments, nodes)
    have = pos >= 0
    m = len(nodes)

    def node_col(c: str) -> np.ndarray:
        return nodes[c].to_numpy(object) if c in nodes.columns else np.full(m, None, dtype=object)

    node_cls = (
        point_classes(node_col("survey_class"), node_col("appurtenance"), node_col("feature"))
        if m
        else np.empty(0, dtype=object)
    )
    cls = np.where(have, np.append(node_cls, "concealed")[pos], "concealed")
    gz = (
        pd.to_numeric(pd.Series(node_col("ground_z")), errors="coerce").to_numpy(float)
        if m
        else np.empty(0)
    )
    ground = np.where(have, np.append(gz, np.nan)[pos], np.nan)
    nv = np.diff(offsets)
    z = np.full(2 * n, np.nan)
    z[:n][nv > 0] = vertices[offsets[:-1][nv > 0], 2]
    z[n:][nv > 0] = vertices[offsets[1:][nv > 0] - 1, 2]
    h = ground - z
    if "from_depth_m" in segments.columns:
        own = np.concatenate([_centre_depth(segments, "from"), _centre_depth(segments, "to")])
        h = np.where(np.isfinite(h), h, own)
    p, d = point_tolerances(cls, h, limits)
    return np.fmax(p[:n], p[n:]), np.fmax(d[:n], d[n:])


def _end_nodes(segments: pd.DataFrame, nodes: pd.DataFrame) -> np.ndarray:
    """Position in ``nodes`` of each segment's from node, then of each to node (ids as text; the
    first of a node listed twice, as merged networks may; -1: not read). One factorisation of
    all the ids (a hash table of a million nodes once, not an index built and then probed)."""
    n, m = len(segments), len(nodes)
    if not m:
        return np.full(2 * n, -1)
    ids = nodes["id"].astype(str).to_numpy(object)
    ends = np.concatenate([segments["from_node"].astype(str).to_numpy(object),
                           segments["to_node"].astype(str).to_numpy(object)])
    codes, uniques = pd.factorize(np.concatenate([ids, ends]))
    node_codes, first = np.unique(codes[:m], return_index=True)
    where = np.full(len(uniques) + 1, -1)  # the last: code -1 (a missing id)
    where[node_codes] = first
    return where[codes[m:]]


def _centre_depth(segments: pd.DataFrame, end: str) -> np.ndarray:
    """The centre depth at a segment's ``end`` from its surveyed depth (top or invert reference)."""
    depth = pd.to_numeric(segments[f"{end}_depth_m"], errors="coerce").to_numpy(float)
    rect = (
        segments["shape"].to_numpy() == "rect"
        if "shape" in segments.columns
        else np.zeros(len(depth), bool)
    )
    size = np.where(
        rect,
        segments.get("height_mm", pd.Series(np.nan, index=segments.index)).to_numpy(float),
        segments.get("diameter_mm", pd.Series(np.nan, index=segments.index)).to_numpy(float),
    )
    half = np.nan_to_num(size / 2000.0)
    invert = (
        segments.get("depth_reference", pd.Series("top", index=segments.index)).to_numpy(object)
        == "invert"
    )
    return np.where(invert, depth - half, depth + half)


def verdicts(measured: np.ndarray, required: np.ndarray, uncertainty: np.ndarray) -> np.ndarray:
    """``violation``, ``uncertain`` or ``compliant`` per finding (see the module docstring)."""
    m, r, u = (np.asarray(v, dtype=float) for v in (measured, required, uncertainty))
    r = r - 1e-9  # a micrometre of rounding does not turn a pass into a fail
    return np.where(m + u < r, "violation", np.where(m - u >= r, "compliant", "uncertain")).astype(
        object
    )
