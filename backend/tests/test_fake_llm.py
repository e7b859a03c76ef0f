"""The ``fake_llm`` fixture, exercised through the official ``openai`` and ``anthropic`` SDKs."""

from __future__ import annotations

import json
import math
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.fake_llm import DEFAULT_TEXT, FakeLLMServer, FakeReply, FakeToolCall, deterministic_embedding

WEATHER_TOOL: Any = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}, "unit": {"type": "string"}}},
    },
}
ANTHROPIC_WEATHER_TOOL: Any = {
    "name": "get_weather",
    "description": "Weather for a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}
MESSAGES: Any = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Say hello to the world"},
]
PROMPT_WORDS = 3 + 5  # "You are terse." + "Say hello to the world"


def oai(fake_llm: FakeLLMServer, **kwargs: Any) -> openai.OpenAI:
    options: dict[str, Any] = {"max_retries": 0, "timeout": 10.0}
    options.update(kwargs)
    return openai.OpenAI(base_url=fake_llm.openai_base_url, api_key="sk-test", **options)


def claude(fake_llm: FakeLLMServer, **kwargs: Any) -> anthropic.Anthropic:
    options: dict[str, Any] = {"max_retries": 0, "timeout": 10.0}
    options.update(kwargs)
    return anthropic.Anthropic(base_url=fake_llm.anthropic_base_url, api_key="ak-test", **options)


def blocks_of(message: anthropic.types.Message, kind: str) -> list[Any]:
    """The content blocks of one type."""
    return [block for block in message.content if block.type == kind]


def text_of(message: anthropic.types.Message) -> str:
    """The concatenated text blocks of an Anthropic message."""
    return "".join(block.text for block in blocks_of(message, "text"))


# --------------------------------------------------------------------------- OpenAI
def test_openai_plain_completion_and_recorded_request(fake_llm: FakeLLMServer) -> None:
    assert fake_llm.requests == []  # reset between tests
    assert fake_llm.openai_base_url == f"http://127.0.0.1:{fake_llm.port}/v1"
    fake_llm.queue("Hello there, general Kenobi")

    result = oai(fake_llm).chat.completions.create(model="gpt-test", messages=MESSAGES, temperature=0.2)

    choice = result.choices[0]
    assert choice.message.content == "Hello there, general Kenobi"
    assert choice.finish_reason == "stop"
    assert result.model == "gpt-test"
    assert result.usage is not None
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (PROMPT_WORDS, 4)
    assert result.usage.total_tokens == PROMPT_WORDS + 4

    [req] = fake_llm.requests
    assert (req.method, req.path, req.provider) == ("POST", "/v1/chat/completions", "openai")
    assert req.headers["authorization"] == "Bearer sk-test"
    assert req.json["messages"] == MESSAGES
    assert req.json["temperature"] == 0.2
    assert fake_llm.pending_replies == 0


def test_openai_default_reply_when_queue_is_empty(fake_llm: FakeLLMServer) -> None:
    client = oai(fake_llm)
    first = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert first.choices[0].message.content == DEFAULT_TEXT
    fake_llm.default_reply = FakeReply(text="changed default")
    second = client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert second.choices[0].message.content == "changed default"


def test_openai_streamed_completion_with_usage_chunk(fake_llm: FakeLLMServer) -> None:
    text = "Streaming works,\nword by word  and keeps spacing."
    fake_llm.queue(text)

    stream = oai(fake_llm).chat.completions.create(
        model="gpt-test", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    pieces: list[str] = []
    finish_reasons: list[str] = []
    usage = None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            if choice.delta.content:
                pieces.append(choice.delta.content)
            if choice.finish_reason:
                finish_reasons.append(choice.finish_reason)

    assert "".join(pieces) == text
    assert len(pieces) == len(text.split())  # one chunk per word
    assert finish_reasons == ["stop"]
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (PROMPT_WORDS, len(text.split()))


def test_openai_raw_stream_ends_with_done(fake_llm: FakeLLMServer) -> None:
    fake_llm.queue("two words")
    body = {"model": "m", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    response = httpx.post(f"{fake_llm.openai_base_url}/chat/completions", json=body, timeout=10)
    assert response.headers["content-type"].startswith("text/event-stream")
    events = [line.removeprefix("data: ") for line in response.text.split("\n\n") if line]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == "two words"
    assert not any("usage" in c for c in chunks)  # no include_usage requested


def test_openai_tool_call_non_streaming(fake_llm: FakeLLMServer) -> None:
    fake_llm.queue(tool_calls=[("get_weather", {"city": "Paris", "unit": "celsius"})])

    result = oai(fake_llm).chat.completions.create(model="m", messages=MESSAGES, tools=[WEATHER_TOOL])

    choice = result.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    [call] = choice.message.tool_calls or []
    assert call.type == "function"
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris", "unit": "celsius"}
    assert call.id.startswith("call_")
    assert result.usage is not None
    assert result.usage.completion_tokens == len(json.dumps({"city": "Paris", "unit": "celsius"}).split())
    assert fake_llm.last_request.json["tools"] == [WEATHER_TOOL]


def test_openai_tool_calls_streaming_are_reassembled(fake_llm: FakeLLMServer) -> None:
    args_a = {"city": "Reykjavik", "unit": "kelvin", "note": "a long argument string to split"}
    args_b = {"city": "Oslo"}
    fake_llm.queue("Checking.", tool_calls=[FakeToolCall("get_weather", args_a, id="call_a"), ("get_weather", args_b)])

    stream = oai(fake_llm).chat.completions.create(model="m", messages=MESSAGES, tools=[WEATHER_TOOL], stream=True)
    text = ""
    calls: dict[int, dict[str, str]] = {}
    finish = None
    for chunk in stream:
        delta = chunk.choices[0].delta
        text += delta.content or ""
        for tc in delta.tool_calls or []:
            entry = calls.setdefault(tc.index, {"id": "", "name": "", "arguments": ""})
            entry["id"] += tc.id or ""
            if tc.function is not None:
                entry["name"] += tc.function.name or ""
                entry["arguments"] += tc.function.arguments or ""
        finish = chunk.choices[0].finish_reason or finish

    assert text == "Checking."
    assert finish == "tool_calls"
    assert calls[0]["id"] == "call_a"
    assert [c["name"] for c in calls.values()] == ["get_weather", "get_weather"]
    assert json.loads(calls[0]["arguments"]) == args_a
    assert json.loads(calls[1]["arguments"]) == args_b


def test_openai_embeddings_are_deterministic(fake_llm: FakeLLMServer) -> None:
    client = oai(fake_llm)
    inputs = ["the cat sat", "a dog", "the cat sat"]

    default = client.embeddings.create(model="emb", input=inputs)  # SDK asks for base64 by default
    as_float = client.embeddings.create(model="emb", input=inputs, encoding_format="float", dimensions=5)

    vectors = [d.embedding for d in default.data]
    assert [len(v) for v in vectors] == [8, 8, 8]
    assert vectors[0] == vectors[2] != vectors[1]
    assert vectors[0] == deterministic_embedding("the cat sat", 8)
    assert math.isclose(math.fsum(x * x for x in vectors[1]), 1.0, rel_tol=1e-6)
    assert [d.index for d in default.data] == [0, 1, 2]
    assert default.usage.prompt_tokens == 3 + 2 + 3
    assert [d.embedding for d in as_float.data][1] == deterministic_embedding("a dog", 5)
    assert fake_llm.requests[0].json["encoding_format"] == "base64"


async def test_async_openai_client_streams_inside_the_event_loop(fake_llm: FakeLLMServer) -> None:
    fake_llm.queue("async stream ok")
    client = openai.AsyncOpenAI(base_url=fake_llm.openai_base_url, api_key="k", max_retries=0, timeout=10)
    stream = await client.chat.completions.create(model="m", messages=[{"role": "user", "content": "hi"}], stream=True)
    text = "".join([chunk.choices[0].delta.content or "" async for chunk in stream if chunk.choices])
    await client.close()
    assert text == "async stream ok"


# --------------------------------------------------------------------------- Anthropic
def test_anthropic_plain_message_and_recorded_request(fake_llm: FakeLLMServer) -> None:
    assert fake_llm.anthropic_base_url == f"http://127.0.0.1:{fake_llm.port}"
    fake_llm.queue("Bonjour le monde", provider="anthropic")

    message = claude(fake_llm).messages.create(
        model="claude-test",
        max_tokens=100,
        system="You are terse.",
        messages=[{"role": "user", "content": "Say hello to the world"}],
    )

    assert [block.type for block in message.content] == ["text"]
    assert text_of(message) == "Bonjour le monde"
    assert message.stop_reason == "end_turn"
    assert message.model == "claude-test"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (PROMPT_WORDS, 3)
    req = fake_llm.last_request
    assert (req.path, req.provider) == ("/v1/messages", "anthropic")
    # older SDKs send x-api-key, newer ones a bearer token
    assert "ak-test" in (req.headers.get("x-api-key"), req.headers.get("authorization", "").removeprefix("Bearer "))
    assert "anthropic-version" in req.headers
    assert req.json["system"] == "You are terse."
    assert req.json["max_tokens"] == 100


def test_anthropic_streamed_message(fake_llm: FakeLLMServer) -> None:
    text = "Streaming from the fake Claude, one word at a time."
    fake_llm.queue(text)

    with claude(fake_llm).messages.stream(
        model="claude-test", max_tokens=100, messages=[{"role": "user", "content": "Say hello to the world"}]
    ) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()

    assert "".join(pieces) == text
    assert len(pieces) == len(text.split())
    assert text_of(final) == text
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == len(text.split())
    assert final.usage.input_tokens == 5


def test_anthropic_stream_event_sequence(fake_llm: FakeLLMServer) -> None:
    fake_llm.queue("Let me look.", tool_calls=[("get_weather", {"city": "Lima"})])
    events = claude(fake_llm).messages.create(
        model="c", max_tokens=50, messages=[{"role": "user", "content": "weather?"}], stream=True
    )
    types = [(e.type, getattr(e, "index", None), getattr(getattr(e, "delta", None), "type", None)) for e in events]

    assert types[0] == ("message_start", None, None)
    assert types[-2:] == [("message_delta", None, None), ("message_stop", None, None)]
    body = types[1:-2]
    assert body[0] == ("content_block_start", 0, None)
    assert ("content_block_delta", 0, "text_delta") in body
    assert body.index(("content_block_stop", 0, None)) < body.index(("content_block_start", 1, None))
    assert ("content_block_delta", 1, "input_json_delta") in body
    assert body[-1] == ("content_block_stop", 1, None)


def test_anthropic_tool_use_non_streaming_and_streaming(fake_llm: FakeLLMServer) -> None:
    args = {"city": "Buenos Aires", "details": ["wind", "rain"], "days": 3}
    fake_llm.queue(tool_calls=[FakeToolCall("get_weather", args, id="toolu_fixed")], provider="anthropic")
    fake_llm.queue("Checking the weather.", tool_calls=[("get_weather", args)], provider="anthropic")
    client = claude(fake_llm)
    request: Any = {
        "model": "c",
        "max_tokens": 50,
        "tools": [ANTHROPIC_WEATHER_TOOL],
        "messages": [{"role": "user", "content": "weather?"}],
    }

    plain = client.messages.create(**request)
    assert plain.stop_reason == "tool_use"
    [block] = blocks_of(plain, "tool_use")
    assert (block.type, block.id, block.name, block.input) == ("tool_use", "toolu_fixed", "get_weather", args)

    with client.messages.stream(**request) as stream:
        final = stream.get_final_message()
    assert final.stop_reason == "tool_use"
    assert [b.type for b in final.content] == ["text", "tool_use"]
    assert text_of(final) == "Checking the weather."
    [tool] = blocks_of(final, "tool_use")
    assert tool.name == "get_weather"
    assert tool.input == args
    assert tool.id.startswith("toolu_")


def test_replies_queued_per_provider(fake_llm: FakeLLMServer) -> None:
    fake_llm.queue("for claude", provider="anthropic")
    fake_llm.queue("for gpt", provider="openai")
    fake_llm.queue("for anyone")

    gpt = oai(fake_llm).chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    msg = claude(fake_llm).messages.create(model="c", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    gpt2 = oai(fake_llm).chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])

    assert gpt.choices[0].message.content == "for gpt"
    assert text_of(msg) == "for claude"
    assert gpt2.choices[0].message.content == "for anyone"
    assert fake_llm.pending_replies == 0


# --------------------------------------------------------------------------- faults
def test_openai_429_then_success_via_sdk_retry(fake_llm: FakeLLMServer) -> None:
    fake_llm.fail(429)
    fake_llm.queue("after the rate limit")

    result = oai(fake_llm, max_retries=1).chat.completions.create(
        model="m", messages=[{"role": "user", "content": "x"}]
    )

    assert result.choices[0].message.content == "after the rate limit"
    assert len(fake_llm.requests) == 2
    assert fake_llm.requests[0].json == fake_llm.requests[1].json


def test_anthropic_429_then_success_via_sdk_retry(fake_llm: FakeLLMServer) -> None:
    fake_llm.fail(429, retry_after=0.02, provider="anthropic")
    fake_llm.queue("ok now")

    message = claude(fake_llm, max_retries=1).messages.create(
        model="c", max_tokens=5, messages=[{"role": "user", "content": "x"}]
    )

    assert text_of(message) == "ok now"
    assert len(fake_llm.requests) == 2


def test_429_headers_and_body(fake_llm: FakeLLMServer) -> None:
    fake_llm.fail(429, retry_after=2, message="slow down")
    with pytest.raises(openai.RateLimitError) as info:
        oai(fake_llm).chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 429
    assert info.value.response.headers["retry-after"] == "2"
    assert info.value.response.headers["retry-after-ms"] == "2000"
    assert info.value.body == {
        "message": "slow down",
        "type": "rate_limit_error",
        "param": None,
        "code": "rate_limit_exceeded",
    }


@pytest.mark.parametrize("status", [500, 503])
def test_server_errors_raise_without_retries(fake_llm: FakeLLMServer, status: int) -> None:
    fake_llm.fail(status, times=2)
    fake_llm.queue("never seen")

    with pytest.raises(openai.InternalServerError) as oai_error:
        oai(fake_llm).chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(anthropic.InternalServerError) as claude_error:
        claude(fake_llm).messages.create(model="c", max_tokens=5, messages=[{"role": "user", "content": "x"}])

    assert oai_error.value.status_code == status
    assert claude_error.value.status_code == status
    error_body: Any = claude_error.value.body
    assert error_body["error"]["type"] == ("api_error" if status == 500 else "overloaded_error")
    assert len(fake_llm.requests) == 2
    assert fake_llm.pending_replies == 1  # failed requests consume no reply


def test_fault_for_one_provider_leaves_the_other_alone(fake_llm: FakeLLMServer) -> None:
    fake_llm.fail(500, provider="anthropic")
    gpt = oai(fake_llm).chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert gpt.choices[0].message.content == DEFAULT_TEXT
    with pytest.raises(anthropic.InternalServerError):
        claude(fake_llm).messages.create(model="c", max_tokens=5, messages=[{"role": "user", "content": "x"}])


def test_delay_longer_than_client_timeout_times_out(fake_llm: FakeLLMServer) -> None:
    fake_llm.delay(5.0)
    fake_llm.queue("after the timeout")
    client = oai(fake_llm, timeout=0.3)

    with pytest.raises(openai.APITimeoutError):
        client.chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    # the queued reply is still served next (a normal timeout: a loaded machine can take over 0.3 s)
    result = oai(fake_llm).chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])

    assert result.choices[0].message.content == "after the timeout"
    assert len(fake_llm.requests) == 2


def test_anthropic_timeout(fake_llm: FakeLLMServer) -> None:
    fake_llm.delay(5.0, provider="anthropic")
    with pytest.raises(anthropic.APITimeoutError):
        claude(fake_llm, timeout=0.3).messages.create(
            model="c", max_tokens=5, messages=[{"role": "user", "content": "x"}]
        )


def test_short_delay_then_normal_answer(fake_llm: FakeLLMServer) -> None:
    fake_llm.delay(0.05)
    fake_llm.queue("slow but fine")
    result = oai(fake_llm).chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert result.choices[0].message.content == "slow but fine"


def test_malformed_json_raises(fake_llm: FakeLLMServer) -> None:
    fake_llm.malformed(times=2)
    with pytest.raises(json.JSONDecodeError):
        oai(fake_llm).chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    with pytest.raises(json.JSONDecodeError):
        claude(fake_llm).messages.create(model="c", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    # the faults are used up: the next request is fine
    ok = oai(fake_llm).chat.completions.create(model="m", messages=[{"role": "user", "content": "x"}])
    assert ok.choices[0].message.content == DEFAULT_TEXT


def test_broken_streams_raise_mid_stream(fake_llm: FakeLLMServer) -> None:
    fake_llm.malformed(times=2)
    fake_llm.queue("this stream breaks after the first word")
    received: list[str] = []
    with pytest.raises(json.JSONDecodeError):
        stream = oai(fake_llm).chat.completions.create(
            model="m", messages=[{"role": "user", "content": "x"}], stream=True
        )
        for chunk in stream:
            received.append(chunk.choices[0].delta.content or "")
    assert "".join(received) == "this "

    claude_stream = claude(fake_llm).messages.stream(
        model="c", max_tokens=5, messages=[{"role": "user", "content": "x"}]
    )
    with pytest.raises(json.JSONDecodeError), claude_stream as stream_a:
        list(stream_a.text_stream)


def test_bad_request_body_and_unknown_path(fake_llm: FakeLLMServer) -> None:
    bad = httpx.post(f"{fake_llm.openai_base_url}/chat/completions", content=b"not json", timeout=10)
    assert bad.status_code == 400
    assert bad.json()["error"]["type"] == "invalid_request_error"
    missing = httpx.get(f"{fake_llm.base_url}/v1/nothing-here", timeout=10)
    assert missing.status_code == 404
    assert [(r.method, r.path, r.json) for r in fake_llm.requests] == [
        ("POST", "/v1/chat/completions", None),
        ("GET", "/v1/nothing-here", None),
    ]


def test_usage_stop_reason_and_model_overrides(fake_llm: FakeLLMServer) -> None:
    fake_llm.queue("cut", usage=(100, 7), stop_reason="length", model="gpt-pinned", times=2, provider="openai")
    fake_llm.queue("capped", usage=(11, 13), stop_reason="max_tokens", provider="anthropic")
    client = oai(fake_llm)

    results = [client.chat.completions.create(model="m", messages=MESSAGES) for _ in range(2)]
    message = claude(fake_llm).messages.create(model="c", max_tokens=5, messages=[{"role": "user", "content": "x"}])

    for result in results:
        assert result.model == "gpt-pinned"
        assert result.choices[0].finish_reason == "length"
        assert result.usage is not None
        assert (result.usage.prompt_tokens, result.usage.completion_tokens, result.usage.total_tokens) == (100, 7, 107)
    assert message.stop_reason == "max_tokens"
    assert (message.usage.input_tokens, message.usage.output_tokens) == (11, 13)
    assert fake_llm.pending_replies == 0
