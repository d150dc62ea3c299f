"""Command line of the scoring server (see the package docstring)."""

from __future__ import annotations

import argparse
import asyncio
import os
from pathlib import Path

# Before torch loads OpenMP: idle threads sleep instead of spinning. With the default (spin), processes sharing
# 2 cores (a build, a trainer, scorers, tests) slowed each other 3-20x; alone, passive is at most ~1.5x slower.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m emulator.scoring",
                                     description="Serve one MLflow chat model with the Azure ML scoring contract.")
    parser.add_argument("--model", type=Path, required=True, help="MLflow model folder")
    parser.add_argument("--port", type=int, required=True, help="port to listen on (0: any free port)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--request-timeout", type=float, default=5.0,
                        help="seconds a request may take, queueing included (Azure's default is 5)")
    parser.add_argument("--ready-file", type=Path, default=None,
                        help="written (JSON with the port) once the model is loaded and the server listens")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    args = parser.parse_args(argv)

    import torch

    # One thread per deployment: several deployments share the machine's cores.
    torch.set_num_threads(max(1, args.threads))
    torch.set_num_interop_threads(1)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    hf_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    from emulator.scoring.server import serve

    return asyncio.run(serve(args.model, args.host, args.port, args.request_timeout, args.ready_file))


if __name__ == "__main__":
    raise SystemExit(main())
