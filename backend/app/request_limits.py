"""The size cap of every request body (``MAX_UPLOAD_MB``).

Upload endpoints read their multipart body through ``read_upload_file`` with this cap (plus slack
for the multipart framing); every other body (``/api/analytics/*`` and ``/api/data/convert-tree``
rows, for example) is read whole by FastAPI, and JSON is parsed into Python objects about ten
times its size, so it is capped here before it is read. A multipart body sent to such an endpoint
is read whole as well, so multipart bodies are capped here too, a little above the uploads' own
cap (whose message and timing they keep).
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.services.csv_ingest import MULTIPART_SLACK_BYTES, upload_too_large


def body_too_large_message(max_bytes: int) -> str:
    """The 413 detail of a request body over the cap."""
    mb = max_bytes / (1024 * 1024)
    limit = f"{mb:g} MB" if mb >= 1 else f"{max_bytes} bytes"
    return (
        f"Request body is larger than the limit of {limit} (MAX_UPLOAD_MB); "
        "send fewer rows, or upload them as a CSV file and analyse the stored dataset"
    )


class RequestBodyLimit:
    """413 ``{"detail": …}`` for a request body over ``max_bytes`` (multipart: the upload cap's slack above).

    A declared ``Content-Length`` over the cap is answered before anything is read; a chunked body
    is cut off as soon as the bytes read pass it (the HTTPException surfaces through FastAPI's body
    parsing and the app's HTTPException handling).
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        if headers.get("content-type", "").lower().startswith("multipart/form-data"):
            # Upload endpoints refuse past max_bytes + slack themselves; this only stops the rest.
            limit = self.max_bytes + 2 * MULTIPART_SLACK_BYTES
            message = upload_too_large(self.max_bytes).message
        else:
            limit = self.max_bytes
            message = body_too_large_message(self.max_bytes)
        declared = headers.get("content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > limit:
            await JSONResponse({"detail": message}, status_code=413)(scope, receive, send)
            return
        await self.app(scope, capped_receive(receive, limit, lambda: HTTPException(413, detail=message)), send)


def capped_receive(receive: Receive, limit: int, too_large: Callable[[], Exception]) -> Receive:
    """``receive`` that raises ``too_large()`` once more than ``limit`` body bytes have arrived."""
    seen = 0

    async def capped() -> Message:
        nonlocal seen
        msg = await receive()
        if msg["type"] == "http.request":
            seen += len(msg.get("body", b""))
            if seen > limit:
                raise too_large()
        return msg

    return capped
