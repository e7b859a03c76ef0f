"""Database browser schemas (spec §6): connection handles, browsing, safe queries, imports."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator

from app.models.common import Row, RowsPayload, SuccessResponse

SslModeIn = Literal["disable", "prefer", "require", "verify-ca", "verify-full"]
StoreKey = Literal["data", "eval", "monitoring", "human_signals"]


class ConnectRequest(BaseModel):
    """``POST /connect`` body. A password of ``********`` means "use the configured password"."""

    host: str = Field(min_length=1)
    port: int = Field(default=5432, ge=1, le=65535)
    database: str = Field(min_length=1)
    username: str = Field(min_length=1)
    password: SecretStr
    ssl_mode: SslModeIn = "require"
    db_type: Literal["postgres"] = "postgres"

    @field_validator("host", "database", "username")
    @classmethod
    def _not_blank(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be blank")
        return v.strip()


class ConnectResponse(SuccessResponse):
    """``POST /connect``: the handle (valid for the configured TTL) and the server version."""

    handle: str
    message: str
    version: str


class FilterOut(BaseModel):
    """A configured wizard filter."""

    column: str
    label: str | None = None


class DatabaseDefaults(SuccessResponse):
    """``GET /defaults``: configured connection fields without the password or URL."""

    url: None = None
    host: str | None
    port: int
    database: str | None
    username: str | None
    has_password: bool
    ssl_mode: str
    table: str | None = None
    has_defaults: bool
    tables: list[str]
    filters: list[FilterOut]
    column_rename_map: dict[str, str]
    query: str | None
    query_timeout: int
    row_limit: int


class TableRef(BaseModel):
    """A table: ``{schema_name, name}`` (a bare string is read as the name in ``public``)."""

    schema_name: str = "public"
    name: str

    @classmethod
    def _coerce(cls, v: Any) -> Any:
        if isinstance(v, str):
            return {"name": v}
        if isinstance(v, dict) and "schema_name" not in v and "schema" in v:
            return {**v, "schema_name": v["schema"]}
        return v


class TableInfo(BaseModel):
    """One table or view with the planner's row estimate."""

    schema_name: str
    name: str
    row_count_estimate: int


class TablesResponse(SuccessResponse):
    """``GET /{handle}/tables``."""

    tables: list[TableInfo]


class ColumnInfo(BaseModel):
    """One column of a table."""

    name: str
    data_type: str
    nullable: bool


class SchemaResponse(SuccessResponse):
    """``GET /{handle}/schema``: columns in ordinal order and up to five sample values each."""

    columns: list[ColumnInfo]
    sample_values: dict[str, list[Any]]


def _table_ref(v: Any) -> Any:
    return TableRef._coerce(v)


class DistinctValuesRequest(BaseModel):
    """``POST /{handle}/distinct-values``."""

    table: TableRef
    column: str
    limit: int = Field(default=100, ge=1, le=1000)

    _t = field_validator("table", mode="before")(_table_ref)


class DistinctValuesResponse(SuccessResponse):
    """Distinct non-null values as text, sorted."""

    values: list[str]


class ColumnMapping(BaseModel):
    """``source`` column selected as ``target``."""

    source: str
    target: str


class ColumnFilter(BaseModel):
    """Text equality filter on a column."""

    column: str
    value: str | int | float | bool | None = None


class PreviewRequest(BaseModel):
    """``POST /{handle}/preview``."""

    table: TableRef
    mappings: list[ColumnMapping] | None = None
    filters: list[ColumnFilter] | None = None
    limit: int = Field(default=10, ge=1, le=100)

    _t = field_validator("table", mode="before")(_table_ref)


class RowsResponse(SuccessResponse):
    """Rows of a preview or query."""

    data: list[Row]
    row_count: int


class QueryRequest(BaseModel):
    """``POST /{handle}/query``: one read-only SELECT/WITH statement."""

    query: str
    limit: int = Field(default=10, ge=1, le=100)


class QueryImportRequest(BaseModel):
    """``POST /{handle}/query-import``."""

    handle: str
    query: str
    limit: int = Field(default=10000, ge=1)
    dedupe_on_id: bool = True


class TableImportRequest(BaseModel):
    """``POST /{handle}/import``."""

    handle: str
    table: TableRef
    mappings: list[ColumnMapping] | None = None
    filters: list[ColumnFilter] | None = None
    limit: int = Field(default=10000, ge=1)
    dedupe_on_id: bool = True

    _t = field_validator("table", mode="before")(_table_ref)


class DatabaseImportResponse(RowsPayload):
    """The Ref UploadResponse shape plus ``dataset_id`` (None when nothing was imported)."""

    format: str
    row_count: int
    columns: list[str]
    preview: list[Row] = Field(default_factory=list)
    message: str
    data: list[Row]
    dataset_id: str | None = None
    data_truncated: bool = False
    kind: str | None = None
    duplicates_removed: int = 0


class CloseResponse(SuccessResponse):
    """``DELETE /{handle}`` (always 200)."""

    message: str


class HandleStatsResponse(SuccessResponse):
    """``GET /stats``."""

    active_handles: int
    max_handles: int
