"""Documents that leave the twin: 3D pictures (pyvista, off-screen), the approval package and the
shutoff work order as PDF, BCF 3.0 topics of findings, and DXF of sections and profiles.

The layer above the analyses and the tiles: it reads their results (and shapes pipes with the
same mesh code as the 3D Tiles, :mod:`tiles.mesh`) and renders them for people outside the twin.
The API and the commands (``twin analyze ... --pdf/--bcf/--dxf``) call it; it imports neither.
"""
