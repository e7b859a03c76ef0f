"""Stop read-only work for a client that has gone away.

Without this, a heavy analytics query keeps a DuckDB thread and a read-limiter slot (or a
PostgreSQL backend) busy until it finishes, although nobody will read the answer. For the
read-only routes below, a disconnect before the response is complete cancels the handler: DuckDB
reads are interrupted (:meth:`DuckDBStore.run_read`) and asyncpg cancels its query on the server.
Routes that write (uploads, imports, syncs, examples, deletes) are never cut off half-way.
"""

from __future__ import annotations

import logging
import re

import anyio
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.route_paths import route_path

logger = logging.getLogger(__name__)

# (method, path pattern): read-only routes whose work may be abandoned.
CANCELLABLE_ROUTES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("GET", re.compile(r"^/api/(monitoring/analytics|store/(data|metadata|datasets|status))(/|$)")),
    ("GET", re.compile(r"^/api/human-signals/(cases|metric-schema)$")),
    ("GET", re.compile(r"^/api/database/[^/]+/(tables|schema)$")),
    ("POST", re.compile(r"^/api/analytics/[a-z-]+$")),
    ("POST", re.compile(r"^/api/data/(convert-tree|prepare-analytics)$")),
    ("POST", re.compile(r"^/api/database/[^/]+/(distinct-values|preview|query)$")),
)


def is_cancellable(method: str, path: str) -> bool:
    """True for a read-only route whose handler may be cancelled when its client disconnects."""
    return any(method == m and pattern.match(path) for m, pattern in CANCELLABLE_ROUTES)


class CancelOnDisconnect:
    """Cancel a cancellable route's handler when its client disconnects before the response is complete.

    Once the request body has been read (at once for a request without one), a watcher waits on
    the server's ``receive`` for ``http.disconnect``, which the ASGI server sends when the client
    goes away, or after the response is complete; only the first cancels. The body itself reaches
    the app as before, so a slow reader still pushes back on the client.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_cancellable(scope["method"], route_path(scope)):
            await self.app(scope, receive, send)
            return
        complete = False
        body_read = anyio.Event()
        if not _has_body(scope):
            body_read.set()
        unread: list[Message] = []  # a bodiless request's empty body message, taken by the watcher

        async def app_receive() -> Message:
            if unread:
                return unread.pop(0)
            message = await receive()
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_read.set()
            return message

        async def tracked_send(message: Message) -> None:
            nonlocal complete
            await send(message)
            if message["type"] == "http.response.body" and not message.get("more_body", False):
                complete = True

        try:
            async with anyio.create_task_group() as tg:

                async def watch() -> None:
                    await body_read.wait()
                    while (message := await receive())["type"] == "http.request":
                        unread.append(message)
                    if not complete:
                        logger.info("Client went away: cancelled %s %s", scope["method"], scope["path"])
                        tg.cancel_scope.cancel()

                tg.start_soon(watch)
                await self.app(scope, app_receive, tracked_send)
                tg.cancel_scope.cancel()
        except BaseExceptionGroup as group:  # the app's own error, as the server would see it without this layer
            if len(group.exceptions) == 1:
                raise group.exceptions[0] from None
            raise


def _has_body(scope: Scope) -> bool:
    """True when the request announces a body (a non-zero Content-Length, or chunked)."""
    headers = Headers(scope=scope)
    length = headers.get("content-length", "").strip()
    return "transfer-encoding" in headers or (length.isdigit() and int(length) > 0)
