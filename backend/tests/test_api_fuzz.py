"""Schemathesis over every operation of the app's own OpenAPI document (issue 7).

The real app (``create_app``) runs under uvicorn on a loopback port with its lifespan, a DuckDB
file seeded with one stored dataset of each kind (the sample CSVs, uploaded through the upload
endpoints) plus synced PostgreSQL split sources (eval, monitoring, human signals) in a ``pg``
schema. Every secret setting carries a marker. For each operation the test draws a bounded number
of schema-valid (positive) and schema-violating (negative) requests, plus schemathesis'
deterministic coverage cases (boundary values, missing, extra and wrong-typed parameters), and checks:

- no 5xx (``not_a_server_error``),
- the body conforms to the declared response schema (``response_schema_conformance``),
- no configured secret appears in the body or the headers.

New routers are covered automatically: the operations come from ``app.openapi()``. Examples per
operation and mode: ``AXIS_FUZZ_EXAMPLES``, default 10, lowered (not below 5) once the schema grows
past 80 operations, so the test stays under 3 minutes on 2 cores; coverage cases per operation are
capped the same way (40, not below 15). Generation is derandomised so a failure replays; ``AXIS_FUZZ_RANDOM=1``
explores fresh inputs. No example database is written (``database=None``).
"""

from __future__ import annotations

import copy
import itertools
import os
from collections.abc import Callable
from typing import Any

import httpx
import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from app.config import Settings
from tests.conftest import PgSchema
from tests.fake_llm import FakeLLMServer
from tests.robustness import (
    SECRET_MARKER,
    create_split_source,
    live_server,
    marker_dsn,
    route_paths,
    secret_settings,
    seed_samples,
    split_queries,
    wait_for,
    write_db_yaml,
    write_duckdb_yaml,
)

EXAMPLES = int(os.environ["AXIS_FUZZ_EXAMPLES"]) if os.environ.get("AXIS_FUZZ_EXAMPLES") else None
BUDGET_EXAMPLES = 800  # examples per mode summed over all operations (the default budget)
COVERAGE_BUDGET = 3200  # deterministic coverage cases summed over all operations
EXTREME_NUMBERS = ["9223372036854775808", "-9223372036854775809", "1e308"]
EXTREME_STRINGS = ["\x00", "'\"%_\\;--", "x" * 5000, "9999-99-99T99:99:99Z"]
RANDOM = os.environ.get("AXIS_FUZZ_RANDOM") == "1"
REPORT = os.environ.get("AXIS_FUZZ_REPORT")  # read at import: the env-isolation fixture drops AXIS_* vars

# Mutating methods run after the reads, deletes last, so reads see the seeded data.
METHOD_ORDER = {"GET": 0, "HEAD": 0, "OPTIONS": 0, "POST": 1, "PUT": 1, "PATCH": 1, "DELETE": 2}

# Path parameters that name things the seeded app holds: mixed into the generated values so
# the operations also run their real code paths, not only their 404s.
KNOWN_PATH_VALUES: dict[str, list[str]] = {
    "dataset": ["monitoring", "eval", "human_signals", "monitoring_data", "eval_data", "kpi"],
    "dataset_name": ["model", "comparison", "annotation", "align", "monitoring", "monitoring_long", "hitl"],
    "store": ["data", "monitoring", "human_signals"],
}


def _fuzz_settings(make_settings: Callable[..., Settings], pg: PgSchema, fake_llm: FakeLLMServer) -> Settings:
    """Secret-marked settings whose three PostgreSQL sources point at split tables in the test schema."""
    overrides: dict[str, Any] = {
        **secret_settings(),
        "openai_api_base": fake_llm.openai_base_url,
        "anthropic_api_base": fake_llm.anthropic_base_url,
        "db_connect_timeout_seconds": 3.0,
        "db_query_timeout_seconds": 10,
        "db_import_timeout_seconds": 20,
        "upload_response_row_cap": 25,
    }
    base = make_settings(**overrides)
    for store, prefix in (("monitoring", "mon"), ("eval", "ev"), ("human_signals", "hs")):
        create_split_source(pg, prefix, 30)
        cfg = {"enabled": True, "url": marker_dsn(pg), "row_limit": 500, "query_timeout": 10}
        write_db_yaml(base, store, {**cfg, **split_queries(pg, prefix)})
    write_duckdb_yaml(base, {"sync_mode": "manual", "threads": 2, "memory_limit": "1GB"})
    return make_settings(**overrides)


def _leaks(response: requests.Response, secrets: list[str]) -> list[str]:
    """Secrets (or the marker) found in the response body or headers."""
    haystacks = [response.text, "\n".join(f"{k}: {v}" for k, v in response.headers.items())]
    needles = [*secrets, SECRET_MARKER]
    return sorted({s for s in needles for h in haystacks if s and s in h})


def _strategy(operation: Any, mode: GenerationMode, known: dict[str, list[str]]) -> Any:
    """Generated cases, with known path values for a share of them."""
    strategy = operation.as_strategy(generation_mode=mode)
    names = [p.name for p in operation.path_parameters]
    if mode.is_positive and names and all(n in known for n in names):
        fixed = st.fixed_dictionaries({n: st.sampled_from(known[n]) for n in names}).flatmap(
            lambda values: operation.as_strategy(generation_mode=mode, path_parameters=values)
        )
        return st.one_of(strategy, fixed)
    return strategy


def _check_case(
    case: Any, session: requests.Session, base_url: str, headers: dict[str, str], secrets: list[str]
) -> None:
    """Send one case; raise on a 5xx, a schema violation or a leaked secret."""
    response = case.call(base_url=base_url, headers=headers, session=session, timeout=60)
    case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])
    leaked = _leaks(response, secrets)
    assert not leaked, f"secret in response of {case.as_curl_command(headers=headers)}: {leaked}"


def _coverage_operation(
    schema: Any, operation: Any, base_url: str, headers: dict[str, str], secrets: list[str], cap: int
) -> None:
    """Schemathesis' deterministic coverage cases (boundaries, missing/extra/wrong-typed values), capped."""
    config = schema.config.generation_for(operation=operation)
    cases = schema.iter_coverage_cases(
        operation,
        generation_modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE],
        generation_config=config,
    )
    with requests.Session() as session:
        for case in itertools.islice(cases, cap):
            _check_case(case, session, base_url, headers, secrets)


def _extremes_operation(
    operation: Any, base_url: str, headers: dict[str, str], secrets: list[str], known: dict[str, list[str]]
) -> None:
    """One valid case per operation, then each query parameter set to extreme values in turn.

    Hypothesis rarely draws 20-digit integers or 5000-character strings; databases overflow on them.
    """
    params = [(p.name, (p.definition.get("schema") or {})) for p in operation.query]
    if not params:
        return
    session = requests.Session()

    @hypothesis.settings(
        max_examples=1,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )
    @hypothesis.given(case=_strategy(operation, GenerationMode.POSITIVE, known))
    def run(case: Any) -> None:
        for name, schema in params:
            types = {schema.get("type"), *(s.get("type") for s in schema.get("anyOf", []))}
            values = EXTREME_NUMBERS if types & {"integer", "number"} else EXTREME_STRINGS if "string" in types else []
            for value in values:
                extreme = operation.Case(
                    path_parameters=case.path_parameters,
                    headers=case.headers,
                    query={**(case.query or {}), name: value},
                    body=case.body,
                    media_type=case.media_type,
                )
                _check_case(extreme, session, base_url, headers, secrets)

    try:
        run()
    finally:
        session.close()


def _fuzz_operation(
    operation: Any,
    mode: GenerationMode,
    base_url: str,
    headers: dict[str, str],
    secrets: list[str],
    known: dict[str, list[str]],
    examples: int,
) -> None:
    """Draw ``examples`` cases for one operation and mode; raise on the first failing one."""
    session = requests.Session()

    @hypothesis.settings(
        max_examples=examples,
        deadline=None,
        database=None,
        derandomize=not RANDOM,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        print_blob=False,
    )
    @hypothesis.given(case=_strategy(operation, mode, known))
    def run(case: Any) -> None:
        _check_case(case, session, base_url, headers, secrets)

    try:
        run()
    except hypothesis.errors.Unsatisfiable:
        # Negative mode over an operation whose every input accepts any value (e.g. only string
        # path parameters): there is no schema-violating request to send.
        if mode.is_positive:
            raise
    finally:
        session.close()


def _describe(exc: BaseException) -> str:
    """The failure's own message (schemathesis' report with its curl line), without tracebacks."""
    message = getattr(exc, "message", None) or str(exc)
    return message.strip()[:3000]


@pytest.mark.slow
def test_every_operation_survives_fuzzing(
    make_settings: Callable[..., Settings], pg: PgSchema, fake_llm: FakeLLMServer
) -> None:
    settings = _fuzz_settings(make_settings, pg, fake_llm)
    token = settings.axis_api_token.get_secret_value() if settings.axis_api_token else ""
    headers = {"Authorization": f"Bearer {token}"}
    secrets = settings.secret_values()
    assert len(secrets) >= 10 and all(SECRET_MARKER in s for s in secrets if s != pg.user)

    with live_server(settings) as server:
        paths = route_paths(server.app)
        known = {k: list(v) for k, v in KNOWN_PATH_VALUES.items()}
        with httpx.Client(base_url=server.base_url, headers=headers, timeout=120) as client:
            seeded, seed_errors = seed_samples(client, paths)
            known["dataset_id"] = [d for ids in seeded.values() for d in ids]
            if "/api/store/sync" in paths:
                started = client.post("/api/store/sync", params={"full": True})
                assert started.status_code == 200 and len(started.json()["sync_id"]) == 32
                assert {"monitoring", "eval"} <= set(started.json()["datasets"])

                def _synced() -> bool:
                    body = client.get("/api/store/status").json()
                    return not body["running"] and all(
                        body["datasets"][t]["state"] == "ready" for t in ("monitoring_data", "eval_data")
                    )

                wait_for(_synced, timeout=90)
                known["dataset_id"] += ["sync_monitoring", "sync_eval", "sync_human_signals"]
            if "/api/database/connect" in paths:
                body = {"host": pg.host, "port": pg.port, "database": pg.database, "username": pg.user}
                res = client.post("/api/database/connect", json={**body, "password": "x", "ssl_mode": "disable"})
                assert res.status_code == 200, res.text
                known["handle"] = [res.json()["handle"]]

        # The token is sent with every case (the guard's own cases are in test_main.py): without the
        # declared bearer scheme, schemathesis spends no cases on missing or garbled Authorization headers.
        spec = copy.deepcopy(server.app.openapi())
        spec.get("components", {}).pop("securitySchemes", None)
        for operations_of_path in spec["paths"].values():
            for operation_spec in operations_of_path.values():
                operation_spec.pop("security", None)
        schema = schemathesis.openapi.from_dict(spec)
        operations = [result.ok() for result in schema.get_all_operations()]
        operations.sort(key=lambda op: (METHOD_ORDER.get(op.method.upper(), 1), op.path, op.method))
        assert len(operations) >= 10

        examples = EXAMPLES or max(5, min(10, BUDGET_EXAMPLES // len(operations)))
        coverage_cap = max(15, min(40, COVERAGE_BUDGET // len(operations)))
        failures: list[str] = list(seed_errors)
        for operation in operations:
            try:
                _coverage_operation(schema, operation, server.base_url, headers, secrets, coverage_cap)
            except (Exception, BaseExceptionGroup) as exc:
                failures.append(f"{operation.method.upper()} {operation.path} [coverage]: {_describe(exc)}")
            try:
                _extremes_operation(operation, server.base_url, headers, secrets, known)
            except (Exception, BaseExceptionGroup) as exc:
                failures.append(f"{operation.method.upper()} {operation.path} [extremes]: {_describe(exc)}")
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                try:
                    _fuzz_operation(operation, mode, server.base_url, headers, secrets, known, examples)
                except (Exception, BaseExceptionGroup) as exc:  # schemathesis' FailureGroup is a BaseExceptionGroup
                    failures.append(f"{operation.method.upper()} {operation.path} [{mode.value}]: {_describe(exc)}")

    if REPORT:
        with open(REPORT, "w") as fh:
            fh.write("\n\n".join(failures))
    assert not failures, f"{len(failures)} failing operation(s):\n\n" + "\n\n".join(failures)
