"""Small conversions shared by the validation modules."""
from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from threadx.shapes import json_number


def to_python(value: Any) -> Any:
    """A numpy scalar as the Python scalar (other values unchanged)."""
    return value.item() if isinstance(value, np.generic) else value


def json_safe(value: Any) -> Any:
    """Nested dicts/lists with numpy values, timestamps and non-finite floats made JSON-safe
    (NaN -> None, +-inf -> "inf" / "-inf", as in the backtest's JSON)."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return json_number(to_python(value))
