"""The fast paths of the network reads and of the findings, against the slow ones they replace:
hex WKB decoded in numpy (shapely), finding keys of many pairs (``finding_key``), text columns
read without Arrow (``astype(str)``), frames of ready columns (``pd.DataFrame``)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
import shapely

from analysis.clearance import _pair_keys
from analysis.network import frame_of, line_vertices, text_array
from analysis.pieces import finding_key


def _shapely_vertices(hexes: list[str]) -> tuple[np.ndarray, np.ndarray]:
    geoms = shapely.from_wkb(np.array(hexes, dtype=object))
    vertices, index = shapely.get_coordinates(geoms, include_z=True, return_index=True)
    offsets = np.zeros(len(hexes) + 1, dtype=np.int64)
    np.cumsum(np.bincount(index, minlength=len(hexes)), out=offsets[1:])
    return vertices, offsets


def test_line_vertices_are_shapelys_bit_for_bit():
    rng = np.random.default_rng(3)
    lines = [shapely.LineString(rng.normal(size=(k, 3)) * 1e5 + [4e5, 4e6, 30]) for k in rng.integers(2, 7, 300)]
    lines.insert(7, shapely.from_wkt("LINESTRING Z EMPTY"))
    lines.append(shapely.LineString([(1, 2, np.nan), (3, 4, 5)]))  # a missing height stays NaN
    hexes = shapely.to_wkb(np.array(lines, dtype=object), hex=True, flavor="iso", output_dimension=3).tolist()
    got = line_vertices(pa.chunked_array([pa.array(hexes[:100]), pa.array(hexes[100:])]))
    want = _shapely_vertices(hexes)
    assert np.array_equal(got[0], want[0], equal_nan=True) and np.array_equal(got[1], want[1])
    assert np.array_equal(line_vertices(pa.array([h.lower() for h in hexes]))[0], want[0], equal_nan=True)


@pytest.mark.parametrize("geom", ["LINESTRING (0 0, 1 1)", "MULTILINESTRING Z ((0 0 0, 1 1 1), (2 2 2, 3 3 3))"])
def test_line_vertices_leave_other_geometries_to_shapely(geom):
    hexes = [shapely.to_wkb(shapely.from_wkt(geom), hex=True), shapely.from_wkt("LINESTRING Z (5 6 7, 8 9 1)").wkb_hex]
    got = line_vertices(pa.array(hexes))
    want = _shapely_vertices(hexes)
    assert np.array_equal(got[0], want[0], equal_nan=True) and np.array_equal(got[1], want[1])


def test_pair_keys_are_finding_keys():
    x = np.array(["JS-1", "RQ-9", "b", "same"], dtype=object)
    y = np.array(["PS-2", "RQ-10", "a", "same"], dtype=object)
    want = [finding_key("clearance-vertical", p) for p in zip(x, y, strict=True)]
    assert _pair_keys("clearance-vertical", x, y) == want
    assert _pair_keys("k", x[:0], y[:0]) == []


@pytest.mark.parametrize("values", [["a", "b"], ["a", np.nan], [1, 2], ["a", None]])
def test_text_array_is_astype_str(values):
    for series in (pd.Series(values), pd.Series(values, dtype=object)):
        want = series.astype(str).to_numpy()
        got = text_array(series)
        assert [type(v) for v in got] == [type(v) for v in want]
        assert pd.Series(got).equals(pd.Series(want))


def test_frame_of_reads_as_pandas_frame_does():
    data = {"id": ["a", "b", "c"], "road": ["x", None, "y"], "version": [1, 2, 3], "built": [None] * 3,
            "day": [dt.date(2020, 1, 1), None, None], "ok": [True, False, True], "d": [300, None, 1.5]}
    got = frame_of(data, list(data), ["d"])
    want = pd.DataFrame(data)
    want["d"] = want["d"].astype(float)
    assert list(got.columns) == list(want.columns) and len(got) == 3
    for c in data:
        assert pd.Series(got[c].to_numpy(), dtype=object).equals(pd.Series(want[c].to_numpy(), dtype=object))
        if want[c].dtype == "str":
            assert got[c].dtype == object  # not Arrow-backed: read without a copy
            assert got[c].isna().tolist() == want[c].isna().tolist()
        else:
            assert got[c].dtype == want[c].dtype
    empty = frame_of({c: [] for c in data}, list(data), ["d"])
    assert len(empty) == 0 and empty["d"].dtype == float and empty["id"].dtype == object
