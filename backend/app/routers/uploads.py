"""Multipart uploads shared by the upload routers: the OpenAPI body and the early-checked file part."""

from __future__ import annotations

from fastapi import Request
from starlette.datastructures import UploadFile
from starlette.requests import ClientDisconnect

from app.errors import Invalid
from app.services.csv_ingest import check_declared_size

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
    """The multipart ``file`` part; a declared body over the cap is refused (413) before parsing."""
    check_declared_size(request.headers.get("content-length"), max_bytes=max_bytes)
    try:
        form = await request.form(max_files=1, max_fields=20)
    except ClientDisconnect:
        raise Invalid("The upload was cut off before the request body was complete") from None
    part = form.get(field)
    if not isinstance(part, UploadFile):
        raise Invalid("No file provided")
    return part
