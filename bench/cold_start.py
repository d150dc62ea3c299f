"""Cold start: `import function_app` against `import azure.functions` alone, in fresh processes.

Usage: .venv/bin/python bench/cold_start.py [--runs N]   (writes bench/cold_start.md)
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STATEMENTS = {
    "import azure.functions": "import azure.functions",
    "import function_app": "import function_app",
    "import azure.ai.ml (what lazy loading avoids)": "import azure.ai.ml",
    "import datasets (what lazy loading avoids)": "import datasets",
}


def seconds(statement: str) -> float:
    code = f"import time; t = time.perf_counter(); {statement}; print(time.perf_counter() - t)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    return float(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    results = {label: [seconds(stmt) for _ in range(args.runs)] for label, stmt in STATEMENTS.items()}
    base = statistics.median(results["import azure.functions"])
    lines = [
        "# Cold start", "",
        f"Command: `.venv/bin/python bench/cold_start.py --runs {args.runs}` ({os.cpu_count()} cores). "
        "Each import in a fresh interpreter; median and best of the runs. Budget: function_app ≤ 2.5× azure.functions.",
        "", "| import | median ms | best ms | × azure.functions (median) |", "|---|---|---|---|",
    ]
    for label, times in results.items():
        med = statistics.median(times)
        lines.append(f"| `{label}` | {med * 1000:.0f} | {min(times) * 1000:.0f} | {med / base:.2f}× |")
    text = "\n".join(lines) + "\n"
    (ROOT / "bench" / "cold_start.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
