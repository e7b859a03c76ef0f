"""The path a request is routed by, for middlewares that decide by path."""

from __future__ import annotations

from starlette.types import Scope


def route_path(scope: Scope) -> str:
    """``scope["path"]`` without the ``root_path`` prefix, i.e. the path the app's routes match.

    Served with a root path (``uvicorn --root-path /axis`` behind a proxy on a sub-path), the ASGI
    server puts the prefix in front of ``path``; routing strips it again. A middleware that looked
    at ``path`` alone would see ``/axis/api/…`` and miss every ``/api/…`` rule.
    """
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root) : len(root) + 1] in ("", "/"):
        return path[len(root) :] or "/"
    return path
