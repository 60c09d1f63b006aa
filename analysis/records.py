"""Plain Python values for JSON answers: numpy scalars unwrapped, NaN and NA as None."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

__all__ = ["plain"]


def plain(value: object) -> object:
    """``value`` with numpy scalars, NaN and pandas NA turned into JSON-ready Python values."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if value is pd.NA or value is pd.NaT or (isinstance(value, float) and math.isnan(value)):
        return None
    return value
