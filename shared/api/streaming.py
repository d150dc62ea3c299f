"""OpenAI's streamed chat answer: server-sent events of ``chat.completion.chunk`` objects.

A role delta, the content, a final chunk with ``finish_reason``, optionally a usage chunk
(``stream_options.include_usage``: ``usage`` is null when the deployment counted nothing — tuneflow
never presents an estimate as a count), then ``data: [DONE]``. Today the deployment's answer is
complete before the first event is written (the content arrives as one delta), so clients that always
stream work; passing a streaming deployment's tokens through as they come is not done yet.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

import orjson

from shared.api.http import Response


def _event(data: Mapping[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(data) + b"\n\n"


def chat_chunks(model: str, text: str, finish: str, usage: Mapping[str, int] | None, *,
                include_usage: bool) -> Iterator[bytes]:
    base = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion.chunk", "created": int(time.time()),
            "model": model, "system_fingerprint": None}

    def chunk(delta: Mapping[str, Any], finish_reason: str | None) -> bytes:
        body: dict[str, Any] = {**base, "choices": [{"index": 0, "delta": dict(delta), "logprobs": None,
                                                      "finish_reason": finish_reason}]}
        if include_usage:
            body["usage"] = None  # on every chunk but the last, as OpenAI sends it
        return _event(body)

    yield chunk({"role": "assistant", "content": ""}, None)
    if text:
        yield chunk({"content": text}, None)
    yield chunk({}, finish)
    if include_usage:
        yield _event({**base, "choices": [], "usage": dict(usage) if usage else None})
    yield b"data: [DONE]\n\n"


def sse_response(events: Iterator[bytes], headers: Mapping[str, str] | None = None) -> Response:
    return Response(200, b"".join(events), {"Content-Type": "text/event-stream; charset=utf-8",
                                            "Cache-Control": "no-cache", **(headers or {})})
