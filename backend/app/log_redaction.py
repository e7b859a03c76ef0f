"""A logging filter that removes configured secret values (and database-browser handles) from every log record."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

from app.errors import Invalid

_DSN_PASSWORD = re.compile(r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@\s]*)@")


# A database-browser handle in a request path (the access log): a bearer credential for the stored
# connection until it expires, so only its prefix is logged (spec §6.1).
_DB_HANDLE = re.compile(r"(?P<keep>/api/database/[0-9A-Fa-f]{8})(?:-?[0-9A-Fa-f]{4}){3}-?[0-9A-Fa-f]{12}")


def scrub_dsn(text: str) -> str:
    """Replace the password part of any ``scheme://user:password@`` URL with ``***``."""
    return _DSN_PASSWORD.sub(lambda m: f"{m.group('scheme')}{m.group('user')}:***@", text)


def mask_db_handles(text: str) -> str:
    """Shorten each database-browser handle in an ``/api/database/<handle>`` path to its prefix."""
    return _DB_HANDLE.sub(lambda m: f"{m.group('keep')}…", text)


# Secrets shorter than this are removed only where they stand as a whole word: replacing every "e" of
# a one-letter password would garble a message ("Databas*** 'nop***_db' …") while hiding nothing.
SHORT_SECRET = 4


def redact_secrets(text: str, secrets: Iterable[str | None]) -> str:
    """Replace each known secret value in ``text`` with ``***`` (short ones only as whole words)."""
    out = text
    for secret in secrets:
        if not secret:
            continue
        if len(secret) >= SHORT_SECRET:
            out = out.replace(secret, "***")
        else:
            out = re.sub(rf"(?<![0-9A-Za-z]){re.escape(secret)}(?![0-9A-Za-z])", "***", out)
    return out


def scrub_secrets(text: str, secrets: Iterable[str | None]) -> str:
    """Remove DSN passwords, database-browser handles and each known secret value from ``text``."""
    return redact_secrets(mask_db_handles(scrub_dsn(text)), secrets)


class SecretRedactingFilter(logging.Filter):
    """Rewrites a record's message with secrets and DSN passwords removed."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__()
        self.secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        """Scrub the record's message and traceback.

        A record without secrets keeps its ``msg``/``args`` untouched (formatters such as
        uvicorn's access formatter read ``args``); otherwise each string argument is scrubbed in
        place, and if a secret only appears in the formatted text the result is frozen.
        """
        try:
            message = record.getMessage()
        except (TypeError, ValueError) as exc:
            raise Invalid("unformattable log record") from exc
        if record.exc_info and record.exc_info[1] is not None:
            exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_text = scrub_secrets(exc_text, self.secrets)
            record.exc_info = None
        cleaned = scrub_secrets(message, self.secrets)
        if cleaned == message:
            return True
        record.msg = scrub_secrets(str(record.msg), self.secrets)
        if isinstance(record.args, tuple):
            record.args = tuple(scrub_secrets(a, self.secrets) if isinstance(a, str) else a for a in record.args)
        elif isinstance(record.args, dict):
            args = record.args
            record.args = {k: scrub_secrets(v, self.secrets) if isinstance(v, str) else v for k, v in args.items()}
        try:
            rescrubbed = record.getMessage()
        except (TypeError, ValueError):
            rescrubbed = message
        if scrub_secrets(rescrubbed, self.secrets) != rescrubbed:
            record.msg = cleaned
            record.args = None
        return True

    def add_secrets(self, secrets: Iterable[str]) -> None:
        """Also remove these values (a handler keeps one filter; each app adds its own secrets)."""
        self.secrets.extend(s for s in secrets if s and s not in self.secrets)


def install_secret_filter(secrets: list[str]) -> SecretRedactingFilter:
    """Attach a redacting filter to every handler of the root logger (and uvicorn's).

    A handler that already has one (an earlier app in the same process) gets these secrets added
    to it, so every app's secrets stay out of every handler's output.
    """
    flt = SecretRedactingFilter(secrets)
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for logger in (
        root,
        logging.getLogger("uvicorn"),
        logging.getLogger("uvicorn.error"),
        logging.getLogger("uvicorn.access"),
    ):
        for handler in logger.handlers:
            existing = [f for f in handler.filters if isinstance(f, SecretRedactingFilter)]
            if not existing:
                handler.addFilter(flt)
            for other in existing:
                other.add_secrets(flt.secrets)
    return flt
