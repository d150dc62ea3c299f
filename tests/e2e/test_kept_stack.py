"""`make run KEEP=1` as a newcomer uses it: the README's CLI commands, as written, against the kept stack.

The README's `status` and `score`/`teardown` code blocks are read from the README itself and run in a bash
shell that sources `.data/stack.env`, so the README cannot drift from what works.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parents[2]
ENV_FILE = ROOT / ".data" / "stack.env"
pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def readme_block(marker: str) -> list[str]:
    """The commands of the README's first bash block that contains ``marker`` (comments dropped)."""
    for block in re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S):
        if marker in block:
            return [line.split("  #")[0].strip() for line in block.splitlines() if line.strip()]
    raise AssertionError(f"no bash block with {marker!r} in the README")


def test_the_readme_cli_commands_work_against_a_kept_stack():
    proc = subprocess.Popen([sys.executable, "-m", "devstack.run", "--fast", "--keep"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert proc.stdout is not None
    lines: list[str] = []
    try:
        for line in proc.stdout:
            lines.append(line)
            if "for the README's CLI commands: source" in line:
                break
        out = "".join(lines)
        assert ENV_FILE.is_file(), out[-3000:]
        assert re.search(r"API: http://\S+/api \(x-functions-key \S+\); admin key \S+", out), out[-3000:]
        dashboard = re.search(r"dashboard: (http://\S+/api/dashboard\?code=\S+)", out)
        assert dashboard, out[-3000:]
        page = httpx.get(dashboard.group(1), timeout=30)  # the printed URL opens the page as it is
        assert page.status_code == 200 and "app.js" in page.text
        run_id = re.search(r"^run ([0-9a-f]{20}): DEPLOYED", out, re.M)
        assert run_id, out[-3000:]
        status = [c.replace("3f2a9c", run_id.group(1)[:6]) for c in readme_block("python -m cli status")]
        commands = [*status, *readme_block("python -m cli score")]
        assert commands[0] == "python -m cli status" and any(c.startswith("source") for c in commands)
        # a new shell in the project root, none of the stack's variables in it: `source` first, as the README says
        script = "set -e\nsource .data/stack.env\n" + "\n".join(f"echo '$ {c}'\n{c}" for c in commands)
        clean = {k: v for k, v in os.environ.items() if not k.startswith("TUNEFLOW_")}
        shell = subprocess.run(["bash", "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300,
                               env=clean, check=False)
        said = shell.stdout + shell.stderr
        assert shell.returncode == 0, said[-4000:]
        assert run_id.group(1) in said and "DEPLOYED" in said  # status: the table, then the run
        assert '"output"' in said  # score --json
        assert "tuneflow-chat" in said and re.search(r"(deleted|gone|TORN_DOWN|Deleting)", said, re.I), said[-2000:]
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            proc.kill()
    deadline = time.monotonic() + 10
    while ENV_FILE.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not ENV_FILE.exists()  # it named processes that are gone
