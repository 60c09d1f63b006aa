"""Sensors on the network (监测点): registered on a node or a pipe of the twin, with thresholds.

A sensor has an id, a kind (:data:`KINDS`), a unit, a position (a node id or a pipe id that must
exist in the twin) and thresholds: ``low``/``high`` (a reading beyond raises an alarm),
``rate`` (the largest change in a minute, in the sensor's unit, before a ``drop`` or ``rise``
alarm) and ``stale_s`` (no reading for so many seconds raises a ``stale`` alarm). Every
registration is audited through :func:`twin.audit.record`.

The API calls :func:`add_sensors`, :func:`list_sensors` and :func:`remove_sensor` with the
signed-in user; the command line with ``role="cli"``.
"""

from __future__ import annotations

import csv
import io
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import sqlalchemy as sa

from twin.audit import record
from twin.crs import transformer
from twin.db import twin_srid
from twin.errors import Conflict, InputError, NotFound
from twin.jsonable import plain

__all__ = ["KINDS", "SensorSpec", "Who", "add_sensors", "read_sensor_table", "import_sensors",
           "list_sensors", "remove_sensor", "sensor_rules", "SENSOR_COLUMNS"]

#: Sensor kinds, 中文 first.
KINDS = {
    "pressure": "压力 pressure",
    "flow": "流量 flow",
    "level": "液位 level",
    "gas": "可燃气体浓度 gas concentration",
    "cover": "井盖开启 manhole cover open",
    "valve_position": "阀门开度 valve position",
}
ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
#: Columns of a sensor table (``twin sensors import``), with the Chinese headers also accepted.
SENSOR_COLUMNS = {
    "id": ("id", "编号", "传感器编号"), "kind": ("kind", "类型"), "unit": ("unit", "单位"),
    "node": ("node", "节点", "管点"), "pipe": ("pipe", "管段", "管线"), "low": ("low", "下限"),
    "high": ("high", "上限"), "rate": ("rate", "变化率"), "stale_s": ("stale_s", "失联秒数"),
}


@dataclass(frozen=True)
class Who:
    """Who makes a change, for the audit log: the API passes the request's, the CLI ``cli``."""

    user: str
    role: str | None = "cli"
    method: str | None = "CLI"
    path: str | None = None


@dataclass
class SensorSpec:
    """A sensor to register."""

    id: str
    kind: str
    unit: str
    node: str | None = None
    pipe: str | None = None
    low: float | None = None
    high: float | None = None
    rate: float | None = None
    stale_s: int | None = None

    def check(self) -> None:
        """InputError unless the spec is whole and coherent (the twin is asked separately)."""
        if not ID_PATTERN.match(self.id or ""):
            raise InputError(f"sensor id {self.id!r}: letters, digits, '-', '_', '.', at most 64",
                             zh=f"传感器编号 {self.id!r}：只能用字母、数字、'-'、'_'、'.'，最多 64 个字符")
        if self.kind not in KINDS:
            raise InputError(f"sensor {self.id}: kind {self.kind!r} is not one of {', '.join(KINDS)}",
                             zh=f"传感器 {self.id}：类型 {self.kind!r} 不是 {'、'.join(KINDS)} 之一")
        if not (self.unit or "").strip() or len(self.unit) > 16:
            raise InputError(f"sensor {self.id}: a unit (e.g. MPa, m3/h, m, %LEL) of at most 16 characters",
                             zh=f"传感器 {self.id}：单位（如 MPa、m3/h、m、%LEL）最多 16 个字符")
        if (self.node is None) == (self.pipe is None):
            raise InputError(f"sensor {self.id}: give exactly one of a node and a pipe",
                             zh=f"传感器 {self.id}：须且只能给出一个管点或一条管线")
        for name in ("low", "high", "rate"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise InputError(f"sensor {self.id}: {name} must be a finite number",
                                 zh=f"传感器 {self.id}：{name} 须为有限数")
        if self.low is not None and self.high is not None and self.low >= self.high:
            raise InputError(f"sensor {self.id}: low ({self.low:g}) must be below high ({self.high:g})",
                             zh=f"传感器 {self.id}：下限（{self.low:g}）须低于上限（{self.high:g}）")
        if self.rate is not None and self.rate <= 0:
            raise InputError(f"sensor {self.id}: rate must be above 0",
                             zh=f"传感器 {self.id}：rate 采样率须大于 0")
        if self.stale_s is not None and self.stale_s <= 0:
            raise InputError(f"sensor {self.id}: stale-s must be above 0",
                             zh=f"传感器 {self.id}：stale-s 失联时限须大于 0")


def _check_positions(conn: sa.Connection, specs: Sequence[SensorSpec]) -> None:
    """NotFound for the first sensor whose node or pipe the twin does not have (live)."""
    nodes = sorted({s.node for s in specs if s.node is not None})
    pipes = sorted({s.pipe for s in specs if s.pipe is not None})
    found_nodes = {r[0] for r in conn.execute(sa.text("SELECT id FROM current_node WHERE id = ANY(:i)"),
                                              {"i": nodes})}
    found_pipes = {r[0] for r in conn.execute(sa.text("SELECT id FROM current_segment WHERE id = ANY(:i)"),
                                              {"i": pipes})}
    for s in specs:
        if s.node is not None and s.node not in found_nodes:
            raise NotFound(f"sensor {s.id}: no node {s.node!r} in the twin",
                           zh=f"传感器 {s.id}：孪生库中没有管点 {s.node!r}")
        if s.pipe is not None and s.pipe not in found_pipes:
            raise NotFound(f"sensor {s.id}: no pipe {s.pipe!r} in the twin",
                           zh=f"传感器 {s.id}：孪生库中没有管线 {s.pipe!r}")


def add_sensors(engine: sa.Engine, specs: Sequence[SensorSpec], who: Who, *,
                action: str = "sensors added") -> list[dict]:
    """Register sensors, all or nothing (Conflict when an id is taken); audited."""
    if not specs:
        raise InputError("no sensors to add", zh="没有要添加的传感器")
    for s in specs:
        s.check()
    ids = [s.id for s in specs]
    dup = sorted({i for i in ids if ids.count(i) > 1})
    if dup:
        raise InputError(f"sensor ids given twice: {', '.join(dup[:10])}",
                         zh=f"传感器编号重复给出：{'、'.join(dup[:10])}")
    with engine.begin() as conn:
        _check_positions(conn, specs)
        taken = conn.execute(sa.text("SELECT id FROM sensor WHERE id = ANY(:i) ORDER BY id"), {"i": ids}).scalars().all()
        if taken:
            raise Conflict(f"sensor ids already registered: {', '.join(taken[:10])}",
                           zh=f"传感器编号已注册：{'、'.join(taken[:10])}")
        conn.execute(
            sa.text("INSERT INTO sensor (id, kind, unit, node_id, segment_id, low, high, rate, stale_s, created_by) "
                    "VALUES (:id, :kind, :unit, :node, :pipe, :low, :high, :rate, :stale_s, :by)"),
            [{**asdict(s), "by": who.user} for s in specs],
        )
        record(conn, who.user, who.role, action, method=who.method, path=who.path,
               params={"sensors": [asdict(s) for s in specs[:50]], "count": len(specs)}, affected=ids)
    return [s for s in list_sensors(engine) if s["id"] in set(ids)]


def _number(value: str | None, what: str, line: int) -> float | None:
    if value is None or not str(value).strip():
        return None
    try:
        return float(value)
    except ValueError:
        raise InputError(f"line {line}: {what} {value!r} is not a number",
                         zh=f"第 {line} 行：{what} {value!r} 不是数字") from None


def read_sensor_table(text: str) -> list[SensorSpec]:
    """Sensors from CSV text with a header (English or Chinese names, :data:`SENSOR_COLUMNS`)."""
    rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))
    if not rows:
        raise InputError("the sensor table is empty", zh="传感器表为空")
    header = [h.strip().lower() for h in rows[0]]
    where = {}
    for key, names in SENSOR_COLUMNS.items():
        hits = [i for i, h in enumerate(header) if h in names]
        if hits:
            where[key] = hits[0]
    missing = [k for k in ("id", "kind", "unit") if k not in where]
    if missing:
        raise InputError(f"the sensor table lacks the column(s) {', '.join(missing)} "
                         f"(header: {', '.join(SENSOR_COLUMNS)})",
                         zh=f"传感器表缺少列 {'、'.join(missing)}"
                            f"（表头：{', '.join(SENSOR_COLUMNS)}）")
    specs = []
    for n, row in enumerate(rows[1:], start=2):
        if not any(c.strip() for c in row):
            continue
        cell = {k: (row[i].strip() if i < len(row) and row[i].strip() else None) for k, i in where.items()}
        stale = _number(cell.get("stale_s"), "stale_s", n)
        if stale is not None and not stale.is_integer():
            raise InputError(f"line {n}: stale_s must be a whole number of seconds",
                             zh=f"第 {n} 行：stale_s 失联时限须为整数秒")
        specs.append(SensorSpec(
            id=cell["id"] or "", kind=cell["kind"] or "", unit=cell["unit"] or "", node=cell.get("node"),
            pipe=cell.get("pipe"), low=_number(cell.get("low"), "low", n), high=_number(cell.get("high"), "high", n),
            rate=_number(cell.get("rate"), "rate", n), stale_s=None if stale is None else int(stale)))
    return specs


def import_sensors(engine: sa.Engine, path: Path, who: Who) -> list[dict]:
    """Register every sensor of a CSV file, all or nothing."""
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError:
        text = path.read_bytes().decode("gb18030")
    except FileNotFoundError:
        raise InputError(f"no file {path}", zh=f"文件 {path} 不存在") from None
    return add_sensors(engine, read_sensor_table(text), who, action="sensors imported")


def list_sensors(engine: sa.Engine, ids: Iterable[str] | None = None) -> list[dict]:
    """Every sensor (or those of ``ids``) with its position (twin x/y, lon/lat, ground z), its
    network's utility and its last reading."""
    with engine.connect() as conn:
        srid = twin_srid(conn)
        rows = conn.execute(sa.text(
            "SELECT s.id, s.kind, s.unit, s.node_id AS node, s.segment_id AS pipe, s.low, s.high, s.rate, "
            "s.stale_s, s.last_t, s.last_v, s.created_at, s.created_by, "
            "coalesce(n.utility, g.utility) AS utility, "
            "ST_X(coalesce(n.geom, ST_LineInterpolatePoint(ST_Force2D(g.geom), 0.5))) AS x, "
            "ST_Y(coalesce(n.geom, ST_LineInterpolatePoint(ST_Force2D(g.geom), 0.5))) AS y, "
            "n.ground_z AS z "
            "FROM sensor s LEFT JOIN current_node n ON n.id = s.node_id "
            "LEFT JOIN current_segment g ON g.id = s.segment_id "
            "WHERE (CAST(:ids AS text[]) IS NULL OR s.id = ANY(:ids)) ORDER BY s.id"),
            {"ids": None if ids is None else list(ids)}).mappings().all()
    out = [dict(r) for r in rows]
    if out:
        to_wgs84 = transformer(srid, 4326)
        lon, lat = to_wgs84.transform([r["x"] if r["x"] is not None else math.nan for r in out],
                                      [r["y"] if r["y"] is not None else math.nan for r in out])
        for r, lo, la in zip(out, lon, lat, strict=True):
            r["lon"], r["lat"] = lo, la
    return [plain(r) for r in out]


def remove_sensor(engine: sa.Engine, sensor_id: str, who: Who) -> None:
    """Unregister a sensor (its alarms go with it; its readings age out); audited."""
    with engine.begin() as conn:
        gone = conn.execute(sa.text("DELETE FROM sensor WHERE id = :i RETURNING id"), {"i": sensor_id}).first()
        if gone is None:
            raise NotFound(f"no sensor {sensor_id!r}", zh=f"没有传感器 {sensor_id!r}")
        record(conn, who.user, who.role, "sensor removed", method=who.method, path=who.path,
               params={"id": sensor_id}, affected=[sensor_id])


def sensor_rules(conn: sa.Connection) -> dict[str, Mapping]:
    """What the subscriber needs of each sensor to check its readings, by id."""
    rows = conn.execute(sa.text(
        "SELECT id, kind, node_id, segment_id, low, high, rate, stale_s FROM sensor ORDER BY id")).mappings()
    return {r["id"]: dict(r) for r in rows}
