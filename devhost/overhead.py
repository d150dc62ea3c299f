"""Measure devhost's own cost per HTTP request: `python -m devhost.overhead [--seconds 5] [--clients 32]`.

Runs the same echo (POST body -> response body) three ways, each under uvicorn in its own process:
a bare Starlette route, a devhost `async def` function and a devhost plain (thread-pool) function.
A small keep-alive HTTP/1.1 load generator (raw asyncio streams, so the client costs little) keeps
`--clients` requests in flight and reports latency percentiles and throughput. Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import azure.functions as func

from devhost.process import free_port

ROOT = Path(__file__).resolve().parents[1]

# The FunctionApp devhost hosts for the benchmark.
bench_app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)


@bench_app.route(route="echo", methods=["POST"])
async def echo_async(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(req.get_body(), mimetype="application/octet-stream")


@bench_app.route(route="echo-sync", methods=["POST"])
def echo_sync(req: func.HttpRequest) -> func.HttpResponse:
    return func.HttpResponse(req.get_body(), mimetype="application/octet-stream")


def make_starlette() -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    async def echo(request: Request) -> Response:
        return Response(await request.body(), media_type="application/octet-stream")

    return Starlette(routes=[Route("/api/echo", echo, methods=["POST"])])


def _wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), 0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("server did not start")


async def _client(port: int, path: str, body: bytes, stop_at: float, latencies: list[float]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = (
        f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/octet-stream\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    try:
        while time.perf_counter() < stop_at:
            start = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(head.decode(errors="replace"))
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - start)
    finally:
        writer.close()


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc), all threads included."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _load(
    port: int, path: str, clients: int, seconds: float, body: bytes, *, pid: int
) -> tuple[list[float], float]:
    latencies: list[float] = []
    warm_until = time.perf_counter() + min(1.0, seconds / 4)
    await asyncio.gather(*(_client(port, path, body, warm_until, []) for _ in range(clients)))
    cpu = _cpu_seconds(pid)
    stop_at = time.perf_counter() + seconds
    await asyncio.gather(*(_client(port, path, body, stop_at, latencies) for _ in range(clients)))
    return latencies, _cpu_seconds(pid) - cpu


def _report(name: str, latencies: list[float], seconds: float, cpu: float) -> dict[str, float]:
    ms = sorted(x * 1000 for x in latencies)
    q = statistics.quantiles(ms, n=100)
    row = {"p50": q[49], "p90": q[89], "p99": q[98], "rps": len(ms) / seconds, "cpu_us": cpu / len(ms) * 1e6}
    print(
        f"{name:<28} p50 {row['p50']:6.2f} ms  p90 {row['p90']:6.2f} ms  p99 {row['p99']:6.2f} ms  "
        f"{row['rps']:6.0f} req/s  server CPU {row['cpu_us']:5.0f} us/req  (n={len(ms)})",
        flush=True,
    )
    return row


def _run(cmd: list[str], port: int, path: str, args: argparse.Namespace, name: str) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_port(port, proc)
        latencies, cpu = asyncio.run(_load(port, path, args.clients, args.seconds, b"x" * args.body, pid=proc.pid))
        return _report(name, latencies, args.seconds, cpu)
    finally:
        proc.terminate()
        proc.wait(10)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m devhost.overhead", description=__doc__)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--body", type=int, default=256, help="request body bytes")
    p.add_argument("devhost_args", nargs="*", help="extra devhost options after --, e.g. -- --log-level warning")
    args = p.parse_args(argv)
    print(f"{args.clients} concurrent keep-alive clients, {args.body}-byte POST echo, {args.seconds:.0f} s each")
    port = free_port()
    bare = _run(
        [
            sys.executable,
            "-c",
            "import uvicorn; from devhost.overhead import make_starlette; "
            f"uvicorn.run(make_starlette(), host='127.0.0.1', port={port}, log_level='warning', "
            "access_log=False)",
        ],
        port,
        "/api/echo",
        args,
        "bare starlette (uvicorn)",
    )
    results = {}
    with tempfile.TemporaryDirectory(prefix="devhost-bench-") as work:
        for path, name in (("/api/echo", "devhost async def"), ("/api/echo-sync", "devhost def (thread pool)")):
            port = free_port()
            # default log level: every invocation is logged, as in normal use (--log-level warning drops it)
            cmd = [
                sys.executable,
                "-m",
                "devhost",
                "--app",
                "devhost.overhead:bench_app",
                "--port",
                str(port),
                "--keys",
                str(Path(work) / "keys.json"),
                *args.devhost_args,
            ]
            results[name] = _run(cmd, port, path, args, name)
    for name, row in results.items():
        print(
            f"{name}: p50 {row['p50'] - bare['p50']:+.2f} ms, server CPU {row['cpu_us'] - bare['cpu_us']:+.0f} us "
            "per request vs bare starlette"
        )


if __name__ == "__main__":
    main()
