"""Cold-start budget: importing function_app costs at most 2.5x what the Python worker imports anyway.

With HTTP streams on, the worker loads azure.functions and the FastAPI extension (Starlette, pydantic)
before it indexes the app, so that pair is the floor the app's own import is measured against.

Measured in fresh subprocesses (best of several, as a ratio) because the machine is noisy and
imports are cached after the first time in a process.
"""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUDGET = 2.5
HEAVY = ("azure.ai.ml", "datasets", "pyarrow", "azure.storage.blob", "pandas", "torch")


def import_seconds(statement: str, runs: int = 5) -> float:
    code = ("import time; t = time.perf_counter(); " + statement +
            "; print(time.perf_counter() - t)")
    times = [float(subprocess.run([sys.executable, "-X", "frozen_modules=on", "-c", code], cwd=ROOT,
                                  capture_output=True, text=True, check=True).stdout) for _ in range(runs)]
    return min(times)


def test_function_app_import_is_within_budget_of_azure_functions():
    baseline = import_seconds("import azure.functions, azurefunctions.extensions.http.fastapi")
    app = import_seconds("import function_app")
    ratio = app / baseline
    assert ratio <= BUDGET, f"function_app import {app * 1000:.0f} ms = {ratio:.2f}x the worker's floor ({baseline * 1000:.0f} ms)"


def test_heavy_modules_load_lazily():
    code = "import sys, function_app; print(','.join(m for m in %r if m in sys.modules))" % (HEAVY,)
    loaded = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "", f"imported at function_app import: {loaded.strip()}"
