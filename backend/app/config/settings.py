"""Application settings: environment, ``backend/.env`` and the YAML files of the custom dir."""

from __future__ import annotations

import logging
import os
from contextvars import ContextVar
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from dotenv import dotenv_values
from pydantic import BaseModel, Field, PrivateAttr, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from app.config.db_configs import (
    DBImportConfig,
    DuckDBConfig,
    EvalDBConfig,
    HumanSignalsDBConfig,
    MonitoringDBConfig,
    parse_dsn,
)
from app.config.theme import THEME_ENV_FIELDS, ThemeConfig, build_theme
from app.config.yaml_loader import describe_validation_error, read_yaml_section, read_yaml_section_checked

logger = logging.getLogger(__name__)

BACKEND_DIR = Path(__file__).resolve().parents[2]
ROOT_DIR = BACKEND_DIR.parent

M = TypeVar("M", bound=BaseModel)
DB = TypeVar("DB", bound=DBImportConfig)

YAML_FILES = {
    "eval_db": "eval_db.yaml",
    "monitoring_db": "monitoring_db.yaml",
    "human_signals_db": "human_signals_db.yaml",
    "duckdb": "duckdb.yaml",
    "theme": "theme.yaml",
}


# The .env values read for the Settings being built (pydantic-settings reads them only for its fields).
_DOTENV: ContextVar[dict[str, str] | None] = ContextVar("axis_dotenv", default=None)


def read_dotenv(env_file: Any) -> dict[str, str]:
    """KEY=value pairs of the .env file(s) Settings reads (none: {})."""
    files = env_file if isinstance(env_file, (list, tuple)) else [env_file]
    out: dict[str, str] = {}
    for f in files:
        if f and Path(f).is_file():
            out.update({k: v for k, v in dotenv_values(Path(f)).items() if v is not None})
    return out


def _origin_of(url: str) -> str:
    """``scheme://host[:port]`` of a frontend URL (its path dropped); other text trimmed, as given."""
    parts = urlsplit(url.strip())
    if parts.scheme and parts.netloc:
        return f"{parts.scheme}://{parts.netloc}"
    return url.strip().rstrip("/")


class Settings(BaseSettings):
    """Everything configurable. Built once per app and injected; YAML sections load after init."""

    model_config = SettingsConfigDict(
        env_file=str(BACKEND_DIR / ".env"),
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
    )

    # server (read by `make run` as HOST/PORT for uvicorn; listed so a bad value fails the start early)
    host: str = "127.0.0.1"
    port: int = 8500

    # locations
    axis_custom_dir: Path = ROOT_DIR / "custom"
    axis_home: Path = BACKEND_DIR
    axis_sample_dir: Path = BACKEND_DIR / "sample_data"
    axis_load_examples: bool = False

    # security
    axis_api_token: SecretStr | None = None

    # ingestion limits
    max_upload_mb: int = Field(default=200, ge=1)
    # Rows echoed in upload/import responses (decision 2's default). DuckDB renders them as JSON text
    # (services/json_rows.py, ~0.4 KB a row), so 50 k rows are not held as Python dicts; the rest is
    # read from the store (/api/store/data cursors, analytics by dataset_id).
    upload_response_row_cap: int = Field(default=50_000, ge=0)

    # flags and CORS
    copilot_enabled: bool = True
    frontend_url: str = "http://localhost:3500"
    frontend_urls: str | None = None

    # AI: read by the LLM layer of the AI plane (spec ai-plane.md), which has no issue yet; only
    # the two keys are read today (/health reports llm: offline without them)
    openai_api_base: str | None = None
    openai_api_key: SecretStr | None = None
    anthropic_api_base: str | None = None
    anthropic_api_key: SecretStr | None = None
    gateway_api_key: SecretStr | None = None
    ai_toolkit_url: str | None = None
    llm_model_name: str = "gpt-4"
    embedding_model_name: str = "text-embedding-ada-002"

    # database browser
    db_handle_ttl_seconds: int = Field(default=900, ge=1)
    db_max_handles: int = Field(default=100, ge=1)
    db_handle_sweep_seconds: float = Field(default=30.0, gt=0)
    db_connect_timeout_seconds: float = Field(default=10.0, gt=0)
    db_statement_timeout_seconds: int = Field(default=30, ge=1)
    db_query_timeout_seconds: int = Field(default=60, ge=1)
    db_query_max_result_mb: float = Field(default=20.0, gt=0)
    db_import_timeout_seconds: int = Field(default=600, ge=1)
    db_import_max_rows: int = Field(default=1_000_000, ge=1)
    db_import_batch_rows: int = Field(default=5000, ge=100)
    db_pool_max_size: int = Field(default=4, ge=1)
    db_handle_max_concurrent: int = Field(default=2, ge=1)
    db_application_name: str = "axis-db-browser"

    # human signals db (env fallback)
    human_signals_db_url: SecretStr | None = None
    human_signals_db_host: str | None = None
    human_signals_db_port: int = 5432
    human_signals_db_name: str | None = None
    human_signals_db_user: str | None = None
    human_signals_db_password: SecretStr | None = None
    human_signals_db_schema: str = "public"
    human_signals_db_table: str | None = None
    human_signals_db_ssl_mode: str = "prefer"
    human_signals_db_auto_connect: bool = False

    # monitoring db (env fallback)
    monitoring_db_url: SecretStr | None = None
    monitoring_db_host: str | None = None
    monitoring_db_port: int = 5432
    monitoring_db_name: str | None = None
    monitoring_db_user: str | None = None
    monitoring_db_password: SecretStr | None = None
    monitoring_db_schema: str = "public"
    monitoring_db_table: str | None = None
    monitoring_db_ssl_mode: str = "prefer"
    monitoring_db_auto_connect: bool = False

    # eval db (env fallback)
    eval_db_url: SecretStr | None = None
    eval_db_host: str | None = None
    eval_db_port: int = 5432
    eval_db_name: str | None = None
    eval_db_user: str | None = None
    eval_db_password: SecretStr | None = None
    eval_db_ssl_mode: str = "prefer"
    eval_db_auto_load: bool = False
    eval_db_dataset_query: str | None = None
    eval_db_results_query: str | None = None
    eval_db_query_timeout: int = 60
    eval_db_row_limit: int = 10000

    # graph: only the host is read today (health reports it); the rest is for the memory graph
    graph_db_host: str | None = None
    graph_db_port: int = 6379
    graph_db_name: str = "knowledge_graph"
    graph_db_password: SecretStr | None = None

    # theme env overrides (env beats YAML)
    axis_theme_active: str | None = None
    axis_theme_primary: str | None = None
    axis_theme_primary_light: str | None = None
    axis_theme_primary_dark: str | None = None
    axis_theme_primary_soft: str | None = None
    axis_theme_primary_pale: str | None = None
    axis_theme_accent_gold: str | None = None
    axis_theme_accent_silver: str | None = None
    axis_theme_hero_image: str | None = None
    axis_theme_logo_url: str | None = None
    axis_theme_favicon_url: str | None = None
    axis_theme_app_icon_url: str | None = None
    axis_theme_hero_contrast: float | None = None
    axis_theme_hero_saturation: float | None = None
    axis_theme_hero_brightness: float | None = None
    axis_theme_hero_opacity: float | None = None
    axis_theme_hero_mode: str | None = None

    _eval_db: EvalDBConfig = PrivateAttr(default_factory=EvalDBConfig)
    _monitoring_db: MonitoringDBConfig = PrivateAttr(default_factory=MonitoringDBConfig)
    _human_signals_db: HumanSignalsDBConfig = PrivateAttr(default_factory=HumanSignalsDBConfig)
    _duckdb: DuckDBConfig = PrivateAttr(default_factory=DuckDBConfig)
    _theme: ThemeConfig = PrivateAttr(default_factory=ThemeConfig)
    _dotenv: dict[str, str] = PrivateAttr(default_factory=dict)

    @field_validator("axis_custom_dir", "axis_home", "axis_sample_dir")
    @classmethod
    def _from_backend_dir(cls, value: Path) -> Path:
        """A relative location is read from ``backend/`` (where ``make run`` starts), whatever the working directory."""
        return value if value.is_absolute() else BACKEND_DIR / value

    def __init__(self, **values: Any) -> None:
        """Settings from env/.env/arguments; the .env values are also kept for ``${VAR}`` in YAML."""
        env_file = values.get("_env_file", type(self).model_config.get("env_file"))
        token = _DOTENV.set(read_dotenv(env_file))
        try:
            super().__init__(**values)
        finally:
            _DOTENV.reset(token)

    def model_post_init(self, __context: Any) -> None:
        """Load the YAML sections once the env values are known."""
        self._dotenv = _DOTENV.get() or {}
        self.reload_yaml()

    @property
    def yaml_environ(self) -> dict[str, str]:
        """What ``${VAR}`` in YAML sees: the process environment over the ``.env`` file's values."""
        return {**self._dotenv, **os.environ}

    # ------------------------------------------------------------------ YAML sections
    @property
    def config_dir(self) -> Path:
        """Folder holding the YAML config files."""
        return self.axis_custom_dir / "config"

    @property
    def data_dir(self) -> Path:
        """Folder for the DuckDB file, scratch space and server data."""
        return self.axis_home / "data"

    @property
    def spool_dir(self) -> Path:
        """Folder where uploads are spooled before they are parsed."""
        return self.data_dir / "spool"

    @property
    def max_upload_bytes(self) -> int:
        """The upload size cap (``MAX_UPLOAD_MB``) in bytes."""
        return self.max_upload_mb * 1024 * 1024

    @property
    def eval_db(self) -> EvalDBConfig:
        """Eval database config (YAML over env)."""
        return self._eval_db

    @property
    def monitoring_db(self) -> MonitoringDBConfig:
        """Monitoring database config (YAML over env)."""
        return self._monitoring_db

    @property
    def human_signals_db(self) -> HumanSignalsDBConfig:
        """Human-signals database config (YAML over env)."""
        return self._human_signals_db

    @property
    def duckdb(self) -> DuckDBConfig:
        """DuckDB store config."""
        return self._duckdb

    @property
    def theme(self) -> ThemeConfig:
        """Theme (env over YAML)."""
        return self._theme

    @property
    def duckdb_path(self) -> Path:
        """Absolute DuckDB file path; relative paths resolve against ``axis_home`` (DB-7)."""
        path = Path(self._duckdb.path)
        return path if path.is_absolute() else (self.axis_home / path)

    @property
    def cors_origins(self) -> list[str]:
        """CORS allow-list (spec §1.2).

        A browser's ``Origin`` is scheme, host and port only, so a configured frontend URL with a
        path (``https://app.example/``, ``https://host.example/axis/``) is listed as its origin;
        else it would never match, and CORS would fail silently.
        """
        origins = ["http://localhost:3500", "http://127.0.0.1:3500", self.frontend_url]
        if self.frontend_urls:
            origins += self.frontend_urls.split(",")
        return list(dict.fromkeys(o for o in map(_origin_of, origins) if o))

    def db_config(self, store: str) -> DBImportConfig:
        """Lookup by store key: ``data``/``eval`` → eval, ``monitoring``, ``human_signals``."""
        if store in ("data", "eval"):
            return self._eval_db
        if store == "monitoring":
            return self._monitoring_db
        if store == "human_signals":
            return self._human_signals_db
        raise ValueError(f"Unknown store '{store}'. Use one of: data, monitoring, human_signals")

    def yaml_path(self, name: str) -> Path:
        """Path of one YAML file in the custom config dir."""
        return self.config_dir / name

    def reload_yaml(self) -> None:
        """(Re)read every YAML section; bad files or values fall back to defaults."""
        self._eval_db = self._load_db("eval_db", EvalDBConfig, self._eval_env())
        self._monitoring_db = self._load_db("monitoring_db", MonitoringDBConfig, self._store_env("monitoring"))
        self._human_signals_db = self._load_db(
            "human_signals_db", HumanSignalsDBConfig, self._store_env("human_signals")
        )
        self._duckdb = self._load_section("duckdb", DuckDBConfig) or DuckDBConfig()
        theme_yaml = read_yaml_section(self.yaml_path(YAML_FILES["theme"]), "theme", self.yaml_environ)
        overrides = {f: getattr(self, f"axis_theme_{f}") for f in THEME_ENV_FIELDS}
        try:
            self._theme = build_theme(
                theme_yaml, self.axis_theme_active, overrides, source=str(self.yaml_path(YAML_FILES["theme"]))
            )
        except ValidationError as exc:
            logger.warning(
                "Invalid theme in %s (%s); using defaults",
                self.yaml_path(YAML_FILES["theme"]),
                describe_validation_error(exc),
            )
            self._theme = build_theme(None, self.axis_theme_active, {})

    def _load_section(self, key: str, model: type[M]) -> M | None:
        return self._validate_section(key, model)[0]

    def _validate_section(self, key: str, model: type[M]) -> tuple[M | None, str | None]:
        """(model, None) from the YAML section, or (None, reason) when a value is invalid.

        No section gives (None, None). An invalid value is logged with file, key and field, never
        the value; the reason is that same text, for the caller to remember.
        """
        path = self.yaml_path(YAML_FILES[key])
        section, problem = read_yaml_section_checked(path, key, self.yaml_environ)
        if problem is not None:
            return None, problem
        if section is None:
            return None, None
        try:
            return model.model_validate(section), None
        except ValidationError as exc:
            described = describe_validation_error(exc)
            logger.warning("Invalid values in %s key '%s' (%s); using defaults", path, key, described)
            return None, f"{path.name} key '{key}': {described}"

    def _load_db(self, key: str, model: type[DB], env: dict[str, Any] | None) -> DB:
        loaded, reason = self._validate_section(key, model)
        if loaded is not None:
            # YAML wins; env only fills an empty password or url.
            updates: dict[str, Any] = {}
            if loaded.password is None and getattr(self, f"{key}_password", None):
                updates["password"] = getattr(self, f"{key}_password")
            env_url: SecretStr | None = getattr(self, f"{key}_url", None)
            if loaded.url is None and env_url is not None and env_url.get_secret_value().strip():
                try:
                    parse_dsn(env_url.get_secret_value())
                except ValueError as exc:
                    logger.warning("Invalid %s_URL (%s); using the %s defaults", key.upper(), exc, key)
                    return model.rejected(f"{key.upper()}_URL: {exc}")
                updates["url"] = env_url
            return loaded.model_copy(update=updates) if updates else loaded
        if reason is not None:  # the YAML section exists but is rejected: env must not stand in for it
            return model.rejected(reason)
        if env is not None:
            try:
                return model.model_validate(env)
            except ValidationError as exc:
                described = describe_validation_error(exc)
                logger.warning("Invalid %s environment values (%s); using defaults", key, described)
                reason = f"{key.upper()}_* environment variables: {described}"
        return model() if reason is None else model.rejected(reason)

    def _store_env(self, store: str) -> dict[str, Any] | None:
        url = getattr(self, f"{store}_db_url")
        host = getattr(self, f"{store}_db_host")
        if url is None and not host:
            return None
        return {
            "url": url,
            "host": host,
            "port": getattr(self, f"{store}_db_port"),
            "database": getattr(self, f"{store}_db_name"),
            "username": getattr(self, f"{store}_db_user"),
            "password": getattr(self, f"{store}_db_password"),
            "schema": getattr(self, f"{store}_db_schema"),
            "table": getattr(self, f"{store}_db_table"),
            "ssl_mode": getattr(self, f"{store}_db_ssl_mode"),
            "auto_connect": getattr(self, f"{store}_db_auto_connect"),
            "auto_load": False,
            "enabled": True,
        }

    def _eval_env(self) -> dict[str, Any] | None:
        if self.eval_db_url is None and not self.eval_db_host:
            return None
        return {
            "url": self.eval_db_url,
            "host": self.eval_db_host,
            "port": self.eval_db_port,
            "database": self.eval_db_name,
            "username": self.eval_db_user,
            "password": self.eval_db_password,
            "ssl_mode": self.eval_db_ssl_mode,
            "auto_load": self.eval_db_auto_load,
            "dataset_query": self.eval_db_dataset_query,
            "results_query": self.eval_db_results_query,
            "query_timeout": self.eval_db_query_timeout,
            "row_limit": self.eval_db_row_limit,
            "enabled": True,
        }

    # ------------------------------------------------------------------ secrets
    def secret_values(self) -> list[str]:
        """Every configured secret value, for scrubbing and audits."""
        values: list[str] = []
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr) and value.get_secret_value():
                values.append(value.get_secret_value())
        for cfg in (self._eval_db, self._monitoring_db, self._human_signals_db):
            for secret in (cfg.password, cfg.url):
                if secret is not None and secret.get_secret_value():
                    values.append(secret.get_secret_value())
            params_pw = cfg.connection_params().password if cfg.url is not None else None
            if params_pw is not None:
                values.append(params_pw.get_secret_value())
        return list(dict.fromkeys(values))


def load_settings() -> Settings:
    """Settings from the environment and ``backend/.env``, or a one-line reason to stop the start.

    An invalid value names its variable and the problem, never the value (it may be a secret),
    instead of a validation traceback.
    """
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in err['loc']).upper()}: {err['msg']}" for err in exc.errors()
        )
        raise SystemExit(f"AXIS cannot start, invalid setting in the environment or backend/.env: {problems}") from None
