"""One JSON cleaner for every response: NaN/±Inf → null, numpy/decimal/datetime → JSON types.

Rules (:func:`clean_json`): NaN, +Inf, −Inf → ``null``; numpy scalars/arrays → Python numbers/lists;
``Decimal`` → float; ``timedelta`` (DuckDB INTERVAL) → seconds as a float; ``datetime`` / ``date`` /
``time`` → ISO-8601 text, a zero UTC offset written ``Z``; the ±infinity sentinels DuckDB's client
returns for infinite TIMESTAMP / TIMESTAMPTZ / DATE values → ``"infinity"`` / ``"-infinity"``;
``bytes`` (BLOB / bytea) → text decoded as UTF-8 with ``errors="replace"``; UUID and anything
else → ``str``. Response models apply the same rules to their row lists through
``app.models.common.Row`` (:func:`clean_row`).
"""

from __future__ import annotations

import datetime as dt
import decimal
import json
import math
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any, overload

import numpy as np
import orjson
from fastapi.responses import JSONResponse, Response

_PLAIN = frozenset({str, int, bool, type(None)})

# DuckDB's Python client returns these for 'infinity' / '-infinity' TIMESTAMP, TIMESTAMP_S/MS/NS
# and TIMESTAMPTZ values (naive, whatever the session zone) and date.max / date.min for DATE
# infinities; asyncpg returns the same values (UTC-aware for timestamptz). A finite value equal to
# one of them (9999-12-31 23:59:59.999999, 0001-01-01 00:00, DATE 9999-12-31 or 0001-01-01) cannot
# be told apart from the infinity by the client, so it is served as the infinity too: the same text
# the store's metadata (a CAST to VARCHAR) shows for the infinite values.
_DATETIME_MAX = dt.datetime.max
_DATETIME_MIN = dt.datetime.min
_DATE_MAX = dt.date.max
_DATE_MIN = dt.date.min
_SENTINEL_YEARS = (1, 9999)


def iso_datetime(value: dt.datetime) -> str:
    """ISO-8601 text of a datetime: ±infinity sentinels as ``"infinity"`` / ``"-infinity"``, UTC as ``Z``."""
    if value.year in _SENTINEL_YEARS:
        wall = value.replace(tzinfo=None)
        if wall == _DATETIME_MAX:
            return "infinity"
        if wall == _DATETIME_MIN:
            return "-infinity"
    offset = value.utcoffset()
    if offset is not None and not offset:
        return value.replace(tzinfo=None).isoformat() + "Z"
    return value.isoformat()


def iso_date(value: dt.date) -> str:
    """ISO-8601 text of a date: DuckDB's ±infinity DATE sentinels as ``"infinity"`` / ``"-infinity"``."""
    if value == _DATE_MAX:
        return "infinity"
    return "-infinity" if value == _DATE_MIN else value.isoformat()


def _decimal(value: decimal.Decimal) -> float | None:
    if value.is_nan():
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _bytes(value: bytes | bytearray | memoryview) -> str:
    return bytes(value).decode("utf-8", errors="replace")


# Cell types pydantic's JSON serializer already writes by the clean_json rules: NaN/±Inf floats as
# null (its default; CleanJSONResponse nulls them on FastAPI's dump_python path); a finite datetime
# (not a sentinel year) as ISO-8601 with ``Z`` for UTC, the text iso_datetime gives.
_PYDANTIC_NATIVE = frozenset({str, int, bool, type(None), float})
# Exact-type converters for the cells queries return most (skips clean_json's isinstance chain).
_CELL: dict[type, Callable[[Any], Any]] = {
    dt.datetime: iso_datetime,
    dt.date: iso_date,
    decimal.Decimal: _decimal,
    dt.timedelta: dt.timedelta.total_seconds,
    bytes: _bytes,
    uuid.UUID: str,
}


def clean_row(row: dict[str, Any]) -> dict[str, Any]:
    """A result row (column → value) ready for pydantic's JSON serializer (the ``Row`` type's serializer).

    Values pydantic would write differently from :func:`clean_json` (Decimal as ``"0.8125"``,
    timedelta as ``"PT1.5S"``, bytes that are not UTF-8 as an error, the ±infinity datetimes as
    dates, numpy scalars, nested lists/dicts holding any of these) are replaced by their
    ``clean_json`` value; the rest are left to pydantic's compiled serializer. The row is copied
    only when a value changes: about 1 µs per 17-column row with a timestamp.
    """
    out: dict[str, Any] | None = None
    for key, value in row.items():
        kind = type(value)
        if kind in _PYDANTIC_NATIVE or (kind is dt.datetime and value.year not in _SENTINEL_YEARS):
            continue
        if out is None:
            out = dict(row)
        convert = _CELL.get(kind)
        out[key] = convert(value) if convert is not None else clean_json(value)
    return row if out is None else out


def clean_json(value: Any) -> Any:
    """Return ``value`` with every float made JSON-safe and every scalar made a JSON-native Python type.

    Never raises for a value a query can return: bytes that are not valid UTF-8 are decoded with
    ``errors="replace"`` (each invalid byte becomes U+FFFD), chosen over base64 so that text held
    in BLOB / bytea columns stays readable and a string cell never needs a second decoding rule.
    """
    # Exact-type fast paths first: responses are mostly plain dicts, lists, str, int and float.
    kind = type(value)
    if kind in _PLAIN:
        return value
    if kind is float:
        return value if math.isfinite(value) else None
    if kind is dict:
        return {k if type(k) is str else str(k): clean_json(v) for k, v in value.items()}
    if kind is list:
        return [
            v if type(v) in _PLAIN else (v if math.isfinite(v) else None) if type(v) is float else clean_json(v)
            for v in value
        ]
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
        return _decimal(value)
    if isinstance(value, dt.datetime):
        return iso_datetime(value)
    if isinstance(value, dt.date):
        return iso_date(value)
    if isinstance(value, dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return _bytes(value)
    return str(value)


# Datetimes are passed through to ``clean_json`` (orjson would write the ±infinity sentinels as dates).
_ORJSON_OPTIONS = orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_NON_STR_KEYS | orjson.OPT_PASSTHROUGH_DATETIME


def dumps_clean(content: Any) -> bytes:
    """Compact UTF-8 JSON with the :func:`clean_json` rules (NaN/±Inf → null, numpy → numbers).

    orjson applies those rules natively (~10 × faster on number-heavy bodies); types it does not
    know, and datetimes, go through ``clean_json``. Anything it refuses (integers beyond 64 bits)
    takes the standard-library path over the cleaned value.
    """
    try:
        return orjson.dumps(content, default=clean_json, option=_ORJSON_OPTIONS)
    except (orjson.JSONEncodeError, TypeError):
        cleaned = clean_json(content)
    try:
        return json.dumps(cleaned, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate (from JSON text such as "\ud800") is written escaped
        return json.dumps(cleaned, allow_nan=False, separators=(",", ":")).encode("ascii")


class CleanJSONResponse(JSONResponse):
    """JSONResponse whose body follows the :func:`clean_json` rules."""

    def render(self, content: Any) -> bytes:
        """Serialise strictly (no NaN)."""
        return dumps_clean(content)


class RenderedRows(Sequence[dict[str, Any]]):
    """``size`` result rows already rendered as JSON by the :func:`clean_json` rules.

    Held as ``parts``: each the comma-separated JSON objects of a batch of rows (no brackets), so a
    response joins them into its body with one copy and large row lists never exist as Python
    objects. Python callers (tests, services) may still index it: the rows are then parsed once
    and cached.
    """

    __slots__ = ("_parsed", "parts", "size")

    def __init__(self, parts: list[bytes], size: int) -> None:
        self.parts = parts
        self.size = size
        self._parsed: list[dict[str, Any]] | None = None

    @classmethod
    def of(cls, rows: Sequence[dict[str, Any]]) -> RenderedRows:
        """Render Python rows (the path for cells the store does not render itself).

        Cleaned first, so nested keys are written as ``clean_json`` (``str(key)``) writes them.
        """
        return cls([dumps_clean(clean_json(list(rows)))[1:-1]] if rows else [], len(rows))

    def array_pieces(self) -> list[bytes]:
        """The pieces of the JSON array (brackets and separators included), to be joined once."""
        pieces = [b"["]
        for i, part in enumerate(self.parts):
            if i:
                pieces.append(b",")
            pieces.append(part)
        pieces.append(b"]")
        return pieces

    def _rows(self) -> list[dict[str, Any]]:
        if self._parsed is None:
            self._parsed = json.loads(b"".join(self.array_pieces()))
        return self._parsed

    def __len__(self) -> int:
        return self.size

    @overload
    def __getitem__(self, index: int) -> dict[str, Any]: ...
    @overload
    def __getitem__(self, index: slice) -> list[dict[str, Any]]: ...
    def __getitem__(self, index: int | slice) -> dict[str, Any] | list[dict[str, Any]]:
        return self._rows()[index]

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self._rows())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, RenderedRows):
            return self._rows() == other._rows()
        return isinstance(other, list) and self._rows() == other

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"RenderedRows(size={self.size}, bytes={sum(map(len, self.parts))})"


class RawJSONResponse(Response):
    """A response whose body is JSON bytes rendered beforehand (see ``RowsPayload.render_json``)."""

    media_type = "application/json"


def decode_json_cell(value: Any) -> Any:
    """JSON text as the value it holds (json/jsonb cells, stored signals); lists element-wise.

    Text that is not JSON, or nested deeper than Python's decoder allows, stays text.
    """
    if isinstance(value, list):
        return [decode_json_cell(v) for v in value]
    if isinstance(value, str):
        try:
            return json.loads(value)
        except (ValueError, RecursionError):
            return value
    return value
