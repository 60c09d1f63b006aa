"""Plain Python values for JSON: numpy unwrapped, NaN, infinity and NA as None, datetimes as text.

The one JSON cleaner of the project: analyses, the audit log, jobs and the API all answer with
``plain(value)``.

>>> import numpy as np
>>> plain({"a": np.float64(1.5), "b": [np.int64(2), float("nan"), float("inf")]})
{'a': 1.5, 'b': [2, None, None]}
"""

from __future__ import annotations

import math
from datetime import date, datetime

import numpy as np

__all__ = ["plain"]


def plain(value: object) -> object:
    """``value`` with numpy scalars, NaN, infinities and pandas NA turned into JSON-ready values."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return [plain(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, datetime | date):
        return value.isoformat()
    if value is not None and type(value).__name__ in ("NAType", "NaTType"):
        return None
    return value
