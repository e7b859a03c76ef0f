"""Settings: YAML precedence, ${VAR} expansion, validation fallbacks, theme, templates."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from dotenv import dotenv_values

from app.config import BACKEND_DIR, Colors, Columns, Settings, Thresholds
from app.config.db_configs import EvalDBConfig, parse_dsn
from app.config.yaml_loader import expand_env_vars


def write_yaml(settings_factory: Callable[..., Settings], name: str, text: str) -> Path:
    path = settings_factory().config_dir / name
    path.write_text(text, encoding="utf-8")
    return path


def test_yaml_wins_over_env_for_db_configs(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("EVAL_DB_HOST", "env-host")
    monkeypatch.setenv("EVAL_DB_NAME", "envdb")
    monkeypatch.setenv("EVAL_DB_PASSWORD", "from-env-pw")
    write_yaml(make_settings, "eval_db.yaml", "eval_db:\n  host: yaml-host\n  database: yamldb\n  password: ''\n")
    cfg = make_settings().eval_db
    assert cfg.host == "yaml-host" and cfg.database == "yamldb"
    assert cfg.password is not None and cfg.password.get_secret_value() == "from-env-pw"
    assert cfg.enabled is False  # YAML default, not the env path's enabled=true
    assert cfg.is_configured


def test_env_builds_config_when_yaml_absent(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MONITORING_DB_HOST", "mon-host")
    monkeypatch.setenv("MONITORING_DB_NAME", "mondb")
    monkeypatch.setenv("MONITORING_DB_AUTO_CONNECT", "true")
    cfg = make_settings().monitoring_db
    assert (cfg.host, cfg.database, cfg.enabled, cfg.auto_load, cfg.auto_connect) == (
        "mon-host",
        "mondb",
        True,
        False,
        True,
    )
    assert cfg.should_auto_load and not cfg.has_query
    assert make_settings().human_signals_db.is_configured is False


def test_env_var_expansion_in_yaml(make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AXIS_T_HOST", "db.internal")
    write_yaml(
        make_settings,
        "monitoring_db.yaml",
        "monitoring_db:\n  host: ${AXIS_T_HOST}\n  database: ${AXIS_T_MISSING:-fallback_db}\n"
        "  username: ${AXIS_T_UNSET}\n  dataset_query: SELECT 1 AS dataset_id\n"
        "  results_query: SELECT 1 AS dataset_id\n",
    )
    cfg = make_settings().monitoring_db
    assert cfg.host == "db.internal"
    assert cfg.database == "fallback_db"
    assert cfg.username is None
    assert cfg.has_query
    assert expand_env_vars({"a": ["x${V:-1}y", 3]}, {}) == {"a": ["x1y", 3]}
    assert expand_env_vars("${V:-d}", {"V": "set"}) == "set"


def test_env_var_expansion_sees_the_dotenv_file(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """``${VAR}`` sees backend/.env too; the process environment wins over it (no override)."""
    dotenv = tmp_path / "axis.env"
    dotenv.write_text("AXIS_T_DOT_HOST=from-dotenv\nAXIS_T_BOTH=from-dotenv\n")
    monkeypatch.setenv("AXIS_T_BOTH", "from-process")
    write_yaml(
        make_settings,
        "monitoring_db.yaml",
        "monitoring_db:\n  host: ${AXIS_T_DOT_HOST}\n  database: ${AXIS_T_BOTH}\n",
    )
    base = make_settings()
    cfg = Settings(_env_file=dotenv, axis_custom_dir=base.axis_custom_dir, axis_home=base.axis_home).monitoring_db
    assert (cfg.host, cfg.database) == ("from-dotenv", "from-process")
    without = Settings(_env_file=None, axis_custom_dir=base.axis_custom_dir, axis_home=base.axis_home).monitoring_db
    assert without.host is None


def test_malformed_yaml_falls_back_and_logs(
    make_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    path = write_yaml(make_settings, "duckdb.yaml", "duckdb: [unclosed\n  : :\n")
    write_yaml(make_settings, "eval_db.yaml", "eval_db:\n  port: not-a-number\n  password: hunter2-secret\n")
    with caplog.at_level(logging.WARNING):
        settings = make_settings()
    assert settings.duckdb.path == "data/local_store.duckdb"
    assert settings.eval_db.port == 5432 and settings.eval_db.password is None
    text = caplog.text
    assert str(path) in text
    assert "eval_db.yaml" in text and "port" in text
    assert "hunter2-secret" not in text


def test_unparseable_yaml_is_logged_without_its_text(
    make_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture
) -> None:
    """PyYAML quotes the broken line in its message; the log keeps only where and what."""
    from app.config.yaml_loader import read_yaml_list_section

    broken = 'human_signals_db:\n  host: db\n  password: "Hunter2SecretValue\n'
    write_yaml(make_settings, "human_signals_db.yaml", broken)
    agents = write_yaml(make_settings, "agents.yaml", 'agents:\n  - name: a\n    token: "Hunter2SecretValue\n')
    with caplog.at_level(logging.WARNING):
        settings = make_settings()
        assert read_yaml_list_section(agents, "agents") == []
    assert settings.human_signals_db.config_error is not None
    assert "human_signals_db.yaml" in caplog.text and "agents.yaml" in caplog.text
    assert "while scanning a quoted scalar" in caplog.text and "line 3, column 13" in caplog.text
    assert "Hunter2SecretValue" not in caplog.text
    caplog.clear()
    for value in ("!Hunter2Tag", "*Hunter2Alias"):
        write_yaml(make_settings, "human_signals_db.yaml", f"human_signals_db:\n  host: db\n  password: {value}\n")
        with caplog.at_level(logging.WARNING):
            assert make_settings().human_signals_db.config_error is not None
    assert "human_signals_db.yaml" in caplog.text and "Hunter2" not in caplog.text


def test_rejected_yaml_section_is_not_replaced_by_env(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """YAML wins entirely (§2.3): an invalid or unparseable section is rejected, not swapped for EVAL_DB_*."""
    monkeypatch.setenv("EVAL_DB_HOST", "env-host")
    monkeypatch.setenv("EVAL_DB_NAME", "envdb")
    write_yaml(make_settings, "eval_db.yaml", "eval_db:\n  host: yaml-host\n  port: notanint\n")
    cfg = make_settings().eval_db
    assert cfg.host != "env-host" and cfg.config_error is not None and "port" in cfg.config_error
    write_yaml(make_settings, "eval_db.yaml", "eval_db:\n  enabled: true\n  host: [h\n")
    cfg = make_settings().eval_db
    assert cfg.host != "env-host" and cfg.config_error is not None
    assert "(eval_db.yaml could not be read as YAML (line " in cfg.config_error


async def test_unparseable_db_yaml_is_reported_by_the_import(
    make_settings: Callable[..., Settings], make_client: Any
) -> None:
    write_yaml(make_settings, "eval_db.yaml", "eval_db:\n  enabled: true\n  host: [h\n")
    write_yaml(make_settings, "monitoring_db.yaml", "monitoring_db:\n  host: db\n  port: not-a-port\n  password: pw9\n")
    async with make_client(make_settings()) as client:
        res = await client.post("/api/data/eval-db-import")
        assert res.status_code == 400 and "eval_db.yaml could not be read as YAML" in res.json()["detail"]
        # The db-config endpoints say why a section was rejected (configured: false alone did not).
        ev = (await client.get("/api/data/eval-db-config")).json()
        assert ev["configured"] is False and "eval_db.yaml could not be read as YAML (line 4" in ev["config_error"]
        mon = (await client.get("/api/monitoring/db-config")).json()
        assert mon["configured"] is False and "monitoring_db.yaml key 'monitoring_db'" in mon["config_error"]
        assert "port" in mon["config_error"] and "pw9" not in mon["config_error"]
        assert (await client.get("/api/human-signals/db-config")).json()["config_error"] is None


def test_agents_yaml_expands_env_vars(make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch) -> None:
    from app.config.yaml_loader import read_yaml_list_section
    from app.services.signals_display_config import load_signals_metrics_yaml

    monkeypatch.setenv("AXIS_T_AVATAR", "https://x/av.png")
    path = write_yaml(make_settings, "agents.yaml", "agents:\n  - name: a\n    avatar: ${AXIS_T_AVATAR}\n")
    assert read_yaml_list_section(path, "agents") == [{"name": "a", "avatar": "https://x/av.png"}]
    path = write_yaml(make_settings, "signals_metrics.yaml", "signals_metrics:\n  title: ${AXIS_T_AVATAR:-x}\n")
    assert load_signals_metrics_yaml(path) == {"title": "https://x/av.png"}


async def test_agents_and_signals_yaml_see_the_dotenv_file(
    make_settings: Callable[..., Settings], make_client: Any, tmp_path: Path
) -> None:
    """Like the DB sections, agents.yaml and signals_metrics.yaml expand ``${VAR}`` from backend/.env."""
    from app.services.signals_display_config import load_signals_metrics_yaml

    dotenv = tmp_path / "axis.env"
    dotenv.write_text("AXIS_T_AGENT_LABEL=From dotenv\n")
    write_yaml(make_settings, "agents.yaml", "agents:\n  - name: a\n    label: ${AXIS_T_AGENT_LABEL}\n")
    path = write_yaml(make_settings, "signals_metrics.yaml", "signals_metrics:\n  title: ${AXIS_T_AGENT_LABEL:-x}\n")
    base = make_settings()
    settings = Settings(_env_file=dotenv, axis_custom_dir=base.axis_custom_dir, axis_home=base.axis_home)
    assert load_signals_metrics_yaml(path, settings.yaml_environ) == {"title": "From dotenv"}
    assert load_signals_metrics_yaml(path) == {"title": "x"}  # the process environment alone
    async with make_client(settings) as client:
        agents = (await client.get("/api/config/agents")).json()["agents"]
    assert [(a["name"], a["label"]) for a in agents] == [("a", "From dotenv")]


async def test_malformed_yaml_does_not_stop_boot(make_settings: Callable[..., Settings], make_client: Any) -> None:
    write_yaml(make_settings, "theme.yaml", "theme: {active: [\n")
    write_yaml(make_settings, "monitoring_db.yaml", "just a string\n")
    async with make_client(make_settings()) as client:
        assert (await client.get("/health")).json()["status"] == "healthy"
        assert (await client.get("/api/config/theme")).json()["active"] == "professional_blue"


def test_caps_and_validation(make_settings: Callable[..., Settings]) -> None:
    write_yaml(
        make_settings,
        "eval_db.yaml",
        "eval_db:\n  query_timeout: 999\n  row_limit: 900000\n  columns: {Score: metric_score}\n",
    )
    cfg = make_settings().eval_db
    assert cfg.query_timeout == 120
    assert cfg.row_limit == 50000
    assert cfg.column_rename_map == {"Score": "metric_score"}


def test_monitoring_thresholds_inherit_defaults(make_settings: Callable[..., Settings]) -> None:
    write_yaml(
        make_settings,
        "monitoring_db.yaml",
        "monitoring_db:\n  thresholds:\n    default: {good: 0.8, pass: 0.6}\n    per_source: {Atlas: {pass: 0.4}}\n"
        "  anomaly_detection: {min_data_points: 1, moving_average: {window_size: 1, severity: fatal}}\n",
    )
    cfg = make_settings().monitoring_db
    assert cfg.thresholds.pass_threshold("Atlas") == 0.4
    assert cfg.thresholds.per_source["Atlas"].good == 0.8
    assert cfg.thresholds.pass_threshold("Nova") == 0.6
    assert cfg.thresholds.pass_threshold(None) == 0.6
    assert cfg.anomaly_detection.min_data_points == 3
    assert cfg.anomaly_detection.moving_average.window_size == 2
    assert cfg.anomaly_detection.moving_average.severity == "warning"


def test_theme_env_beats_yaml(make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch) -> None:
    write_yaml(
        make_settings,
        "theme.yaml",
        "theme:\n  active: sage_green\n  palettes:\n    sage_green: {primary: '#111111'}\n"
        "  branding: {app_name: Acme}\n",
    )
    yaml_only = make_settings().theme
    assert yaml_only.active == "sage_green"
    assert yaml_only.active_palette.primary == "#111111"
    assert yaml_only.active_palette.primary_light == "#A4B86C"
    monkeypatch.setenv("AXIS_THEME_PRIMARY", "#222222")
    env = make_settings().theme
    assert env.active_palette.primary == "#222222"
    assert env.branding.app_name == "Acme"
    monkeypatch.setenv("AXIS_THEME_ACTIVE", "no_such_palette")
    assert make_settings().theme.active_palette.name in ("no_such_palette", "sage_green")


def test_one_bad_theme_value_drops_only_itself(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    write_yaml(
        make_settings,
        "theme.yaml",
        "theme:\n  active: sage_green\n  palettes:\n    sage_green: {primaryDark: '#333333'}\n"
        "    bad: {primary: '#1'}\n  branding: {app_name: Acme}\n",
    )
    monkeypatch.setenv("AXIS_THEME_PRIMARY", "#00FF00")
    monkeypatch.setenv("AXIS_THEME_HERO_MODE", "blue")
    with caplog.at_level(logging.WARNING):
        theme = make_settings().theme
    assert theme.active == "sage_green" and "bad" not in theme.palettes
    assert (theme.active_palette.primary, theme.active_palette.primary_dark) == ("#00FF00", "#333333")
    assert theme.branding.app_name == "Acme"
    assert "palette 'bad'" in caplog.text and "AXIS_THEME_HERO_MODE" in caplog.text
    assert "blue" not in caplog.text  # the variable is named, its value is not logged


def test_templates_are_valid(make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    for template in (BACKEND_DIR / "config").glob("*.yaml.example"):
        shutil.copy(template, settings.config_dir / template.name.removesuffix(".example"))
    loaded = make_settings()
    assert loaded.eval_db.eval_runner_enabled is True and loaded.eval_db.is_configured is False
    assert loaded.monitoring_db.thresholds.default.pass_ == 0.5
    assert loaded.duckdb.sync_mode == "startup"
    assert loaded.theme.active == "professional_blue"
    mon = loaded.monitoring_db
    assert (mon.port, mon.ssl_mode, mon.schema_name, mon.table) == (5432, "prefer", "public", None)
    assert mon.auto_connect is False
    assert loaded.eval_db.dataset_query is None and loaded.eval_db.row_limit == 10000


def test_templates_read_the_store_environment_variables(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``make run`` copies the templates: the <STORE>_DB_* variables still reach the connection fields."""
    settings = make_settings()
    for template in (BACKEND_DIR / "config").glob("*_db.yaml.example"):
        shutil.copy(template, settings.config_dir / template.name.removesuffix(".example"))
    env = {
        "MONITORING_DB_HOST": "db.internal",
        "MONITORING_DB_NAME": "mon",
        "MONITORING_DB_PORT": "5433",
        "MONITORING_DB_SSL_MODE": "disable",
        "MONITORING_DB_SCHEMA": "audit",
        "MONITORING_DB_TABLE": "records",
        "MONITORING_DB_AUTO_CONNECT": "true",
        "HUMAN_SIGNALS_DB_PORT": "6543",
        "EVAL_DB_URL": "postgresql://u@h:5440/e",
        "EVAL_DB_DATASET_QUERY": "SELECT * FROM items",
        "EVAL_DB_RESULTS_QUERY": "SELECT * FROM scores",
        "EVAL_DB_ROW_LIMIT": "250",
        "EVAL_DB_AUTO_LOAD": "true",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    loaded = make_settings()
    mon = loaded.monitoring_db
    assert (mon.host, mon.database, mon.port, mon.ssl_mode) == ("db.internal", "mon", 5433, "disable")
    assert (mon.schema_name, mon.table, mon.auto_connect, mon.should_auto_load) == ("audit", "records", True, True)
    assert loaded.human_signals_db.port == 6543
    ev = loaded.eval_db
    assert (ev.dataset_query, ev.results_query, ev.row_limit, ev.auto_load) == (
        "SELECT * FROM items",
        "SELECT * FROM scores",
        250,
        True,
    )
    assert ev.url is not None and ev.url.get_secret_value() == "postgresql://u@h:5440/e" and ev.has_query


def test_duckdb_path_resolves_against_home(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    settings = make_settings()
    assert settings.duckdb_path == settings.axis_home / "data" / "local_store.duckdb"
    write_yaml(
        make_settings, "duckdb.yaml", f"duckdb:\n  path: {tmp_path / 'x.duckdb'}\n  auto_sync_on_startup: false\n"
    )
    again = make_settings()
    assert again.duckdb_path == tmp_path / "x.duckdb"
    assert again.duckdb.sync_mode == "manual"


def test_relative_locations_are_read_from_the_backend_dir_whatever_the_working_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """README: a relative AXIS_CUSTOM_DIR is read from backend/ (``make setup`` copies the templates there). A server
    started from another directory (``uvicorn --app-dir backend`` at the repository root, a service unit) read it, and
    a relative AXIS_HOME (the store) and AXIS_SAMPLE_DIR, from its working directory instead."""
    custom, home, samples = tmp_path / "custom", tmp_path / "home", tmp_path / "samples"
    (custom / "config").mkdir(parents=True)
    (custom / "config" / "theme.yaml").write_text("theme:\n  active: sage_green\n", encoding="utf-8")
    (custom / "config" / "duckdb.yaml").write_text("duckdb:\n  path: store/axis.duckdb\n", encoding="utf-8")
    for name, path in (("AXIS_CUSTOM_DIR", custom), ("AXIS_HOME", home), ("AXIS_SAMPLE_DIR", samples)):
        monkeypatch.setenv(name, os.path.relpath(path, BACKEND_DIR))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.theme.active == "sage_green"
    assert settings.config_dir.resolve() == (custom / "config").resolve()
    assert settings.duckdb_path.is_absolute()
    assert settings.duckdb_path.resolve() == (home / "store" / "axis.duckdb").resolve()
    assert settings.axis_sample_dir.resolve() == samples.resolve()


def _make_run(tmp_path: Path) -> tuple[Path, Callable[..., str]]:
    """A scratch backend/ and ``make run`` against it: its venv's ``uvicorn`` prints what it was started with."""
    backend, venv = tmp_path / "backend", tmp_path / "venv"
    (backend / "config").mkdir(parents=True)
    (backend / "config" / "theme.yaml.example").write_text("theme: {}\n", encoding="utf-8")
    (backend / "pyproject.toml").write_text("", encoding="utf-8")
    (venv / "bin").mkdir(parents=True)
    for tool in ("python", "pip"):
        (venv / "bin" / tool).symlink_to(sys.executable)
    uvicorn = venv / "bin" / "uvicorn"
    uvicorn.write_text('#!/bin/sh\necho "AXIS_LOAD_EXAMPLES=$AXIS_LOAD_EXAMPLES $*"\n', encoding="utf-8")
    uvicorn.chmod(0o755)
    (venv / ".installed").touch()  # newer than pyproject.toml: nothing to install

    def run(**env: str) -> str:
        argv = ["make", "--no-print-directory", "run", f"BACKEND={backend}", f"VENV={venv}"]
        env = {"PATH": os.environ.get("PATH", ""), "AXIS_CUSTOM_DIR": str(tmp_path / "custom"), **env}
        out = subprocess.run(argv, cwd=BACKEND_DIR.parent, env=env, capture_output=True, text=True, check=True)
        return out.stdout.strip().splitlines()[-1]

    return backend, run


def test_make_run_reads_host_port_and_examples_from_the_dotenv_file(tmp_path: Path) -> None:
    """Settings come from the environment and backend/.env; ``make run`` passed HOST, PORT and AXIS_LOAD_EXAMPLES from
    the environment only, so with PORT=9000 and AXIS_LOAD_EXAMPLES=false in backend/.env it served on 127.0.0.1:8500
    and loaded the examples (the AXIS_LOAD_EXAMPLES=true it exported beat the file).

    The Makefile runs for real against a scratch backend/ and venv whose ``uvicorn`` prints what it was started with.
    """
    backend, run = _make_run(tmp_path)
    assert run().startswith("AXIS_LOAD_EXAMPLES=true --factory app.main:create_app --host 127.0.0.1 --port 8500 ")
    (backend / ".env").write_text('HOST=0.0.0.0\nPORT="9000"\nAXIS_LOAD_EXAMPLES=false\n', encoding="utf-8")
    assert run().startswith("AXIS_LOAD_EXAMPLES=false --factory app.main:create_app --host 0.0.0.0 --port 9000 ")
    env_wins = run(PORT="9100", AXIS_LOAD_EXAMPLES="true")
    assert env_wins.startswith("AXIS_LOAD_EXAMPLES=true --factory app.main:create_app --host 0.0.0.0 --port 9100 ")


def test_make_run_reads_dotenv_lines_as_the_server_does(tmp_path: Path) -> None:
    """python-dotenv (the server) reads ``export X=…`` lines and drops a `` # comment`` after a value; ``make run``
    ignored the former (port 8500, examples loaded) and pasted the latter into its command line, where the shell took
    the rest of the line for a comment: ``--workers 1 --timeout-graceful-shutdown 10``, or the whole uvicorn command,
    was lost."""
    backend, run = _make_run(tmp_path)
    lines = ["export HOST=0.0.0.0  # all interfaces", "PORT='9000' # dev", "export AXIS_LOAD_EXAMPLES = false # none"]
    (backend / ".env").write_text("\r\n".join(lines) + "\r\n", encoding="utf-8")
    assert dotenv_values(backend / ".env") == {"HOST": "0.0.0.0", "PORT": "9000", "AXIS_LOAD_EXAMPLES": "false"}
    assert run() == (
        "AXIS_LOAD_EXAMPLES=false --factory app.main:create_app --host 0.0.0.0 --port 9000 --workers 1 "
        "--timeout-graceful-shutdown 10"
    )


def test_db_config_lookup(settings: Settings) -> None:
    assert settings.db_config("data") is settings.eval_db
    assert settings.db_config("monitoring") is settings.monitoring_db
    with pytest.raises(ValueError, match="Unknown store"):
        settings.db_config("kpi2")


def test_shared_constants() -> None:
    assert Columns.LATENCY == "Latency"
    assert Columns.EXPERIMENT_NAME == "evaluation_name"
    assert Columns.INDEX_COLUMNS == ["dataset_id", "query", "actual_output", "evaluation_name", "evaluation_metadata"]
    assert (Thresholds.PASSING_RATE, Thresholds.GREEN_THRESHOLD, Thresholds.RED_THRESHOLD) == (0.5, 0.7, 0.3)
    assert len(Colors.CHART_COLORS) == 10 and Colors.CHART_COLORS[7:] == ["#1f77b4", "#ff7f0e", "#2ca02c"]
    assert Colors.get("error") == "#E74C3C"
    with pytest.raises(ValueError):
        Colors.get("ultraviolet")


def test_secret_values_collected(make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-marker-1")
    monkeypatch.setenv("EVAL_DB_URL", "postgresql://u:pw-marker-2@h/db")
    secrets = make_settings().secret_values()
    assert "sk-marker-1" in secrets
    assert "pw-marker-2" in secrets


def test_parse_dsn_reads_a_postgres_url() -> None:
    parsed = parse_dsn("postgresql://ann:p%40ss%3Aw@db.example:6543/eval%20db?sslmode=disable&application_name=x")
    assert parsed.model_dump() == {
        "host": "db.example",
        "port": 6543,
        "database": "eval db",
        "username": "ann",
        "password": "p@ss:w",
        "ssl_mode": "disable",
    }
    assert parse_dsn("postgres://h/d").model_dump() == {
        "host": "h",
        "port": None,
        "database": "d",
        "username": None,
        "password": None,
        "ssl_mode": None,
    }
    assert parse_dsn(" POSTGRESQL://h:5433/d?sslmode=verify-full ").model_dump(include={"port", "ssl_mode"}) == {
        "port": 5433,
        "ssl_mode": "verify-full",
    }


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("postgresql://u:pw-9@h:notaport/d", "the port in the URL is not a number from 1 to 65535"),
        ("postgresql://u:pw-9@h:70000/d", "the port in the URL is not a number from 1 to 65535"),
        ("postgresql://u:pw-9@h:0/d", "the port in the URL is not a number from 1 to 65535"),
        (
            "postgresql://u:pw-9@h/d?sslmode=bogus",
            "sslmode in the URL must be one of disable, prefer, require, verify-ca, verify-full",
        ),
        (
            "postgresql://u:pw-9@h/d?sslmode=",
            "sslmode in the URL must be one of disable, prefer, require, verify-ca, verify-full",
        ),
        (
            "mysql://u:pw-9@h:3306/d",
            "the URL must start with postgresql:// or postgres:// (only PostgreSQL is supported)",
        ),
        ("u:pw-9@h/d", "the URL must start with postgresql:// or postgres:// (only PostgreSQL is supported)"),
        ("postgresql://u:pw-9@[::1/d", "the URL cannot be parsed"),
    ],
)
def test_parse_dsn_rejects_invalid_urls_without_echoing_them(url: str, problem: str) -> None:
    with pytest.raises(ValueError) as err:
        parse_dsn(url)
    assert str(err.value) == problem
    with pytest.raises(ValueError) as err2:
        EvalDBConfig(url=url)  # type: ignore[arg-type]
    assert [(e["loc"], e["msg"]) for e in err2.value.errors()] == [  # type: ignore[attr-defined]
        (("url",), f"Value error, {problem}")
    ]


@pytest.mark.parametrize(
    ("name", "key"), [("monitoring_db.yaml", "monitoring_db"), ("human_signals_db.yaml", "human_signals_db")]
)
def test_invalid_url_rejects_every_store_section(
    make_settings: Callable[..., Settings], caplog: pytest.LogCaptureFixture, name: str, key: str
) -> None:
    write_yaml(make_settings, name, f"{key}:\n  url: postgresql://u:pw-marker-3@h:99999/d\n  table: t\n")
    with caplog.at_level(logging.WARNING):
        cfg = make_settings().db_config(key.removesuffix("_db"))
    assert cfg.is_configured is False and cfg.table is None  # type: ignore[attr-defined]
    assert cfg.config_error == (
        f"The database settings are invalid and were ignored ({name} key '{key}': url: "
        "the port in the URL is not a number from 1 to 65535). Fix them and restart."
    )
    assert "pw-marker-3" not in caplog.text and name in caplog.text


def test_invalid_env_url_is_rejected(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # YAML without a url, filled from the environment: the env URL is checked like a YAML value.
    monkeypatch.setenv("EVAL_DB_URL", "mysql://u:pw-marker-4@h/d")
    write_yaml(make_settings, "eval_db.yaml", "eval_db:\n  dataset_query: SELECT 1\n  results_query: SELECT 1\n")
    with caplog.at_level(logging.WARNING):
        cfg = make_settings().eval_db
    assert cfg.is_configured is False and cfg.has_query is False
    assert cfg.config_error == (
        "The database settings are invalid and were ignored (EVAL_DB_URL: the URL must "
        "start with postgresql:// or postgres:// (only PostgreSQL is supported)). "
        "Fix them and restart."
    )
    # Environment only (no YAML): same check.
    monkeypatch.setenv("MONITORING_DB_URL", "postgresql://u:pw-marker-4@h/d?sslmode=maybe")
    mon = make_settings().monitoring_db
    assert mon.is_configured is False
    assert mon.config_error is not None and "MONITORING_DB_* environment variables: url: sslmode" in mon.config_error
    assert "pw-marker-4" not in caplog.text and "pw-marker-4" not in mon.config_error
    # A blank env URL is "not set", not invalid.
    monkeypatch.setenv("EVAL_DB_URL", " ")
    assert make_settings().eval_db.config_error is None


def test_an_invalid_environment_value_stops_the_start_in_one_line_without_the_value(tmp_path: Path) -> None:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "AXIS_HOME": str(tmp_path),
        "EVAL_DB_PORT": "s3cretPortValue",
        "MAX_UPLOAD_MB": "lots",
    }
    code = "from app.main import create_app; create_app()"
    out = subprocess.run([sys.executable, "-c", code], cwd=BACKEND_DIR, env=env, capture_output=True, text=True)
    assert out.returncode == 1
    assert out.stderr.strip().splitlines() == [
        "AXIS cannot start, invalid setting in the environment or backend/.env: "
        "MAX_UPLOAD_MB: Input should be a valid integer, unable to parse string as an integer; "
        "EVAL_DB_PORT: Input should be a valid integer, unable to parse string as an integer"
    ]
