"""Multipart uploads shared by the upload routers: the OpenAPI body and the early-checked file part."""

from __future__ import annotations

from fastapi import Request
from starlette.datastructures import UploadFile
from starlette.requests import ClientDisconnect
from starlette.types import Message, Receive

from app.errors import Invalid
from app.services.csv_ingest import MULTIPART_SLACK_BYTES, check_declared_size, upload_too_large

# The request body of an upload endpoint that reads its file with read_upload_file.
MULTIPART_FILE = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {"file": {"type": "string", "format": "binary"}},
                }
            }
        },
    }
}


def _capped_receive(receive: Receive, limit: int) -> Receive:
    """``receive`` that refuses (413) a body once more than ``limit`` bytes have arrived."""
    seen = 0

    async def capped() -> Message:
        nonlocal seen
        message = await receive()
        if message["type"] == "http.request":
            seen += len(message.get("body", b""))
            if seen > limit:
                raise upload_too_large(limit - MULTIPART_SLACK_BYTES)
        return message

    return capped


async def read_upload_file(request: Request, *, max_bytes: int, field: str = "file") -> UploadFile:
    """The multipart ``file`` part; a body over the cap is refused (413): before parsing when it
    declares its length, else as soon as the bytes read pass the cap (chunked uploads)."""
    check_declared_size(request.headers.get("content-length"), max_bytes=max_bytes)
    capped = Request(request.scope, receive=_capped_receive(request.receive, max_bytes + MULTIPART_SLACK_BYTES))
    try:
        form = await capped.form(max_files=1, max_fields=20)
    except ClientDisconnect:
        raise Invalid("The upload was cut off before the request body was complete") from None
    part = form.get(field)
    if not isinstance(part, UploadFile):
        raise Invalid("No file provided")
    return part
