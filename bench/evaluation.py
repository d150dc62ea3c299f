"""Evaluation throughput: tuneflow's chunked, resumable evaluation vs scoring the same prompts directly.

Usage: .venv/bin/python bench/evaluation.py [--examples 200] [--rounds 3] [--delay-ms 100] [--concurrency 4]
       (writes bench/evaluation.md)

One stack (Azurite, the Azure ML emulator with one deployment behind its stand-in scorer answering after
``--delay-ms``, a model's inference time). Per round, in alternation:

- direct:   what a user would write: the endpoint's scoring URI and key read once, then the same prompts
            posted with ``--concurrency`` threads (httpx, keep-alive), answers scored with the same metrics;
- tuneflow: ``shared.evaluation.runner.advance`` as the work queue calls it, chunk after chunk
            (``TUNEFLOW_EVAL_CHUNK_SECONDS=5``, so a 200-example run takes several chunks), each chunk
            claiming, scoring and saving ``reports/<run>.eval.json`` in Azurite.

Both score the same examples through the same deployment with the same concurrency; the ratio is
tuneflow's examples per second over direct's in the same round. ARM calls per evaluation are counted at
the emulator.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import orjson

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.scoring.run import Admin, start_scoring_emulator  # noqa: E402
from devstack.azurite import start_azurite  # noqa: E402


def prompts(n: int) -> list[bytes]:
    return [orjson.dumps({"messages": [{"role": "user", "content": f"What is item {i}?"},
                                       {"role": "assistant", "content": f"fake: What is item {i}?"}]})
            for i in range(n)]


def direct(uri: str, key: str, ca: str, rows: list[bytes], concurrency: int, *,
           max_new_tokens: int) -> tuple[float, int]:
    """(seconds, errors): the same examples through the scoring URI, scored with the same metrics."""
    from shared.evaluation.examples import sample
    from shared.evaluation.metrics import Outcome, score
    from shared.evaluation.runner import request_body

    examples = sample(rows, len(rows), "direct")
    client = httpx.Client(verify=ca, timeout=60, limits=httpx.Limits(max_connections=concurrency * 2))
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json", "azureml-model-deployment": "blue"}

    def one(prompt: list[dict[str, str]]) -> Outcome:
        started = time.perf_counter()
        response = client.post(uri, content=request_body(prompt, max_new_tokens), headers=headers)
        ms = (time.perf_counter() - started) * 1000
        if response.status_code != 200:
            return Outcome(None, ms, str(response.status_code))
        return Outcome(str(response.json()[0]["0"]), ms)

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        outcomes = list(pool.map(one, [e.prompt for e in examples]))
    scores = score(zip(outcomes, [e.reference for e in examples], strict=True))
    elapsed = time.perf_counter() - started
    client.close()
    return elapsed, round(scores.error_rate * scores.examples)


def through_tuneflow(ctx, endpoint: str, test_path: str) -> tuple[float, int, int]:
    """(seconds, chunks, errors): a run's evaluation, chunk after chunk, as the work queue runs it."""
    from shared.evaluation import runner
    from shared.runs import Run, RunState

    run = Run(run_id=uuid.uuid4().hex[:20], state=RunState.DEPLOYING, dataset="bench", sources=[],
              base_model="bench", endpoint=endpoint, deployment="blue", test_path=test_path)
    started = time.perf_counter()
    chunks = 0
    while True:
        chunks += 1
        report = runner.advance(ctx, run, ctx.settings, None)
        if isinstance(report, dict):
            break
    elapsed = time.perf_counter() - started
    errors = round(report["scores"]["candidate"]["error_rate"] * report["scores"]["candidate"]["examples"])
    return elapsed, chunks, errors


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--delay-ms", type=float, default=100.0)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "evaluation.md")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-eval-"))
    azurite = start_azurite()
    emu = None
    try:
        emu = start_scoring_emulator(work, azurite.connection_string, {"FAKE_SCORER_DELAY": str(args.delay_ms / 1000)})
        os.environ["REQUESTS_CA_BUNDLE"] = emu.ca_bundle
        admin = Admin(emu)
        endpoint = f"bench-{uuid.uuid4().hex[:6]}"
        ep = admin.deploy(endpoint)
        from shared.services import Services
        from shared.settings import Settings

        settings = Settings.from_env({
            "TUNEFLOW_STORAGE_CONNECTION": azurite.connection_string,
            "TUNEFLOW_EMULATOR_CONNECTION": str(emu.connection_file), "TUNEFLOW_ENDPOINT": endpoint,
            "TUNEFLOW_EVAL_MAX_ROWS": str(args.examples), "TUNEFLOW_EVAL_CONCURRENCY": str(args.concurrency),
            "TUNEFLOW_EVAL_CHUNK_SECONDS": "5", "TUNEFLOW_EVAL_MAX_NEW_TOKENS": "16"})
        ctx = Services(settings)
        rows = prompts(args.examples)
        test_path = f"prepared/bench-{uuid.uuid4().hex[:6]}/test.jsonl"
        ctx.container(settings.output_container).upload_blob(test_path, b"\n".join(rows) + b"\n")
        # warm both paths: connections, imports, the container
        direct(ep["scoring_uri"], ep["key"], emu.ca_bundle, rows[:20], args.concurrency, max_new_tokens=16)
        through_tuneflow(ctx, endpoint, test_path)
        results = []
        for i in range(args.rounds):
            d_s, d_err = direct(ep["scoring_uri"], ep["key"], emu.ca_bundle, rows, args.concurrency, max_new_tokens=16)
            before = admin.arm_calls()
            t_s, chunks, t_err = through_tuneflow(ctx, endpoint, test_path)
            arm = admin.arm_calls() - before
            results.append((d_s, t_s, chunks, arm, d_err, t_err))
            print(f"round {i + 1}: direct {args.examples / d_s:.1f}/s, tuneflow {args.examples / t_s:.1f}/s "
                  f"({chunks} chunks, {arm} ARM calls), ratio {d_s / t_s:.1%}", flush=True)
        write(args, results)
    finally:
        if emu is not None:
            emu.stop()
        azurite.stop()
    return 0


def write(args: argparse.Namespace, results: list[tuple[float, float, int, int, int, int]]) -> None:
    ratios = [d / t for d, t, *_ in results]
    lines = [
        "# Evaluation: tuneflow's chunked evaluation vs scoring the same prompts directly", "",
        f"Command: `.venv/bin/python bench/evaluation.py --examples {args.examples} --rounds {args.rounds} "
        f"--delay-ms {args.delay_ms:g} --concurrency {args.concurrency}`", "",
        f"Machine: {os.cpu_count()} cores ({platform.machine()}, Python {platform.python_version()}), shared with "
        f"other work; Azurite, the emulator (router + stand-in scorer answering after {args.delay_ms:g} ms) and "
        "the benchmark run on it. Both paths: the same examples, the same deployment, "
        f"{args.concurrency} calls in flight, the same metrics; tuneflow also claims, saves and merges "
        "`reports/<run>.eval.json` in Azurite every 5-s chunk.", "",
        f"- throughput through tuneflow: **{statistics.median(ratios):.1%}** of direct (median of "
        f"{len(ratios)} rounds; every round: {', '.join(f'{r:.1%}' for r in ratios)})",
        f"- ARM calls per evaluation of {args.examples} examples: {', '.join(str(r[3]) for r in results)} "
        "(the endpoint and its keys, read once per chunk)", "",
        "| round | direct s | direct examples/s | tuneflow s | tuneflow examples/s | chunks | ARM calls | "
        "errors (direct / tuneflow) | ratio |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for i, (d, t, chunks, arm, de, te) in enumerate(results, 1):
        lines.append(f"| {i} | {d:.2f} | {args.examples / d:.1f} | {t:.2f} | {args.examples / t:.1f} | {chunks} | "
                     f"{arm} | {de} / {te} | {d / t:.1%} |")
    args.out.write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    sys.exit(main())
