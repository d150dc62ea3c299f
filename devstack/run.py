"""`make run`: the whole flow on this machine, narrated.

Starts Azurite, the Azure ML emulator and devhost (hosting function_app), uploads a dataset (the
built-in demo by default) to the drop container, follows the run live — validation, training loss,
registration, deployment and traffic switch — then prints a summary: the timeline, the validation
headline, the base and fine-tuned models side by side on held-out questions, answers scored through
`POST /api/score`, and finally tears the endpoint down through `DELETE /api/endpoints/{name}` (unless
--keep) and stops every process it started (Ctrl-C included).

    python -m devstack.run [--dataset PATH] [--keep] [--rows N] [--fast]
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from devstack.stack import LOCAL_BASE_MODEL, LocalStack, start_stack

TERMINAL = {"REJECTED", "FAILED", "DEPLOYED", "DEPLOY_FAILED", "GATED", "CANCELED"}
FINETUNE = {"num_train_epochs": 2, "learning_rate": 0.003, "per_device_train_batch_size": 8}
FAST_FINETUNE = {"num_train_epochs": 1, "max_steps": 20, "learning_rate": 0.003, "per_device_train_batch_size": 8}


class Console:
    """Progress lines, and one ticking status line that is rewritten in place on a terminal."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.tty = sys.stdout.isatty()
        self._ticking = False

    def stamp(self) -> str:
        return f"[{time.monotonic() - self.started:6.1f}s]"

    def say(self, text: str) -> None:
        self._end_tick()
        print(f"{self.stamp()} {text}", flush=True)

    def tick(self, text: str) -> None:
        if self.tty:
            print(f"\r{self.stamp()} {text}\033[K", end="", flush=True)
            self._ticking = True
        else:
            self.say(text)

    def _end_tick(self) -> None:
        if self._ticking:
            print(flush=True)
            self._ticking = False


@contextmanager
def step(console: Console, text: str) -> Iterator[None]:
    console.say(f"{text}…")
    began = time.monotonic()
    yield
    console.say(f"{text}: done in {time.monotonic() - began:.1f}s")


def api(stack: LocalStack, method: str, path: str, *, admin: bool = False, **kwargs: Any) -> httpx.Response:
    key = stack.devhost.master_key if admin else stack.devhost.function_key
    return httpx.request(method, f"{stack.api}{path}", headers={"x-functions-key": key}, timeout=120, **kwargs)


def upload(stack: LocalStack, dataset: Path, console: Console, manifest: Path | None = None) -> str:
    """The dataset as one file in the drop container; a manifest travels in its blob metadata, as
    ``python -m cli upload FILE --manifest M`` sends it (checked here first, as ingest will)."""
    from azure.storage.blob import BlobServiceClient

    from cli.upload import plan

    (planned,) = plan(dataset, manifest=manifest)
    blob = BlobServiceClient.from_connection_string(stack.azurite.connection_string).get_blob_client(
        stack.settings["TUNEFLOW_DROP_CONTAINER"], planned.blob_name)
    with dataset.open("rb") as data:
        blob.upload_blob(data, overwrite=True, metadata=planned.metadata)
    with_manifest = f" with the manifest {manifest}" if manifest else ""
    console.say(f"uploaded {planned.blob_name} ({dataset.stat().st_size / 1024:.0f} KiB){with_manifest} "
                "to the drop container")
    return planned.blob_name


def follow(stack: LocalStack, blob_name: str, console: Console, timeout: float) -> dict[str, Any]:
    """Poll `GET /api/runs` and the job's metrics until the run settles; narrate each transition."""
    deadline = time.monotonic() + timeout
    seen = 0
    run: dict[str, Any] | None = None
    while time.monotonic() < deadline:
        runs = api(stack, "GET", "/runs").json().get("runs", [])
        mine = [r for r in runs if r.get("dataset", "").endswith(blob_name)]
        if mine:
            run = api(stack, "GET", f"/runs/{mine[0]['run_id']}").json()
            history = run.get("history", [])
            for transition in history[seen:]:
                console.say(describe(transition, run))
            seen = len(history)
            if run["state"] in TERMINAL:
                return run
            if run["state"] == "RUNNING" and run.get("job_name"):
                console.tick(training_status(stack, run["job_name"]))
            elif run["state"] == "DEPLOYING":
                console.tick(f"deploying {run.get('deployment')} to {run.get('endpoint')}: waiting for it to be ready")
            else:
                console.tick(f"{run['state'].lower()}…")
        else:
            console.tick("waiting for the BlobCreated event to reach ingest…")
        time.sleep(1)
    raise TimeoutError(f"the run did not settle within {timeout:.0f} s (last state: {run and run['state']})")


def describe(transition: dict[str, Any], run: dict[str, Any]) -> str:
    state = transition["state"]
    detail = {
        "VALIDATING": "streaming and validating the dataset",
        "REJECTED": f"rejected: {run.get('summary')}",
        "SUBMITTED": f"validated ({run.get('summary')}); submitted pipeline job {run.get('job_name')}",
        "RUNNING": "the pipeline is running: LoRA fine-tuning on the CPU",
        "TRAINED": "the job completed",
        "REGISTERED": f"registered model {run.get('model')}",
        "DEPLOYING": f"blue/green: deployment {run.get('deployment')} created at 0% traffic",
        "DEPLOYED": f"smoke test passed; {run.get('deployment')} takes 100% of {run.get('endpoint')}",
        "FAILED": f"failed: {run.get('last_error')}",
        "DEPLOY_FAILED": f"deployment failed: {run.get('last_error')}",
        "GATED": f"not promoted: {transition.get('note')}",
    }.get(state, transition.get("note") or "")
    return f"{state:<13} {detail}"


def training_status(stack: LocalStack, job: str) -> str:
    try:
        doc = stack.admin("GET", f"/jobs/{job}")
    except Exception:
        return "training…"
    metrics = doc.get("metrics") or {}
    history = metrics.get("train_loss_history") or []
    if history:
        last = history[-1]
        return f"training: step {last['step']}, train loss {last['train_loss']:.3f}"
    return f"training: {doc.get('status', 'starting')} (loading the base model)"


def timeline(run: dict[str, Any]) -> list[str]:
    from datetime import datetime

    history = run["history"]
    times = [datetime.fromisoformat(t["at"]) for t in history]
    lines = []
    for i, transition in enumerate(history):
        spent = (times[i + 1] - times[i]).total_seconds() if i + 1 < len(history) else 0.0
        lines.append(f"  {transition['state']:<13} {spent:7.1f}s")
    total = (times[-1] - times[0]).total_seconds()
    lines.append(f"  {'total':<13} {total:7.1f}s")
    return lines


def base_answers(questions: list[str]) -> list[str]:
    """The base model's answers, generated locally from the emulator's cached base weights."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from emulator.basemodel import ensure_base_model
    from emulator.config import EmulatorConfig

    folder = ensure_base_model(EmulatorConfig(data_dir=Path(".")).cache_dir)
    tokenizer: Any = AutoTokenizer.from_pretrained(folder)
    model: Any = AutoModelForCausalLM.from_pretrained(folder)
    answers = []
    for question in questions:
        ids = tokenizer.apply_chat_template([{"role": "user", "content": question}], add_generation_prompt=True,
                                            return_tensors="pt", return_dict=True)["input_ids"]
        with torch.no_grad():
            out = model.generate(ids, max_new_tokens=24, do_sample=False, pad_token_id=tokenizer.eos_token_id)
        answers.append(tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip())
    return answers


def compare(stack: LocalStack, console: Console, endpoint: str) -> None:
    from cli.demo_dataset import heldout_questions

    questions = heldout_questions()[:4]
    prompts = [q["prompt"] for q in questions]
    tuned = []
    for prompt in prompts:  # by model name: the run's endpoint may be one its manifest chose
        response = api(stack, "POST", "/v1/chat/completions", json={
            "model": endpoint, "messages": [{"role": "user", "content": prompt}], "max_tokens": 24})
        response.raise_for_status()
        tuned.append(str(response.json()["choices"][0]["message"]["content"]).strip())
    base = base_answers(prompts)
    console.say("held-out questions (never in the training data), base vs fine-tuned:")
    right = {"base": 0, "fine-tuned": 0}
    for q, b, t in zip(questions, base, tuned, strict=True):
        expected = q["expected"].rstrip(".").lower()
        right["base"] += expected in b.lower()
        right["fine-tuned"] += expected in t.lower()
        print(f"  Q: {q['prompt']}\n     base:       {b[:80]!r}\n     fine-tuned: {t[:80]!r}")
    console.say(f"exact answers: base {right['base']}/{len(questions)}, "
                f"fine-tuned {right['fine-tuned']}/{len(questions)}")


def teardown(stack: LocalStack, run: dict[str, Any], console: Console) -> None:
    endpoint = run.get("endpoint") or stack.settings.get("TUNEFLOW_ENDPOINT", "tuneflow-chat")
    response = api(stack, "DELETE", f"/endpoints/{endpoint}", admin=True)
    console.say(f"teardown requested: DELETE /api/endpoints/{endpoint} → {response.status_code}")
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        state = api(stack, "GET", f"/runs/{run['run_id']}").json().get("state")
        if state == "TORN_DOWN":
            console.say(f"endpoint {endpoint} torn down; run {run['run_id']} is TORN_DOWN")
            return
        time.sleep(1)
    console.say("the endpoint was not torn down within 120 s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", type=Path, help="a dataset file to run instead of the built-in demo")
    parser.add_argument("--manifest", type=Path, help="a tuneflow.json for the dataset (sent as its blob metadata)")
    parser.add_argument("--rows", type=int, default=300, help="rows of the demo dataset (default 300)")
    parser.add_argument("--keep", action="store_true", help="keep the endpoint (no teardown)")
    parser.add_argument("--fast", action="store_true", help="fewer rows and training steps (CI)")
    parser.add_argument("--timeout", type=float, default=600, help="seconds to wait for the run to settle")
    args = parser.parse_args(argv)
    console = Console()
    work = Path(tempfile.mkdtemp(prefix="tuneflow-run-"))
    if args.dataset is not None and not args.dataset.is_file():
        print(f"error: {args.dataset} is not a file", file=sys.stderr)
        return 2
    if args.manifest is not None:
        from cli.upload import read_manifest
        from shared.errors import UploadRefused

        try:
            read_manifest(args.manifest)
        except UploadRefused as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
    # Ctrl-C and SIGTERM both unwind through the finally below, which stops every process.
    signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
    stack: LocalStack | None = None
    try:
        finetune = FAST_FINETUNE if args.fast else FINETUNE
        with step(console, "starting Azurite, the Azure ML emulator and devhost"):
            stack = start_stack(work / "stack", {"TUNEFLOW_FINETUNE_PARAMS": json.dumps(finetune)})
        console.say(f"function app at {stack.devhost.url}; emulator at {stack.emulator.base_url}; "
                    f"base model {LOCAL_BASE_MODEL} (a small local stand-in)")
        dataset = args.dataset
        if dataset is None:
            from cli.demo_dataset import write_jsonl

            dataset = write_jsonl(work / "demo-capitals.jsonl", 120 if args.fast else args.rows)
        blob = upload(stack, dataset, console, args.manifest)
        run = follow(stack, blob, console, args.timeout)
        print("\n== summary ==")
        print(f"run {run['run_id']}: {run['state']}")
        print(f"validation: {run.get('summary')}")
        print("timeline:")
        print("\n".join(timeline(run)))
        if run["state"] != "DEPLOYED":
            console.say(f"the run ended {run['state']}: {run.get('last_error')}")
            return 1
        compare(stack, console, str(run.get("endpoint")))
        if args.keep:
            console.say(f"kept: endpoint {run.get('endpoint')} stays up; stack stays up until Ctrl-C")
            while True:
                time.sleep(3600)
        teardown(stack, run, console)
        return 0
    except KeyboardInterrupt:
        console.say("interrupted")
        return 130
    finally:
        if stack is not None:
            console.say("stopping devhost, the emulator and Azurite")
            stack.stop()
        shutil.rmtree(work, ignore_errors=True)
        console.say("all processes stopped")


if __name__ == "__main__":
    sys.exit(main())
