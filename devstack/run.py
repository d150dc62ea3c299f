"""`make run`: the whole flow on this machine, narrated.

Starts Azurite, the Azure ML emulator and devhost (hosting function_app), uploads a dataset (the
built-in demo by default) to the drop container, follows the run live — validation, training loss,
registration, deployment and traffic switch — then prints a summary: the timeline, the validation
headline, the evaluation on the dataset's own held-out split (the candidate, what served before it and
the base model: exact match, token F1, ROUGE-L, errors, latency) with the gate's verdict and a few
answers from that split, and finally tears the endpoint down through `DELETE /api/endpoints/{name}` (unless
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

TERMINAL = {"REJECTED", "FAILED", "DEPLOYED", "DEPLOY_FAILED", "GATED", "ROLLED_BACK", "CANCELED"}
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
                console.tick(progress_bar(run.get("progress")) or training_status(stack, run["job_name"]))
            elif run["state"] == "DEPLOYING":
                console.tick(f"deploying {run.get('deployment')} to {run.get('endpoint')}: provisioning, then "
                             "evaluating it on the held-out split")
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
        "DEPLOYED": f"{promoted(run)}; {run.get('deployment')} takes 100% of {run.get('endpoint')}",
        "FAILED": f"failed: {run.get('last_error')}",
        "DEPLOY_FAILED": f"deployment failed: {run.get('last_error')}",
        "GATED": f"not promoted: {transition.get('note')}",
    }.get(state, transition.get("note") or "")
    return f"{state:<13} {detail}"


def promoted(run: dict[str, Any]) -> str:
    verdict = (run.get("evaluation") or {}).get("verdict") or {}
    return "smoke test passed" if verdict.get("rule") in (None, "disabled") else "evaluated and promoted by the gate"


def progress_bar(progress: dict[str, Any] | None, width: int = 24) -> str | None:
    """``training [#########---------------] step 12/40, epoch 0.60, train loss 1.234, ETA 42s`` from the
    run's progress (what `GET /api/runs/{id}` carries while it trains)."""
    from cli.status import training_line

    line = training_line(progress)
    if line is None or progress is None:
        return None
    total, step = progress.get("total_steps"), progress.get("step") or 0
    done = round(width * min(1.0, step / total)) if total else 0
    return f"training [{'#' * done}{'-' * (width - done)}] {line}"


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


def base_answers(prompts: list[list[dict[str, str]]], max_new_tokens: int) -> list[tuple[str, float]]:
    """The base model's answers and their latencies (ms), generated locally from the emulator's cached base
    weights, greedy as the evaluation's calls are."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from emulator.basemodel import ensure_base_model

    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # no "Loading weights" bar in the summary
    from emulator.config import EmulatorConfig

    folder = ensure_base_model(EmulatorConfig(data_dir=Path(".")).cache_dir)
    tokenizer: Any = AutoTokenizer.from_pretrained(folder)
    model: Any = AutoModelForCausalLM.from_pretrained(folder)
    answers = []
    for prompt in prompts:
        started = time.perf_counter()
        ids = tokenizer.apply_chat_template(prompt, add_generation_prompt=True, return_tensors="pt",
                                            return_dict=True)["input_ids"]
        with torch.no_grad():
            out = model.generate(ids, max_new_tokens=max_new_tokens, do_sample=False,
                                 pad_token_id=tokenizer.eos_token_id)
        text = tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True).strip()
        answers.append((text, (time.perf_counter() - started) * 1000))
    return answers


def read_report(stack: LocalStack, path: str) -> dict[str, Any]:
    from azure.storage.blob import BlobServiceClient

    blobs = BlobServiceClient.from_connection_string(stack.azurite.connection_string)
    data: dict[str, Any] = json.loads(blobs.get_blob_client(
        stack.settings.get("TUNEFLOW_OUTPUT_CONTAINER", "tuneflow"), path).download_blob().readall())
    return data


COLUMNS = ("exact_match", "token_f1", "rouge_l", "length_ratio", "error_rate", "latency_p50_ms", "latency_p95_ms")


def evaluation_table(scores: dict[str, dict[str, Any]], names: dict[str, str]) -> list[str]:
    """One row per deployment: the quality metrics, the answer length against the reference, errors, latency."""
    lines = [f"  {'':<40} {'exact':>6} {'tok F1':>6} {'ROUGE-L':>7} {'length':>6} {'errors':>6} "
             f"{'p50 ms':>7} {'p95 ms':>7}"]
    for role, row in scores.items():
        label = f"{role} ({names[role]})" if names.get(role) else role
        lines.append(f"  {label[:40]:<40} {row['exact_match']:>6.3f} {row['token_f1']:>6.3f} {row['rouge_l']:>7.3f} "
                     f"{row['length_ratio']:>6.2f} {row['error_rate']:>6.1%} {row['latency_p50_ms']:>7.0f} "
                     f"{row['latency_p95_ms']:>7.0f}")
    return lines


def judged(stack: LocalStack, console: Console, run: dict[str, Any]) -> None:
    """The run's evaluation on its own held-out split (candidate vs serving), with the base model beside
    them (scored here, from its local weights), the gate's verdict and a few answers from that split."""
    from shared.evaluation.metrics import Outcome, score

    evaluation = run.get("evaluation") or {}
    verdict = evaluation.get("verdict") or {}
    if "scores" not in evaluation:
        console.say(f"not evaluated: {verdict.get('reason', 'no evaluation on this run')}")
        return
    report = read_report(stack, evaluation["report"])
    examples = report["examples"]
    scores = dict(evaluation["scores"])
    names = dict(evaluation.get("deployments", {}))
    if "base" in scores:  # eval.compare_base: the app evaluated it on its own deployment
        base = [(str((report["outcomes"]["base"].get(str(e["index"])) or {}).get("answer")), 0.0) for e in examples]
    else:  # scored here from the base model's local weights, on the same prompts
        base = base_answers([e["prompt"] for e in examples],
                            int(stack.settings.get("TUNEFLOW_EVAL_MAX_NEW_TOKENS", 64)))
        scores["base"] = score((Outcome(text, ms), e["reference"])
                               for (text, ms), e in zip(base, examples, strict=True)).to_dict()
        names["base"] = f"{LOCAL_BASE_MODEL}, local"
    console.say(f"evaluation on the dataset's own held-out split ({len(examples)} examples, {evaluation['report']}):")
    print("\n".join(evaluation_table(scores, names)))
    training = evaluation.get("training") or {}
    if "eval_loss" in training:
        stopped = (f"; stopped early at step {training['stopped_early_at_step']:g}"
                   if "stopped_early_at_step" in training else "")
        console.say(f"the job's own losses: train {training.get('train_loss', float('nan')):.3f}, eval "
                    f"{training['eval_loss']:.3f} (base model {training.get('base_eval_loss', float('nan')):.3f})"
                    f"{stopped}")
    outcome = "promoted" if verdict.get("promote") else "not promoted"
    console.say(f"gate: {outcome}: {verdict.get('reason')}")
    print("answers from the held-out split:")
    outcomes = report["outcomes"]
    for example, (base_text, _) in list(zip(examples, base, strict=True))[:3]:
        key = str(example["index"])
        print(f"  Q: {example['prompt'][-1]['content'][:90]!r}")
        print(f"     reference:  {example['reference'][:80]!r}")
        for role, done in outcomes.items():
            if role != "base":
                print(f"     {role + ':':<11} {str((done.get(key) or {}).get('answer'))[:80]!r}")
        print(f"     {'base:':<11} {base_text[:80]!r}")


ENV_FILE = Path(".data/stack.env")


def write_env(stack: LocalStack, path: Path) -> None:
    """Everything a shell needs to talk to the kept stack: ``source`` it and the README's commands work."""
    import shlex

    values = {
        "TUNEFLOW_API_URL": stack.api, "TUNEFLOW_API_KEY": stack.devhost.function_key,
        "KEY": stack.devhost.function_key, "ADMIN": stack.devhost.master_key,
        "TUNEFLOW_DASHBOARD_URL": f"{stack.api}/dashboard?code={stack.devhost.function_key}",
        **{name: stack.settings[name] for name in (
            "TUNEFLOW_STORAGE_CONNECTION", "TUNEFLOW_DROP_CONTAINER", "TUNEFLOW_EMULATOR_CONNECTION")},
        "TUNEFLOW_OUTPUT_CONTAINER": stack.settings.get("TUNEFLOW_OUTPUT_CONTAINER", "tuneflow"),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["# the kept `make run KEEP=1` stack; valid while it runs (removed when it stops)"]
    lines += [f"export {name}={shlex.quote(str(value))}" for name, value in values.items()]
    venv = Path(sys.executable).parent  # the interpreter running the stack: the one `python -m cli` must be
    lines.append(f'export PATH={shlex.quote(str(venv))}:"$PATH"')
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)  # it holds the host's keys and the storage key


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
    parser.add_argument("--env-file", type=Path, default=ENV_FILE,
                        help=f"with --keep: where the stack's shell environment is written (default {ENV_FILE})")
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
        if run.get("evaluation"):
            judged(stack, console, run)
        if run["state"] != "DEPLOYED":
            console.say(f"the run ended {run['state']}: {run.get('last_error')}")
            return 1
        if args.keep:
            write_env(stack, args.env_file)
            console.say(f"kept: endpoint {run.get('endpoint')} stays up; stack stays up until Ctrl-C")
            console.say(f"API: {stack.api} (x-functions-key {stack.devhost.function_key}); admin key "
                        f"{stack.devhost.master_key}")
            console.say(f"dashboard: {stack.api}/dashboard?code={stack.devhost.function_key}")
            console.say(f"for the README's CLI commands: source {args.env_file}")
            while True:
                time.sleep(3600)
        teardown(stack, run, console)
        return 0
    except KeyboardInterrupt:
        console.say("interrupted")
        return 130
    finally:
        if args.keep:
            args.env_file.unlink(missing_ok=True)  # it names processes that are about to stop
        if stack is not None:
            console.say("stopping devhost, the emulator and Azurite")
            stack.stop()
        shutil.rmtree(work, ignore_errors=True)
        console.say("all processes stopped")


if __name__ == "__main__":
    sys.exit(main())
