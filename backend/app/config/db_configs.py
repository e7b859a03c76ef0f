"""Database import/sync configs (spec §2.3) and the DuckDB store config (§2.4)."""

from __future__ import annotations

from typing import Any, Literal, Self
from urllib.parse import parse_qs, unquote, urlsplit

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, field_validator, model_validator

SslMode = Literal["disable", "prefer", "require", "verify-ca", "verify-full"]
Severity = Literal["warning", "error"]


class FilterSpec(BaseModel):
    """A wizard filter dropdown."""

    column: str
    label: str | None = None


class DBImportConfig(BaseModel):
    """Fields shared by the eval, monitoring and human-signals database configs."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    url: SecretStr | None = None
    host: str | None = None
    port: int = Field(default=5432, ge=1, le=65535)
    database: str | None = None
    username: str | None = None
    password: SecretStr | None = None
    ssl_mode: SslMode = "prefer"
    db_type: Literal["postgres"] = "postgres"
    dataset_query: str | None = None
    results_query: str | None = None
    query_timeout: int = Field(default=60, ge=1)
    sync_timeout: int = Field(default=600, ge=1)
    row_limit: int = Field(default=10000, ge=1)
    column_rename_map: dict[str, str] = Field(default_factory=dict, alias="columns")
    partition_column: str | None = None
    refresh_interval_minutes: int = Field(default=0, ge=0)
    incremental_column: str | None = None
    tables: list[str] = Field(default_factory=list)
    filters: list[FilterSpec] = Field(default_factory=list)
    enabled: bool = False
    auto_load: bool = False

    # Why the configured values were rejected at load (the defaults then apply); never holds a value.
    _config_error: str | None = PrivateAttr(default=None)

    @classmethod
    def rejected(cls, reason: str) -> Self:
        """The defaults, remembering why the configured values were rejected (see ``config_error``)."""
        cfg = cls()
        cfg._config_error = f"The database settings are invalid and were ignored ({reason}). Fix them and restart."
        return cfg

    @property
    def config_error(self) -> str | None:
        """The message for users when the configured values were rejected at load, else None."""
        return self._config_error

    @field_validator("query_timeout")
    @classmethod
    def _cap_timeout(cls, v: int) -> int:
        return min(v, 120)

    @field_validator("row_limit")
    @classmethod
    def _cap_rows(cls, v: int) -> int:
        return min(v, 50000)

    @field_validator(
        "url",
        "password",
        "host",
        "database",
        "username",
        "table",
        "dataset_query",
        "results_query",
        mode="before",
        check_fields=False,  # ``table``: the monitoring and human-signals sections only
    )
    @classmethod
    def _blank_is_none(cls, v: Any) -> Any:
        if isinstance(v, SecretStr) and not v.get_secret_value().strip():
            return None
        if isinstance(v, str) and not v.strip():
            return None
        return v

    @field_validator("url")
    @classmethod
    def _valid_dsn(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None:
            parse_dsn(v.get_secret_value())  # ValueError names the problem, never the value
        return v

    @field_validator("column_rename_map", mode="before")
    @classmethod
    def _null_map(cls, v: Any) -> Any:
        return {} if v is None else v

    @property
    def is_configured(self) -> bool:
        """A URL, or a host and a database name, is set."""
        return self.url is not None or bool(self.host and self.database)

    @property
    def has_query(self) -> bool:
        """Both split queries are non-blank."""
        return bool((self.dataset_query or "").strip() and (self.results_query or "").strip())

    @property
    def should_auto_load(self) -> bool:
        """Load at startup: auto_load and configured."""
        return self.auto_load and self.is_configured

    def connection_params(self) -> ConnectionParams:
        """Host/port/database/user/password/ssl from the URL or the separate fields."""
        if self.url is not None:
            parsed = parse_dsn(self.url.get_secret_value())
            password = parsed.password or (self.password.get_secret_value() if self.password else None)
            return ConnectionParams(
                host=parsed.host or self.host or "localhost",
                port=parsed.port or self.port,
                database=parsed.database or self.database or "",
                username=parsed.username or self.username or "",
                password=SecretStr(password) if password else None,
                ssl_mode=parsed.ssl_mode or self.ssl_mode,
            )
        return ConnectionParams(
            host=self.host or "localhost",
            port=self.port,
            database=self.database or "",
            username=self.username or "",
            password=self.password,
            ssl_mode=self.ssl_mode,
        )


class ConnectionParams(BaseModel):
    """Resolved connection parameters for one PostgreSQL server."""

    host: str
    port: int = 5432
    database: str
    username: str
    password: SecretStr | None = None
    ssl_mode: SslMode = "prefer"


class ParsedDsn(BaseModel):
    """Pieces of a postgres:// URL."""

    host: str | None = None
    port: int | None = None
    database: str | None = None
    username: str | None = None
    password: str | None = None
    ssl_mode: SslMode | None = None


# From weakest to strongest (a saved password never travels with a weaker mode than its configured one).
SSL_MODES: tuple[str, ...] = ("disable", "prefer", "require", "verify-ca", "verify-full")
DSN_SCHEMES = ("postgresql", "postgres")
_BAD_PORT = "the port in the URL is not a number from 1 to 65535"


def parse_dsn(url: str) -> ParsedDsn:
    """Split a ``postgresql://user:pw@host:port/db?sslmode=`` URL into its pieces.

    Raises ValueError for a URL that cannot be parsed, a scheme other than postgresql/postgres,
    a port that is not a number from 1 to 65535, or an unknown ``sslmode``. The message names
    the problem and never repeats any part of the URL (it may hold a password).
    """
    try:
        parts = urlsplit(url.strip())
    except ValueError:
        raise ValueError("the URL cannot be parsed") from None
    if parts.scheme.lower() not in DSN_SCHEMES:
        raise ValueError("the URL must start with postgresql:// or postgres:// (only PostgreSQL is supported)")
    try:
        port = parts.port
    except ValueError:
        raise ValueError(_BAD_PORT) from None
    if port == 0:
        raise ValueError(_BAD_PORT)
    ssl_values = parse_qs(parts.query, keep_blank_values=True).get("sslmode", [])
    if any(v not in SSL_MODES for v in ssl_values):
        raise ValueError(f"sslmode in the URL must be one of {', '.join(SSL_MODES)}")
    return ParsedDsn(
        host=parts.hostname,
        port=port,
        database=unquote(parts.path.lstrip("/")) or None,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        ssl_mode=ssl_values[-1] if ssl_values else None,  # type: ignore[arg-type]  # checked above
    )


class EvalDBConfig(DBImportConfig):
    """``eval_db``: evaluation data source."""

    eval_runner_enabled: bool = True


class ThresholdPair(BaseModel):
    """good/pass thresholds."""

    good: float = 0.7
    pass_: float = Field(default=0.5, alias="pass")

    model_config = ConfigDict(populate_by_name=True, extra="ignore")


class MonitoringThresholds(BaseModel):
    """Default and per-source thresholds; per-source values inherit missing keys."""

    default: ThresholdPair = Field(default_factory=ThresholdPair)
    per_source: dict[str, ThresholdPair] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _inherit(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        default = data.get("default") or {}
        per_source = data.get("per_source") or {}
        if isinstance(default, dict) and isinstance(per_source, dict):
            merged = {}
            for source, values in per_source.items():
                values = values if isinstance(values, dict) else {}
                merged[source] = {
                    "good": values.get("good", default.get("good", 0.7)),
                    "pass": values.get("pass", default.get("pass", 0.5)),
                }
            data = {**data, "per_source": merged}
        return data

    def pass_threshold(self, source: str | None = None) -> float:
        """The configured pass value, per source when one is named and configured."""
        if source is not None and source in self.per_source:
            return self.per_source[source].pass_
        return self.default.pass_


def _severity(default: Severity) -> Any:
    def check(v: Any) -> Any:
        return v if v in ("warning", "error") else default

    return check


class ZScoreConfig(BaseModel):
    """z-score anomaly rule."""

    enabled: bool = True
    threshold: float = 2.0
    severity: Severity = "warning"
    lookback_window: int = 20
    metrics: list[str] = Field(default_factory=list)

    _sev = field_validator("severity", mode="before")(_severity("warning"))


class MovingAverageConfig(BaseModel):
    """Moving-average anomaly rule."""

    enabled: bool = True
    window_size: int = 5
    deviation_threshold: float = 0.15
    severity: Severity = "warning"
    metrics: list[str] = Field(default_factory=list)

    _sev = field_validator("severity", mode="before")(_severity("warning"))

    @field_validator("window_size")
    @classmethod
    def _floor(cls, v: int) -> int:
        return max(v, 2)


class RateOfChangeConfig(BaseModel):
    """Rate-of-change anomaly rule."""

    enabled: bool = True
    threshold: float = 0.3
    severity: Severity = "error"
    metrics: list[str] = Field(default_factory=list)

    _sev = field_validator("severity", mode="before")(_severity("error"))


class AnomalyDetectionConfig(BaseModel):
    """Anomaly detection settings served to the client."""

    enabled: bool = False
    min_data_points: int = 5
    z_score: ZScoreConfig = Field(default_factory=ZScoreConfig)
    moving_average: MovingAverageConfig = Field(default_factory=MovingAverageConfig)
    rate_of_change: RateOfChangeConfig = Field(default_factory=RateOfChangeConfig)

    @field_validator("min_data_points")
    @classmethod
    def _floor(cls, v: int) -> int:
        return max(v, 3)


class MonitoringDBConfig(DBImportConfig):
    """``monitoring_db``: production monitoring source."""

    auto_connect: bool = False
    schema_name: str = Field(default="public", alias="schema")
    table: str | None = None
    visible_metrics: list[str] = Field(default_factory=list)
    thresholds: MonitoringThresholds = Field(default_factory=MonitoringThresholds)
    anomaly_detection: AnomalyDetectionConfig = Field(default_factory=AnomalyDetectionConfig)

    @property
    def should_auto_load(self) -> bool:
        """Load at startup: (auto_load or auto_connect) and configured."""
        return (self.auto_load or self.auto_connect) and self.is_configured


class HumanSignalsDBConfig(DBImportConfig):
    """``human_signals_db``: human-in-the-loop signals source."""

    auto_connect: bool = False
    schema_name: str = Field(default="public", alias="schema")
    table: str | None = None
    visible_metrics: list[str] = Field(default_factory=list)
    visible_kpis: list[str] = Field(default_factory=list)

    @property
    def should_auto_load(self) -> bool:
        """Load at startup: (auto_load or auto_connect) and configured."""
        return (self.auto_load or self.auto_connect) and self.is_configured


class DuckDBConfig(BaseModel):
    """``duckdb``: the embedded analytics store."""

    model_config = ConfigDict(extra="ignore")

    enabled: bool = True
    path: str = "data/local_store.duckdb"
    sync_mode: Literal["startup", "manual"] = "startup"
    sync_chunk_size: int = Field(default=10000, ge=100)
    max_sync_rows: int = Field(default=2_000_000, ge=1)
    query_concurrency: int = Field(default=8, ge=1, le=64)
    sync_workers: int = Field(default=1, ge=1, le=16)
    # Sync read path: DuckDB's postgres extension (measured fastest), else the chunked asyncpg cursor.
    sync_reader: Literal["auto", "postgres_extension", "asyncpg"] = "auto"
    memory_limit: str | None = None
    threads: int | None = Field(default=None, ge=1)
    # DuckDB threads while a CSV upload is parsed into the store (database-wide for those seconds):
    # one thread parses a 168 MB file with +88 MB instead of +227 MB; null = leave the pool alone.
    ingest_threads: int | None = Field(default=1, ge=1)
    # /api/store/data: a cursor page starting within this many rows is read by OFFSET (DuckDB's top-N
    # prunes better there); deeper pages use the keyset condition (store_paging.read_page).
    page_offset_rows: int = Field(default=5000, ge=0, le=1_000_000)

    @model_validator(mode="before")
    @classmethod
    def _legacy_auto_sync(cls, data: Any) -> Any:
        if isinstance(data, dict) and "sync_mode" not in data and "auto_sync_on_startup" in data:
            data = {**data, "sync_mode": "startup" if data["auto_sync_on_startup"] else "manual"}
        return data
