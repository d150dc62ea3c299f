"""Canary rollouts under continuous scoring load, through the whole local stack (real training, real scoring).

Usage: .venv/bin/python bench/canary.py [--bake-minutes 0.25] [--steps 30,100] [--clients 4]
       (writes bench/canary.md)

One stack (Azurite, the emulator, devhost). A first model serves; then, with ``--clients`` callers scoring
through tuneflow's chat API all the while:

- good:      a candidate rolled out as a canary: time to 100%, calls made and calls failed on the way;
- bad:       a candidate whose deployment starts failing every call (the emulator's ``bad_answers``
             knob) as soon as it takes its first canary share: seconds from its first failed call to the
             rollback, and the calls that failed meanwhile;
- immediate: the alternative without a canary, the same failing deployment switched to 100% at once for
             the same length of time (the user notices and rolls back by hand): the calls that failed.

The comparison is the share of calls that failed while the bad deployment was live, canary vs immediate.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cli.demo_dataset import generate  # noqa: E402
from devstack.stack import LocalStack, start_stack  # noqa: E402

ENDPOINT = "bench-canary"
FINETUNE = '{"num_train_epochs": 1, "max_steps": 20, "learning_rate": 0.003, "per_device_train_batch_size": 8}'


class Load:
    def __init__(self, stack: LocalStack, clients: int) -> None:
        self.stack, self.clients = stack, clients
        self.calls: list[tuple[float, int]] = []  # (time, status)
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run) for _ in range(clients)]

    def _run(self) -> None:
        client = httpx.Client(timeout=120, headers={"x-functions-key": self.stack.devhost.function_key})
        while not self._stop.is_set():
            response = client.post(f"{self.stack.api}/v1/chat/completions", json={
                "model": ENDPOINT, "max_tokens": 12, "messages": [{"role": "user", "content": "Capital of Peru?"}]})
            self.calls.append((time.time(), response.status_code))
        client.close()

    def __enter__(self) -> Load:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join()

    def between(self, start: float, end: float) -> tuple[int, int]:
        window = [status for at, status in self.calls if start <= at <= end]
        return len(window), sum(status != 200 for status in window)


def drop(stack: LocalStack, folder: str, manifest: dict[str, Any], seed: int) -> None:
    from azure.storage.blob import BlobServiceClient

    rows = b"".join(orjson.dumps(r) + b"\n" for r in generate(200, seed=seed))
    container = BlobServiceClient.from_connection_string(stack.azurite.connection_string).get_container_client(
        stack.settings["TUNEFLOW_DROP_CONTAINER"])
    container.upload_blob(f"{folder}/tuneflow.json", json.dumps(manifest).encode(), overwrite=True)
    container.upload_blob(f"{folder}/train.jsonl", rows, overwrite=True)


def run_of(stack: LocalStack, folder: str) -> dict[str, Any] | None:
    listed = httpx.get(f"{stack.api}/runs", headers={"x-functions-key": stack.devhost.function_key}).json()
    mine = [r for r in listed.get("runs", []) if f"/{folder}/" in r.get("dataset", "")]
    if not mine:
        return None
    found: dict[str, Any] = httpx.get(f"{stack.api}/runs/{mine[0]['run_id']}",
                                      headers={"x-functions-key": stack.devhost.function_key}).json()
    return found


def wait(stack: LocalStack, folder: str, done: Any, timeout: float = 900) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = run_of(stack, folder)
        if run is not None and done(run):
            return run
        time.sleep(0.5)
    raise TimeoutError(f"{folder}: not done within {timeout:.0f} s")


SETTLED = {"DEPLOYED", "GATED", "ROLLED_BACK", "DEPLOY_FAILED", "FAILED", "REJECTED"}


def at(run: dict[str, Any], state: str) -> float:
    return max(datetime.fromisoformat(t["at"]).timestamp() for t in run["history"] if t["state"] == state)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bake-minutes", type=float, default=0.25)
    parser.add_argument("--steps", default="30,100")
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "canary.md")
    args = parser.parse_args()
    steps = [int(p) for p in args.steps.split(",")]
    canary = {"strategy": "canary", "steps": steps, "bake_minutes": args.bake_minutes, "min_requests": 5}
    gate = {"min_delta": -1}  # each candidate is judged by its rollout here, not by the gate
    with tempfile.TemporaryDirectory(prefix="bench-canary-") as work, start_stack(
            Path(work), {"TUNEFLOW_FINETUNE_PARAMS": FINETUNE, "TUNEFLOW_TEST_FRACTION": "0.1",
                         "TUNEFLOW_SETTLE_SECONDS": "2", "TUNEFLOW_ENDPOINT": ENDPOINT,
                         "TUNEFLOW_EVAL_MAX_ROWS": "10"}) as stack:
        drop(stack, "first", {"train": "train.jsonl"}, 1)
        first = wait(stack, "first", lambda r: r["state"] in SETTLED)
        assert first["state"] == "DEPLOYED", first
        results: dict[str, Any] = {}
        with Load(stack, args.clients) as load:
            drop(stack, "good", {"train": "train.jsonl", "rollout": canary, "gate": gate}, 2)
            good = wait(stack, "good", lambda r: r["state"] in SETTLED)
            started = at(good, "DEPLOYING")
            first_share = next(h["since"] for h in good["rollout"]["history"])
            calls, failed = load.between(datetime.fromisoformat(first_share).timestamp(), at(good, "DEPLOYED"))
            results["good"] = {"state": good["state"], "seconds_to_100": at(good, "DEPLOYED") -
                               datetime.fromisoformat(first_share).timestamp(), "calls": calls, "failed": failed,
                               "deploying_s": at(good, "DEPLOYED") - started}
            print("good:", results["good"], flush=True)

            drop(stack, "bad", {"train": "train.jsonl", "rollout": canary, "gate": gate}, 3)
            baking = wait(stack, "bad", lambda r: r["state"] == "DEPLOYING" and (r.get("rollout") or {}).get("share"))
            stack.admin("POST", "/faults", {"bad_answers": {baking["deployment"]: {"error_rate": 1.0}}})
            broke = time.time()
            bad = wait(stack, "bad", lambda r: r["state"] in SETTLED)
            stack.admin("POST", "/faults", {"bad_answers": None})
            failures = [t for t, status in load.calls if status != 200 and t >= broke]
            first_error = min(failures) if failures else broke
            rolled = at(bad, bad["state"])
            calls, failed = load.between(first_error, rolled)
            results["bad"] = {"state": bad["state"], "first_error_to_rollback_s": rolled - first_error,
                              "calls": calls, "failed": failed, "share": baking["rollout"]["share"]}
            print("bad:", results["bad"], flush=True)

            # The same failing deployment, switched to 100% at once, for as long as the canary's bad window lasted
            drop(stack, "immediate", {"train": "train.jsonl", "gate": gate}, 3)
            switched = wait(stack, "immediate", lambda r: r["state"] in SETTLED)
            stack.admin("POST", "/faults", {"bad_answers": {switched["deployment"]: {"error_rate": 1.0}}})
            begin = time.time()
            time.sleep(max(1.0, rolled - first_error))
            stack.admin("POST", "/faults", {"bad_answers": None})
            calls, failed = load.between(begin, time.time())
            results["immediate"] = {"state": switched["state"], "seconds": time.time() - begin, "calls": calls,
                                    "failed": failed}
            print("immediate:", results["immediate"], flush=True)
    write(args, results)
    return 0


def write(args: argparse.Namespace, r: dict[str, Any]) -> None:
    good, bad, immediate = r["good"], r["bad"], r["immediate"]
    bake_s = args.bake_minutes * 60
    canary_share = bad["failed"] / bad["calls"] if bad["calls"] else 0.0
    immediate_share = immediate["failed"] / immediate["calls"] if immediate["calls"] else 0.0
    lines = [
        "# Canary rollouts under continuous load", "",
        f"Command: `.venv/bin/python bench/canary.py --bake-minutes {args.bake_minutes:g} --steps {args.steps} "
        f"--clients {args.clients}`", "",
        f"Machine: {os.cpu_count()} cores ({platform.machine()}, Python {platform.python_version()}), shared with "
        "other work; Azurite, the emulator (real CPU training and scoring), devhost and the load generator all run "
        f"on it. {args.clients} callers score through `POST /api/v1/chat/completions` throughout; each candidate is "
        f"a real fine-tune; canary steps {args.steps}, bake {bake_s:g} s, `rollout.min_requests` 5.", "",
        f"- good candidate: **{good['failed']} failed calls** of {good['calls']} from its first canary share to "
        f"100% ({good['seconds_to_100']:.1f} s; target 0); it ended {good['state']}",
        f"- failing candidate: rolled back **{bad['first_error_to_rollback_s']:.1f} s** after its first failed "
        f"call (target: at most one bake interval, {bake_s:g} s); {bad['failed']} of {bad['calls']} calls failed "
        f"meanwhile ({canary_share:.1%}, at its {bad['share']}% share); it ended {bad['state']}",
        f"- the same failing deployment switched to 100% at once (no canary), for as long: {immediate['failed']} of "
        f"{immediate['calls']} calls failed ({immediate_share:.1%}): the canary failed "
        + (f"**{canary_share / immediate_share:.0%}** of that share of calls" if immediate_share else "none")
        + " — and rolled itself back, where the switch needs someone to notice", "",
        "| scenario | calls | failed | share failed | seconds |", "|---|---|---|---|---|",
        f"| good canary (first share → 100%) | {good['calls']} | {good['failed']} | "
        f"{good['failed'] / max(1, good['calls']):.1%} | {good['seconds_to_100']:.1f} |",
        f"| failing canary (first error → rollback) | {bad['calls']} | {bad['failed']} | {canary_share:.1%} | "
        f"{bad['first_error_to_rollback_s']:.1f} |",
        f"| failing deployment, immediate switch | {immediate['calls']} | {immediate['failed']} | "
        f"{immediate_share:.1%} | {immediate['seconds']:.1f} |",
    ]
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    sys.exit(main())
