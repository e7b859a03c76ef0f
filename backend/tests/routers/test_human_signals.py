"""``/api/human-signals`` over HTTP."""

from __future__ import annotations

import csv
import io
import json

import httpx

from tests.robustness import strict_json
from tests.services.test_csv_ingest import LOOSE_ZONES


def _csv(rows: list[list[object]]) -> str:
    buf = io.StringIO()
    csv.writer(buf).writerows(rows)
    return buf.getvalue()


async def test_upload_with_display_headers_and_source_column(client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/human-signals/cases")).status_code == 404
    assert (await client.get("/api/human-signals/metric-schema")).status_code == 404
    body = _csv(
        [
            ["Metric Name", "Dataset ID", "Signals", "Source", "Timestamp"],
            ["resolution", "c1", json.dumps({"is_resolved": True, "status": "done"}), "atlas", "2025-01-01T10:00:00Z"],
            ["resolution", "c2", json.dumps({"is_resolved": False, "status": "open"}), "nova", "2025-01-02T10:00:00Z"],
            ["sentiment", "c2", json.dumps({"mood": "sad"}), "nova", "2025-01-02T10:00:00Z"],
        ]
    )
    res = await client.post("/api/human-signals/upload", files={"file": ("hs.csv", body, "text/csv")})
    assert res.status_code == 200, res.text
    data = res.json()
    assert data["format"] == "hitl_feedback" and data["row_count"] == 2 and data["message"] == "Processed 2 cases"
    assert [c["Case_ID"] for c in data["data"]] == ["c1", "c2"]
    assert data["data"][0]["source_name"] == "atlas" and data["data"][0]["Agent_Name"] == "atlas"
    assert data["data"][1]["resolution__status"] == "open" and data["data"][1]["sentiment__mood"] == "sad"
    assert data["data"][0]["Timestamp"] == "2025-01-01 10:00:00"
    assert data["metric_schema"]["source_fields"] == ["source_name"]
    assert data["display_config"]["kpi_strip"][0]["signal"] == "is_resolved"
    assert "sentiment__mood" in data["columns"]  # union of keys, not the first row's
    page = (await client.get("/api/human-signals/cases", params={"page": 2, "page_size": 1})).json()
    assert page["row_count"] == 2 and page["page"] == 2 and [c["Case_ID"] for c in page["data"]] == ["c2"]
    assert page["message"] == "2 cases available" and page["source"] == "duckdb"
    schema = (await client.get("/api/human-signals/metric-schema")).json()
    assert schema["metric_schema"] == data["metric_schema"]
    assert (await client.get("/api/human-signals/cases", params={"page": 0})).status_code == 422
    assert (await client.get("/api/human-signals/cases", params={"page_size": 501})).status_code == 422


async def test_timestamps_with_a_zone_after_a_blank_or_a_lowercase_z_show_their_utc_time(
    client: httpx.AsyncClient,
) -> None:
    """They stayed text as written (``2024-01-01 10:00:00 +02:00``) while ``…Z`` / ``+02:00`` showed the UTC time."""
    rows = [["metric_name", "dataset_id", "signals", "timestamp"]]
    rows += [["m", f"c{i}", json.dumps({"ok": True}), text] for i, (text, _) in enumerate(LOOSE_ZONES)]
    res = await client.post("/api/human-signals/upload", files={"file": ("hs.csv", _csv(rows), "text/csv")})
    assert res.status_code == 200, res.text
    got = {c["Case_ID"]: c["Timestamp"] for c in res.json()["data"]}
    assert got == {
        "c0": "2024-01-01 08:00:00",
        "c1": "2024-01-01 09:00:00",
        "c2": "2024-01-01 10:00:00",
        "c3": "2024-01-01 11:00:00",
        "c4": "2024-01-01 12:00:00.25",
        "c5": "2024-01-01 13:00:00",
    }


async def test_upload_without_signals_is_400(client: httpx.AsyncClient) -> None:
    body = _csv([["metric_name", "dataset_id", "source_name"], ["m", "a", "s"]])
    res = await client.post("/api/human-signals/upload", files={"file": ("x.csv", body, "text/csv")})
    assert res.status_code == 400
    assert "Required columns: metric_name, dataset_id, signals" in res.json()["detail"]


async def test_example_and_db_config(client: httpx.AsyncClient) -> None:
    res = await client.get("/api/human-signals/example/hitl")
    assert res.status_code == 200, res.text
    assert res.json()["row_count"] == 3
    assert (await client.get("/api/human-signals/example/other")).status_code == 404
    cases = (await client.get("/api/human-signals/cases")).json()
    assert cases["row_count"] == 3 and len(cases["data"]) == 3
    cfg = (await client.get("/api/human-signals/db-config")).json()
    assert cfg["configured"] is False and cfg["connection"] is None
    assert (await client.post("/api/human-signals/db-import")).status_code == 400


async def test_upload_without_any_case_id_is_400_and_keeps_the_previous_dataset(client: httpx.AsyncClient) -> None:
    good = _csv([["metric_name", "dataset_id", "signals"], ["m", "c1", json.dumps({"ok": True})]])
    first = await client.post("/api/human-signals/upload", files={"file": ("a.csv", good, "text/csv")})
    assert first.status_code == 200, first.text
    blank = _csv(
        [
            ["metric_name", "dataset_id", "signals"],
            ["m", "", json.dumps({"ok": True})],
            ["m", "", json.dumps({"ok": False})],
        ]
    )
    res = await client.post("/api/human-signals/upload", files={"file": ("b.csv", blank, "text/csv")})
    assert res.status_code == 400 and res.json()["detail"].startswith("Empty dataset")
    cases = (await client.get("/api/human-signals/cases")).json()
    assert cases["dataset_id"] == first.json()["dataset_id"] and [c["Case_ID"] for c in cases["data"]] == ["c1"]


async def test_exact_metric_name_column_wins_over_a_display_spelling(client: httpx.AsyncClient) -> None:
    body = _csv(
        [
            ["Metric Name", "metric_name", "dataset_id", "signals"],
            ["OTHER", "quality", "c1", json.dumps({"ok": True})],
        ]
    )
    res = await client.post("/api/human-signals/upload", files={"file": ("hs.csv", body, "text/csv")})
    assert res.status_code == 200, res.text
    assert list(res.json()["metric_schema"]["metrics"]) == ["quality"]
    assert res.json()["data"][0]["quality__ok"] is True and "OTHER__ok" not in res.json()["data"][0]


async def test_non_finite_signal_values_give_a_standard_json_page(client: httpx.AsyncClient) -> None:
    """DuckDB's JSON reads nan/inf signals; upload and case pages stay standard JSON (those values as null)."""
    body = b'metric_name,dataset_id,signals\nm,a,"{""score"": nan, ""ok"": 1}"\nm,e,"{""score"": 1.5, ""ok"": 5}"\n'

    up = await client.post("/api/human-signals/upload", files={"file": ("nan.csv", body, "text/csv")})
    assert up.status_code == 200, up.text
    page = await client.get("/api/human-signals/cases", params={"page": 1, "page_size": 50})
    for res in (up, page):
        cases = {c["Case_ID"]: c for c in strict_json(res.content)["data"]}
        assert (cases["a"]["m__score"], cases["a"]["m__ok"]) == (None, 1)
        assert (cases["e"]["m__score"], cases["e"]["m__ok"]) == (1.5, 5)


async def test_json_python_reads_but_duckdb_refuses_still_loads(client: httpx.AsyncClient) -> None:
    """A lone surrogate escape (half an emoji cut off) and a NUL inside a key: the rows load (were 500 / 400)."""
    body = (
        b"dataset_id,metric_name,signals,conversation\n"
        b'c1,m1,"{""note"": ""trunc \\ud83d"", ""ok"": true}",'
        b'"{""messages"": [{""role"": ""user"", ""content"": ""New support case: T1 \\ud83d""}]}"\n'
        b'c2,m1,"{""note"": ""fine"", ""ok"": false, ""a\\u0000b"": 3}",\n'
    )
    up = await client.post("/api/human-signals/upload", files={"file": ("odd.csv", body, "text/csv")})
    assert up.status_code == 200, up.text
    cases = {c["Case_ID"]: c for c in up.json()["data"]}
    assert (cases["c1"]["m1__note"], cases["c1"]["m1__ok"]) == ("trunc \ufffd", True)
    assert (cases["c2"]["m1__note"], cases["c2"]["m1__ok"], cases["c2"]["m1__a\ufffdb"]) == ("fine", False, 3)
    assert cases["c1"]["Full_Conversation"][0]["content"] == "New support case: T1 \ufffd"
    schema = (await client.get("/api/human-signals/metric-schema")).json()["metric_schema"]
    assert schema["metrics"]["m1"]["signals"] == ["note", "ok", "a\ufffdb"]


async def test_tab_only_names_and_values_are_blank(client: httpx.AsyncClient) -> None:
    body = (
        b"dataset_id,metric_name,signals\n"
        b'c1,m,"{""mood"": ""x""}"\nc2,m,"{""mood"": ""\\t""}"\nc3,m,"{""mood"": "" ""}"\nc4,\t,"{""zz"": 3}"\n'
    )
    up = await client.post("/api/human-signals/upload", files={"file": ("tabs.csv", body, "text/csv")})
    assert up.status_code == 200, up.text
    schema = (await client.get("/api/human-signals/metric-schema")).json()["metric_schema"]
    assert list(schema["metrics"]) == ["m"] and schema["metrics"]["m"]["values"] == {"mood": ["x"]}
    assert not any("zz" in c for c in up.json()["columns"])


async def test_a_common_key_differing_from_a_case_field_only_in_case_is_kept(client: httpx.AsyncClient) -> None:
    """``timestamp`` next to the case field ``Timestamp``: promoted under a numbered name, not dropped."""
    body = (
        b"dataset_id,metric_name,signals\n"
        b'c1,m1,"{""timestamp"": ""2024-05-05"", ""Business"": ""acme"", ""x1"": 1}"\n'
        b'c1,m2,"{""timestamp"": ""2024-05-06"", ""Business"": ""acme2"", ""x2"": 2}"\n'
    )
    up = await client.post("/api/human-signals/upload", files={"file": ("common.csv", body, "text/csv")})
    assert up.status_code == 200, up.text
    [case] = up.json()["data"]
    assert case["timestamp_2"] == "2024-05-05"  # first non-null wins
    assert case["Business"] == "Unknown"  # a case field of that exact name is never replaced
    assert (case["m1__x1"], case["m2__x2"]) == (1, 2)
