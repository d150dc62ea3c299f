"""The emulator's real base model for tests: where it is built (once per session, or kept between sessions)
and how the emulator builds it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def basemodel_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One build per session, shared by the emulator test modules (each asks for the same directory).

    TUNEFLOW_TEST_BASEMODEL_CACHE names a directory that keeps the build between sessions (a local speed-up).
    """
    kept = os.environ.get("TUNEFLOW_TEST_BASEMODEL_CACHE")
    return Path(kept) if kept else tmp_path_factory.getbasetemp() / "tuneflow-basemodel-cache"


def build_with_cli(cache: Path, model: str = "phi3") -> Path:
    """``python -m emulator.basemodel --cache-dir DIR --model NAME`` as the emulator runs it: the directory is
    stdout's last line."""
    proc = subprocess.run([sys.executable, "-m", "emulator.basemodel", "--cache-dir", str(cache), "--model", model],
                          cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1"}, capture_output=True, text=True,
                          timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr
    return Path(proc.stdout.strip().splitlines()[-1])
