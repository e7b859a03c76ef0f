"""One JSON cleaner for every response: NaN/±Inf → null, numpy/decimal/datetime → JSON types."""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
import uuid
from typing import Any

import numpy as np
from fastapi.responses import JSONResponse


def clean_json(value: Any) -> Any:
    """Return ``value`` with every float made JSON-safe and every scalar made a Python type."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): clean_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [clean_json(v) for v in value]
    if isinstance(value, np.generic):
        return clean_json(value.item())
    if isinstance(value, np.ndarray):
        return [clean_json(v) for v in value.tolist()]
    if isinstance(value, decimal.Decimal):
        return clean_json(float(value))
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, (dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value).decode("utf-8", errors="replace")
    return str(value)


class CleanJSONResponse(JSONResponse):
    """JSONResponse that runs every body through :func:`clean_json`."""

    def render(self, content: Any) -> bytes:
        """Serialise strictly (no NaN) after cleaning."""
        return json.dumps(clean_json(content), ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode(
            "utf-8"
        )
