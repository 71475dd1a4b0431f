"""JSON that every reader accepts: NaN and ±Infinity (which Python's ``json`` writes bare, and
which JSON does not have) become ``null``; NumPy scalars and arrays become numbers and lists."""

from __future__ import annotations

import json
import math

import numpy as np


def jsonable(value):
    """``value`` with every non-finite float replaced by None, NumPy types made plain."""
    if isinstance(value, dict):
        return {str(k) if not isinstance(k, str) else k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def dumps(value, **kwargs) -> str:
    """Strict JSON text of ``value`` (``allow_nan=False`` after :func:`jsonable`: a non-finite
    number that slipped through is an error, never invalid output)."""
    return json.dumps(jsonable(value), allow_nan=False, default=float, **kwargs)
