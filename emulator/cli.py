"""Command line: ``python -m emulator --data-dir DIR [--port N] [--storage CONN] [--events-config FILE]``."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import shlex
import sys
from pathlib import Path

from emulator.config import DEFAULT_BASE_MODEL, DEV_CONNECTION_STRING, EmulatorConfig


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m emulator",
        description="Local stand-in for Azure Machine Learning and Event Grid (HTTPS, local CA).",
    )
    p.add_argument("--data-dir", required=True, type=Path, help="State, TLS files and connection.json live here.")
    p.add_argument("--port", type=int, default=0, help="Control-plane HTTPS port (0: reuse last or pick one).")
    p.add_argument("--host", default="127.0.0.1", help="Address to listen on.")
    p.add_argument(
        "--storage",
        default=os.environ.get("TUNEFLOW_EMULATOR_STORAGE", DEV_CONNECTION_STRING),
        help="Connection string of the Azurite account behind the datastores (default: Azurite's "
        "development account on its default ports).",
    )
    p.add_argument("--events-config", type=Path, help="JSON list of Event Grid webhook subscriptions.")
    p.add_argument(
        "--tls-dir",
        type=Path,
        default=os.environ.get("TUNEFLOW_EMULATOR_TLS_DIR") or None,
        help="Directory of the local CA and server certificate (default: DATA_DIR/tls).",
    )
    p.add_argument("--faults", type=Path, help="JSON object of fault knobs applied from the start.")
    p.add_argument(
        "--base-model-name",
        default=os.environ.get("TUNEFLOW_EMULATOR_BASE_MODEL", DEFAULT_BASE_MODEL),
        help="Registry name of the base model.",
    )
    p.add_argument(
        "--base-model-dir",
        type=Path,
        default=os.environ.get("TUNEFLOW_EMULATOR_BASE_MODEL_DIR") or None,
        help="A local Hugging Face model directory to serve as the base model's weights.",
    )
    p.add_argument(
        "--core-quota", action="append", default=[], type=_quota, metavar="FAMILY=CORES",
        help="Dedicated vCPU quota of a VM family as vmSizes names it, or 'regional' (repeatable).",
    )
    p.add_argument("--trainer-command", help="Command that runs training (default: python -m emulator.training).")
    p.add_argument("--scorer-command", help="Command that runs a scoring server (default: python -m emulator.scoring).")
    p.add_argument("--blob-poll-interval", type=float, default=0.5, help="Seconds between Azurite polls.")
    p.add_argument(
        "--time-scale", type=_positive_float, default=float(os.environ.get("TUNEFLOW_EMULATOR_TIME_SCALE", "0.05")),
        help="Azure's clock, scaled: Event Grid's retry schedule and time to live, Retry-After (1 = real time).",
    )
    p.add_argument("--delivery-attempts", type=int, default=30, help="Event Grid's maximum delivery attempts (30).")
    p.add_argument("--event-ttl-minutes", type=_positive_float, default=1440.0,
                   help="Event Grid's event time to live, minutes of Azure's time (1440).")
    p.add_argument("--delivery-timeout", type=_positive_float, default=30.0,
                   help="Seconds Event Grid waits for an answer (30, not scaled).")
    p.add_argument("--log-level", default=os.environ.get("TUNEFLOW_EMULATOR_LOG_LEVEL", "WARNING"))
    return p


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def _quota(text: str) -> tuple[str, int]:
    family, sep, cores = text.rpartition("=")
    if not sep or not family.strip() or not cores.strip().isdigit():
        raise argparse.ArgumentTypeError(f"expected FAMILY=CORES, got {text!r}")
    return family.strip(), int(cores)


def config_from_args(args: argparse.Namespace) -> EmulatorConfig:
    faults = json.loads(args.faults.read_text()) if args.faults else {}
    if not isinstance(faults, dict):
        raise SystemExit(f"{args.faults}: expected a JSON object of fault knobs")
    cfg = EmulatorConfig(
        data_dir=args.data_dir.resolve(),
        port=args.port,
        host=args.host,
        storage=args.storage,
        events_config=args.events_config.resolve() if args.events_config else None,
        tls_dir=Path(args.tls_dir).resolve() if args.tls_dir else None,
        base_model_name=args.base_model_name,
        base_model_dir=Path(args.base_model_dir).resolve() if args.base_model_dir else None,
        faults=faults,
        core_quota=dict(args.core_quota),
        blob_poll_interval=args.blob_poll_interval,
        time_scale=args.time_scale,
        delivery_attempts=args.delivery_attempts,
        event_ttl_minutes=args.event_ttl_minutes,
        delivery_timeout=args.delivery_timeout,
    )
    if args.trainer_command:
        cfg.trainer_command = shlex.split(args.trainer_command)
    if args.scorer_command:
        cfg.scorer_command = shlex.split(args.scorer_command)
    return cfg


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(
        level=getattr(logging, str(args.log_level).upper(), logging.WARNING),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # The SDK clients the emulator uses log every request at INFO: keep them quiet.
    for noisy in ("azure", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    cfg = config_from_args(args)
    from emulator.eventgrid import load_events_config
    from emulator.faults import FaultState

    try:
        FaultState(cfg.faults)  # reject unknown knobs before anything starts
        if cfg.events_config:
            load_events_config(cfg.events_config)
    except (ValueError, OSError) as exc:
        print(f"emulator: {exc}", file=sys.stderr)
        return 2
    import faulthandler
    import signal

    faulthandler.register(signal.SIGUSR1)  # `kill -USR1 <pid>` dumps every thread's stack to stderr
    from emulator.server import serve

    asyncio.run(serve(cfg))
    return 0
