"""Scoring proxy overhead: the emulator's scoring URI called directly vs. through tuneflow (devhost).

Usage: .venv/bin/python bench/scoring/run.py [--seconds 10] [--clients 32] [--rounds 2] [--delay-ms 200 100 50]
       (writes bench/scoring/results.md)

One run starts everything (Azurite, the Azure ML emulator with a deployed endpoint, devhost hosting
``function_app``), then alternates load phases so both paths see the same machine:

- direct:   ``POST <scoring URI>`` with the endpoint key (HTTPS, the emulator's scoring router);
- tuneflow: ``POST /api/score`` on devhost (function key), which resolves the endpoint once and then
            forwards on its pooled client — devhost's own cost is part of this path, as it would be
            the Functions host's in Azure;
- tuneflow-httpx: the same, the app's scoring client swapped for an httpx ``AsyncClient``
            (``bench/scoring/httpx_app.py``), to measure what the hand-written HTTP/1.1 client buys;
- notebook: ``ml_client.online_endpoints.invoke(...)`` (azure-ai-ml), the reference notebook's path.

Each tuneflow host's first phase is measured as it comes, right after the host started (no warm-up: what a
newly started instance's first callers see), and reported apart with its per-second throughput.

Each phase keeps ``--clients`` requests in flight (raw asyncio HTTP/1.1 keep-alive connections, so
the load generator itself costs little) and records every latency. ARM (control-plane) requests are
counted at the emulator (``/_emulator/requests``) around each phase. The deployment is the emulator's
stand-in scorer answering after ``--delay-ms`` (a model's inference time); the scorer's own latency is
therefore in both paths and the difference is the proxy's. Each ``--delay-ms`` value gets its own stack.
CPU seconds per request of each process (from /proc) are reported too: unlike latencies they do not
depend on what else the machine is running.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import ssl
import statistics
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from devhost.process import Handle, start_devhost  # noqa: E402
from devstack.azurite import start_azurite  # noqa: E402
from emulator.process import EmulatorHandle, start_emulator  # noqa: E402

FAKE_SCORER = f"{sys.executable} {ROOT / 'tests' / 'emulator' / 'fakes' / 'fake_scorer.py'}"
API = {"api-version": "2024-01-01-preview"}
MODEL = ("bench-chat-ft", "1")
BODY = json.dumps({"input_data": {"input_string": [{"role": "user", "content": "Capital of Peru?"}],
                                  "parameters": {"max_new_tokens": 16}}}).encode()
NEVER = "0 0 0 1 1 *"
# each tuneflow path: the app devhost hosts (the same code; the httpx one swaps the scoring client)
APPS = {"tuneflow": "function_app:app", "tuneflow-httpx": "bench.scoring.httpx_app:app"}


# ------------------------------------------------------------------------------------------ load generator


@dataclass
class Target:
    name: str
    url: str
    headers: dict[str, str]
    ssl: ssl.SSLContext | None = None


@dataclass
class Phase:
    target: str
    seconds: float
    latencies: list[float] = field(default_factory=list)
    finished: list[float] = field(default_factory=list)  # when each answer came, seconds into the phase
    errors: int = 0
    arm_calls: int = 0
    cpu_ms: dict[str, float] = field(default_factory=dict)  # process → CPU ms per request

    @property
    def throughput(self) -> float:
        return len(self.latencies) / self.seconds

    def pct(self, p: float) -> float:
        data = sorted(self.latencies)
        return data[min(len(data) - 1, int(p / 100 * len(data)))] * 1000 if data else float("nan")


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    length = 0
    chunked = False
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.lower() == "content-length":
            length = int(value)
        elif name.lower() == "transfer-encoding" and "chunked" in value.lower():
            chunked = True
    if chunked:
        while True:
            size = int((await reader.readline()).strip(), 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length:
        await reader.readexactly(length)
    return status


async def _client(target: Target, stop_at: float, phase: Phase, started: float) -> None:
    url = urlsplit(target.url)
    port = url.port or (443 if url.scheme == "https" else 80)
    reader, writer = await asyncio.open_connection(url.hostname, port, ssl=target.ssl)
    head = "".join(f"{k}: {v}\r\n" for k, v in target.headers.items())
    request = (f"POST {url.path}{'?' + url.query if url.query else ''} HTTP/1.1\r\nHost: {url.netloc}\r\n"
               f"Content-Type: application/json\r\nContent-Length: {len(BODY)}\r\n{head}\r\n").encode() + BODY
    try:
        while time.perf_counter() < stop_at:
            start = time.perf_counter()
            writer.write(request)
            status = await _read_response(reader)
            if status == 200:
                done = time.perf_counter()
                phase.latencies.append(done - start)
                phase.finished.append(done - started)
            else:
                phase.errors += 1
    finally:
        writer.close()


async def load(target: Target, clients: int, seconds: float) -> Phase:
    phase = Phase(target.name, seconds)
    started = time.perf_counter()
    stop_at = started + seconds
    await asyncio.gather(*(_client(target, stop_at, phase, started) for _ in range(clients)))
    return phase


def per_second(phase: Phase) -> list[int]:
    """Answers completed in each second of the phase."""
    counts = [0] * max(1, int(phase.seconds + 0.999))
    for t in phase.finished:
        counts[min(len(counts) - 1, int(t))] += 1
    return counts


# ------------------------------------------------------------------------------------------ the stack


class Admin:
    def __init__(self, emu: EmulatorHandle) -> None:
        self.emu = emu
        self.conn = emu.connection
        self.http = httpx.Client(verify=emu.ca_bundle, timeout=60)

    def ws(self, path: str) -> str:
        c = self.conn
        return (f"{c['base_url']}/subscriptions/{c['subscription_id']}/resourceGroups/{c['resource_group']}"
                f"/providers/Microsoft.MachineLearningServices/workspaces/{c['workspace_name']}{path}")

    def arm_calls(self) -> int:
        return int(self.http.get(self.emu.admin_url + "/requests").json()["totals"].get("arm", 0))

    def wait(self, response: httpx.Response) -> None:
        assert response.status_code in (200, 201, 202), response.text
        url = response.headers["Azure-AsyncOperation"]
        while self.http.get(url).json()["status"] == "InProgress":
            time.sleep(0.1)

    def deploy(self, endpoint: str) -> dict[str, Any]:
        from azure.storage.blob import BlobServiceClient

        c = self.conn
        blobs = BlobServiceClient.from_connection_string(c["storage_connection_string"])
        blobs.get_container_client(c["datastore_container"]).upload_blob(
            "models/bench/config.json", b'{"model_type": "fake"}', overwrite=True)
        r = self.http.put(self.ws(f"/models/{MODEL[0]}/versions/{MODEL[1]}"), params=API, json={"properties": {
            "modelType": "mlflow_model", "modelUri": "azureml://datastores/workspaceblobstore/paths/models/bench"}})
        assert r.status_code == 201, r.text
        self.wait(self.http.put(self.ws(f"/onlineEndpoints/{endpoint}"), params=API,
                                json={"location": "eastus2", "properties": {"authMode": "Key"}}))
        model_id = self.ws(f"/models/{MODEL[0]}/versions/{MODEL[1]}").split(c["base_url"], 1)[1]
        self.wait(self.http.put(self.ws(f"/onlineEndpoints/{endpoint}/deployments/blue"), params=API, json={
            "location": "eastus2", "sku": {"name": "Default", "capacity": 1},
            "properties": {"endpointComputeType": "Managed", "model": model_id,
                           "instanceType": "Standard_NC24ads_A100_v4",
                           "requestSettings": {"requestTimeout": "PT90S"}}}))
        self.wait(self.http.put(self.ws(f"/onlineEndpoints/{endpoint}"), params=API, json={
            "location": "eastus2", "properties": {"authMode": "Key", "traffic": {"blue": 100}}}))
        ep = self.http.get(self.ws(f"/onlineEndpoints/{endpoint}"), params=API).json()
        keys = self.http.post(self.ws(f"/onlineEndpoints/{endpoint}/listKeys"), params=API).json()
        return {"scoring_uri": ep["properties"]["scoringUri"], "key": keys["primaryKey"]}


def start_scoring_emulator(work: Path, storage: str, env: dict[str, str] | None = None) -> EmulatorHandle:
    """The emulator with the stand-in scorer behind its deployments (``FAKE_SCORER_*`` in ``env``)."""
    base = work / "base-model"
    base.mkdir(exist_ok=True)
    (base / "config.json").write_text("{}")
    return start_emulator(work / "emulator", storage, env=env,
                          extra_args=["--scorer-command", FAKE_SCORER, "--base-model-dir", str(base)])


def notebook_invoke(emu: EmulatorHandle, endpoint: str, requests: int, clients: int, admin: Admin) -> Phase:
    """The reference notebook's path: ``online_endpoints.invoke`` with a request file, per request."""
    from emulator.connection import ml_client

    ml = ml_client(emu.connection)
    with tempfile.NamedTemporaryFile("wb", suffix=".json", delete=False) as f:
        f.write(BODY)
    ml.online_endpoints.invoke(endpoint_name=endpoint, request_file=f.name)  # warm the SDK
    phase = Phase("notebook", 0.0)
    lock = threading.Lock()

    def one(_: int) -> None:
        start = time.perf_counter()
        try:
            ml.online_endpoints.invoke(endpoint_name=endpoint, deployment_name="blue", request_file=f.name)
        except Exception:
            with lock:
                phase.errors += 1
            return
        with lock:
            phase.latencies.append(time.perf_counter() - start)

    before = admin.arm_calls()
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, range(requests)))
    phase.seconds = time.perf_counter() - started
    phase.arm_calls = admin.arm_calls() - before
    os.unlink(f.name)
    return phase


# ------------------------------------------------------------------------------------------ report


def row(p: Phase) -> str:
    n = len(p.latencies)
    per_request = p.arm_calls / n if n else float("nan")
    return (f"| {p.target} | {n} | {p.errors} | {p.pct(50):.1f} | {p.pct(95):.1f} | {p.pct(99):.1f} | "
            f"{p.throughput:.0f} | {p.arm_calls} | {per_request:.2f} |")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    out = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(entry))
            except (OSError, IndexError, ValueError):
                continue
    return out


@dataclass
class Result:
    delay_ms: float
    phases: list[Phase]
    notebook: Phase | None
    first: list[Phase] = field(default_factory=list)  # each host's first phase, straight after it started
    direct_first: Phase | None = None  # the direct phase right before them, for comparison


def measure(args: argparse.Namespace, delay_ms: float, notebook: bool) -> Result:
    work = Path(tempfile.mkdtemp(prefix="bench-scoring-"))
    azurite = start_azurite()
    emu: EmulatorHandle | None = None
    hosts: list[Handle] = []
    try:
        emu = start_scoring_emulator(work, azurite.connection_string, {"FAKE_SCORER_DELAY": str(delay_ms / 1000)})
        os.environ["REQUESTS_CA_BUNDLE"] = emu.ca_bundle
        admin = Admin(emu)
        endpoint = f"bench-{uuid.uuid4().hex[:6]}"
        ep = admin.deploy(endpoint)
        settings = {
            "FUNCTIONS_WORKER_RUNTIME": "python", "AzureWebJobsStorage": azurite.connection_string,
            "TUNEFLOW_STORAGE_CONNECTION": azurite.connection_string,
            "TUNEFLOW_EMULATOR_CONNECTION": str(emu.connection_file), "TUNEFLOW_ENDPOINT": endpoint,
            "TUNEFLOW_RECONCILE_SCHEDULE": NEVER, "TUNEFLOW_IDLE_TEARDOWN_SCHEDULE": NEVER,
            "TUNEFLOW_SCORE_QUEUE": "bench-score-jobs",
        }
        tls = ssl.create_default_context(cafile=emu.ca_bundle)
        direct = Target("direct", ep["scoring_uri"], {"Authorization": f"Bearer {ep['key']}"}, tls)
        asyncio.run(load(direct, args.clients, 2.0))  # the emulator's router and the scorer warm up first
        direct_first = asyncio.run(load(direct, args.clients, args.seconds))
        targets = [direct]
        first: list[Phase] = []
        for name, app in APPS.items():
            # warning level: the host's per-invocation log line is not what is being measured here
            dh = start_devhost(app, settings=settings, env={"REQUESTS_CA_BUNDLE": emu.ca_bundle},
                               extra_args=["--log-level", "warning"], timeout=60)
            hosts.append(dh)
            target = Target(name, f"{dh.url}/api/score", {"x-functions-key": dh.function_key})
            first.append(asyncio.run(load(target, args.clients, args.seconds)))  # cold: nothing warmed
            print(f"delay {delay_ms:g} ms, first phase after start", row(first[-1]), per_second(first[-1]), flush=True)
            targets.append(target)
        for target in targets:  # warm: connections, the endpoint cache, code paths
            asyncio.run(load(target, args.clients, 2.0))
        pids = {**{f"devhost ({h})": hosts[i].process.pid for i, h in enumerate(APPS)},
                "emulator (router)": emu.process.pid,
                **{f"scorer {i + 1}": pid for i, pid in enumerate(children(emu.process.pid))},
                "load generator": os.getpid()}
        phases: list[Phase] = []
        for _ in range(args.rounds):
            for target in targets:
                before, cpu_before = admin.arm_calls(), {k: cpu_seconds(v) for k, v in pids.items()}
                phase = asyncio.run(load(target, args.clients, args.seconds))
                phase.arm_calls = admin.arm_calls() - before
                n = max(1, len(phase.latencies))
                phase.cpu_ms = {k: (cpu_seconds(v) - cpu_before[k]) * 1000 / n for k, v in pids.items()}
                phases.append(phase)
                print(f"delay {delay_ms:g} ms", row(phase), flush=True)
        nb = notebook_invoke(emu, endpoint, args.notebook_requests, args.clients, admin) if notebook else None
        if nb is not None:
            print(row(nb), flush=True)
        return Result(delay_ms, phases, nb, first, direct_first)
    finally:
        for dh in hosts:
            dh.stop()
        if emu is not None:
            emu.stop()
        azurite.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each load phase")
    parser.add_argument("--clients", type=int, default=32, help="requests in flight")
    parser.add_argument("--rounds", type=int, default=2, help="direct/tuneflow phase pairs (alternated)")
    parser.add_argument("--delay-ms", type=float, nargs="+", default=[200.0, 100.0, 50.0],
                        help="the stand-in model's inference time (one stack per value; the first is the headline)")
    parser.add_argument("--notebook-requests", type=int, default=128)
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "scoring" / "results.md")
    args = parser.parse_args()
    load_before = os.getloadavg()
    results = [measure(args, delay, notebook=i == 0) for i, delay in enumerate(args.delay_ms)]
    write(args, results, (load_before, os.getloadavg()))
    return 0


def merged(phases: list[Phase], name: str) -> Phase:
    out = Phase(name, sum(p.seconds for p in phases if p.target == name))
    mine = [p for p in phases if p.target == name]
    for p in mine:
        out.latencies += p.latencies
        out.errors += p.errors
        out.arm_calls += p.arm_calls
    keys = mine[0].cpu_ms.keys() if mine else []
    out.cpu_ms = {k: statistics.mean(p.cpu_ms[k] for p in mine) for k in keys}
    return out


def verdict(result: Result) -> tuple[list[str], list[Phase]]:
    direct = merged(result.phases, "direct")
    paths = [direct, *(merged(result.phases, name) for name in APPS)]
    proxied, httpx_path = paths[1], paths[2]
    added = proxied.pct(50) - direct.pct(50)
    ratio = proxied.throughput / direct.throughput
    lines = [
        f"- p50 added latency: **{added:.2f} ms** (target ≤ 2 ms): {'met' if added <= 2 else 'NOT met'}; "
        f"with the httpx client: {httpx_path.pct(50) - direct.pct(50):.2f} ms",
        f"- throughput through tuneflow: **{ratio:.1%}** of direct (target ≥ 85%): "
        f"{'met' if ratio >= 0.85 else 'NOT met'}; with the httpx client: "
        f"{httpx_path.throughput / direct.throughput:.1%}",
        f"- control-plane (ARM) calls while scoring through tuneflow: **{proxied.arm_calls}** for "
        f"{len(proxied.latencies)} requests (target 0 in steady state): "
        f"{'met' if proxied.arm_calls == 0 else 'NOT met'}",
    ]
    rounds = [p for p in result.phases if p.target == "tuneflow"]
    directs = [p for p in result.phases if p.target == "direct"]
    lines.append("- every round, tuneflow vs direct: " + ", ".join(
        f"{t.throughput / d.throughput:.1%} / {t.pct(50) - d.pct(50):+.2f} ms" for t, d in zip(rounds, directs,
                                                                                             strict=True)))
    if result.first and result.direct_first is not None:
        d = result.direct_first
        for cold in result.first:
            lines.append(f"- first {cold.seconds:g} s after `{cold.target}`'s host started (nothing warmed): "
                         f"{cold.throughput / d.throughput:.1%} of direct, p50 {cold.pct(50) - d.pct(50):+.2f} ms, "
                         f"answers per second {per_second(cold)}")
    return lines, paths


def write(args: argparse.Namespace, results: list[Result],
          load: tuple[tuple[float, float, float], tuple[float, float, float]]) -> None:
    delays = " ".join(f"{r.delay_ms:g}" for r in results)
    command = (f".venv/bin/python bench/scoring/run.py --seconds {args.seconds:g} --clients {args.clients} "
               f"--rounds {args.rounds} --delay-ms {delays} --notebook-requests {args.notebook_requests}")
    header = "| path | requests | errors | p50 ms | p95 ms | p99 ms | req/s | ARM calls | ARM calls / request |"
    rule = "|---|---|---|---|---|---|---|---|---|"
    lines = [
        "# Scoring: proxy overhead", "",
        f"Command: `{command}`", "",
        f"Machine: {os.cpu_count()} cores ({platform.machine()}, Python {platform.python_version()}), shared with "
        f"other work (load average {load[0][0]:.1f} at the start, {load[1][0]:.1f} at the end); Azurite, the "
        "emulator (its scoring router + the stand-in scorer), devhost and the load "
        "generator all run on it. Per model time, one stack; phases alternate (direct, tuneflow) × rounds after "
        "a warm-up; the first table merges the rounds. The deployment is the emulator's stand-in scorer answering "
        "after the model time (`FAKE_SCORER_DELAY`), so both paths carry the same model time and the difference "
        "is the proxy's: devhost (the local Functions host) + tuneflow's handler + its HTTP/1.1 client.", "",
    ]
    first = True
    for result in results:
        checks, paths = verdict(result)
        direct = paths[0]
        lines += [f"## Model time {result.delay_ms:g} ms{' (headline)' if first else ''}", "", *checks, "",
                  header, rule, *(row(p) for p in paths)]
        if result.notebook is not None:
            nb = result.notebook
            lines += [row(nb), "", f"- the reference notebook's `online_endpoints.invoke`: **"
                      f"{nb.arm_calls / max(1, len(nb.latencies)):.1f}** ARM calls per request "
                      f"({args.clients} threads, {args.notebook_requests} requests), p50 {nb.pct(50):.1f} ms: it "
                      "reads the endpoint and lists its keys on every call (and checks the deployment when one is "
                      "named) before scoring; tuneflow resolves an endpoint once per `TUNEFLOW_ENDPOINT_CACHE_S` "
                      "and after a 401/403."]
        lines += ["", "CPU per request (ms, mean of the rounds):", "",
                  "| path | " + " | ".join(direct.cpu_ms) + " |", "|---|" + "---|" * len(direct.cpu_ms)]
        for p in paths:
            lines.append(f"| {p.target} | " + " | ".join(f"{v:.2f}" for v in p.cpu_ms.values()) + " |")
        cold = [*([result.direct_first] if result.direct_first else []), *result.first]
        lines += ["", "Per phase (first the phases right after each host started, then the rounds):", "", header,
                  rule, *(row(p) for p in cold), *(row(p) for p in result.phases), ""]
        first = False
    def host_cpu(path: str) -> str:
        values = [merged(r.phases, path).cpu_ms[f"devhost ({path})"] for r in results]
        return "–".join(f"{v:.2f}" for v in (max(values), min(values))) + " ms"

    lines += [
        "## Notes", "",
        f"- CPU per request in the host process, this run: {host_cpu('tuneflow')} with the HTTP/1.1 client "
        f"(`shared/scoring/http1.py`), {host_cpu('tuneflow-httpx')} with an httpx {httpx.__version__} client on "
        "the same code (per model time, highest first); the difference is httpx's and httpcore's per-request "
        "pool and protocol bookkeeping at 32 concurrent calls, and it is what keeps the 50 ms target.",
        "- Latencies need an otherwise idle machine: with other CPU-heavy work on these 2 cores, the direct path "
        "itself saturates at 50 ms (the emulator's scoring router spends 1.5-4.5 ms of CPU per request, on an "
        "httpx 0.28 client) and both paths slow down together. The CPU tables do not depend on that.",
        "- Steady state: the endpoint is resolved during the warm-up; afterwards no ARM call is made whatever the "
        "load (the ARM column). A key rotation costs one re-resolution (3 calls: endpoint, listKeys, deployments).",
        "",
    ]
    args.output.write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    raise SystemExit(main())
