"""Reading the YAML files in ``$AXIS_CUSTOM_DIR/config/`` with ``${VAR}`` expansion."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

logger = logging.getLogger(__name__)

_QUOTED = re.compile(r"'[^']*'")
# What reading and parsing a YAML file can raise.
_READ_ERRORS = (yaml.YAMLError, UnicodeDecodeError, OSError)
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def expand_env_vars(value: Any, environ: Mapping[str, str] | None = None) -> Any:
    """Replace ``${VAR}`` and ``${VAR:-default}`` in every string of a YAML tree."""
    env = os.environ if environ is None else environ
    if isinstance(value, str):

        def _sub(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            current = env.get(name)
            if current:
                return current
            return default if default is not None else ""

        return _VAR.sub(_sub, value)
    if isinstance(value, list):
        return [expand_env_vars(v, env) for v in value]
    if isinstance(value, dict):
        return {k: expand_env_vars(v, env) for k, v in value.items()}
    return value


def _load_yaml(path: Path) -> Any:
    """The parsed document of a YAML file; a read or parse error is logged (where and what only) and re-raised."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except _READ_ERRORS as exc:
        logger.warning("Ignoring malformed YAML file %s: %s", path, describe_yaml_error(exc))
        raise


def read_yaml_section(path: Path, key: str, environ: Mapping[str, str] | None = None) -> dict[str, Any] | None:
    """Return the mapping under top-level ``key`` of a YAML file, or None.

    A missing file or key gives None. A malformed file, or a key whose value is not a
    mapping, is logged with the file name and also gives None, so boot continues on defaults.
    """
    return read_yaml_section_checked(path, key, environ)[0]


def read_yaml_section_checked(
    path: Path, key: str, environ: Mapping[str, str] | None = None
) -> tuple[dict[str, Any] | None, str | None]:
    """(section, None) as :func:`read_yaml_section` reads it, or (None, why) for a malformed file or key.

    The reason names the file and the problem (never a value), for callers that report it.
    """
    if not path.is_file():
        return None, None
    try:
        loaded = _load_yaml(path)
    except _READ_ERRORS as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        return None, f"{path.name} could not be read as YAML{where}"
    if loaded is None:
        return None, None
    if not isinstance(loaded, dict):
        logger.warning("Ignoring YAML file %s: top level is not a mapping", path)
        return None, f"{path.name}: the top level is not a mapping"
    if key not in loaded:
        return None, None
    section = loaded[key]
    if section is None:
        return {}, None
    if not isinstance(section, dict):
        logger.warning("Ignoring key '%s' in %s: expected a mapping", key, path)
        return None, f"{path.name} key '{key}': expected a mapping"
    expanded: dict[str, Any] = expand_env_vars(section, environ)
    return expanded, None


def read_yaml_list_section(
    path: Path, key: str, environ: Mapping[str, str] | None = None, *, name_key: str = "name"
) -> list[dict[str, Any]]:
    """The entries under top-level ``key``: a list of mappings, or a name→fields mapping read as one.

    List items that are not mappings are dropped; a mapping gives ``{name_key: name, **fields}`` per
    entry (no fields when they are not a mapping). ``${VAR}`` is expanded as in
    :func:`read_yaml_section`. A missing file or key, or any other value, gives []; a malformed file
    is logged and gives [] too.
    """
    if not path.is_file():
        return []
    try:
        loaded = _load_yaml(path)
    except _READ_ERRORS:
        return []
    section = expand_env_vars(loaded.get(key), environ) if isinstance(loaded, dict) else None
    if isinstance(section, dict):
        return [{name_key: k, **(v if isinstance(v, dict) else {})} for k, v in section.items()]
    if isinstance(section, list):
        return [item for item in section if isinstance(item, dict)]
    return []


def describe_yaml_error(exc: Exception) -> str:
    """Where and what went wrong reading a YAML file, without the text of the line (it may hold a secret).

    PyYAML's own message quotes the offending line (``password: "hunter2`` …) and tokens (a tag
    ``'!hunter2'``); this keeps only the position and the parser's description of the problem.
    """
    if not isinstance(exc, yaml.MarkedYAMLError):
        return str(exc) if not isinstance(exc, yaml.YAMLError) else type(exc).__name__
    parts = [
        f"line {mark.line + 1}, column {mark.column + 1}: {text}" if mark is not None else text
        for text, mark in ((exc.context, exc.context_mark), (exc.problem, exc.problem_mark))
        if text
    ]
    # Quoted fragments are file content (a tag '!…' or an alias '*…' may be a password): left out.
    return _QUOTED.sub("'…'", "; ".join(parts)) or type(exc).__name__


def describe_validation_error(exc: ValidationError) -> str:
    """Locations and messages only: input values may be secrets and are never logged."""
    return "; ".join(
        f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg'].removeprefix('Value error, ')}"
        for err in exc.errors()
    )
