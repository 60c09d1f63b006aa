"""Fixtures of the live tests: a water main with three valves, and a private broker.

The main (X is northing, constant; Y easting every 50 m)::

    W1 (plant) - W2 - W3 (valve) - W4 - W5 - W6 (valve) - W7 - W8 (valve) - W9 (end)

Each valve sits on the pipe coming from the plant side, at its own point (the survey
convention), so the valve segments are {W1-W2, W2-W3}, {W3-W4, W4-W5, W5-W6},
{W6-W7, W7-W8} and {W8-W9}. A burst on W4-W5 closes W3 and W6; W6-W7 to W9 lose supply.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import pytest
import sqlalchemy as sa

from ingest.pipeline import ingest_survey
from live.broker import Broker

POINT_HEADER = "物探点号,图上点号,管线类型,特征,附属物,X,Y,地面高程,埋深,井底深,偏心井点号,图幅号,探测日期,备注"
SEGMENT_HEADER = ("起点号,终点号,管线类型,起点埋深,终点埋深,管径/断面,材质,埋设方式,压力/电压,电缆条数,总孔数,"
                  "已用孔数,流向,建设年代,权属单位,道路名称,状态,备注")
#: point id -> (feature, appurtenance)
POINTS = {"W1": ("", "水厂"), "W2": ("直线点", ""), "W3": ("", "阀门"), "W4": ("直线点", ""), "W5": ("直线点", ""),
          "W6": ("", "阀门"), "W7": ("直线点", ""), "W8": ("", "阀门"), "W9": ("终点", "")}


def easting(point: str) -> float:
    return 410000.0 + 50.0 * (int(point[1:]) - 1)


def write_main(folder: Path) -> tuple[Path, Path]:
    """The survey tables of the main."""
    folder.mkdir(parents=True, exist_ok=True)
    points = [POINT_HEADER] + [
        f"{p},{p[1:]},JS,{f},{a},4035000.00,{easting(p):.2f},35.000,1.40,,,,2024-05-01,"
        for p, (f, a) in POINTS.items()]
    ids = list(POINTS)
    segments = [SEGMENT_HEADER] + [
        f"{a},{b},JS,1.40,1.40,DN300,球墨铸铁,ZM,0.4,,,,,2010,聊城市自来水公司,东昌路,active,"
        for a, b in zip(ids, ids[1:], strict=False)]
    (folder / "points.csv").write_text("\n".join(points) + "\n", encoding="utf-8")
    (folder / "segments.csv").write_text("\n".join(segments) + "\n", encoding="utf-8")
    return folder / "points.csv", folder / "segments.csv"


@pytest.fixture(scope="module")
def main_twin(twin_settings, twin_engine, tmp_path_factory) -> sa.Engine:
    """The module's twin holding the main."""
    points, segments = write_main(tmp_path_factory.mktemp("main"))
    report = ingest_survey(points, segments, twin_settings)
    assert report.status == "applied", report
    return twin_engine


@pytest.fixture(scope="module")
def broker() -> Broker:
    """A private broker of the module's own, in a folder the broker's system user can reach."""
    root = Path(tempfile.mkdtemp(prefix="pipetwin-mqtt-"))
    root.chmod(0o711)
    b = Broker(root=root / "mqtt", secrets=root / "secrets")
    b.start()
    yield b
    b.stop()
    shutil.rmtree(root, ignore_errors=True)
