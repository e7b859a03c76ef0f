"""SQL building blocks for statistics that stay finite and never overflow into a 500.

Non-finite values (NaN, ±inf — DuckDB's CSV reader stores the text ``nan``/``inf`` as such) are
treated as missing, like NULL. DuckDB's ``stddev_samp``/``corr`` raise an out-of-range error when
a running sum of squares overflows (|x| ≳ 1e154); callers then retry with every value divided by
a per-metric power of two (:func:`scaled_values_sql`), which is exact for normal doubles, and
multiply the mean and the standard deviation back (:func:`mean_sql`, :func:`std_sql`). A mean
whose sum overflows (DuckDB returns inf, no error) is recomputed the same way, or rescaled in SQL
(:func:`avg_sql`, through :func:`retry_mean`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import duckdb

from app.errors import Invalid

T = TypeVar("T")

SCALE = "__axis_scale"
SCALED = "__axis_vs"


def finite_double(expr: str, *, try_cast: bool = False) -> str:
    """``expr`` as DOUBLE, NULL unless finite."""
    cast = f"{'TRY_CAST' if try_cast else 'CAST'}({expr} AS DOUBLE)"
    return f"(CASE WHEN isfinite({cast}) THEN {cast} END)"


def pow2_scale(max_abs: str) -> str:
    """Smallest power of two ≥ ``max_abs``, at most 2^1023 (1 when it is ≤ 1 or NULL)."""
    return f"(CASE WHEN {max_abs} > 1 THEN pow(2, least(ceil(log2({max_abs})), 1023)) ELSE 1.0 END)"


def scaled_values_sql(values: str, value: str, partition: str) -> str:
    """Add ``__axis_scale`` (per ``partition``) and ``__axis_vs`` = ``value`` / scale to ``values``."""
    scale = pow2_scale(f"max(abs({value})) OVER (PARTITION BY {partition})")
    return f"SELECT *, {value} / {SCALE} AS {SCALED} FROM (SELECT *, {scale} AS {SCALE} FROM ({values}))"


TOP = "pow(2.0, 1023)"  # SQL: the scale of an overflow-safe mean


def avg_sql(value: str) -> str:
    """``avg(value)`` that does not overflow.

    DuckDB's ``avg`` of doubles returns ±inf when the running sum leaves the double range (values
    near 1.8e308); then the mean is taken over ``value`` / 2^1023 (an exact scaling for such
    values) and scaled back. Other means are ``avg``'s own.
    """
    return f"coalesce(CASE WHEN isfinite(avg({value})) THEN avg({value}) END, avg({value} / {TOP}) * {TOP})"


def plain_avg_sql(value: str) -> str:
    """DuckDB's ``avg``: the first try of :func:`retry_mean` (±inf when the sum overflows)."""
    return f"avg({value})"


def mean_sql(value: str, scaled: bool) -> str:
    """Aggregate mean of ``value`` (from the scaled column in the retry)."""
    return f"avg({SCALED}) * any_value({SCALE})" if scaled else plain_avg_sql(value)


def std_sql(value: str, scaled: bool) -> str:
    """Aggregate sample standard deviation of ``value`` (from the scaled column in the retry)."""
    return f"stddev_samp({SCALED}) * any_value({SCALE})" if scaled else f"stddev_samp({value})"


def overflowed(result: Any) -> bool:
    """True when a result (rows, tuples, lists, dicts of numbers) holds ±inf.

    Statistics here only see finite values, so an infinite result means a sum overflowed.
    """
    if isinstance(result, float):
        return math.isinf(result)
    if isinstance(result, (list, tuple)):
        return any(overflowed(v) for v in result)
    if isinstance(result, dict):
        return any(overflowed(v) for v in result.values())
    return False


def retry_scaled(run: Callable[[bool], T]) -> T:
    """``run(False)``; ``run(True)`` on DuckDB's out-of-range error (overflowing sums of squares) or
    when the result holds ±inf (an overflowing mean: DuckDB's ``avg`` returns inf without an error)."""
    try:
        result = run(False)
    except duckdb.OutOfRangeException:
        return run(True)
    return run(True) if overflowed(result) else result


def retry_mean(run: Callable[[Callable[[str], str]], T]) -> T:
    """``run(plain_avg_sql)``; ``run(avg_sql)`` when a mean overflowed (queries without a scaled form).

    The overflow-safe mean costs a second aggregate (+50 % on a bare ``avg``), so it only runs
    when needed.
    """
    result = run(plain_avg_sql)
    return run(avg_sql) if overflowed(result) else result


def pearson(value: Any, same: bool) -> float | None:
    """DuckDB's r for JSON: NaN → None, clamped to [−1, 1]; a defined r of a metric with itself is exactly 1."""
    if value is None or value != value:
        return None
    return 1.0 if same else min(1.0, max(-1.0, float(value)))


# Widest correlation matrix served: its pairs grow with the square of the metric count (1,000
# metrics are 500,500 corr() aggregates in one query: DuckDB ran out of its 19 GB memory limit).
MAX_CORRELATION_METRICS = 100


def check_correlation_size(count: int) -> None:
    """400 when a correlation matrix would have more than :data:`MAX_CORRELATION_METRICS` metrics."""
    if count > MAX_CORRELATION_METRICS:
        raise Invalid(
            f"A correlation matrix takes at most {MAX_CORRELATION_METRICS} metrics; this request has {count}. "
            "Name the metrics to correlate in 'metrics'"
        )


def pair_correlations(
    cur: duckdb.DuckDBPyConnection,
    source: str,
    columns: Sequence[str],
    pairs: Sequence[tuple[int, int]],
    params: Sequence[Any] = (),
) -> tuple[Any, ...]:
    """DuckDB ``corr`` of each (i, j) column pair of the relation ``source`` (pairwise-complete rows).

    When a sum of squares overflows, the query is rerun with each column divided by its largest
    magnitude (a power of two); r is scale-invariant, so the answer is the same.
    """
    aggs = ", ".join(f"corr({columns[i]}, {columns[j]})" for i, j in pairs)
    scaled = ", ".join(f"{c} / {pow2_scale(f'max(abs({c})) OVER ()')} AS {c}" for c in columns)

    def _run(rescale: bool) -> tuple[Any, ...]:
        src = f"(SELECT {scaled} FROM {source})" if rescale else source
        row = cur.execute(f"SELECT {aggs} FROM {src}", list(params)).fetchone()
        assert row is not None
        return tuple(row)

    return retry_scaled(_run)
