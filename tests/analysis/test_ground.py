"""Ground model: linear on the triangulation (planes are reproduced), nearest outside the hull."""

from __future__ import annotations

import numpy as np
import pytest

from analysis.ground import GroundModel, load_ground
from twin.errors import InputError


def _plane(x, y):
    return 35.0 + 0.002 * (x - 408000) - 0.001 * (y - 4035000)


@pytest.fixture(scope="module")
def plane_model():
    rng = np.random.default_rng(1)
    xy = np.column_stack([rng.uniform(408000, 408500, 300), rng.uniform(4035000, 4035500, 300)])
    corners = np.array([[408000, 4035000], [408500, 4035000], [408000, 4035500], [408500, 4035500]], float)
    xy = np.vstack([xy, corners])
    return GroundModel(xy, _plane(xy[:, 0], xy[:, 1]))


@pytest.mark.parametrize("x,y", [
    # inside the hull: a plane is reproduced exactly by linear interpolation
    (408250.0, 4035250.0), (408001.0, 4035499.0), (408499.5, 4035000.5), (408123.4, 4035321.0),
])
def test_plane_is_reproduced_inside(plane_model, x, y):
    assert plane_model(np.array([x]), np.array([y]))[0] == pytest.approx(_plane(x, y), abs=1e-9)


def test_outside_the_hull_takes_the_nearest_point(plane_model):
    z = plane_model(np.array([409000.0]), np.array([4035500.0]))
    assert z[0] == pytest.approx(_plane(408500, 4035500), abs=1e-9)


def test_points_at_one_place_are_averaged():
    g = GroundModel(np.array([[0, 0], [0, 0], [10, 0], [0, 10]], float), np.array([1.0, 3.0, 2.0, 2.0]))
    assert len(g) == 3
    assert g(np.array([0.0]), np.array([0.0]))[0] == pytest.approx(2.0)


def test_collinear_points_fall_back_to_nearest():
    g = GroundModel(np.array([[0, 0], [10, 0], [20, 0]], float), np.array([1.0, 2.0, 3.0]))
    assert g(np.array([11.0, 19.0]), np.array([5.0, -5.0])).tolist() == [2.0, 3.0]


def test_shape_is_kept():
    g = GroundModel(np.array([[0, 0], [10, 0], [0, 10]], float), np.array([1.0, 1.0, 1.0]))
    assert g(np.ones((2, 3)), np.ones((2, 3))).shape == (2, 3)


def test_no_points_is_an_input_error():
    with pytest.raises(InputError, match="no ground points"):
        GroundModel(np.empty((0, 2)), np.empty(0))


def test_load_ground_from_the_twin(twin_settings, twin_engine):
    from ingest.pipeline import ingest_survey
    from tests.conftest import SMALL

    report = ingest_survey(SMALL / "points.csv", SMALL / "segments.csv", twin_settings, scope="small")
    assert report.status == "applied"
    g = load_ground(twin_engine)
    # JS2 is surveyed at (E 410040, N 4035000) with ground 35.18
    assert g(np.array([410040.0]), np.array([4035000.0]))[0] == pytest.approx(35.18, abs=1e-9)
    import shapely

    near = load_ground(twin_engine, shapely.Point(410000, 4035000), 10.0)
    assert len(near) < len(g)
