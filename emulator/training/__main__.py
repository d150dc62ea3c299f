"""Command line of the trainer (see the package docstring)."""

from __future__ import annotations

import argparse
import os
import sys
import traceback
import warnings
from pathlib import Path

# Before torch loads OpenMP: idle threads sleep instead of spinning. With the default (spin), processes sharing
# 2 cores (a build, a trainer, scorers, tests) slowed each other 3-20x; alone, passive is at most ~1.5x slower.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
warnings.filterwarnings("ignore", category=FutureWarning)  # library deprecation notices are not job output


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m emulator.training",
                                     description="Run the chat_completion_pipeline steps on the CPU.")
    parser.add_argument("--base-model", type=Path, required=True,
                        help="Hugging Face model directory or MLflow model folder")
    parser.add_argument("--train", type=Path, required=True, help="training data (JSON Lines with 'messages')")
    parser.add_argument("--test", type=Path, default=None, help="test data (default: a tenth of --train)")
    parser.add_argument("--params", type=Path, default=None, help="JSON object of pipeline inputs")
    parser.add_argument("--output", type=Path, required=True, help="the MLflow model folder to write")
    parser.add_argument("--metrics", type=Path, default=None, help="JSON Lines file for stages and metrics")
    parser.add_argument("--log-every", type=int, default=None, help="steps between train_loss logs "
                        "(default: the logging_steps parameter, 10)")
    parser.add_argument("--pytorch-output", type=Path, default=None,
                        help="also write the merged Hugging Face model here (pytorch_model_folder)")
    parser.add_argument("--base-model-name", default=None, help="recorded in the MLmodel metadata")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    # Line-buffered so a parent reading the pipe sees each line as it is printed.
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if callable(reconfigure):
        reconfigure(line_buffering=True)
    args = parse_args(argv)
    from emulator.training.pipeline import Job, run
    from emulator.training.report import Reporter, StageError

    job = Job(base_model=args.base_model, train=args.train, test=args.test, params_file=args.params,
              output=args.output, pytorch_output=args.pytorch_output, base_model_name=args.base_model_name,
              log_every=args.log_every, threads=args.threads)
    reporter = Reporter(args.metrics)
    try:
        run(job, reporter)
    except StageError as exc:
        if exc.unexpected and exc.__cause__ is not None:
            traceback.print_exception(exc.__cause__, file=sys.stderr)
        print(f"{exc.stage}: {exc.message}", file=sys.stderr, flush=True)
        return 1
    finally:
        reporter.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
