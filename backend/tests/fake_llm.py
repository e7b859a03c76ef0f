"""A fake LLM provider for tests: a real HTTP server on 127.0.0.1 speaking the OpenAI and Anthropic APIs.

Endpoints (the official SDKs work against them unchanged):

* OpenAI ``POST /v1/chat/completions`` (JSON, or SSE chunks ending in ``data: [DONE]`` when
  ``stream: true``; ``tool_calls`` in both modes; ``usage``, and a usage chunk when
  ``stream_options.include_usage``) and ``POST /v1/embeddings`` (deterministic unit vectors, float
  list or base64 float32).
* Anthropic ``POST /v1/messages`` (JSON, or the SSE event sequence message_start,
  content_block_start, content_block_delta (text_delta / input_json_delta), content_block_stop,
  message_delta, message_stop; ``tool_use`` blocks).

Scripting: ``queue(...)`` adds replies consumed in order (optionally only by one provider), the
``default_reply`` answers when the queue is empty; ``fail`` / ``delay`` / ``malformed`` inject faults
into the next requests; ``requests`` records every request. Token counts are whitespace-separated
words (``count_tokens``), so tests can compute the expected ``usage`` by hand.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import itertools
import json
import math
import random
import re
import socket
import struct
import threading
import time
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from tests.threaded_uvicorn import ThreadedUvicorn

Provider = Literal["openai", "anthropic"]
FaultKind = Literal["status", "delay", "malformed"]

DEFAULT_TEXT = "This is a fake reply from the test LLM server."
DEFAULT_EMBEDDING_DIMENSIONS = 8
DEFAULT_MODEL = "fake-model"


@dataclass(frozen=True)
class FakeToolCall:
    """A tool/function call the fake model makes: OpenAI ``tool_calls`` entry or Anthropic ``tool_use`` block."""

    name: str
    arguments: dict[str, Any] = field(default_factory=dict)
    id: str | None = None


ToolCallSpec = FakeToolCall | tuple[str, dict[str, Any]]


@dataclass(frozen=True)
class FakeReply:
    """One scripted model answer. ``usage`` = (prompt/input tokens, completion/output tokens) overrides the counts."""

    text: str | None = None
    tool_calls: tuple[FakeToolCall, ...] = ()
    provider: Provider | None = None
    usage: tuple[int, int] | None = None
    stop_reason: str | None = None
    model: str | None = None


@dataclass(frozen=True)
class Fault:
    """A fault applied to one request: an error status, a delay, or a malformed body / broken stream."""

    kind: FaultKind
    provider: Provider | None = None
    status: int = 500
    retry_after: float | None = None
    seconds: float = 0.0
    message: str | None = None


@dataclass(frozen=True)
class RecordedRequest:
    """A request as the server saw it. ``headers`` keys are lower-case; ``json`` is None for a non-JSON body."""

    method: str
    path: str
    headers: dict[str, str]
    json: Any
    body: bytes
    provider: Provider | None


def count_tokens(text: str) -> int:
    """The fake tokenizer: number of whitespace-separated words."""
    return len(text.split())


def _text_of(value: Any) -> str:
    """All text in a message ``content`` (string, list of parts/blocks, or nested tool results)."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return " ".join(_text_of(item) for item in value)
    if isinstance(value, dict):
        parts = [_text_of(value.get(key)) for key in ("text", "content")]
        if value.get("type") == "tool_use":
            parts.append(json.dumps(value.get("input", {})))
        for call in value.get("tool_calls") or []:
            function = call.get("function", {}) if isinstance(call, dict) else {}
            parts.append(str(function.get("arguments", "")))
        return " ".join(p for p in parts if p)
    return str(value)


def prompt_tokens(payload: dict[str, Any]) -> int:
    """Prompt tokens of a chat/messages request: words in the system prompt plus all message contents."""
    text = _text_of(payload.get("system"))
    for message in payload.get("messages") or []:
        text += " " + _text_of(message)
    return count_tokens(text)


def completion_tokens(reply: FakeReply) -> int:
    """Completion tokens of a reply: words in its text plus words in each tool call's JSON arguments."""
    total = count_tokens(reply.text or "")
    for call in reply.tool_calls:
        total += count_tokens(json.dumps(call.arguments))
    return total


def deterministic_embedding(text: str, dimensions: int = DEFAULT_EMBEDDING_DIMENSIONS) -> list[float]:
    """A unit vector derived from ``text`` only; each value is exactly representable as float32."""
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big")
    rng = random.Random(seed)
    raw = [rng.gauss(0.0, 1.0) for _ in range(dimensions)]
    norm = math.sqrt(sum(x * x for x in raw)) or 1.0
    return [struct.unpack("<f", struct.pack("<f", x / norm))[0] for x in raw]


def _split_text(text: str) -> list[str]:
    """Stream pieces: words with their trailing whitespace (their concatenation is ``text``)."""
    return re.findall(r"\s*\S+\s*|\s+", text)


def _split_json(text: str, size: int = 8) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def _as_tool_call(spec: ToolCallSpec) -> FakeToolCall:
    if isinstance(spec, FakeToolCall):
        return spec
    name, arguments = spec
    return FakeToolCall(name=name, arguments=dict(arguments))


def _sse(data: Any, event: str | None = None) -> str:
    body = data if isinstance(data, str) else json.dumps(data)
    prefix = f"event: {event}\n" if event else ""
    return f"{prefix}data: {body}\n\n"


_OPENAI_ERROR_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    404: ("invalid_request_error", "model_not_found"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
    500: ("server_error", None),
    503: ("service_unavailable", None),
}
_ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    503: "overloaded_error",
    529: "overloaded_error",
}


class FakeLLMServer:
    """The fake provider: a Starlette app served by uvicorn in a background thread on a free loopback port."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self._port: int | None = None
        self._lock = threading.Lock()
        self._replies: list[FakeReply] = []
        self._faults: list[Fault] = []
        self._requests: list[RecordedRequest] = []
        self._ids = itertools.count(1)
        self.default_reply = FakeReply(text=DEFAULT_TEXT)
        self.embedding_dimensions = DEFAULT_EMBEDDING_DIMENSIONS
        self._runner: ThreadedUvicorn | None = None
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self._chat_completions, methods=["POST"]),
                Route("/v1/embeddings", self._embeddings, methods=["POST"]),
                Route("/v1/messages", self._messages, methods=["POST"]),
                Route("/{path:path}", self._not_found, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
            ]
        )

    # ----------------------------------------------------------------- lifecycle
    @property
    def port(self) -> int:
        """The port the server listens on."""
        if self._port is None:
            raise RuntimeError("fake LLM server is not started")
        return self._port

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://{self.host}:{self.port}"

    @property
    def openai_base_url(self) -> str:
        """Base URL for OpenAI clients (``.../v1``)."""
        return f"{self.base_url}/v1"

    @property
    def anthropic_base_url(self) -> str:
        """Base URL for Anthropic clients (the SDK appends ``/v1/messages``)."""
        return self.base_url

    def start(self, timeout: float = 10.0) -> None:
        """Bind a free port, serve in a daemon thread, return once uvicorn is accepting connections."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, 0))
        self._port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app, log_level="warning", access_log=False, lifespan="off", timeout_graceful_shutdown=2
        )
        runner = ThreadedUvicorn(config, "fake-llm")
        runner.start(timeout, sockets=[sock])
        self._runner = runner

    def stop(self, timeout: float = 5.0) -> None:
        """Ask uvicorn to exit and join its thread (forcing the exit if connections linger)."""
        if self._runner is not None:
            self._runner.stop(timeout)
            self._runner = None

    def reset(self) -> None:
        """Forget replies, faults, recorded requests and settings (between tests)."""
        with self._lock:
            self._replies.clear()
            self._faults.clear()
            self._requests.clear()
            self._ids = itertools.count(1)
        self.default_reply = FakeReply(text=DEFAULT_TEXT)
        self.embedding_dimensions = DEFAULT_EMBEDDING_DIMENSIONS

    # ----------------------------------------------------------------- scripting API
    def queue(
        self,
        text: str | None = None,
        *,
        tool_calls: Iterable[ToolCallSpec] = (),
        provider: Provider | None = None,
        usage: tuple[int, int] | None = None,
        stop_reason: str | None = None,
        model: str | None = None,
        times: int = 1,
    ) -> FakeReply:
        """Enqueue a reply (text and/or tool calls) for the next chat/messages request (of ``provider`` if given)."""
        reply = FakeReply(
            text=text,
            tool_calls=tuple(_as_tool_call(spec) for spec in tool_calls),
            provider=provider,
            usage=usage,
            stop_reason=stop_reason,
            model=model,
        )
        with self._lock:
            self._replies.extend([reply] * times)
        return reply

    def fail(
        self,
        status: int = 500,
        *,
        times: int = 1,
        retry_after: float | None = None,
        provider: Provider | None = None,
        message: str | None = None,
    ) -> None:
        """The next ``times`` requests answer ``status`` with the provider's error body.

        ``retry_after`` (seconds) sets ``retry-after`` and ``retry-after-ms``; a 429 gets 0.01 s by default.
        """
        if retry_after is None and status == 429:
            retry_after = 0.01
        self._add_faults(Fault("status", provider, status=status, retry_after=retry_after, message=message), times)

    def delay(self, seconds: float, *, times: int = 1, provider: Provider | None = None) -> None:
        """The next ``times`` requests wait ``seconds`` before answering normally (abandoned if the client leaves)."""
        self._add_faults(Fault("delay", provider, seconds=seconds), times)

    def malformed(self, *, times: int = 1, provider: Provider | None = None) -> None:
        """The next ``times`` requests get a 200 with truncated JSON, or, when streaming, a broken stream."""
        self._add_faults(Fault("malformed", provider), times)

    def _add_faults(self, fault: Fault, times: int) -> None:
        with self._lock:
            self._faults.extend([fault] * times)

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received since the last reset, in order."""
        with self._lock:
            return list(self._requests)

    @property
    def last_request(self) -> RecordedRequest:
        """The most recent request."""
        with self._lock:
            if not self._requests:
                raise AssertionError("the fake LLM server has received no request")
            return self._requests[-1]

    @property
    def pending_replies(self) -> int:
        """Queued replies not yet consumed."""
        with self._lock:
            return len(self._replies)

    # ----------------------------------------------------------------- internals
    def _next_id(self) -> int:
        with self._lock:
            return next(self._ids)

    def _take_fault(self, provider: Provider) -> Fault | None:
        with self._lock:
            for i, fault in enumerate(self._faults):
                if fault.provider in (None, provider):
                    return self._faults.pop(i)
        return None

    def _take_reply(self, provider: Provider) -> FakeReply:
        with self._lock:
            for i, reply in enumerate(self._replies):
                if reply.provider in (None, provider):
                    return self._replies.pop(i)
            return self.default_reply

    async def _receive(self, request: Request, provider: Provider | None) -> tuple[Any, RecordedRequest]:
        body = await request.body()
        try:
            payload = json.loads(body) if body else None
        except ValueError:
            payload = None
        recorded = RecordedRequest(
            method=request.method,
            path=request.url.path,
            headers={k.lower(): v for k, v in request.headers.items()},
            json=payload,
            body=body,
            provider=provider,
        )
        with self._lock:
            self._requests.append(recorded)
        return payload, recorded

    async def _apply_fault(self, request: Request, provider: Provider) -> Response | Fault | None:
        """A response that ends the request, the malformed fault to honour, or None to proceed."""
        fault = self._take_fault(provider)
        if fault is None:
            return None
        if fault.kind == "status":
            return self._error(provider, fault.status, fault.message, fault.retry_after)
        if fault.kind == "delay":
            deadline = time.monotonic() + fault.seconds
            while time.monotonic() < deadline:
                if await request.is_disconnected():
                    return Response(status_code=499)
                await asyncio.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
            return None
        return fault

    def _error(self, provider: Provider, status: int, message: str | None, retry_after: float | None) -> Response:
        text = message or f"Fake provider error {status}"
        body: dict[str, Any]
        if provider == "anthropic":
            body = {
                "type": "error",
                "error": {"type": _ANTHROPIC_ERROR_TYPES.get(status, "api_error"), "message": text},
            }
        else:
            err_type, code = _OPENAI_ERROR_TYPES.get(status, ("server_error", None))
            body = {"error": {"message": text, "type": err_type, "param": None, "code": code}}
        headers: dict[str, str] = {}
        if retry_after is not None:
            headers["retry-after"] = f"{retry_after:g}"
            headers["retry-after-ms"] = str(round(retry_after * 1000))
        return JSONResponse(body, status_code=status, headers=headers)

    @staticmethod
    def _malformed_json() -> Response:
        return Response('{"id": "malformed", "choices": [{"index": 0, "mess', media_type="application/json")

    async def _not_found(self, request: Request) -> Response:
        await self._receive(request, None)
        return JSONResponse({"error": {"message": f"Unknown path {request.url.path}", "type": "not_found"}}, 404)

    def _usage(self, payload: dict[str, Any], reply: FakeReply) -> tuple[int, int]:
        return reply.usage if reply.usage is not None else (prompt_tokens(payload), completion_tokens(reply))

    # ----------------------------------------------------------------- OpenAI
    async def _chat_completions(self, request: Request) -> Response:
        payload, _ = await self._receive(request, "openai")
        outcome = await self._apply_fault(request, "openai")
        if isinstance(outcome, Response):
            return outcome
        if not isinstance(payload, dict) or not isinstance(payload.get("messages"), list):
            return self._error("openai", 400, "Body must be JSON with a 'messages' list", None)
        stream = bool(payload.get("stream"))
        if outcome is not None and not stream:
            return self._malformed_json()
        reply = self._take_reply("openai")
        calls = tuple(replace(call, id=call.id or f"call_fake_{self._next_id()}") for call in reply.tool_calls)
        reply = replace(reply, tool_calls=calls)
        model = reply.model or payload.get("model") or DEFAULT_MODEL
        completion_id = f"chatcmpl-fake-{self._next_id()}"
        finish = reply.stop_reason or ("tool_calls" if calls else "stop")
        p_tokens, c_tokens = self._usage(payload, reply)
        usage = {"prompt_tokens": p_tokens, "completion_tokens": c_tokens, "total_tokens": p_tokens + c_tokens}
        headers = {"x-request-id": f"req_fake_{completion_id}"}
        if stream:
            include_usage = bool((payload.get("stream_options") or {}).get("include_usage"))
            chunks = self._openai_chunks(completion_id, model, reply, finish, usage if include_usage else None)
            return StreamingResponse(
                _stream(chunks, broken=outcome is not None, garbage='data: {"id": "broken", "choi\n\n'),
                media_type="text/event-stream",
                headers=headers,
            )
        message: dict[str, Any] = {"role": "assistant", "content": reply.text if reply.text or not calls else None}
        if message["content"] is None and not calls:
            message["content"] = ""
        if calls:
            message["tool_calls"] = [
                {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": json.dumps(c.arguments)}}
                for c in calls
            ]
        body = {
            "id": completion_id,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish, "logprobs": None}],
            "usage": usage,
        }
        return JSONResponse(body, headers=headers)

    @staticmethod
    def _openai_chunks(
        completion_id: str, model: str, reply: FakeReply, finish: str, usage: dict[str, int] | None
    ) -> list[str]:
        created = int(time.time())

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> str:
            return _sse(
                {
                    "id": completion_id,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}],
                }
            )

        events = [chunk({"role": "assistant", "content": ""})]
        events += [chunk({"content": piece}) for piece in _split_text(reply.text or "")]
        for index, call in enumerate(reply.tool_calls):
            first = {
                "index": index,
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": ""},
            }
            events.append(chunk({"tool_calls": [first]}))
            for part in _split_json(json.dumps(call.arguments)):
                events.append(chunk({"tool_calls": [{"index": index, "function": {"arguments": part}}]}))
        events.append(chunk({}, finish))
        if usage is not None:
            events.append(
                _sse(
                    {
                        "id": completion_id,
                        "object": "chat.completion.chunk",
                        "created": created,
                        "model": model,
                        "choices": [],
                        "usage": usage,
                    }
                )
            )
        events.append(_sse("[DONE]"))
        return events

    async def _embeddings(self, request: Request) -> Response:
        payload, _ = await self._receive(request, "openai")
        outcome = await self._apply_fault(request, "openai")
        if isinstance(outcome, Response):
            return outcome
        if outcome is not None:
            return self._malformed_json()
        if not isinstance(payload, dict) or "input" not in payload:
            return self._error("openai", 400, "Body must be JSON with an 'input'", None)
        raw = payload["input"]
        inputs: list[Any] = [raw] if isinstance(raw, str) or (raw and isinstance(raw[0], int)) else list(raw)
        texts = [item if isinstance(item, str) else json.dumps(item) for item in inputs]
        dimensions = int(payload.get("dimensions") or self.embedding_dimensions)
        as_base64 = payload.get("encoding_format") == "base64"
        data = []
        for index, text in enumerate(texts):
            vector = deterministic_embedding(text, dimensions)
            embedding: Any = (
                base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode() if as_base64 else vector
            )
            data.append({"object": "embedding", "index": index, "embedding": embedding})
        tokens = sum(count_tokens(t) for t in texts)
        return JSONResponse(
            {
                "object": "list",
                "data": data,
                "model": payload.get("model") or DEFAULT_MODEL,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    # ----------------------------------------------------------------- Anthropic
    async def _messages(self, request: Request) -> Response:
        payload, _ = await self._receive(request, "anthropic")
        outcome = await self._apply_fault(request, "anthropic")
        if isinstance(outcome, Response):
            return outcome
        if not isinstance(payload, dict) or not isinstance(payload.get("messages"), list):
            return self._error("anthropic", 400, "Body must be JSON with a 'messages' list", None)
        stream = bool(payload.get("stream"))
        if outcome is not None and not stream:
            return self._malformed_json()
        reply = self._take_reply("anthropic")
        calls = tuple(replace(call, id=call.id or f"toolu_fake_{self._next_id()}") for call in reply.tool_calls)
        reply = replace(reply, tool_calls=calls)
        model = reply.model or payload.get("model") or DEFAULT_MODEL
        message_id = f"msg_fake_{self._next_id()}"
        stop_reason = reply.stop_reason or ("tool_use" if calls else "end_turn")
        in_tokens, out_tokens = self._usage(payload, reply)
        headers = {"request-id": f"req_fake_{message_id}"}
        if stream:
            events = self._anthropic_events(message_id, model, reply, stop_reason, in_tokens, out_tokens)
            garbage = 'event: content_block_delta\ndata: {"type": "content_block_delta", "ind\n\n'
            return StreamingResponse(
                _stream(events, broken=outcome is not None, garbage=garbage),
                media_type="text/event-stream",
                headers=headers,
            )
        content: list[dict[str, Any]] = []
        if reply.text or not calls:
            content.append({"type": "text", "text": reply.text or ""})
        content += [{"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments} for c in calls]
        body = {
            "id": message_id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": {"input_tokens": in_tokens, "output_tokens": out_tokens},
        }
        return JSONResponse(body, headers=headers)

    @staticmethod
    def _anthropic_events(
        message_id: str, model: str, reply: FakeReply, stop_reason: str, in_tokens: int, out_tokens: int
    ) -> list[str]:
        start = {
            "type": "message_start",
            "message": {
                "id": message_id,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": in_tokens, "output_tokens": 1},
            },
        }
        events = [_sse(start, "message_start")]
        index = 0
        if reply.text or not reply.tool_calls:
            block = {"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}
            events.append(_sse(block, "content_block_start"))
            events.append(_sse({"type": "ping"}, "ping"))
            for piece in _split_text(reply.text or ""):
                delta = {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": piece}}
                events.append(_sse(delta, "content_block_delta"))
            events.append(_sse({"type": "content_block_stop", "index": index}, "content_block_stop"))
            index += 1
        for call in reply.tool_calls:
            tool_block: dict[str, Any] = {"type": "tool_use", "id": call.id, "name": call.name, "input": {}}
            events.append(
                _sse(
                    {"type": "content_block_start", "index": index, "content_block": tool_block}, "content_block_start"
                )
            )
            for part in _split_json(json.dumps(call.arguments)):
                delta = {
                    "type": "content_block_delta",
                    "index": index,
                    "delta": {"type": "input_json_delta", "partial_json": part},
                }
                events.append(_sse(delta, "content_block_delta"))
            events.append(_sse({"type": "content_block_stop", "index": index}, "content_block_stop"))
            index += 1
        message_delta = {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": None},
            "usage": {"output_tokens": out_tokens},
        }
        events.append(_sse(message_delta, "message_delta"))
        events.append(_sse({"type": "message_stop"}, "message_stop"))
        return events


async def _stream(events: Sequence[str], *, broken: bool, garbage: str) -> AsyncIterator[str]:
    """Yield SSE events; a broken stream sends the first two events, then truncated JSON, then ends."""
    if broken:
        for event in events[:2]:
            yield event
        yield garbage
        return
    for event in events:
        yield event
        await asyncio.sleep(0)


@contextlib.contextmanager
def running_fake_llm(host: str = "127.0.0.1") -> Iterator[FakeLLMServer]:
    """Start a ``FakeLLMServer`` for the duration of a ``with`` block."""
    server = FakeLLMServer(host)
    server.start()
    try:
        yield server
    finally:
        server.stop()
