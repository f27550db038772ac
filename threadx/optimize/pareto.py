"""Pareto front of two objectives (both maximised)."""
from __future__ import annotations

import numpy as np


def pareto_mask(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """True for points no other point beats on both x and y (ties kept), O(n log n)."""
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    order = np.lexsort((-y, -x))  # by x descending, then y descending
    mask = np.zeros(len(x), dtype=bool)
    best_y = -np.inf
    best_x = np.inf
    for i in order:
        if y[i] > best_y:
            mask[i] = True
            best_y, best_x = y[i], x[i]
        elif y[i] == best_y and x[i] == best_x:  # an exact duplicate of a front point
            mask[i] = True
    return mask
