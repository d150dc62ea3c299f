"""A stand-in for ``python -m emulator.scoring``: same command line, scoring contract and readiness file.

It answers ``[{"0": "fake: <last user message>"}]`` (word by word as server-sent events ``data: {"0": ...}``
when the request accepts ``text/event-stream``, as the emulator's scoring server streams). Environment: FAKE_SCORER_CRASH=1 exits before ready;
FAKE_SCORER_DELAY sleeps that many seconds per request, FAKE_SCORER_TOKEN_DELAY between streamed words (0.005).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--model", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--request-timeout", type=float, default=90)
    p.add_argument("--ready-file", required=True)
    args = p.parse_args()
    if os.environ.get("FAKE_SCORER_CRASH"):
        print("fake scorer: crashing on purpose", flush=True)
        raise SystemExit("model could not be loaded (FAKE_SCORER_CRASH)")
    model = Path(args.model)
    tag = (model / "data" / "base_model.txt").read_text() if (model / "data" / "base_model.txt").exists() else ""
    delay = float(os.environ.get("FAKE_SCORER_DELAY", "0"))
    token_delay = float(os.environ.get("FAKE_SCORER_TOKEN_DELAY", "0.005"))  # between streamed words

    async def score(request: Request) -> Response:
        if delay:
            await asyncio.sleep(delay)
        try:
            body = json.loads(await request.body())
            convo = body["input_data"]["input_string"]
            if convo and isinstance(convo[0], list):
                convo = convo[0]
            last = [m["content"] for m in convo if m.get("role") == "user"][-1]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            return JSONResponse({"error": f"bad request: {exc}"}, 400)
        answer = f"fake: {last}"
        headers = {"x-fake-model": str(model.name), "x-base": tag[-20:]}
        if "text/event-stream" in request.headers.get("accept", ""):  # stream it word by word, as the emulator does
            async def events() -> AsyncIterator[bytes]:
                for i, word in enumerate(answer.split(" ")):
                    yield b"data: " + json.dumps({"0": (" " if i else "") + word}).encode() + b"\n\n"
                    await asyncio.sleep(token_delay)
                yield b"data: [DONE]\n\n"

            return StreamingResponse(events(), media_type="text/event-stream", headers=headers)
        return JSONResponse([{"0": answer}], headers=headers)

    async def health(request: Request) -> Response:
        return Response("ok")

    app = Starlette(routes=[Route("/score", score, methods=["POST"]), Route("/", health), Route("/health", health)])
    config = uvicorn.Config(app, host="127.0.0.1", port=args.port, log_level="warning")
    server = uvicorn.Server(config)

    async def run() -> None:
        task = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.02)
        Path(args.ready_file).write_text("ready")
        await task

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
