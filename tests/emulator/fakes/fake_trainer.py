"""A stand-in for ``python -m emulator.training`` with the same command line and outputs, in milliseconds.

Environment knobs: FAKE_TRAINER_SLEEP (seconds per step), FAKE_TRAINER_STEPS, FAKE_TRAINER_FAIL (exit 1
with this message as the last stderr line).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path


def main() -> int:
    p = argparse.ArgumentParser()
    for flag in ("--base-model", "--train", "--test", "--params", "--output", "--metrics"):
        p.add_argument(flag, required=True)
    args = p.parse_args()
    params = json.loads(Path(args.params).read_text())
    rows = Path(args.train).read_text().splitlines()
    metrics = open(args.metrics, "w")  # noqa: SIM115 (closed at the end; left open on failure, like a crash)

    def stage(name: str, status: str, **extra: str) -> None:
        # The real trainer's stage events (see emulator/training/report.py).
        metrics.write(json.dumps({"stage": name, "status": status, "time": "2025-01-01T00:00:00Z", **extra}) + "\n")
        metrics.flush()
        print(f"[{name}] {status.lower()}", flush=True)

    stage("validation", "Running")
    print(f"[validation] train file: {len(rows)} conversations", flush=True)
    if os.environ.get("FAKE_TRAINER_FAIL"):
        stage("validation", "Failed", error=os.environ["FAKE_TRAINER_FAIL"])
        print("Traceback (most recent call last): ...", file=sys.stderr)
        print(os.environ["FAKE_TRAINER_FAIL"], file=sys.stderr)
        return 1
    stage("validation", "Completed")
    for name in ("model_import", "preprocess"):
        stage(name, "Running")
        stage(name, "Completed")
    steps = int(os.environ.get("FAKE_TRAINER_STEPS", "3"))
    delay = float(os.environ.get("FAKE_TRAINER_SLEEP", "0"))
    stage("finetune", "Running")
    for step in range(1, steps + 1):
        time.sleep(delay)
        loss = 2.0 / step
        metrics.write(json.dumps({"step": step, "epoch": step / steps, "train_loss": loss}) + "\n")
        metrics.flush()
        print(f"[finetune] step {step} train_loss {loss:.3f}", flush=True)
    stage("finetune", "Completed")
    stage("evaluate", "Running")
    stage("evaluate", "Completed")
    stage("model_converter", "Running")
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    (out / "MLmodel").write_text("flavors:\n  python_function:\n    loader_module: fake\n")
    (out / "data").mkdir(exist_ok=True)
    (out / "data" / "params.json").write_text(json.dumps(params))
    (out / "data" / "base_model.txt").write_text(args.base_model)
    stage("model_converter", "Completed")
    metrics.write(json.dumps({"eval_loss": 0.9, "base_eval_loss": 1.7, "train_runtime": steps * delay}) + "\n")
    metrics.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
