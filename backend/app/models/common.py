"""Shapes shared by several routers."""

from __future__ import annotations

from typing import Annotated, Any, Self

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer, PrivateAttr

from app.serialization import RenderedRows, clean_row

# One result row (column → value). In JSON mode it is serialised through the app's JSON cleaner, so
# DuckDB / PostgreSQL values (Decimal, INTERVAL, BLOB, ±infinity timestamps, NaN) follow the same
# rules in every response model instead of pydantic's defaults (Decimal → "0.8125", timedelta →
# "PT1.5S", invalid UTF-8 bytes → UnicodeDecodeError). Python-mode dumps keep the raw values.
Row = Annotated[dict[str, Any], PlainSerializer(clean_row, return_type=dict[str, Any], when_used="json")]

# ``config_error`` of the db-config endpoints.
CONFIG_ERROR_DOC = (
    "Why the YAML section or env values were rejected (file, key, problem; never a value); null when accepted"
)

# Highest accepted ``page`` of paginated endpoints: page * page_size must stay inside DuckDB's BIGINT OFFSET.
MAX_PAGE = 1_000_000_000


class SuccessResponse(BaseModel):
    """Base of every flat success body."""

    model_config = ConfigDict(extra="forbid")

    success: bool = True


class RowsPayload(SuccessResponse):
    """A success body whose ``data`` rows may arrive pre-rendered as JSON (:class:`RenderedRows`).

    Build it with ``data=[]`` and :meth:`with_rows`; routers return
    ``RawJSONResponse(model.render_json())``, which splices the rendered rows in as ``data``.
    """

    data: list[Row]
    _rendered: RenderedRows | None = PrivateAttr(default=None)

    def with_rows(self, rows: RenderedRows) -> Self:
        """Attach the rendered rows that replace ``data`` in the JSON body."""
        self._rendered = rows
        return self

    def render_json(self) -> bytes:
        """The JSON body (as FastAPI would write it), ``data`` taken from the rendered rows."""
        if self._rendered is None:
            return self.__pydantic_serializer__.to_json(self, by_alias=True)
        head = self.__pydantic_serializer__.to_json(self, by_alias=True, exclude={"data"})
        return b"".join([head[:-1], b',"data":', *self._rendered.array_pieces(), b"}"])


class MessageResponse(SuccessResponse):
    """``{success, message}``."""

    message: str


class HealthComponents(BaseModel):
    """Per-component health."""

    api: str
    data_processor: str
    duckdb: str
    graph: str
    llm: str


class HealthResponse(BaseModel):
    """``GET /health``."""

    status: str
    components: HealthComponents
    datasets: int
    sync: dict[str, str] = Field(default_factory=dict)  # synced table → not_synced | syncing | ready | error


class RootResponse(BaseModel):
    """``GET /``."""

    status: str
    service: str
    version: str
