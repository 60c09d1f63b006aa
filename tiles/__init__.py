"""3D Tiles 1.1 of the pipe network: tubes, boxes and fittings at their surveyed depth.

``build_tileset(settings)`` (or ``twin tiles build``) writes ``tileset.json`` and GLB contents
with ``EXT_mesh_features`` / ``EXT_structural_metadata`` that CesiumJS streams.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tiles.build import build_tileset, tiles_dir

__all__ = ["build_tileset", "tiles_dir"]


def __getattr__(name: str) -> object:
    # Imported on first use, so that `twin --help` does not load the whole tiles stack.
    if name in __all__:
        from tiles import build

        return getattr(build, name)
    raise AttributeError(name)
