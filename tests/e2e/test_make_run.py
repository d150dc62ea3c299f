"""`make run` in its shortened mode, as a newcomer would run it, judged from its output."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_make_run_fast_reaches_deployed_scores_and_tears_down():
    proc = subprocess.Popen([sys.executable, "-m", "devstack.run", "--fast"], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    started: list[psutil.Process] = []
    names = ""
    lines = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if "DEPLOYED" in line and not started:  # everything is up here: note what the run started
            started = psutil.Process(proc.pid).children(recursive=True)
            names = " ".join(" ".join(p.cmdline()[:3]) for p in started)
    code = proc.wait(timeout=600)
    out = "".join(lines)
    assert code == 0, out[-4000:]
    assert re.search(r"DEPLOYED\s+evaluated and promoted by the gate; \S+ takes 100%", out), out[-3000:]
    table = re.search(r"evaluation on the dataset's own held-out split \((\d+) examples", out)
    assert table and int(table.group(1)) > 0, out[-3000:]
    assert re.search(r"^  candidate \(\S+\)\s+[01]\.\d{3}\s+[01]\.\d{3}", out, re.M), out[-3000:]
    assert re.search(r"^  base \(", out, re.M) and "gate: promoted:" in out and "reference:" in out
    assert re.search(r"teardown requested: DELETE /api/endpoints/\S+ → 202", out), out[-3000:]
    assert "is TORN_DOWN" in out and "all processes stopped" in out
    assert "emulator" in names and "devhost" in names and "azurite" in names, names
    left = [p for p in started if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert left == [], f"still running after make run: {left}"
