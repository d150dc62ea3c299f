"""OpenAI's streamed chat answer: server-sent events of ``chat.completion.chunk`` objects.

A role delta, content deltas as the deployment produces them (one, when it answers in one piece), a
final chunk with ``finish_reason``, optionally a usage chunk (``stream_options.include_usage``: counted with
the model's tokenizer when ``TUNEFLOW_TOKENIZER_DIR`` is set, else null — never an estimate), then
``data: [DONE]``. A failure after the first event is sent as OpenAI sends it, ``data: {"error": …}``,
and the stream ends: clients raise it rather than see a broken connection.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any

import orjson

from shared.api.http import Response
from shared.errors import TuneflowError


def _event(data: Mapping[str, Any]) -> bytes:
    """One server-sent event."""
    return b"data: " + orjson.dumps(data) + b"\n\n"


class _Chunks:
    def __init__(self, model: str, include_usage: bool) -> None:
        self.include_usage = include_usage
        self.base = {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion.chunk",
                     "created": int(time.time()), "model": model, "system_fingerprint": None}

    def chunk(self, delta: Mapping[str, Any], finish_reason: str | None = None) -> bytes:
        body: dict[str, Any] = {**self.base, "choices": [{"index": 0, "delta": dict(delta), "logprobs": None,
                                                           "finish_reason": finish_reason}]}
        if self.include_usage:
            body["usage"] = None  # on every chunk but the last, as OpenAI sends it
        return _event(body)

    def end(self, finish: str, usage: Mapping[str, int] | None) -> Iterator[bytes]:
        yield self.chunk({}, finish)
        if self.include_usage:
            yield _event({**self.base, "choices": [], "usage": dict(usage) if usage else None})
        yield DONE


DONE = b"data: [DONE]\n\n"


async def live_chunks(model: str, pieces: AsyncIterator[str], stop: tuple[str, ...], *, include_usage: bool,
                      count: Callable[[str], Mapping[str, int]] | None = None) -> AsyncIterator[bytes]:
    """The events of an answer as it is generated; ``stop`` cuts it (a stop sequence split across pieces
    included: the tail that could begin one is held back until it cannot). ``count`` gives the usage of the
    whole answer once it is known (None: the usage chunk says null)."""
    chunks = _Chunks(model, include_usage)
    sent: list[str] = []
    yield chunks.chunk({"role": "assistant", "content": ""})
    hold = max((len(s) for s in stop), default=1) - 1
    pending = ""
    try:
        async for piece in pieces:
            pending += piece
            cuts = [i for i in (pending.find(seq) for seq in stop) if i >= 0]
            if cuts:
                if pending[:min(cuts)]:
                    sent.append(pending[:min(cuts)])
                    yield chunks.chunk({"content": sent[-1]})
                pending = ""
                break
            ready = pending[:len(pending) - hold] if hold else pending
            if ready:
                sent.append(ready)
                yield chunks.chunk({"content": ready})
                pending = pending[len(ready):]
    except TuneflowError as exc:  # the stream has started: the failure travels as OpenAI sends one
        yield _event({"error": {"message": exc.message, "type": "api_error", "param": None, "code": exc.code}})
        yield DONE
        return
    finally:
        await _close(pieces)
    if pending:
        sent.append(pending)
        yield chunks.chunk({"content": pending})
    usage = count("".join(sent)) if count is not None and include_usage else None
    for event in chunks.end("stop", usage):
        yield event


async def _close(pieces: AsyncIterator[str]) -> None:
    aclose = getattr(pieces, "aclose", None)
    if aclose is not None:
        await aclose()


SSE_HEADERS = {"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}


def sse_response(events: AsyncIterator[bytes], headers: Mapping[str, str] | None = None) -> Response:
    return Response(200, b"", {**SSE_HEADERS, **(headers or {})}, stream=events)
