"""Commands of ``twin analyze``: see analysis.cli."""

from __future__ import annotations

from analysis.cli import app  # noqa: F401
