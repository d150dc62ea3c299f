"""One deployment's scoring server: Starlette routes over a Generator, served by uvicorn (one worker).

The server listens at once and loads the model in the background: ``/liveness`` answers 200 from the
start, ``/``, ``/health``, ``/readiness`` and ``/score`` answer 503 until the model is loaded. Once it
is, the ready file (if asked for) is written with the actual port. Generation runs in one worker
thread, so the event loop keeps answering probes, requests queue in arrival order (as Azure's
``max_concurrent_requests_per_instance: 1`` does) and each gets the timeout from its arrival. A request
that accepts ``text/event-stream`` is answered token by token as server-sent events (the emulator's
stand-in for a deployment that streams; Azure ML's MLflow chat deployments answer in one piece).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from emulator.scoring.contract import BadRequest, ScoringRequest, parse_request
from emulator.scoring.generate import DeadlineExceeded, Generator


def error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


@dataclass
class Deployment:
    folder: Path
    request_timeout: float
    generator: Generator | None = None
    load_error: str | None = None
    served: int = 0
    failed: int = 0
    executor: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(1, "generate"))

    async def load(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            self.generator = await loop.run_in_executor(self.executor, Generator, self.folder)
        except Exception as exc:
            self.load_error = f"{type(exc).__name__}: {exc}"

    def _run(self, request: ScoringRequest, deadline: float) -> list[dict[str, str]]:
        assert self.generator is not None
        return [{"0": self.generator.complete(item, request.params, deadline)} for item in request.inputs]

    async def score(self, request: Request) -> Response:
        deadline = time.monotonic() + self.request_timeout
        if self.generator is None:
            return error(503, "ServiceUnavailable", self.load_error or "the model is still loading")
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            return error(400, "BadRequest", "the request body is not valid JSON")
        try:
            parsed = parse_request(body)
        except BadRequest as exc:
            return error(400, "BadRequest", str(exc))
        loop = asyncio.get_running_loop()
        if "text/event-stream" in request.headers.get("accept", "") and len(parsed.inputs) == 1:
            return self._stream(parsed, deadline)
        job = loop.run_in_executor(self.executor, self._run, parsed, deadline)
        try:
            records = await asyncio.wait_for(asyncio.shield(job), timeout=max(0.0, deadline - time.monotonic()))
        except (TimeoutError, DeadlineExceeded):
            job.add_done_callback(lambda f: f.exception())  # the thread stops at its deadline; drop its outcome
            self.failed += 1
            return error(408, "RequestTimeout",
                         f"the request exceeded the request timeout of {self.request_timeout:g}s")
        except BadRequest as exc:
            return error(400, "BadRequest", str(exc))
        except Exception as exc:
            self.failed += 1
            return error(500, "InternalServerError", f"generation failed: {type(exc).__name__}: {exc}")
        self.served += 1
        return JSONResponse(records)


    def _stream(self, request: ScoringRequest, deadline: float) -> Response:
        """The reply as server-sent events, one per piece as it is generated: ``data: {"0": "<text>"}``, then
        ``data: [DONE]`` (an ``{"error": ...}`` event instead when generation fails midway)."""
        assert self.generator is not None
        generator = self.generator
        loop = asyncio.get_running_loop()
        pieces: asyncio.Queue[bytes | None] = asyncio.Queue()

        def put(event: bytes | None) -> None:
            loop.call_soon_threadsafe(pieces.put_nowait, event)

        def run() -> None:
            try:
                generator.complete(request.inputs[0], request.params, deadline,
                                   on_text=lambda text: put(b"data: " + json.dumps({"0": text}).encode() + b"\n\n"))
                put(b"data: [DONE]\n\n")
                self.served += 1
            except Exception as exc:  # the status line is sent: the failure travels as an event
                self.failed += 1
                put(b"data: " + json.dumps({"error": {"code": type(exc).__name__, "message": str(exc)}}).encode()
                    + b"\n\n")
            finally:
                put(None)

        self.executor.submit(run)

        async def events() -> AsyncIterator[bytes]:
            while (event := await pieces.get()) is not None:
                yield event

        return StreamingResponse(events(), media_type="text/event-stream")


def build_app(deployment: Deployment) -> Starlette:
    def ready() -> bool:
        return deployment.generator is not None

    async def root(_: Request) -> Response:
        return PlainTextResponse("Healthy" if ready() else "Loading", status_code=200 if ready() else 503)

    async def liveness(_: Request) -> Response:
        return PlainTextResponse("Alive")

    async def health(_: Request) -> Response:
        status = "Healthy" if ready() else ("Failed" if deployment.load_error else "Loading")
        body = {"status": status, "model": str(deployment.folder), "served": deployment.served,
                "failed": deployment.failed, "error": deployment.load_error}
        return JSONResponse(body, status_code=200 if ready() else 503)

    return Starlette(routes=[
        Route("/", root, methods=["GET"]),
        Route("/liveness", liveness, methods=["GET"]),
        Route("/readiness", root, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/score", deployment.score, methods=["POST"]),
    ])


def _write_ready(path: Path, info: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(info))
    tmp.replace(path)


async def serve(folder: Path, host: str, port: int, request_timeout: float, ready_file: Path | None) -> int:
    import uvicorn

    deployment = Deployment(folder=folder, request_timeout=request_timeout)
    config = uvicorn.Config(build_app(deployment), host=host, port=port, log_level="warning",
                            access_log=False, lifespan="off", timeout_graceful_shutdown=2)
    server = uvicorn.Server(config)

    async def announce() -> None:
        started = time.monotonic()
        await deployment.load()
        if deployment.load_error:
            print(f"scoring: cannot load the model from {folder}: {deployment.load_error}", file=sys.stderr,
                  flush=True)
            server.should_exit = True
            return
        while not server.started:
            await asyncio.sleep(0.02)
        actual = server.servers[0].sockets[0].getsockname()[1]
        url = f"http://{host}:{actual}"
        if ready_file is not None:
            _write_ready(ready_file, {"pid": os.getpid(), "host": host, "port": actual, "url": url})
        print(f"scoring: model loaded in {time.monotonic() - started:.1f}s, serving {url}/score", flush=True)

    task = asyncio.create_task(announce())
    try:
        await server.serve()
    finally:
        task.cancel()
        deployment.executor.shutdown(wait=False, cancel_futures=True)
    return 1 if deployment.load_error else 0
