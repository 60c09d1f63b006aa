"""Bounds of the documents that commands and routes name before the documents load (this module
imports nothing heavy: the documents layer itself loads VTK, matplotlib and fpdf2).

>>> SNAPSHOTS <= MAX_SNAPSHOTS <= MAX_TOPICS
True
"""

from __future__ import annotations

__all__ = ["MAX_TOPICS", "SNAPSHOTS", "MAX_SNAPSHOTS"]

#: Most topics in one BCF file: more is an input error asking to filter (pictures cost time).
MAX_TOPICS = 500
#: Topics that carry a rendered snapshot by default, the first ones (worst first; about half a
#: second to a second each); the rest carry a viewpoint only.
SNAPSHOTS = 10
#: Most snapshots one request may ask for.
MAX_SNAPSHOTS = 20
