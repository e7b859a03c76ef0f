"""``/api/data``: routes are added with the service that implements them."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(prefix="/api/data", tags=["data"])
