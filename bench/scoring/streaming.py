"""Streamed answers: time to first byte, first token and last byte, through tuneflow vs the deployment directly.

Usage: .venv/bin/python bench/scoring/streaming.py [--seconds 10] [--clients 32] [--rounds 3] [--delay-ms 100]
       (writes bench/scoring/streaming.md)

One stack (Azurite, the emulator with a deployed endpoint whose stand-in scorer streams its answer word
by word after ``--delay-ms``, ``--token-ms`` apart, devhost hosting ``function_app``); phases alternate
so both paths see the same machine, each keeping ``--clients`` streamed requests in flight with the same
httpx client code:

- direct:   ``POST <scoring URI>`` accepting ``text/event-stream`` (the deployment's own events);
- tuneflow: ``POST /api/v1/chat/completions`` with ``stream: true`` (OpenAI chunks, passed through).

First byte = the first body byte; first token = the first event carrying answer text (tuneflow sends its
role chunk before it); last byte = the end of the stream. Every round is reported, then the medians.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.scoring.run import MODEL, NEVER, Admin, start_scoring_emulator  # noqa: E402
from devhost.process import start_devhost  # noqa: E402
from devstack.azurite import start_azurite  # noqa: E402

QUESTION = [{"role": "user", "content": "What is the capital of Peru and why is it there?"}]


@dataclass
class Phase:
    target: str
    first_byte: list[float] = field(default_factory=list)
    first_token: list[float] = field(default_factory=list)
    last_byte: list[float] = field(default_factory=list)
    errors: int = 0

    def p(self, series: str, q: float) -> float:
        data = sorted(getattr(self, series))
        return data[min(len(data) - 1, int(q / 100 * len(data)))] * 1000 if data else float("nan")


@dataclass
class Target:
    name: str
    url: str
    headers: dict[str, str]
    body: bytes
    token_marker: bytes  # an event carrying answer text contains this


async def one(client: httpx.AsyncClient, target: Target, phase: Phase) -> None:
    started = time.perf_counter()
    first_byte = first_token = None
    try:
        async with client.stream("POST", target.url, content=target.body, headers=target.headers) as response:
            if response.status_code != 200:
                phase.errors += 1
                await response.aread()
                return
            async for chunk in response.aiter_raw():
                now = time.perf_counter()
                if first_byte is None:
                    first_byte = now
                if first_token is None and target.token_marker in chunk:
                    first_token = now
    except httpx.HTTPError:
        phase.errors += 1
        return
    end = time.perf_counter()
    if first_byte is None or first_token is None:
        phase.errors += 1
        return
    phase.first_byte.append(first_byte - started)
    phase.first_token.append(first_token - started)
    phase.last_byte.append(end - started)


async def load(target: Target, clients: int, seconds: float, verify: str) -> Phase:
    phase = Phase(target.name)
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(verify=verify, limits=limits, timeout=60) as client:
        stop_at = time.monotonic() + seconds

        async def worker() -> None:
            while time.monotonic() < stop_at:
                await one(client, target, phase)

        await asyncio.gather(*(worker() for _ in range(clients)))
    return phase


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--delay-ms", type=float, default=100)
    parser.add_argument("--token-ms", type=float, default=20, help="between streamed words (50 tokens/s)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-streaming-"))
    azurite = start_azurite()
    emu = dh = None
    try:
        emu = start_scoring_emulator(work, azurite.connection_string, {
            "FAKE_SCORER_DELAY": str(args.delay_ms / 1000), "FAKE_SCORER_TOKEN_DELAY": str(args.token_ms / 1000)})
        admin = Admin(emu)
        endpoint = f"bench-{uuid.uuid4().hex[:6]}"
        ep = admin.deploy(endpoint)
        dh = start_devhost("function_app:app", settings={
            "FUNCTIONS_WORKER_RUNTIME": "python", "AzureWebJobsStorage": azurite.connection_string,
            "TUNEFLOW_STORAGE_CONNECTION": azurite.connection_string, "PYTHON_ENABLE_INIT_INDEXING": "1",
            "TUNEFLOW_EMULATOR_CONNECTION": str(emu.connection_file), "TUNEFLOW_ENDPOINT": endpoint,
            "TUNEFLOW_RECONCILE_SCHEDULE": NEVER, "TUNEFLOW_IDLE_TEARDOWN_SCHEDULE": NEVER,
        }, extra_args=["--log-level", "warning"], timeout=60)
        native = {"input_data": {"input_string": QUESTION, "parameters": {"max_new_tokens": 32}}}
        direct = Target("direct", ep["scoring_uri"], {"Authorization": f"Bearer {ep['key']}",
                                                      "Accept": "text/event-stream",
                                                      "Content-Type": "application/json"},
                        json.dumps(native).encode(), b'{"0":')
        proxied = Target("tuneflow", f"{dh.url}/api/v1/chat/completions",
                         {"x-functions-key": dh.function_key, "Content-Type": "application/json"},
                         json.dumps({"model": f"{MODEL[0]}:{MODEL[1]}", "messages": QUESTION, "stream": True,
                                     "max_tokens": 32}).encode(), b'"content":"fake')
        for target in (direct, proxied):  # warm: connections, the endpoint cache, code paths
            asyncio.run(load(target, args.clients, 2.0, emu.ca_bundle))
        rounds: list[tuple[Phase, Phase]] = []
        for i in range(args.rounds):
            d = asyncio.run(load(direct, args.clients, args.seconds, emu.ca_bundle))
            t = asyncio.run(load(proxied, args.clients, args.seconds, emu.ca_bundle))
            rounds.append((d, t))
            print(f"round {i + 1}: first token p50 direct {d.p('first_token', 50):.1f} ms, tuneflow "
                  f"{t.p('first_token', 50):.1f} ms (+{t.p('first_token', 50) - d.p('first_token', 50):.1f}); "
                  f"last byte p50 +{t.p('last_byte', 50) - d.p('last_byte', 50):.1f} ms; "
                  f"{len(d.last_byte)}/{len(t.last_byte)} answers, {d.errors}/{t.errors} errors", flush=True)
        write(args, rounds)
        return 0
    finally:
        if dh is not None:
            dh.stop()
        if emu is not None:
            emu.stop()
        azurite.stop()


def write(args: argparse.Namespace, rounds: list[tuple[Phase, Phase]]) -> None:
    lines = ["# Streamed answers: tuneflow vs the deployment directly", "",
             f"`{' '.join([sys.executable.rsplit('/', 1)[-1], *sys.argv])}` — {args.clients} concurrent clients, "
             f"{args.seconds:g} s per phase, the stand-in deployment streams after {args.delay_ms:g} ms, a word "
             f"every {args.token_ms:g} ms; "
             f"load average {os.getloadavg()[0]:.1f} at the end.", "",
             "| round | path | answers | errors | first byte p50 | first token p50 / p95 | last byte p50 / p95 |",
             "|---|---|---|---|---|---|---|"]
    for i, pair in enumerate(rounds, 1):
        for phase in pair:
            lines.append(f"| {i} | {phase.target} | {len(phase.last_byte)} | {phase.errors} | "
                         f"{phase.p('first_byte', 50):.1f} ms | {phase.p('first_token', 50):.1f} / "
                         f"{phase.p('first_token', 95):.1f} ms | {phase.p('last_byte', 50):.1f} / "
                         f"{phase.p('last_byte', 95):.1f} ms |")
    added = [t.p("first_token", 50) - d.p("first_token", 50) for d, t in rounds]
    added_last = [t.p("last_byte", 50) - d.p("last_byte", 50) for d, t in rounds]
    lines += ["", f"Added time to first token at p50, per round: {', '.join(f'{a:+.1f} ms' for a in added)} "
                  f"(median {statistics.median(added):+.1f} ms; target at most +5 ms).",
              f"Added time to last byte at p50, per round: {', '.join(f'{a:+.1f} ms' for a in added_last)} "
              f"(median {statistics.median(added_last):+.1f} ms).", ""]
    (ROOT / "bench" / "scoring" / "streaming.md").write_text("\n".join(lines))


if __name__ == "__main__":
    raise SystemExit(main())
