"""The secret-redacting log filter keeps records formattable (uvicorn's access formatter) and secret-free."""

from __future__ import annotations

import io
import logging

from uvicorn.logging import AccessFormatter

from app.log_redaction import SecretRedactingFilter, install_secret_filter

SECRET = "Sup3r-Secret-Value"


def _record(msg: str, args: object, name: str = "uvicorn.access") -> logging.LogRecord:
    return logging.LogRecord(name, logging.INFO, __file__, 1, msg, args, None)  # type: ignore[arg-type]


def test_clean_access_record_keeps_its_args_for_the_access_formatter() -> None:
    record = _record('%s - "%s %s HTTP/%s" %d', ("127.0.0.1:5000", "GET", "/api/store/status", "1.1", 200))
    assert SecretRedactingFilter([SECRET]).filter(record)
    assert record.args == ("127.0.0.1:5000", "GET", "/api/store/status", "1.1", 200)
    line = AccessFormatter('%(client_addr)s - "%(request_line)s" %(status_code)s', use_colors=False).format(record)
    assert line == '127.0.0.1:5000 - "GET /api/store/status HTTP/1.1" 200 OK'


def test_secret_in_an_argument_is_scrubbed_and_the_record_stays_formattable() -> None:
    record = _record('%s - "%s %s HTTP/%s" %d', ("127.0.0.1:5000", "GET", f"/x?token={SECRET}", "1.1", 401))
    SecretRedactingFilter([SECRET]).filter(record)
    line = AccessFormatter('%(client_addr)s - "%(request_line)s" %(status_code)s', use_colors=False).format(record)
    assert SECRET not in line and line == '127.0.0.1:5000 - "GET /x?token=*** HTTP/1.1" 401 Unauthorized'


def test_dict_args_dsn_passwords_and_tracebacks_are_scrubbed() -> None:
    record = _record("connecting to %(dsn)s", ({"dsn": "postgresql://u:pw123@h/db"},), name="app")
    SecretRedactingFilter([]).filter(record)
    assert record.getMessage() == "connecting to postgresql://u:***@h/db"
    try:
        raise RuntimeError(f"failed with {SECRET}")
    except RuntimeError:
        import sys

        record = logging.LogRecord("app", logging.ERROR, __file__, 1, "boom %s", (SECRET,), sys.exc_info())
    SecretRedactingFilter([SECRET]).filter(record)
    text = logging.Formatter().format(record)
    assert SECRET not in text and "RuntimeError: failed with ***" in text


def test_secret_spanning_message_and_argument_is_frozen_scrubbed() -> None:
    record = _record("key=Sup3r-%s", ("Secret-Value",), name="app")
    SecretRedactingFilter([SECRET]).filter(record)
    assert record.getMessage() == "key=***"


def test_short_secrets_are_scrubbed_as_whole_words_only() -> None:
    record = _record("login %s failed for %s in database %s", ("ab", "user ab", "tab_db"), name="app")
    SecretRedactingFilter(["ab"]).filter(record)
    assert record.getMessage() == "login *** failed for user *** in database tab_db"


def test_a_second_install_adds_its_secrets_to_the_handlers_filter() -> None:
    """Two apps in one process: the handler already filtered for the first still scrubs the second's secret."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    logger = logging.getLogger("uvicorn.access")
    logger.addHandler(handler)
    try:
        install_secret_filter(["first-app-secret"])
        install_secret_filter(["second-app-secret"])
        assert sum(isinstance(f, SecretRedactingFilter) for f in handler.filters) == 1
        logger.warning("token %s then %s", "first-app-secret", "second-app-secret")
    finally:
        logger.removeHandler(handler)
    out = stream.getvalue()
    assert "first-app-secret" not in out and "second-app-secret" not in out
    assert out.strip() == "token *** then ***"


def test_database_handles_in_access_lines_keep_only_their_prefix() -> None:
    """§6.1: a handle stands for stored credentials until it expires; logs carry only its prefix."""
    handle = "f577c569-345e-45bd-b65c-871fd386cce7"
    fmt = AccessFormatter('%(client_addr)s - "%(request_line)s" %(status_code)s', use_colors=False)
    record = _record('%s - "%s %s HTTP/%s" %d', ("127.0.0.1:5000", "POST", f"/api/database/{handle}/query", "1.1", 200))
    assert SecretRedactingFilter([]).filter(record)
    assert fmt.format(record) == '127.0.0.1:5000 - "POST /api/database/f577c569…/query HTTP/1.1" 200 OK'
    record = _record('%s - "%s %s HTTP/%s" %d', ("127.0.0.1:5000", "DELETE", f"/api/database/{handle}", "1.1", 200))
    SecretRedactingFilter([]).filter(record)
    assert handle not in fmt.format(record) and "/api/database/f577c569…" in fmt.format(record)
    for path in ("/api/database/defaults?store=data", "/api/database/stats", "/api/database/connect"):
        record = _record('%s - "%s %s HTTP/%s" %d', ("127.0.0.1:5000", "GET", path, "1.1", 200))
        SecretRedactingFilter([]).filter(record)
        assert fmt.format(record) == f'127.0.0.1:5000 - "GET {path} HTTP/1.1" 200 OK'
