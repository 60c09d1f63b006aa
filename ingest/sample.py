"""A realistic sample district: CJJ 61 survey tables of a street grid in Liaocheng, Shandong.

:func:`generate_district` writes ``points.csv`` and ``segments.csv`` (管线点成果表 and
管线段成果表, Chinese headers) of a district centred at 115.98E 36.45N, in EPSG:4548
(CGCS2000 3-degree Gauss-Kruger, CM 117E, no zone prefix; X = northing, Y = easting).

Layout (``scale=1``: the demo, 4 x 4 roads, blocks 200-300 m, about 7 km of road):

- Every road carries its utilities parallel to the centreline at fixed lateral offsets
  (m; + is east of a north-south road, north of an east-west road). Every utility crosses
  every other at each intersection, so they lie in layers in the vertical order of GB 50289
  4.1.13 (telecom, power, gas, heat, water, storm, sewage from the surface down), each layer
  clear of the next by its vertical rule plus a margin for the survey noise, branches at their
  main's depth (depth to the top, drainage to the invert):

  ======  ======  ==========================  ===============================
  code    offset  depth                       section
  ======  ======  ==========================  ===============================
  TX      -14     top 0.95                    duct 400X300, 人孔 / 手孔
  DL      +16     top 1.60                    duct bank 600X400 / 800X500
  RQ       -9     top 2.40                    DN200 / DN150, 0.4 MPa
  RS      +10/+12 top 2.85 (east-west roads)  DN400 / DN300, supply / return
  JS       +6     top 3.55                    DN200-DN400, trunks DN600-DN800
  YS        0     invert 5.3-6.8              400-1000 (mm)
  WS       -5     invert 6.2-7.7 (YS + 0.90)  300-600 (mm)
  ======  ======  ==========================  ===============================

  The layers are deep because every utility runs under every road; horizontal offsets keep
  every pair of parallel pipes clear of the largest rule of GB 50289 table 4.1.9 (heat-power
  2.0 m) with the survey's plan tolerance to spare. ``defects=True`` plants the four defects
  of :data:`DEFECTS` (README: sample district).
  Buildings stand 22 m from the centreline; roads run 80 m past the outermost cross road.
  Different utilities cross at every intersection (the analyses judge those crossings);
  lines of one utility meet only at shared points.
- Water (JS): a 四通 wherever two mains meet, a 阀门 on each leg 5 m from it; along each
  block a DN100 branch to a 消火栓 and service pipes (DN25-DN50, PE) from a 三通 to a 进楼
  point (the customer; some through a 水表). Water plants (水厂) at the district edge feed
  trunk roads (DN600, DN800 from the plant, with 弯头 and 变径). A few old cast-iron stubs
  past the north end of some roads are ``abandoned``.
- Gas (RQ): mains on every road, 四通 at intersections, 阀门 on the legs of every other
  intersection, services 三通 -> 调压箱 -> 进楼 (0.4 MPa, then 0.01 MPa); a 调压站 at the
  east edge feeds it.
- Heat (RS): on the east-west roads only, supply (备注 ``供水``) and return (``回水``) side by
  side from a 换热站 at the west end of each road, 阀门井 after each cross road, a 变径
  (DN400 -> DN300). Supply and return never cross: each road's pair is one unbranched run.
- Drainage (YS storm, WS sewage): gravity lines with 检查井 every 25-50 m. Collectors run
  south along the north-south roads; each east-west block drains west (the westmost piece
  east) into a collector at a shared junction manhole. Each catchment spans up to four
  east-west roads and ends at an 出水口 (outfall) at the district's south edge or on a
  river between catchments (mid-block, every fourth road). Segments run with the flow
  (起点 upstream), inverts fall at 0.001 (collectors) and 0.0018-0.0022 (laterals) and agree at every shared manhole. The
  ground (~35 m) follows a smooth swell and a 0.0001 tilt with +-1 cm noise; inverts follow
  the smooth ground, so the noise shows in 埋深 only.
- Power (DL) and telecom (TX): duct banks with a 人孔 at every intersection and every
  <= 50 m (TX: 手孔 every <= 40 m in between).

Conventions the importer can rely on: point ids are unique (utility prefix + counter,
e.g. ``JS000123``); every segment end is in the point table; segments are 1-70 m; a
feature's connection count matches it (三通 3, 四通 4, 直线点/弯头/变径 2, 终点/进楼 1);
阀门 points sit between exactly two pipes; 备注 flags: ``常闭`` (normally closed boundary
valve), ``无法关闭`` (inoperable valve), ``供水``/``回水`` (heat supply / return, on RS points
and segments), customer names on 进楼 points (some contain ``医院``, ``学校``, ``养老院``), the source's name on 水厂/调压站/换热站 points; 流向 is empty (flow runs 起点 ->
终点); 状态 is ``active`` or ``abandoned``.

Scale: ``scale`` multiplies the roads per side (``round(4 * scale)``); the segment count
grows with its square, about 1,700 * scale**2 (scale 1: 1,524 segments, 1,506 points).
``BENCHMARK_SCALE`` = 25 (100 x 100 roads, ~5,000 km of road) gives 1.06-1.07 million
segments and ~1.04 million points (seeds 0-3): about 13 s and 1.7 GB peak memory on two
cores, 96 MB + 115 MB of CSV. Scale 24 falls short of a million.
The same seed gives byte-identical files (also for ``fmt="xlsx"``, whose zip timestamps
are fixed).
"""

from __future__ import annotations

import contextlib
import io
import re
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from twin.crs import transformer

__all__ = [
    "generate_district",
    "POINT_HEADERS",
    "SEGMENT_HEADERS",
    "BENCHMARK_SCALE",
    "TWIN_EPSG",
    "CENTRE_LONLAT",
]

#: The CRS the coordinates are written in: CGCS2000 3-degree GK, CM 117E, no zone prefix.
TWIN_EPSG = 4548
#: Centre of the district (lon, lat): Liaocheng, Shandong.
CENTRE_LONLAT = (115.98, 36.45)
#: The smallest scale giving at least 1,000,000 segments (seed 0).
BENCHMARK_SCALE = 25.0

POINT_HEADERS = ("物探点号", "图上点号", "管线类型", "特征", "附属物", "X", "Y", "地面高程", "埋深",
                 "井底深", "偏心井点号", "图幅号", "探测日期", "备注", "点性质")
SEGMENT_HEADERS = ("起点号", "终点号", "管线类型", "起点埋深", "终点埋深", "管径/断面", "材质", "埋设方式",
                   "压力/电压", "电缆条数", "总孔数", "已用孔数", "流向", "建设年代", "权属单位", "道路名称",
                   "状态", "备注")

#: Utility codes written, in table order.
UTILITY_ORDER = ("JS", "RQ", "RS", "YS", "WS", "DL", "TX")
_UCODE = {u: k for k, u in enumerate(UTILITY_ORDER)}
_DRAINAGE = np.array([u in ("YS", "WS") for u in UTILITY_ORDER])

FEATURES = ("", "三通", "四通", "直线点", "弯头", "变径", "终点", "进楼")
F_NONE, F_TEE, F_CROSS, F_STRAIGHT, F_ELBOW, F_REDUCER, F_END, F_ENTRY = range(len(FEATURES))
APPURTENANCES = ("", "阀门", "阀门井", "检查井", "消火栓", "水表", "人孔", "手孔", "调压箱", "水厂", "调压站",
                 "换热站", "出水口")
(A_NONE, A_VALVE, A_CHAMBER, A_MANHOLE, A_HYDRANT, A_METER, A_CABLE_MH, A_HANDHOLE, A_REGULATOR,
 A_WATER_PLANT, A_GAS_STATION, A_HEAT_STATION, A_OUTFALL) = range(len(APPURTENANCES))
#: Well bottom below the pipe's depth, for the appurtenances that are wells (井底深).
_WELL_EXTRA = np.zeros(len(APPURTENANCES))
_WELL_EXTRA[[A_MANHOLE, A_CHAMBER, A_CABLE_MH, A_HANDHOLE]] = [0.30, 0.90, 0.90, 0.50]

# Cross-section: lateral offsets (m) from the road centreline.
OFFSET = {"TX": -14.0, "RQ": -9.0, "WS": -5.0, "YS": 0.0, "JS": 6.0, "RS": 10.0, "DL": 16.0}
#: Heat supply and return lie side by side, RS_PAIR apart (centre to centre).
RS_PAIR = 2.0
#: Depth to the top (m) of each pressure utility and duct bank, and of their branches: every
#: utility crosses every other at each intersection, so they lie in layers in the order of
#: GB 50289 4.1.13 (telecom, power, gas, heat, water, storm, sewage from the surface down),
#: each clear of the next by its vertical rule (0.15-0.40 m) plus 0.07-0.10 m for the survey
#: noise. Telecom lies at 0.95 m (cover 0.90 m for a plastic duct under a motor lane).
TOP = {"TX": 0.95, "DL": 1.60, "RQ": 2.40, "RS": 2.85, "JS": 3.55}
#: Invert (m) at the head of the storm collectors; sewage lies DRAIN_STEP deeper everywhere.
STORM_HEAD = 5.75
DRAIN_STEP = 0.90
#: Amplitude (m) of the depth noise of pressure pipes and duct banks.
DEPTH_NOISE = 0.02
BUILDING = 22.0  # building line, from the centreline
MARGIN = 80.0  # roads run this far past the outermost cross road
VALVE_GAP = 5.0  # valve from the cross point

OWNERS = {
    "JS": "聊城市自来水公司", "RQ": "聊城市燃气公司", "RS": "聊城市热力公司",
    "YS": "聊城市市政工程管理处", "WS": "聊城市市政工程管理处", "DL": "国网聊城供电公司",
}
TX_OWNERS = ("中国电信聊城分公司", "中国移动聊城分公司", "中国联通聊城分公司")

NS_NAMES = ("柳园路", "花园路", "光岳路", "昌润路", "向阳路", "振兴路", "利民路", "育新街")
EW_NAMES = ("东昌路", "兴华路", "建设路", "湖南路", "黄河路", "松桂路", "卫育路", "站前街")

_HOSPITALS = ("聊城市人民医院", "聊城市第二人民医院", "聊城市中医医院", "东昌府区人民医院", "聊城市第三人民医院",
              "聊城市妇女儿童医院")
_SCHOOLS = ("东昌府区实验学校", "聊城市育英学校", "聊城市特殊教育学校", "东昌府区外国语学校", "水城双语学校",
            "聊城第一中学附属学校")
_ELDERLY = ("东昌府区养老院", "光岳养老院", "水城养老院")
_BUSINESS = ("聊城百货大楼", "东昌府区政务中心", "光岳宾馆", "新华书店", "建设银行东昌支行", "水城大酒店",
             "聊城市体育馆", "东昌府区图书馆", "聊城汽车站", "振华商厦")
_ESTATES = ("东昌花园", "柳园小区", "兴华苑", "湖滨小区", "光岳家园", "昌润新城", "水城明珠", "建设小区",
            "花园新村", "东关小区", "运河人家", "龙湾小区", "古楼小区", "振兴小区", "向阳小区", "松桂苑")


def generate_district(
    out_dir: Path,
    *,
    scale: float = 1.0,
    seed: int = 0,
    encoding: str = "utf-8-sig",
    fmt: str = "csv",
    progress: bool = False,
    defects: bool = False,
) -> dict:
    """Write ``points.csv`` and ``segments.csv`` (or ``.xlsx``) of a sample district in ``out_dir``.

    ``scale`` multiplies the roads per side (1: the demo, 4 x 4 roads, ~1,500 segments;
    ``BENCHMARK_SCALE`` = 25: 100 x 100 roads, ~1.07 million segments, ~13 s). ``encoding`` applies
    to CSV (``utf-8-sig``, ``utf-8``, ``gbk``, ``gb18030``). ``fmt="xlsx"`` is only sensible
    for small scales (a sheet holds 1,048,575 rows). The same arguments give byte-identical
    files. ``defects=True`` plants the four defects of :data:`DEFECTS` (the rest of the district
    is the same as without them).

    Returns a summary: counts of points and segments per utility, roads and km of road,
    customers, sources, the file paths, the bounding box in the twin CRS (EPSG:4548) and the
    planted ``defects`` (each with its segments' end point ids and what a scan finds).
    """
    if not scale > 0:
        raise ValueError(f"scale must be positive, not {scale!r}")
    fmt = fmt.lower()
    if fmt not in ("csv", "xlsx"):
        raise ValueError(f"fmt must be 'csv' or 'xlsx', not {fmt!r}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    rng = np.random.default_rng(seed)
    layout = _layout(scale, rng)
    acc = _Acc()
    builders: list[tuple[str, Callable[[_Acc, _Layout, np.random.Generator], None]]] = [
        ("给水 JS", _water), ("燃气 RQ", _gas), ("热力 RS", _heat),
        ("雨水 YS", lambda a, lay, r: _drainage(a, lay, r, "YS")),
        ("污水 WS", lambda a, lay, r: _drainage(a, lay, r, "WS")),
        ("电力 DL", lambda a, lay, r: _ducts(a, lay, r, "DL")),
        ("通信 TX", lambda a, lay, r: _ducts(a, lay, r, "TX")),
    ]
    with _progress(progress, len(builders) + 3) as step:
        for name, build in builders:
            step(f"building {name}")
            build(acc, layout, rng)
        planted = _plant_defects(acc, layout) if defects else []
        step("assembling the tables")
        points, segments, info = _tables(acc, layout, rng, planted)
        suffix = ".xlsx" if fmt == "xlsx" else ".csv"
        ppath, spath = out_dir / f"points{suffix}", out_dir / f"segments{suffix}"
        step(f"writing {ppath.name}")
        _write(points, ppath, fmt, encoding)
        step(f"writing {spath.name}")
        _write(segments, spath, fmt, encoding)

    summary = {
        "scale": scale,
        "seed": seed,
        "crs": f"EPSG:{TWIN_EPSG}",
        "centre_lonlat": CENTRE_LONLAT,
        "centre": {"easting": layout.e0, "northing": layout.n0},
        "roads": int(layout.E.size + layout.N.size),
        "roads_ns": int(layout.E.size),
        "roads_ew": int(layout.N.size),
        "road_km": round(layout.road_km, 3),
        **info,
        "files": {"points": str(ppath), "segments": str(spath)},
    }
    return summary


# ----------------------------------------------------------------------------- layout


@dataclass
class _Layout:
    E: np.ndarray  # local x of the north-south roads (m east of the centre)
    N: np.ndarray  # local y of the east-west roads (m north of the centre)
    e0: float  # centre easting (EPSG:4548)
    n0: float  # centre northing
    ns_names: list[str]
    ew_names: list[str]
    ns_major: np.ndarray
    ew_major: np.ndarray
    water_east: np.ndarray  # east-west roads fed by a water plant at their east end (north side)
    water_west: np.ndarray  # ... at their west end (south side)
    gas_east: np.ndarray  # east-west roads fed by a gas station at their east end (south side)
    drain_seed: int  # the drainage's shape (heads, falls), the same for storm and sewage

    @property
    def x_lo(self) -> float:
        return float(self.E[0] - MARGIN)

    @property
    def x_hi(self) -> float:
        return float(self.E[-1] + MARGIN)

    @property
    def y_lo(self) -> float:
        return float(self.N[0] - MARGIN)

    @property
    def y_hi(self) -> float:
        return float(self.N[-1] + MARGIN)

    @property
    def road_km(self) -> float:
        return (self.E.size * (self.y_hi - self.y_lo) + self.N.size * (self.x_hi - self.x_lo)) / 1000.0

    @property
    def names(self) -> np.ndarray:
        """Road names of the grid lines: north-south roads, then east-west roads."""
        return np.array(self.ns_names + self.ew_names, dtype=object)


def _layout(scale: float, rng: np.random.Generator) -> _Layout:
    k = max(2, int(round(4 * scale)))
    axes = []
    for _ in range(2):
        gaps = np.round(rng.uniform(200.0, 300.0, k - 1) * 2) / 2
        pos = np.concatenate([[0.0], np.cumsum(gaps)])
        axes.append(np.round(pos - np.round(pos.mean(), 0), 2))
    E, N = axes
    to_gk = transformer(4326, TWIN_EPSG)
    e0, n0 = to_gk.transform(*CENTRE_LONLAT)
    e0, n0 = round(e0, -1), round(n0, -1)
    if k <= len(NS_NAMES):
        ns, ew = list(NS_NAMES[:k]), list(EW_NAMES[:k])
    else:
        ns = [f"经{_cn_number(i + 1)}路" for i in range(k)]
        ew = [f"纬{_cn_number(j + 1)}路" for j in range(k)]
    idx = np.arange(k)
    water_east, water_west, gas_east = idx[idx % 4 == 1], idx[idx % 4 == 2], idx[idx % 4 == 3]
    if gas_east.size == 0:
        gas_east = np.array([0])
    return _Layout(E=E, N=N, e0=float(e0), n0=float(n0), ns_names=ns, ew_names=ew,
                   ns_major=idx % 3 == 1, ew_major=idx % 3 == 1,
                   water_east=water_east, water_west=water_west, gas_east=gas_east,
                   drain_seed=int(rng.integers(2**31)))


def _cn_number(k: int) -> str:
    """Chinese numeral for 1..999 (道路名称 such as 经十二路)."""
    d = "零一二三四五六七八九"
    if k < 10:
        return d[k]
    if k < 20:
        return "十" + (d[k % 10] if k % 10 else "")
    if k < 100:
        return d[k // 10] + "十" + (d[k % 10] if k % 10 else "")
    h, r = divmod(k, 100)
    if r == 0:
        return d[h] + "百"
    if r < 10:
        return d[h] + "百零" + d[r]
    if r < 20:
        return d[h] + "百一十" + (d[r % 10] if r % 10 else "")
    return d[h] + "百" + _cn_number(r)


# ----------------------------------------------------------------------------- accumulation


def _obj(value: object, n: int) -> np.ndarray:
    """A length-n object array from a scalar or array (None stays None)."""
    if isinstance(value, np.ndarray) and value.ndim == 1:
        return value.astype(object, copy=False)
    out = np.empty(n, dtype=object)
    out[:] = value
    return out


class _Acc:
    """Points and segments, accumulated as numpy chunks."""

    def __init__(self) -> None:
        self.p: list[dict[str, np.ndarray]] = []
        self.s: list[dict[str, np.ndarray]] = []
        self.n_points = 0

    def points(self, util: str, x, y, feat, app, depth, remark=None) -> np.ndarray:
        n = max(np.size(x), np.size(y))
        idx = np.arange(self.n_points, self.n_points + n)
        self.n_points += n
        self.p.append({
            "util": np.full(n, _UCODE[util], dtype=np.int8),
            "x": np.broadcast_to(np.asarray(x, dtype=float).ravel(), (n,)).copy(),
            "y": np.broadcast_to(np.asarray(y, dtype=float).ravel(), (n,)).copy(),
            "feat": np.broadcast_to(np.asarray(feat, dtype=np.int8), (n,)).copy(),
            "app": np.broadcast_to(np.asarray(app, dtype=np.int8), (n,)).copy(),
            "depth": np.broadcast_to(np.asarray(depth, dtype=float), (n,)).copy(),
            "remark": _obj(remark, n),
        })
        return idx

    def segments(self, util: str, a, b, *, size, material, built, road, burial="ZM", pressure=None,
                 cables=-1, holes_total=-1, holes_used=-1, owner=None, status="active",
                 remark=None) -> None:
        a = np.asarray(a, dtype=np.int64)
        n = a.size
        if n == 0:
            return
        ints = lambda v: np.broadcast_to(np.asarray(v, dtype=np.int64), (n,)).copy()  # noqa: E731
        self.s.append({
            "util": np.full(n, _UCODE[util], dtype=np.int8),
            "a": a, "b": np.asarray(b, dtype=np.int64),
            "size": _obj(size, n), "material": _obj(material, n), "burial": _obj(burial, n),
            "pressure": _obj(pressure, n), "cables": ints(cables), "holes_total": ints(holes_total),
            "holes_used": ints(holes_used), "built": ints(built),
            "owner": _obj(owner if owner is not None else OWNERS[util], n), "road": _obj(road, n),
            "status": _obj(status, n), "remark": _obj(remark, n),
        })


class _Stations:
    """Points along straight lines, before they exist: line, position t and what they are."""

    def __init__(self) -> None:
        self.parts: list[tuple[np.ndarray, ...]] = []
        self.n = 0

    def add(self, line, t, pid=-1, feat=F_NONE, app=A_NONE, remark=None) -> np.ndarray:
        n = max(np.size(line), np.size(t))
        b = lambda v, dt: np.broadcast_to(np.asarray(v, dtype=dt), (n,)).copy()  # noqa: E731
        self.parts.append((b(line, np.int64), b(t, float), b(pid, np.int64), b(feat, np.int8), b(app, np.int8),
                           _obj(remark, n)))
        idx = np.arange(self.n, self.n + n)
        self.n += n
        return idx

    def arrays(self) -> tuple[np.ndarray, ...]:
        return tuple(np.concatenate([p[k] for p in self.parts]) for k in range(6))


@dataclass
class _Lines:
    """Straight runs: a north-south run (vertical) has t = local y and x = c; east-west: t = x, y = c.

    A new point's depth is ``a + b * t`` plus uniform noise of amplitude ``noise``.
    """

    c: np.ndarray
    vertical: np.ndarray
    a: np.ndarray
    b: np.ndarray
    noise: np.ndarray

    @staticmethod
    def of(c, vertical, depth, slope=0.0, noise=DEPTH_NOISE) -> _Lines:
        c = np.asarray(c, dtype=float).ravel()
        n = c.size
        f = lambda v, dt=float: np.broadcast_to(np.asarray(v, dtype=dt), (n,)).copy()  # noqa: E731
        return _Lines(c, f(vertical, bool), f(depth), f(slope), f(noise))

    @staticmethod
    def cat(*parts: _Lines) -> _Lines:
        return _Lines(*(np.concatenate([getattr(p, k) for p in parts]) for k in ("c", "vertical", "a", "b", "noise")))

    def xy(self, line: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        vert = self.vertical[line]
        c = self.c[line]
        return np.where(vert, c, t), np.where(vert, t, c)


@dataclass
class _Run:
    """Segments between consecutive stations of each line (from lower t to higher t)."""

    a: np.ndarray
    b: np.ndarray
    line: np.ndarray
    t0: np.ndarray
    t1: np.ndarray


def _run_lines(acc: _Acc, util: str, lines: _Lines, st: _Stations, rng: np.random.Generator,
               fill: tuple[float, int, int] | None,
               line_remark: np.ndarray | None = None) -> tuple[np.ndarray, _Run]:
    """Create the stations' new points, fill long gaps, join consecutive stations.

    ``fill = (max_gap, feature, appurtenance)``: gaps longer than max_gap get evenly spaced
    extra points (with ``line_remark[line]`` as 备注, if given). Returns the point index of every input station and the segments.
    """
    line, t, pid, feat, app, remark = st.arrays()
    n_in = line.size
    src = np.arange(n_in)
    order = np.lexsort((t, line))
    if fill is not None:
        gap_max, ffeat, fapp = fill
        ls, ts = line[order], t[order]
        same = ls[1:] == ls[:-1]
        gap = np.diff(ts)
        k = np.where(same, np.ceil(gap / gap_max - 1e-9) - 1, 0).astype(np.int64)
        k[k < 0] = 0
        tot = int(k.sum())
        if tot:
            rep = np.repeat(np.arange(k.size), k)
            q = np.arange(tot) - np.repeat(np.cumsum(k) - k, k) + 1
            line = np.concatenate([line, ls[rep]])
            t = np.concatenate([t, ts[rep] + gap[rep] * q / (k[rep] + 1)])
            pid = np.concatenate([pid, np.full(tot, -1, dtype=np.int64)])
            feat = np.concatenate([feat, np.full(tot, ffeat, dtype=np.int8)])
            app = np.concatenate([app, np.full(tot, fapp, dtype=np.int8)])
            fill_remark = line_remark[ls[rep]] if line_remark is not None else np.full(tot, None, dtype=object)
            remark = np.concatenate([remark, fill_remark.astype(object)])
            src = np.concatenate([src, np.full(tot, -1, dtype=np.int64)])
            order = np.lexsort((t, line))
    line, t, pid, feat, app, remark, src = (v[order] for v in (line, t, pid, feat, app, remark, src))
    new = pid < 0
    if new.any():
        ln, tn = line[new], t[new]
        x, y = lines.xy(ln, tn)
        depth = lines.a[ln] + lines.b[ln] * tn + lines.noise[ln] * rng.uniform(-1.0, 1.0, ln.size)
        pid[new] = acc.points(util, x, y, feat[new], app[new], depth, remark[new])
    pid_in = np.empty(n_in, dtype=np.int64)
    keep = src >= 0
    pid_in[src[keep]] = pid[keep]
    same = line[1:] == line[:-1]
    run = _Run(a=pid[:-1][same], b=pid[1:][same], line=line[:-1][same], t0=t[:-1][same], t1=t[1:][same])
    if (run.t1 - run.t0 < 1.0).any():  # pragma: no cover - a layout bug, not an input error
        raise AssertionError(f"{util}: a segment shorter than 1 m")
    return pid_in, run


def _branches(acc: _Acc, util: str, vertical: np.ndarray, road_c: np.ndarray, t: np.ndarray,
              tee: np.ndarray, hops: list[tuple]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Short pipes perpendicular to a road from a tee on its main.

    ``hops``: (lateral offset from the centreline, feature, appurtenance, depth, remark) of
    each point after the tee. Returns (from, to) point indices per hop.
    """
    out = []
    prev = tee
    for off, feat, app, depth, remark in hops:
        lateral = road_c + off
        x, y = np.where(vertical, lateral, t), np.where(vertical, t, lateral)
        pts = acc.points(util, x, y, feat, app, depth, remark)
        out.append((prev, pts))
        prev = pts
    return out


def _link_slots(cross_t: np.ndarray, edge: float = 35.0, spacing: float = 45.0):
    """Evenly spaced positions along each link between consecutive cross points of a line.

    Returns (t, link, q, count): the position, the link it is on, its rank and the link's count.
    """
    lo, hi = cross_t[:-1] + edge, cross_t[1:] - edge
    cnt = np.floor((hi - lo) / spacing).astype(np.int64) + 1
    link = np.repeat(np.arange(lo.size), cnt)
    q = np.arange(int(cnt.sum())) - np.repeat(np.cumsum(cnt) - cnt, cnt)
    c = cnt[link]
    t = lo[link] + (hi - lo)[link] * np.where(c > 1, q / np.maximum(c - 1, 1), 0.5)
    return t, link, q, c


def _grid_cross(acc: _Acc, util: str, L: _Layout, o: float, feat: int, app: int, depth, rng) -> np.ndarray:
    """One shared point where each north-south line meets each east-west line: [i, j] -> point."""
    m, n = L.E.size, L.N.size
    ii, jj = np.meshgrid(np.arange(m), np.arange(n), indexing="ij")
    d = depth + rng.uniform(-DEPTH_NOISE, DEPTH_NOISE, m * n)
    return acc.points(util, L.E[ii.ravel()] + o, L.N[jj.ravel()] + o, feat, app, d).reshape(m, n)


def _customers(rng: np.random.Generator, n: int, force: bool) -> np.ndarray:
    """Customer names for service entries; a few hospitals, schools and care homes."""
    r = rng.random(n)
    kind = np.select([r < 0.01, r < 0.03, r < 0.04, r < 0.15], [0, 1, 2, 3], 4)
    if force:
        kind[: min(n, 3)] = [0, 1, 2][: min(n, 3)]
    names = np.empty(n, dtype=object)
    for k, pool in enumerate((_HOSPITALS, _SCHOOLS, _ELDERLY, _BUSINESS, _ESTATES)):
        mk = kind == k
        names[mk] = np.asarray(pool, dtype=object)[rng.integers(0, len(pool), int(mk.sum()))]
    number = rng.integers(1, 25, n).astype(str).astype(object)
    return names + number + "号楼"


def _valve_remarks(rng: np.random.Generator, n: int, rate: float = 0.03) -> np.ndarray:
    out = np.full(n, None, dtype=object)
    bad = rng.random(n) < rate
    if n and not bad.any():
        bad[n // 2] = True
    out[bad] = "无法关闭"
    return out


# ----------------------------------------------------------------------------- utilities


def _grid_lines(L: _Layout, o: float, depth: float, noise: float = DEPTH_NOISE) -> _Lines:
    """North-south lines (0..m-1), then east-west lines (m..m+n-1), at offset o."""
    m, n = L.E.size, L.N.size
    return _Lines.of(np.concatenate([L.E + o, L.N + o]), np.arange(m + n) < m, depth, noise=noise)


def _water(acc: _Acc, L: _Layout, rng: np.random.Generator) -> None:
    """Water mains on every road, trunks from the plants, abandoned stubs, hydrants and services."""
    util, o = "JS", OFFSET["JS"]
    trunk = np.zeros(L.N.size, dtype=bool)
    trunk[L.water_east] = True
    trunk[L.water_west] = True
    size, year, material = _water_main_attributes(L, trunk, rng)
    cross = _grid_cross(acc, util, L, o, F_CROSS, A_NONE, TOP["JS"], rng)
    st = _Stations()
    _water_junctions(st, L, o, cross, trunk, rng)
    legs, extra_lines, stub_roads = _water_plants_and_stubs(acc, st, L, o)
    slots = _water_slots(st, L, o, ~trunk)
    lines = _Lines.cat(_grid_lines(L, o, TOP["JS"]), *extra_lines)
    pid, run = _run_lines(acc, util, lines, st, rng, fill=(60.0, F_STRAIGHT, A_NONE))
    _water_mains(acc, L, run, (size, year, material), trunk, legs, stub_roads, lines.c.size, rng)
    _water_services(acc, L, pid, slots, year, rng)


def _water_main_attributes(L: _Layout, trunk: np.ndarray, rng: np.random.Generator
                           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Diameter (mm), year built and material of each road's main; trunk roads DN600 steel."""
    m, n = L.E.size, L.N.size
    major = np.concatenate([L.ns_major, L.ew_major])
    size = np.where(major, 400, rng.choice([200, 300], m + n))
    size[m:][trunk] = 600
    year = rng.integers(1986, 2021, m + n)
    year[m:][trunk] = rng.integers(1995, 2011, int(trunk.sum()))
    material = np.where(size >= 600, "钢", np.where(size >= 300, "球墨铸铁",
                                                   np.where(rng.random(m + n) < 0.7, "球墨铸铁", "PE")))
    return size, year, material


def _water_junctions(st: _Stations, L: _Layout, o: float, cross: np.ndarray, trunk: np.ndarray,
                     rng: np.random.Generator) -> None:
    """Road ends, a 四通 where two mains meet and a 阀门 on each of its legs (a few 常闭)."""
    E, N = L.E, L.N
    m, n = E.size, N.size
    plain = ~trunk
    st.add(np.repeat(np.arange(m), 2), np.tile([L.y_lo, L.y_hi], m), feat=F_END)
    st.add(np.repeat(m + np.arange(n)[plain], 2), np.tile([L.x_lo, L.x_hi], int(plain.sum())), feat=F_END)
    ii, jj = _cross_stations(st, L, o, cross)
    v_line, v_t = _valve_legs(L, o, ii, jj)
    v_remark = _valve_remarks(rng, v_line.size)
    k = ii.size
    closed_n = (ii % 4 == 2) & (jj % 4 == 2)  # north leg of these crosses
    closed_e = (ii % 4 == 1) & (jj % 4 == 1)  # east leg
    if not (closed_n.any() or closed_e.any()):
        closed_n[k // 2] = True
    v_remark[k:2 * k][closed_n] = "常闭"
    v_remark[3 * k:][closed_e] = "常闭"
    st.add(v_line, v_t, feat=F_NONE, app=A_VALVE, remark=v_remark)


def _water_plants_and_stubs(acc: _Acc, st: _Stations, L: _Layout, o: float
                            ) -> tuple[list[tuple[int, int]], list[_Lines], np.ndarray]:
    """Trunk roads run past their end to a 水厂; old stubs run past the north end of some roads.

    Returns the plant legs (line id, east-west road), their lines and the stubs' roads (the
    stubs' lines follow the legs').
    """
    util, E, N = "JS", L.E, L.N
    m, n = E.size, N.size
    extra_lines = []
    legs = []  # (line id, east-west road of the trunk)
    next_line = m + n
    plant_no = 0
    # trunk roads: extend past the road end to a plant (elbow, then a short leg to the plant)
    for j in sorted(set(L.water_east.tolist()) | set(L.water_west.tolist())):
        east = j in set(L.water_east.tolist())
        x_end, x_elbow = (L.x_hi, L.x_hi + 40.0) if east else (L.x_lo, L.x_lo - 40.0)
        x_other = L.x_lo if east else L.x_hi
        y_plant = N[j] + (50.0 if east else -50.0)
        elbow = acc.points(util, [x_elbow], N[j] + o, F_ELBOW, A_NONE, TOP["JS"])
        st.add(m + j, [x_end], feat=F_REDUCER)
        st.add(m + j, [x_elbow], pid=elbow)
        st.add(m + j, [x_other], feat=F_END)
        plant_no += 1
        name = f"聊城市第{_cn_number(plant_no)}水厂"
        st.add(next_line, [N[j] + o], pid=elbow)
        st.add(next_line, [y_plant], app=A_WATER_PLANT, remark=name)
        extra_lines.append(_Lines.of([x_elbow], True, TOP["JS"]))
        legs.append((next_line, j))
        next_line += 1
    # abandoned cast-iron stubs past the north end of every other north-south road
    stub_roads = np.arange(1, m, 2)
    stub_lines = next_line + np.arange(stub_roads.size)
    st.add(np.repeat(stub_lines, 2), np.tile([L.N[-1] + 20.0, L.N[-1] + 75.0], stub_roads.size), feat=F_END)
    extra_lines.append(_Lines.of(E[stub_roads] + 3.0, True, 1.30))
    return legs, extra_lines, stub_roads


def _water_slots(st: _Stations, L: _Layout, o: float, plain: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Tees along each block: a hydrant tee mid-block, service tees elsewhere.

    Returns each tee's line, position, whether it feeds a hydrant and its station index.
    """
    E, N = L.E, L.N
    m, n = E.size, N.size
    s_t_ns, _, s_q_ns, s_c_ns = _link_slots(N + o)
    s_t_ew, _, s_q_ew, s_c_ew = _link_slots(E + o)
    slot_line = np.concatenate([np.repeat(np.arange(m), s_t_ns.size),
                                np.repeat(m + np.arange(n)[plain], s_t_ew.size)])
    slot_t = np.concatenate([np.tile(s_t_ns, m), np.tile(s_t_ew, int(plain.sum()))])
    slot_hyd = np.concatenate([np.tile(s_q_ns == s_c_ns // 2, m), np.tile(s_q_ew == s_c_ew // 2, int(plain.sum()))])
    slot_idx = st.add(slot_line, slot_t, feat=F_TEE)
    return slot_line, slot_t, slot_hyd, slot_idx


def _water_mains(acc: _Acc, L: _Layout, run: _Run, attributes: tuple[np.ndarray, ...],
                 trunk: np.ndarray, legs: list[tuple[int, int]], stub_roads: np.ndarray,
                 n_lines: int, rng: np.random.Generator) -> None:
    """The main segments: road attributes, DN800 steel past the trunk roads' ends, stubs abandoned."""
    size, year, material = attributes
    m, n = L.E.size, L.N.size
    names = L.names
    extra = n_lines - m - n
    stub_lines = n_lines - stub_roads.size + np.arange(stub_roads.size)
    l_size = np.concatenate([size, np.full(extra, 800)])
    l_year = np.concatenate([year, np.zeros(extra, dtype=np.int64)])
    l_mat = np.concatenate([material, np.full(extra, "钢", dtype=object)]).astype(object)
    l_road = np.concatenate([names, np.empty(extra, dtype=object)])
    l_status = np.full(n_lines, "active", dtype=object)
    l_remark = np.full(n_lines, None, dtype=object)
    for line_id, j in legs:
        l_year[line_id] = year[m + j]
        l_road[line_id] = names[m + j]
        l_remark[line_id] = "输水干管"
    l_remark[m:m + n][trunk] = "输水干管"
    l_size[stub_lines] = 150
    l_year[stub_lines] = rng.integers(1975, 1986, stub_roads.size)
    l_mat[stub_lines] = "铸铁"
    l_road[stub_lines] = names[stub_roads]
    l_status[stub_lines] = "abandoned"
    l_remark[stub_lines] = "废弃旧管"
    seg_size = l_size[run.line].copy()
    beyond = (run.line >= m) & (run.line < m + n) & ((run.t1 > L.x_hi + 1e-6) | (run.t0 < L.x_lo - 1e-6))
    seg_size[beyond] = 800
    seg_mat = l_mat[run.line].copy()
    seg_mat[beyond] = "钢"
    acc.segments("JS", run.a, run.b, size=_dn(seg_size), material=seg_mat, built=l_year[run.line],
                 road=l_road[run.line], pressure="0.4", status=l_status[run.line], remark=l_remark[run.line])


def _water_services(acc: _Acc, L: _Layout, pid: np.ndarray,
                    slots: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
                    year: np.ndarray, rng: np.random.Generator) -> None:
    """DN100 branches to a 消火栓 and service pipes to a 进楼 (some through a 水表)."""
    util = "JS"
    slot_line, slot_t, slot_hyd, slot_idx = slots
    tee = pid[slot_idx]
    vert, road_c = _road_centre(L, slot_line)
    s_year = year[slot_line]
    road = L.names[slot_line]
    h = slot_hyd
    for a, b in _branches(acc, util, vert[h], road_c[h], slot_t[h], tee[h],
                             [(12.5, F_NONE, A_HYDRANT, TOP["JS"], None)]):
        acc.segments(util, a, b, size="DN100", material="球墨铸铁", built=s_year[h], road=road[h], pressure="0.4")
    sv = ~h
    ns_ = int(sv.sum())
    side = np.where(rng.random(ns_) < 0.5, -1.0, 1.0)
    meter = rng.random(ns_) < 0.35
    names_c = _customers(rng, ns_, force=True)
    sv_size = _dn(rng.choice([25, 32, 50], ns_, p=[0.45, 0.35, 0.2]))
    sv_year = np.minimum(2024, s_year[sv] + rng.integers(0, 15, ns_))
    base = (vert[sv], road_c[sv], slot_t[sv], tee[sv])
    for mask, hops in (
        (meter, lambda s, nm: [(s * 20.0, F_NONE, A_METER, TOP["JS"], None),
                               (s * BUILDING, F_ENTRY, A_NONE, TOP["JS"], nm)]),
        (~meter, lambda s, nm: [(s * BUILDING, F_ENTRY, A_NONE, TOP["JS"], nm)]),
    ):
        args = [v[mask] for v in base]
        for a, b in _branches(acc, util, *args, hops(side[mask], names_c[mask])):
            acc.segments(util, a, b, size=sv_size[mask], material="PE", built=sv_year[mask],
                         road=road[sv][mask], pressure="0.4")


def _cross_stations(st: _Stations, L: _Layout, o: float, cross: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Put each grid cross point on its north-south and its east-west line; returns its (i, j)."""
    m, n = L.E.size, L.N.size
    ii, jj = np.meshgrid(np.arange(m), np.arange(n), indexing="ij")
    ii, jj = ii.ravel(), jj.ravel()
    st.add(ii, L.N[jj] + o, pid=cross[ii, jj])
    st.add(m + jj, L.E[ii] + o, pid=cross[ii, jj])
    return ii, jj


def _valve_legs(L: _Layout, o: float, ii: np.ndarray, jj: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Line and position of a valve on each leg of the crosses (i, j): south, north, west, east."""
    m = L.E.size
    v_line = np.concatenate([ii, ii, m + jj, m + jj])
    v_t = np.concatenate([L.N[jj] + o - VALVE_GAP, L.N[jj] + o + VALVE_GAP,
                          L.E[ii] + o - VALVE_GAP, L.E[ii] + o + VALVE_GAP])
    return v_line, v_t


def _road_centre(L: _Layout, line: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Whether each grid line runs north-south, and its road's centreline coordinate."""
    m, n = L.E.size, L.N.size
    vert = line < m
    return vert, np.where(vert, L.E[np.minimum(line, m - 1)], L.N[np.clip(line - m, 0, n - 1)])


def _dn(size: np.ndarray) -> np.ndarray:
    """'DN300' strings from diameters (mm)."""
    size = np.asarray(size)
    uniq, inv = np.unique(size, return_inverse=True)
    return np.array([f"DN{int(s)}" for s in uniq], dtype=object)[inv]


def _gas(acc: _Acc, L: _Layout, rng: np.random.Generator) -> None:
    """Gas mains on every road from the 调压站 legs, valves at every other cross, services."""
    util, o = "RQ", OFFSET["RQ"]
    E, N = L.E, L.N
    m, n = E.size, N.size
    major = np.concatenate([L.ns_major, L.ew_major])
    size = np.where(major, 200, rng.choice([150, 200], m + n))
    material = np.where(rng.random(m + n) < 0.6, "钢", "PE").astype(object)
    year = rng.integers(1995, 2022, m + n)
    station = np.zeros(n, dtype=bool)
    station[L.gas_east] = True

    cross = _grid_cross(acc, util, L, o, F_CROSS, A_NONE, TOP["RQ"], rng)
    st = _Stations()
    ew = m + np.arange(n)
    st.add(np.repeat(np.arange(m), 2), np.tile([L.y_lo, L.y_hi], m), feat=F_END)
    st.add(ew[~station], L.x_lo, feat=F_END)
    st.add(ew[~station], L.x_hi, feat=F_END)
    ii, jj = _cross_stations(st, L, o, cross)
    vk = (ii + jj) % 2 == 0
    v_line, v_t = _valve_legs(L, o, ii[vk], jj[vk])
    st.add(v_line, v_t, app=A_VALVE, remark=_valve_remarks(rng, v_line.size))
    legs, extra = _gas_stations(acc, st, L, o, station)
    slot_line, slot_t, slot_idx = _gas_slots(st, L)

    lines = _Lines.cat(_grid_lines(L, o, TOP["RQ"]), *extra)
    pid, run = _run_lines(acc, util, lines, st, rng, fill=(60.0, F_STRAIGHT, A_NONE))

    names = L.names
    extra_n = len(legs)
    l_size = np.concatenate([size, np.full(extra_n, 300)])
    l_mat = np.concatenate([material, np.full(extra_n, "钢", dtype=object)])
    l_year = np.concatenate([year, np.zeros(extra_n, dtype=np.int64)])
    l_road = np.concatenate([names, np.empty(extra_n, dtype=object)])
    for line_id, j in legs:
        l_year[line_id] = year[m + j]
        l_road[line_id] = names[m + j]
    seg_size = l_size[run.line].copy()
    beyond = (run.line >= m) & (run.line < m + n) & (run.t1 > L.x_hi + 1e-6)
    seg_size[beyond] = 300
    seg_mat = l_mat[run.line].copy()
    seg_mat[beyond | (seg_size >= 300)] = "钢"
    acc.segments(util, run.a, run.b, size=_dn(seg_size), material=seg_mat, built=l_year[run.line],
                 road=l_road[run.line], pressure="0.4")
    _gas_services(acc, L, pid[slot_idx], slot_line, slot_t, year, rng)


def _gas_stations(acc: _Acc, st: _Stations, L: _Layout, o: float, station: np.ndarray
                  ) -> tuple[list[tuple[int, int]], list[_Lines]]:
    """East-west roads fed by a 调压站: past the east end an elbow, then a leg to the station.

    Returns the legs (line id, east-west road) and their lines.
    """
    util, N = "RQ", L.N
    m, n = L.E.size, N.size
    extra = []
    legs = []
    next_line = m + n
    for no, j in enumerate(np.flatnonzero(station), start=1):
        x_elbow = L.x_hi + 30.0
        elbow = acc.points(util, [x_elbow], N[j] + o, F_ELBOW, A_NONE, TOP["RQ"])
        st.add(m + j, [L.x_lo], feat=F_END)
        st.add(m + j, [L.x_hi], feat=F_REDUCER)
        st.add(m + j, [x_elbow], pid=elbow)
        st.add(next_line, [N[j] + o], pid=elbow)
        st.add(next_line, [N[j] - 50.0], app=A_GAS_STATION, remark=f"东昌{_cn_number(no)}号调压站")
        extra.append(_Lines.of([x_elbow], True, TOP["RQ"]))
        legs.append((next_line, j))
        next_line += 1
    return legs, extra


def _gas_slots(st: _Stations, L: _Layout) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Service tees between the water services (the midpoints of the water slots of a link).

    Returns each tee's line, position and station index.
    """
    m, n = L.E.size, L.N.size

    def mid_slots(cross_t):
        t, link, _, _ = _link_slots(cross_t)
        keep = link[1:] == link[:-1]
        return ((t[1:] + t[:-1]) / 2)[keep]

    g_ns, g_ew = mid_slots(L.N + OFFSET["JS"]), mid_slots(L.E + OFFSET["JS"])
    slot_line = np.concatenate([np.repeat(np.arange(m), g_ns.size), np.repeat(m + np.arange(n), g_ew.size)])
    slot_t = np.concatenate([np.tile(g_ns, m), np.tile(g_ew, n)])
    return slot_line, slot_t, st.add(slot_line, slot_t, feat=F_TEE)


def _gas_services(acc: _Acc, L: _Layout, tee: np.ndarray, slot_line: np.ndarray, slot_t: np.ndarray,
                  year: np.ndarray, rng: np.random.Generator) -> None:
    """Services 三通 -> 调压箱 (0.4 MPa) -> 进楼 (0.01 MPa)."""
    util = "RQ"
    vert, road_c = _road_centre(L, slot_line)
    k = slot_t.size
    side = np.where(rng.random(k) < 0.5, -1.0, 1.0)
    names_c = _customers(rng, k, force=False)
    s_year = np.minimum(2024, year[slot_line] + rng.integers(0, 12, k))
    hops = [(side * 19.5, F_NONE, A_REGULATOR, TOP["RQ"], None),
            (side * BUILDING, F_ENTRY, A_NONE, TOP["RQ"], names_c)]
    (a1, b1), (a2, b2) = _branches(acc, util, vert, road_c, slot_t, tee, hops)
    road = L.names[slot_line]
    acc.segments(util, a1, b1, size="DN50", material="PE", built=s_year, road=road, pressure="0.4")
    acc.segments(util, a2, b2, size="DN32", material="PE", built=s_year, road=road, pressure="0.01")


def _heat(acc: _Acc, L: _Layout, rng: np.random.Generator) -> None:
    """Supply and return along every east-west road from a heat station at its west end."""
    util = "RS"
    E, N = L.E, L.N
    m, n = E.size, N.size
    xs = L.x_lo - 30.0
    year = rng.integers(2000, 2023, n)
    st = _Stations()
    # lines: supply n (0..n-1), return n (n..2n-1), supply legs (2n..3n-1), return legs (3n..4n-1)
    dx = np.array([0.0, RS_PAIR])
    dy = np.array([OFFSET["RS"], OFFSET["RS"] + RS_PAIR])
    remark = np.array(["供水", "回水"], dtype=object)
    jj = np.arange(n)
    reducer_t = E[m // 2] + 45.0
    legs = []
    for s in range(2):
        run_line = s * n + jj
        leg_line = 2 * n + s * n + jj
        elbow = acc.points(util, xs + dx[s], N + dy[s], F_ELBOW, A_NONE,
                           TOP["RS"] + rng.uniform(-DEPTH_NOISE, DEPTH_NOISE, n),
                           remark[s])
        st.add(run_line, xs + dx[s], pid=elbow, remark=remark[s])
        st.add(run_line, L.x_hi, feat=F_END, remark=remark[s])
        st.add(run_line, reducer_t, feat=F_REDUCER, remark=remark[s])
        st.add(np.repeat(run_line, m), np.tile(E + 25.0, n), app=A_CHAMBER, remark=remark[s])
        st.add(leg_line, N + dy[s], pid=elbow, remark=remark[s])
        legs.append(st.add(leg_line, N + 37.0, app=A_CHAMBER, remark=remark[s]))
    lines = _Lines.cat(
        _Lines.of(N + dy[0], False, TOP["RS"]), _Lines.of(N + dy[1], False, TOP["RS"]),
        _Lines.of(np.full(n, xs + dx[0]), True, TOP["RS"]), _Lines.of(np.full(n, xs + dx[1]), True, TOP["RS"]),
    )
    l_remark = np.repeat(np.tile(remark, 2), n)
    pid, run = _run_lines(acc, util, lines, st, rng, fill=(60.0, F_STRAIGHT, A_NONE), line_remark=l_remark)
    road = np.tile(L.names[m:], 4)
    l_year = np.tile(year, 4)
    horizontal = run.line < 2 * n
    seg_size = np.where(horizontal & (run.t0 >= reducer_t - 1e-6), "DN300", "DN400").astype(object)
    acc.segments(util, run.a, run.b, size=seg_size, material="钢", built=l_year[run.line], road=road[run.line],
                 pressure="1.6", remark=l_remark[run.line])
    station = acc.points(util, np.full(n, xs + RS_PAIR / 2), N + 40.0, F_NONE, A_HEAT_STATION, TOP["RS"],
                         np.array([f"{nm}换热站" for nm in L.ew_names], dtype=object))
    for s in range(2):
        acc.segments(util, station, pid[legs[s]], size="DN400", material="钢", built=year, road=L.names[m:],
                     pressure="1.6", remark=remark[s])


def _drainage(acc: _Acc, L: _Layout, rng: np.random.Generator, util: str) -> None:
    """Gravity networks: collectors south along north-south roads, laterals along east-west roads."""
    o = OFFSET[util]
    E, N = L.E, L.N
    m, n = E.size, N.size
    storm = util == "YS"
    # storm and sewage share their collectors' heads and falls (one generator, seeded alike), the
    # sewer DRAIN_STEP deeper, so each sewer passes under every storm drain it crosses
    shape = np.random.default_rng(L.drain_seed)
    d_head = STORM_HEAD if storm else STORM_HEAD + DRAIN_STEP
    band = np.arange(n) // 4
    nb = int(band[-1]) + 1
    river = np.array([(N[4 * b - 1] + N[4 * b]) / 2 for b in range(1, nb)])  # between band b-1 and b
    gap = 5.0
    t_head = np.array([river[b] - gap if b < nb - 1 else L.y_hi for b in range(nb)])
    t_out = np.array([river[b - 1] + gap if b > 0 else L.y_lo for b in range(nb)])

    # collectors: line i * nb + b on north-south road i; depth = d0 + r * (t_head - t)
    ci = np.repeat(np.arange(m), nb)
    cb = np.tile(np.arange(nb), m)
    nc = m * nb
    r_c = shape.uniform(0.00095, 0.00105, nc)
    d0 = d_head + shape.uniform(-0.03, 0.03, nc)
    coll = _Lines.of(E[ci] + o, True, d0 + r_c * t_head[cb], -r_c, noise=0.0)

    # junctions where the east-west laterals join
    ii, jj = np.meshgrid(np.arange(m), np.arange(n), indexing="ij")
    ii, jj = ii.ravel(), jj.ravel()
    cl = ii * nb + band[jj]
    d_j = d0[cl] + r_c[cl] * (t_head[band[jj]] - (N[jj] + o))
    junction = acc.points(util, E[ii] + o, N[jj] + o, F_NONE, A_MANHOLE, d_j).reshape(m, n)
    d_junction = d_j.reshape(m, n)

    st = _Stations()
    st.add(np.arange(nc), t_head[cb], app=A_MANHOLE)
    st.add(np.arange(nc), t_out[cb], app=A_OUTFALL,
           remark=np.where(cb == 0, "排入城南河道", "排入河道").astype(object))
    st.add(cl, N[jj] + o, pid=junction[ii, jj])

    # laterals on east-west road j: links k = 0..m-1 flow west into road k (east end: road end),
    # and the west margin flows east into road 0. Line id nc + j * (m + 1) + k, k = m: the margin.
    lj = np.repeat(np.arange(n), m + 1)
    lk = np.tile(np.arange(m + 1), n)
    west = lk == m
    kj = np.where(west, 0, lk)
    t_j = E[kj] + o
    nxt = np.minimum(lk + 1, m - 1)
    t_far = np.where(west, L.x_lo, np.where(lk < m - 1, E[nxt] + o - 4.0, L.x_hi))
    r_l = shape.uniform(0.0018, 0.0022, lj.size)
    dj = d_junction[kj, lj]
    sign = np.where(west, 1.0, -1.0)  # depth = dj + sign * r * (t - t_j)
    lat = _Lines.of(N[lj] + o, False, dj - sign * r_l * t_j, sign * r_l, noise=0.0)
    lat_line = nc + np.arange(lj.size)
    st.add(lat_line, t_far, app=A_MANHOLE)
    st.add(lat_line, t_j, pid=junction[kj, lj])

    lines = _Lines.cat(coll, lat)
    _, run = _run_lines(acc, util, lines, st, rng, fill=(50.0, F_NONE, A_MANHOLE))

    # flow: collectors south (to lower t), links west (lower t), the west margin east
    is_coll = run.line < nc
    down = is_coll | ~west[np.maximum(run.line - nc, 0)]
    a = np.where(down, run.b, run.a)
    b = np.where(down, run.a, run.b)
    # sizes: collectors grow halfway down, laterals by road
    frac = np.where(is_coll, (t_head[cb[np.minimum(run.line, nc - 1)]] - run.t1)
                    / (t_head - t_out)[cb[np.minimum(run.line, nc - 1)]], 0.0)
    if storm:
        c_size = np.where(frac > 0.5, 1000, 800)
        lat_choice = rng.choice([400, 500, 600], n)
    else:
        c_size = np.where(frac > 0.5, 600, 500)
        lat_choice = rng.choice([300, 400], n)
    lat_road = lj[np.maximum(run.line - nc, 0)]
    size = np.where(is_coll, c_size, lat_choice[lat_road])
    if storm:
        material = np.where(size >= 600, "钢筋砼", np.where(lat_road % 2 == 0, "HDPE", "钢筋砼"))
    else:
        material = np.where(size >= 500, "钢筋砼", np.where(size >= 400, "HDPE", "PVC"))
    road_year = rng.integers(1980, 2021, m + n)
    road_idx = np.where(is_coll, ci[np.minimum(run.line, nc - 1)], m + lat_road)
    acc.segments(util, a, b, size=size.astype(str).astype(object), material=material.astype(object),
                 built=road_year[road_idx], road=L.names[road_idx], burial="ZM")


def _ducts(acc: _Acc, L: _Layout, rng: np.random.Generator, util: str) -> None:
    """Power and telecom duct banks: manholes at intersections and every <= 50 m (TX: 40 m)."""
    o = OFFSET[util]
    m, n = L.E.size, L.N.size
    power = util == "DL"
    depth = TOP[util]
    cross = _grid_cross(acc, util, L, o, F_NONE, A_CABLE_MH, depth, rng)
    st = _Stations()
    _cross_stations(st, L, o, cross)
    st.add(np.repeat(np.arange(m), 2), np.tile([L.y_lo, L.y_hi], m), feat=F_END)
    st.add(np.repeat(m + np.arange(n), 2), np.tile([L.x_lo, L.x_hi], n), feat=F_END)
    lines = _grid_lines(L, o, depth)
    fill = (50.0, F_NONE, A_CABLE_MH) if power else (40.0, F_NONE, A_HANDHOLE)
    _, run = _run_lines(acc, util, lines, st, rng, fill=fill)
    major = np.concatenate([L.ns_major, L.ew_major])
    year = rng.integers(1990, 2024, m + n)
    if power:
        size = np.where(major, "800X500", "600X400").astype(object)
        holes = np.where(major, 12, 9)
        used = rng.integers(3, holes + 1)
        owner = OWNERS["DL"]
        material, pressure = "砼", "10"
    else:
        size = np.full(m + n, "400X300", dtype=object)
        holes = np.full(m + n, 6)
        used = rng.integers(2, 7, m + n)
        owner = np.asarray(TX_OWNERS, dtype=object)[rng.integers(0, 3, m + n)][run.line]
        material, pressure = "PVC", None
    acc.segments(util, run.a, run.b, size=size[run.line], material=material, built=year[run.line],
                 road=L.names[run.line], burial="GK", pressure=pressure, cables=used[run.line],
                 holes_total=holes[run.line], holes_used=used[run.line], owner=owner)


# ----------------------------------------------------------------------------- defects

#: The defects ``defects=True`` plants, as the README lists them: what they are and what the
#: whole-network scan (or ``twin analyze cover``) finds.
DEFECTS = {
    "gas_near_power": ("燃气管距电力排管过近: a DN150 gas main (0.4 MPa) laid 60 m along a power duct bank, "
                       "0.05 m from it", "horizontal clearance RQ/DL: violation"),
    "shallow_telecom": ("通信管道埋深不足: a telecom duct raised to 0.40 m for one handhole span",
                        "cover (twin analyze cover): below 0.90 m"),
    "sewer_over_water": ("污水管跨越给水管上方: a DN300 sewer connection crossing 0.10 m above a water main "
                         "(found in a trial trench: 明显点)", "vertical clearance WS/JS: 0.10 m of 0.40 m"),
    "clash_at_manhole": ("燃气管穿越通信人孔: a DN300 gas pipe laid straight through a telecom manhole",
                         "hard clashes RQ/TX at the manhole: violation"),
    "water_into_heat": ("给水管交叉处上抬: a water main raised at a valve into the heat pipes it crosses",
                        "hard clashes JS/RL: uncertain (依探测精度无法判定, concealed points at 3-4 m)"),
}


def _plant_defects(acc: _Acc, L: _Layout) -> list[dict]:
    """Three planted pipes (gas by power, a sewer over a water main, gas through a telecom manhole);
    the shallow telecom duct is planted in the tables (:func:`_shallow_duct`). No randomness: the
    district around them is the same as without them."""
    E, N = L.E, L.N
    i1, i2 = min(1, E.size - 1), min(2, E.size - 1)
    j1, j2 = min(1, N.size - 1), min(2, N.size - 1)
    out = []
    # 1. gas along the power duct bank of north-south road i1, 0.05 m from its wall, at its depth
    major = bool(L.ns_major[i1])
    w, h = (0.8, 0.5) if major else (0.6, 0.4)
    x = E[i1] + OFFSET["DL"] - (w / 2 + 0.05 + 0.075)
    mid = (N[j1] + N[min(j1 + 1, N.size - 1)]) / 2 if N.size > 1 else N[0] + 100.0
    top = TOP["DL"] + h / 2 - 0.075
    pts = acc.points("RQ", np.full(3, x), mid + np.array([-30.0, 0.0, 30.0]), [F_END, F_STRAIGHT, F_END], A_NONE, top)
    acc.segments("RQ", pts[:2], pts[1:], size="DN150", material="钢", built=2023, road=L.ns_names[i1], pressure="0.4")
    out.append({"name": "gas_near_power", "pipes": [(int(p), int(q)) for p, q in zip(pts[:2], pts[1:], strict=True)]})
    # 3. a sewer connection over the east-west water main of road j2, between its cross and valve
    xv = E[i1] + OFFSET["JS"] + 3.0
    ys = N[j2] + np.array([8.5, 3.0])
    inv = TOP["JS"] - 0.10
    pts = acc.points("WS", np.full(2, xv), ys, F_NONE, A_MANHOLE, [inv - 0.01, inv + 0.01])
    acc.segments("WS", pts[:1], pts[1:], size="300", material="PVC", built=2023, road=L.ew_names[j2])
    out.append({"name": "sewer_over_water", "pipes": [(int(pts[0]), int(pts[1]))]})
    # 4. gas straight through the telecom manhole at the corner of roads i2 and j1, at its depth
    cx, cy = E[i2] + OFFSET["TX"], N[j1] + OFFSET["TX"]
    pts = acc.points("RQ", cx + np.array([-4.0, 4.0]), cy + np.array([-4.0, 4.0]), F_END, A_NONE,
                     TOP["TX"])  # DN300 centred on the 400X300 duct's centre: the same top
    acc.segments("RQ", pts[:1], pts[1:], size="DN300", material="钢", built=2023, road=L.ns_names[i2],
                 pressure="0.4")
    out.append({"name": "clash_at_manhole", "pipes": [(int(pts[0]), int(pts[1]))]})
    return [{**d, "what": DEFECTS[d["name"]][0], "finding": DEFECTS[d["name"]][1]} for d in out]


def _trench(P: dict[str, np.ndarray], L: _Layout) -> np.ndarray:
    """The water main's cross point beside the planted sewer: exposed (明显点) in a trial trench,
    so the crossing is judged to the trench's accuracy."""
    i1, j2 = min(1, L.E.size - 1), min(2, L.N.size - 1)
    return np.flatnonzero((P["util"] == _UCODE["JS"]) & (P["feat"] == F_CROSS)
                          & (P["x"] == L.E[i1] + OFFSET["JS"]) & (P["y"] == L.N[j2] + OFFSET["JS"]))


def _raised_water(P: dict[str, np.ndarray], S: dict[str, np.ndarray], L: _Layout) -> dict:
    """Raise the north valve of the water cross at roads 3 and 1 so that the main, rising from the
    cross to it, meets the heat supply (and return) at their centres' depth."""
    i, j = min(3, L.E.size - 1), min(1, L.N.size - 1)
    x, y = L.E[i] + OFFSET["JS"], L.N[j] + OFFSET["JS"]
    js = P["util"] == _UCODE["JS"]
    valve = np.flatnonzero(js & (P["app"] == A_VALVE) & (P["x"] == x) & (P["y"] == y + VALVE_GAP))[0]
    cross = np.flatnonzero(js & (P["feat"] == F_CROSS) & (P["x"] == x) & (P["y"] == y))[0]
    at_valve = np.flatnonzero((S["a"] == valve) | (S["b"] == valve))
    k = at_valve[np.flatnonzero((S["a"][at_valve] == cross) | (S["b"][at_valve] == cross))[0]]
    r = float(str(S["size"][k]).removeprefix("DN")) / 2000
    heat_centre, cross_centre = TOP["RS"] + 0.2, P["depth"][cross] + r
    along = (OFFSET["RS"] - OFFSET["JS"]) / VALVE_GAP  # where the supply crosses, from the cross to the valve
    P["depth"][valve] = cross_centre + (heat_centre - cross_centre) / along - r
    name = "water_into_heat"
    return {"name": name, "pipes": [(int(S["a"][q]), int(S["b"][q])) for q in at_valve], "what": DEFECTS[name][0],
            "finding": DEFECTS[name][1]}


def _shallow_duct(P: dict[str, np.ndarray], S: dict[str, np.ndarray], L: _Layout) -> dict:
    """Raise one handhole-to-handhole telecom span of north-south road 2 (mid-block) to 0.40 m."""
    road = L.ns_names[min(2, L.E.size - 1)]
    a, b = S["a"], S["b"]
    span = ((S["util"] == _UCODE["TX"]) & (S["road"] == road) & (P["app"][a] == A_HANDHOLE)
            & (P["app"][b] == A_HANDHOLE) & (P["x"][a] == P["x"][b]))
    k = np.flatnonzero(span)
    mid = (L.N[0] + L.N[min(1, L.N.size - 1)]) / 2
    pick = k[np.argmin(np.abs((P["y"][a[k]] + P["y"][b[k]]) / 2 - mid))]
    P["depth"][[a[pick], b[pick]]] = 0.40
    name = "shallow_telecom"
    return {"name": name, "pipes": [(int(a[pick]), int(b[pick]))], "what": DEFECTS[name][0],
            "finding": DEFECTS[name][1]}


# ----------------------------------------------------------------------------- tables


def _fixed(v: np.ndarray, decimals: int) -> np.ndarray:
    """Fixed-decimal strings ('' for NaN), vectorised."""
    v = np.asarray(v, dtype=float)
    nan = np.isnan(v)
    scale = 10 ** decimals
    iv = np.rint(np.where(nan, 0.0, v) * scale).astype(np.int64)
    a = np.abs(iv)
    s = np.strings.add(np.strings.add((a // scale).astype(str), "."),
                       np.strings.zfill((a % scale).astype(str), decimals))
    s = np.where(iv < 0, np.strings.add("-", s), s)
    return np.where(nan, "", s).astype(object)


def _ground(x: np.ndarray, y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Smooth ground (m, 1985 height datum): ~35 m, a gentle tilt and a broad swell."""
    theta = rng.uniform(0, 2 * np.pi)
    ph1, ph2 = rng.uniform(0, 2 * np.pi, 2)
    tilt = 0.00010 * (np.cos(theta) * x + np.sin(theta) * y)
    swell = 0.30 * np.sin(2 * np.pi * x / 5000.0 + ph1) * np.sin(2 * np.pi * y / 4400.0 + ph2)
    return 35.0 + tilt + swell


def _tables(acc: _Acc, L: _Layout, rng: np.random.Generator, planted: list[dict] | None = None
            ) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    """The point and segment tables (strings as written) and the district's summary."""
    P = {k: np.concatenate([c[k] for c in acc.p]) for k in acc.p[0]}
    S = {k: np.concatenate([c[k] for c in acc.s]) for k in acc.s[0]}
    survey = np.full(P["x"].size, "", dtype=object)  # 点性质: empty, the twin decides by appurtenance
    if planted:
        planted = [*planted, _shallow_duct(P, S, L), _raised_water(P, S, L)]
        survey[_trench(P, L)] = "明显点"
    n_p = P["x"].size
    x, y = P["x"], P["y"]
    noise = np.clip(rng.normal(0.0, 0.004, n_p), -0.01, 0.01)
    ground = np.round(_ground(x, y, rng) + noise, 3)
    depth = P["depth"] + np.where(_DRAINAGE[P["util"]], noise, 0.0)  # drainage: keep the invert smooth
    depth = np.round(depth, 2)
    well_extra = _WELL_EXTRA[P["app"]]
    well = np.where(well_extra > 0, depth + well_extra, np.nan)
    easting = np.round(L.e0 + x, 2)
    northing = np.round(L.n0 + y, 2)
    order, ids, prefix = _point_ids(P["util"])
    sheet, date, map_id = _map_sheets(easting, northing, P["util"], prefix, rng)

    feats = np.asarray(FEATURES, dtype=object)[P["feat"]]
    apps = np.asarray(APPURTENANCES, dtype=object)[P["app"]]
    points = pd.DataFrame({
        "物探点号": ids[order], "图上点号": map_id[order], "管线类型": prefix[order],
        "特征": feats[order], "附属物": apps[order],
        "X": _fixed(northing[order], 2), "Y": _fixed(easting[order], 2),
        "地面高程": _fixed(ground[order], 3), "埋深": _fixed(depth[order], 2), "井底深": _fixed(well[order], 2),
        "偏心井点号": "", "图幅号": sheet[order], "探测日期": date[order],
        "备注": P["remark"][order], "点性质": survey[order],
    }, columns=list(POINT_HEADERS))
    segments = _segment_table(S, P["util"], ids, prefix, depth)
    info = _summary(P, S, easting, northing)
    info["defects"] = [{**{k: v for k, v in d.items() if k != "pipes"},
                        "segments": [[str(ids[a]), str(ids[b])] for a, b in d["pipes"]]} for d in planted or []]
    return points, segments, info


def _point_ids(util: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Point ids: utility prefix + counter, points ordered by utility then creation.

    Returns the table order, the ids and the utility prefixes (both in creation order).
    """
    n_p = util.size
    order = np.argsort(util, kind="stable")
    util_sorted = util[order]
    starts = np.searchsorted(util_sorted, np.arange(len(UTILITY_ORDER)))
    counter = np.empty(n_p, dtype=np.int64)
    counter[order] = np.arange(n_p) - starts[util_sorted] + 1
    width = max(4, len(str(int(counter.max()))))
    prefix = np.asarray(UTILITY_ORDER, dtype=object)[util]
    ids = prefix.astype(str)
    ids = np.strings.add(ids, np.strings.zfill(counter.astype(str), width)).astype(object)
    return order, ids, prefix


def _map_sheets(easting: np.ndarray, northing: np.ndarray, util: np.ndarray, prefix: np.ndarray,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each point's map sheet (1:500, 250 m x 250 m, named by the south-west corner in km),
    the sheet's survey date and the point's number on the sheet (图上点号)."""
    sn = np.floor(northing / 250.0).astype(np.int64)
    se = np.floor(easting / 250.0).astype(np.int64)
    key = sn * 100_000 + se
    uniq, inv = np.unique(key, return_inverse=True)
    sheet_names = np.array([f"{k // 100_000 * 0.25:.2f}-{k % 100_000 * 0.25:.2f}" for k in uniq], dtype=object)
    first = np.datetime64("2024-03-01")
    days = rng.integers(0, 200, uniq.size)
    sheet_dates = np.array([str(first + int(d)) for d in days], dtype=object)
    grp = pd.Series(inv * 16 + util)
    map_no = grp.groupby(grp.to_numpy()).cumcount().to_numpy() + 1
    map_id = np.strings.add(prefix.astype(str), map_no.astype(str)).astype(object)
    return sheet_names[inv], sheet_dates[inv], map_id


def _segment_table(S: dict[str, np.ndarray], point_util: np.ndarray, ids: np.ndarray,
                   prefix: np.ndarray, depth: np.ndarray) -> pd.DataFrame:
    """The segment table, ordered by utility; end depths from the points."""
    sorder = np.argsort(S["util"], kind="stable")
    a, b = S["a"][sorder], S["b"][sorder]

    def ints(v: np.ndarray) -> np.ndarray:
        return np.where(v >= 0, v.astype(str), "").astype(object)

    segments = pd.DataFrame({
        "起点号": ids[a], "终点号": ids[b], "管线类型": prefix[a],
        "起点埋深": _fixed(depth[a], 2), "终点埋深": _fixed(depth[b], 2),
        "管径/断面": S["size"][sorder], "材质": S["material"][sorder], "埋设方式": S["burial"][sorder],
        "压力/电压": S["pressure"][sorder], "电缆条数": ints(S["cables"][sorder]),
        "总孔数": ints(S["holes_total"][sorder]), "已用孔数": ints(S["holes_used"][sorder]), "流向": "",
        "建设年代": S["built"][sorder].astype(str).astype(object), "权属单位": S["owner"][sorder],
        "道路名称": S["road"][sorder], "状态": S["status"][sorder], "备注": S["remark"][sorder],
    }, columns=list(SEGMENT_HEADERS))
    if (S["util"][sorder] != point_util[a]).any():  # pragma: no cover - a builder bug
        raise AssertionError("a segment joins points of another utility")
    return segments


def _summary(P: dict[str, np.ndarray], S: dict[str, np.ndarray], easting: np.ndarray,
             northing: np.ndarray) -> dict:
    """Counts per utility, customers, sources, valves and the bounding box."""
    pc = np.bincount(P["util"], minlength=len(UTILITY_ORDER))
    sc = np.bincount(S["util"], minlength=len(UTILITY_ORDER))
    entries = P["feat"] == F_ENTRY
    rem = pd.Series(P["remark"][entries], dtype=object).fillna("")
    critical = rem.str.contains("医院|学校|养老院", regex=True)
    sources = {APPURTENANCES[k]: int((P["app"] == k).sum()) for k in (A_WATER_PLANT, A_GAS_STATION, A_HEAT_STATION)}
    return {
        "points": {u: int(pc[k]) for k, u in enumerate(UTILITY_ORDER)},
        "segments": {u: int(sc[k]) for k, u in enumerate(UTILITY_ORDER)},
        "points_total": int(P["x"].size),
        "segments_total": int(S["a"].size),
        "customers": int(entries.sum()),
        "customers_by_utility": {u: int((entries & (P["util"] == k)).sum()) for k, u in enumerate(UTILITY_ORDER)
                                 if (entries & (P["util"] == k)).any()},
        "critical_customers": int(critical.sum()),
        "sources": sources,
        "valves": int(np.isin(P["app"], [A_VALVE, A_CHAMBER]).sum()),
        "bbox": {"min_easting": float(easting.min()), "min_northing": float(northing.min()),
                 "max_easting": float(easting.max()), "max_northing": float(northing.max())},
    }


_NUMERIC = {"X", "Y", "地面高程", "埋深", "井底深", "起点埋深", "终点埋深", "电缆条数", "总孔数", "已用孔数", "建设年代"}


def _write(frame: pd.DataFrame, path: Path, fmt: str, encoding: str) -> None:
    if fmt == "csv":
        frame.to_csv(path, index=False, encoding=encoding, lineterminator="\n")
        return
    if len(frame) > 1_048_575:
        raise ValueError(f"{path.name}: {len(frame)} rows do not fit an XLSX sheet; use fmt='csv'")
    out = frame.copy()
    for c in out.columns:
        if c in _NUMERIC:
            out[c] = pd.to_numeric(out[c].replace("", None))
    buf = io.BytesIO()
    with pd.ExcelWriter(buf, engine="openpyxl") as writer:
        out.to_excel(writer, index=False, sheet_name=path.stem)
    path.write_bytes(_fixed_zip(buf.getvalue()))


def _fixed_zip(data: bytes) -> bytes:
    """Rewrite an XLSX with fixed timestamps so that the same data gives the same bytes."""
    stamp = "2024-01-01T00:00:00Z"
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            body = src.read(info.filename)
            if info.filename == "docProps/core.xml":
                body = re.sub(rb"(<dcterms:(?:created|modified)[^>]*>)[^<]*", rb"\g<1>" + stamp.encode(), body)
            zi = zipfile.ZipInfo(info.filename, date_time=(2024, 1, 1, 0, 0, 0))
            zi.compress_type = zipfile.ZIP_DEFLATED
            zi.external_attr = info.external_attr
            dst.writestr(zi, body)
    return out.getvalue()


@contextlib.contextmanager
def _progress(enabled: bool, total: int) -> Iterator[Callable[[str], None]]:
    if not enabled:
        yield lambda msg: None
        return
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description:<28}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), transient=False) as bar:
        task = bar.add_task("sample district", total=total)
        started = [False]

        def step(msg: str) -> None:
            if started[0]:
                bar.advance(task)
            started[0] = True
            bar.update(task, description=msg)

        yield step
        bar.update(task, completed=total, description="done")

