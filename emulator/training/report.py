"""Progress reporting: log lines on stdout and JSON lines in the metrics file.

The metrics file holds three kinds of line (each a JSON object, flushed as written):
  stage events   {"stage": "finetune", "status": "Running" | "Completed" | "Failed", "time": "<ISO 8601 UTC>"
                  [, "error": "<message>"]}   (no numbers, so a reader that collects numeric keys skips them)
  training logs  {"step": 10, "epoch": 0.5, "train_loss": 2.1, "learning_rate": 0.0019}
                 {"step": 20, "epoch": 1.0, "eval_loss": 1.2}            (periodic evaluation)
  the summary    {"eval_loss": ..., "base_eval_loss": ..., "train_runtime": ..., ...}   (last line)
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

# The pipeline steps in order (the names the emulator's pipeline_component.STEPS uses), plus "evaluate",
# which runs inside the fine-tune step on Azure.
STAGES = ("validation", "model_import", "preprocess", "finetune", "evaluate", "model_converter")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class StageError(Exception):
    """A failure with a message meant for the user; printed as ``<stage>: <message>``."""

    def __init__(self, stage: str, message: str, unexpected: bool = False) -> None:
        super().__init__(f"{stage}: {message}")
        self.stage = stage
        self.message = message
        # True for a crash (not a user error): the CLI then prints the traceback before the message.
        self.unexpected = unexpected


class Reporter:
    def __init__(self, metrics_path: Path | None, out: TextIO | None = None) -> None:
        self._out = out or sys.stdout
        self._metrics: TextIO | None = None
        if metrics_path is not None:
            metrics_path.parent.mkdir(parents=True, exist_ok=True)
            self._metrics = metrics_path.open("a", encoding="utf-8")
        self.current = "setup"
        self._started = time.monotonic()

    def log(self, message: str, stage: str | None = None) -> None:
        elapsed = time.monotonic() - self._started
        print(f"[{stage or self.current}] {message} ({elapsed:.1f}s)", file=self._out, flush=True)

    def metric(self, **values: Any) -> None:
        if self._metrics is not None:
            if "step" in values:  # when it was logged: what MLflow's metric history carries (ms)
                values = {**values, "time": int(time.time() * 1000)}
            self._metrics.write(json.dumps(values) + "\n")
            self._metrics.flush()

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Run one stage: Running / Completed / Failed events; any exception becomes a StageError."""
        self.current = name
        started = time.monotonic()
        self.metric(stage=name, status="Running", time=_now())
        self.log("started")
        try:
            yield
        except StageError as exc:
            self.metric(stage=name, status="Failed", time=_now(), error=exc.message)
            raise
        except Exception as exc:
            message = f"{type(exc).__name__}: {exc}".splitlines()[0]
            self.metric(stage=name, status="Failed", time=_now(), error=message)
            raise StageError(name, message, unexpected=True) from exc
        self.metric(stage=name, status="Completed", time=_now())
        self.log(f"completed in {time.monotonic() - started:.1f}s")

    def close(self) -> None:
        if self._metrics is not None:
            self._metrics.close()
            self._metrics = None
