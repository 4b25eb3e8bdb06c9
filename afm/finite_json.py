"""JSON has no NaN or infinity: metrics that are undefined are written as null."""

from __future__ import annotations

import math

import numpy as np


def finite(obj):
    """A copy of `obj` with every non-finite float replaced by None (recursively); numpy arrays
    and scalars become plain lists and numbers."""
    if isinstance(obj, (np.ndarray, np.generic)):
        obj = obj.tolist()
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj
