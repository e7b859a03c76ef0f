"""Multipart uploads shared by the upload routers: the OpenAPI body and the early-checked file part."""

from __future__ import annotations

from fastapi import Request
from starlette.datastructures import UploadFile
from starlette.requests import ClientDisconnect

from app.errors import Invalid
from app.request_limits import capped_receive
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


async def read_upload_file(request: Request, *, max_bytes: int, field: str = "file") -> UploadFile:
    """The multipart ``file`` part; a body over the cap is refused (413): before parsing when it
    declares its length, else as soon as the bytes read pass the cap (chunked uploads)."""
    check_declared_size(request.headers.get("content-length"), max_bytes=max_bytes)
    capped = Request(
        request.scope,
        receive=capped_receive(request.receive, max_bytes + MULTIPART_SLACK_BYTES, lambda: upload_too_large(max_bytes)),
    )
    try:
        form = await capped.form(max_files=1, max_fields=20)
    except ClientDisconnect:
        raise Invalid("The upload was cut off before the request body was complete") from None
    part = form.get(field)
    if not isinstance(part, UploadFile):
        raise Invalid("No file provided")
    return part
