"""``/api/config``: theme, visibility, features, agents, assets (incl. path traversal)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from app.config import Settings


async def test_theme_shape(client: httpx.AsyncClient) -> None:
    body = (await client.get("/api/config/theme")).json()
    assert body["success"] is True
    assert body["active"] == "professional_blue"
    assert body["activePalette"]["primary"] == "#3D5A80"
    assert body["activePalette"]["primaryLight"] == "#5C7AA3"
    assert set(body["palettes"]) == {"sage_green", "professional_blue"}
    assert body["palettes"]["sage_green"]["accentGold"] == "#D4AF37"
    assert body["branding"]["footer_name"] == "AXIS"
    assert body["branding"]["footer_icon"] is None
    assert body["branding"]["tagline"] == "AI Evaluation Platform"


async def test_visibility_features_agents(make_settings: Callable[..., Settings], make_client: Any) -> None:
    base = make_settings()
    (base.config_dir / "monitoring_db.yaml").write_text("monitoring_db:\n  visible_metrics: [relevance_score]\n")
    (base.config_dir / "eval_db.yaml").write_text("eval_db:\n  eval_runner_enabled: false\n")
    (base.config_dir / "agents.yaml").write_text(
        "agents:\n  - {name: atlas, label: Atlas, trace_names: [a1]}\n  - {label: no-name}\n"
    )
    async with make_client(make_settings(copilot_enabled=False)) as client:
        vis = (await client.get("/api/config/visibility")).json()
        assert vis["monitoring"] == {"visible_metrics": ["relevance_score"]}
        assert vis["human_signals"] == {"visible_metrics": [], "visible_kpis": []}
        assert vis["kpi"] == {"visible_kpis": [], "visible_kpis_per_source": {}}
        feats = (await client.get("/api/config/features")).json()
        assert feats["eval_runner_enabled"] is False and feats["copilot_enabled"] is False
        agents = (await client.get("/api/config/agents")).json()["agents"]
        assert [a["name"] for a in agents] == ["atlas"]
        assert agents[0]["trace_names"] == ["a1"]


async def test_agents_absent_is_empty(client: httpx.AsyncClient) -> None:
    assert (await client.get("/api/config/agents")).json() == {"success": True, "agents": []}


async def test_assets_served_with_cache_headers(settings: Settings, client: httpx.AsyncClient) -> None:
    (settings.axis_custom_dir / "branding").mkdir(parents=True, exist_ok=True)
    (settings.axis_custom_dir / "branding" / "logo.svg").write_text("<svg/>")
    (settings.axis_custom_dir / "agents").mkdir(parents=True, exist_ok=True)
    (settings.axis_custom_dir / "agents" / "atlas.png").write_bytes(b"\x89PNG")
    res = await client.get("/api/config/assets/branding/logo.svg")
    assert res.status_code == 200 and res.text == "<svg/>"
    assert res.headers["content-type"].startswith("image/svg+xml")
    assert "immutable" in res.headers["cache-control"]
    res2 = await client.get("/api/config/assets/agents/atlas.png")
    assert res2.content == b"\x89PNG" and res2.headers["cache-control"] == "public, max-age=86400"


@pytest.mark.parametrize(
    "path",
    [
        "/api/config/assets/branding/../config/eval_db.yaml",
        "/api/config/assets/branding/..%2fconfig%2feval_db.yaml",
        "/api/config/assets/branding/%2e%2e/%2e%2e/secret.txt",
        "/api/config/assets/branding/%2e%2e%2f%2e%2e%2fsecret.txt",
        "/api/config/assets/branding//etc/passwd",
        "/api/config/assets/branding/%2Fetc%2Fpasswd",
        "/api/config/assets/other/logo.svg",
        "/api/config/assets/branding/missing.svg",
        "/api/config/assets/agents/..%5c..%5csecret.txt",
    ],
)
async def test_asset_traversal_is_404(settings: Settings, client: httpx.AsyncClient, path: str) -> None:
    (settings.axis_custom_dir / "branding").mkdir(parents=True, exist_ok=True)
    (settings.axis_custom_dir / "branding" / "logo.svg").write_text("<svg/>")
    (settings.axis_custom_dir.parent / "secret.txt").write_text("TOP-SECRET")
    (settings.config_dir / "eval_db.yaml").write_text("eval_db: {}\n")
    res = await client.get(path)
    assert res.status_code == 404
    assert "TOP-SECRET" not in res.text and "eval_db" not in res.text
