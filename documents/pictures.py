"""3D pictures rendered on the server with pyvista, off-screen (VTK through OSMesa/EGL: no GPU,
no display): a finding's two pipes and their surroundings, a shutoff's valves and isolated
pipes, a dig site with every utility within reach. Pipes are shaped by the 3D Tiles' own mesh
code (:mod:`tiles.mesh`), so a pipe looks the same in the viewer and on paper.

INTERFACE (scaffold; filled in by issue 14's pictures work; the PDF and BCF writers call these):

- :class:`Camera`: where the picture was taken from, in the twin's CRS (easting, northing,
  height; BCF viewpoints are written from it).
- :class:`Picture`: the PNG bytes, its size, the camera, and :meth:`Picture.project` giving
  the pixel of a twin-CRS point (tests check pipes' pixels lie where the camera puts them).
- :class:`ExtraPipe`: a pipe that is not in the twin (a proposal), drawn in its own colour.
- :func:`finding_picture`, :func:`shutoff_picture`, :func:`site_picture`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import sqlalchemy as sa

__all__ = ["Camera", "Picture", "ExtraPipe", "finding_picture", "shutoff_picture", "site_picture"]


@dataclass(frozen=True)
class Camera:
    """A perspective camera in the twin's CRS (x = easting, y = northing, z = height, metres)."""

    position: tuple[float, float, float]
    focal_point: tuple[float, float, float]
    up: tuple[float, float, float]
    view_angle_deg: float  # vertical field of view


@dataclass
class Picture:
    """A rendered PNG and how it was taken."""

    png: bytes
    width: int
    height: int
    camera: Camera
    title: str = ""

    def project(self, xyz: np.ndarray) -> np.ndarray:
        """Pixel (column, row from the top-left) of each twin-CRS point ``(n, 3)``."""
        raise NotImplementedError


@dataclass
class ExtraPipe:
    """A pipe not in the twin (a proposal): its centreline with heights of the centre, in the
    twin's CRS, and its size (a circle of ``diameter_mm`` or a ``width_mm`` x ``height_mm`` box)."""

    id: str
    utility: str
    coords: np.ndarray  # (n, 3)
    diameter_mm: float | None = None
    width_mm: float | None = None
    height_mm: float | None = None
    label: str = ""
    attrs: dict = field(default_factory=dict)


def finding_picture(engine: sa.Engine, finding: Mapping, *, extra: Sequence[ExtraPipe] = (),
                    size: tuple[int, int] = (1280, 960), radius_m: float = 10.0) -> Picture:
    """The finding's pipes (``ids``, or ``a_id``/``b_id``; some may be ``extra``) and every pipe
    within ``radius_m`` of its place (``x``, ``y``, ``z``) at true size; the ground translucent;
    the clearance (``measured_m`` vs ``required_m``) drawn as a dimension; labels with ids,
    sizes and depths."""
    raise NotImplementedError


def shutoff_picture(engine: sa.Engine, answer: Mapping, *, size: tuple[int, int] = (1280, 960)) -> Picture:
    """A shutoff answer (:func:`analysis.shutoff.shutoff` as a dict): the burst, the valves to
    close numbered in order, the isolated pipes highlighted."""
    raise NotImplementedError


def site_picture(engine: sa.Engine, x: float, y: float, *, radius_m: float = 10.0,
                 highlight: Sequence[str] = (), size: tuple[int, int] = (1280, 960),
                 title: str = "") -> Picture:
    """A dig site: every utility within ``radius_m`` of (x, y), the ``highlight`` pipes
    emphasised, the ground translucent, labels with ids, sizes and depths."""
    raise NotImplementedError
