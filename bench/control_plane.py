"""The control plane: hand-built REST (``shared.endpoints.control``) vs the azure-ai-ml SDK vs
azure-mgmt-machinelearningservices, for the reads and writes tuneflow makes of online endpoints.

Usage: .venv/bin/python bench/control_plane.py [--calls 40] [--repeat 5]   (writes bench/control_plane.md)

Import cost: each client's import and construction in a fresh interpreter (``--repeat`` times, median),
over ``import azure.functions`` alone (what every function pays anyway). Call cost: against the emulator (a
real HTTPS ARM surface on this machine), ``--calls`` sequential reads of an endpoint and its keys through
each client, warm, wall and CPU time per call. The HTTP functions resolve endpoints (scoring, models,
status, teardown), so what they import is their cold start.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.scoring.run import Admin, start_scoring_emulator  # noqa: E402
from devstack.azurite import start_azurite  # noqa: E402

IMPORTS = {
    "azure.functions alone (the floor)": "import azure.functions",
    "REST: shared.endpoints.control (httpx)": "import azure.functions, httpx; from shared.endpoints.control import "
                                             "ControlPlane; httpx.Client()",
    "SDK: azure.ai.ml MLClient": "import azure.functions; from azure.ai.ml import MLClient",
    "azure-mgmt-machinelearningservices": "import azure.functions; from azure.mgmt.machinelearningservices import "
                                          "MachineLearningServicesMgmtClient",
}


def import_seconds(code: str, repeat: int) -> float:
    timed = f"import time; t = time.perf_counter(); {code}; print(time.perf_counter() - t)"
    runs = [float(subprocess.run([sys.executable, "-c", timed], capture_output=True, text=True, check=True,
                                 cwd=ROOT).stdout) for _ in range(repeat)]
    return statistics.median(runs)


def per_call(fn: object, calls: int) -> tuple[float, float]:
    """Median wall ms and mean CPU ms per call of ``fn()`` (after one warm call)."""
    fn()  # type: ignore[operator]
    walls = []
    cpu = time.process_time()
    for _ in range(calls):
        t = time.perf_counter()
        fn()  # type: ignore[operator]
        walls.append((time.perf_counter() - t) * 1000)
    return statistics.median(walls), (time.process_time() - cpu) * 1000 / calls


def mgmt_operations() -> list[str]:
    """What the management package can do: its operation groups."""
    from azure.mgmt.machinelearningservices import _version, operations

    return [f"version {_version.VERSION}", "operations: " + " ".join(sorted(operations.__all__))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=40)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "control_plane.md")
    args = parser.parse_args()
    imports = {name: import_seconds(code, args.repeat) for name, code in IMPORTS.items()}
    floor = imports["azure.functions alone (the floor)"]

    work = Path(tempfile.mkdtemp(prefix="bench-control-"))
    azurite = start_azurite()
    emu = None
    try:
        emu = start_scoring_emulator(work, azurite.connection_string)
        os.environ["REQUESTS_CA_BUNDLE"] = emu.ca_bundle  # the SDK's plain `requests` calls
        endpoint = f"cp-{uuid.uuid4().hex[:6]}"
        Admin(emu).deploy(endpoint)

        from emulator.connection import ml_client
        from shared.services import Services
        from shared.settings import Settings

        control = Services(Settings.from_env({"TUNEFLOW_STORAGE_CONNECTION": azurite.connection_string,
                                              "TUNEFLOW_EMULATOR_CONNECTION": str(emu.connection_file)})).control
        ml = ml_client(emu.connection)
        calls = {
            "REST: shared.endpoints.control (httpx)": lambda: (control.endpoint(endpoint), control.keys(endpoint)),
            "SDK: azure.ai.ml MLClient": lambda: (ml.online_endpoints.get(endpoint),
                                                  ml.online_endpoints.get_keys(endpoint)),
        }
        costs = {name: per_call(fn, args.calls) for name, fn in calls.items()}
    finally:
        if emu is not None:
            emu.stop()
        azurite.stop()

    lines = [
        "# Control plane: REST vs the azure-ai-ml SDK vs azure-mgmt-machinelearningservices", "",
        f"Command: `.venv/bin/python bench/control_plane.py --calls {args.calls} --repeat {args.repeat}` on "
        f"{os.cpu_count()} cores ({platform.machine()}, Python {platform.python_version()}), "
        f"{time.strftime('%Y-%m-%d')}; the machine is shared, so read the ratios.", "",
        "| client | import + construct s (median) | over `import azure.functions` | one read of an endpoint and "
        "its keys, ms (median wall / mean CPU) |",
        "|---|---|---|---|",
    ]
    for name, seconds in imports.items():
        cost = costs.get(name)
        shown = f"{cost[0]:.1f} / {cost[1]:.1f}" if cost else (
            "— (floor)" if name.startswith("azure.functions") else "cannot: no online endpoint operations")
        lines.append(f"| {name} | {seconds:.2f} | {seconds / floor:.1f}× | {shown} |")
    rest, sdk = costs["REST: shared.endpoints.control (httpx)"], costs["SDK: azure.ai.ml MLClient"]
    lines += [
        "",
        f"- REST over the SDK: {sdk[0] / rest[0]:.1f}× less wall time and {sdk[1] / rest[1]:.1f}× less CPU per call; "
        f"the SDK's import adds {imports['SDK: azure.ai.ml MLClient'] - floor:.2f} s to a cold start, the REST "
        f"client's {imports['REST: shared.endpoints.control (httpx)'] - floor:.2f} s.",
        "- azure-mgmt-machinelearningservices, the only management package on PyPI (" + ", ".join(mgmt_operations())
        + "), targets API version 2020-08-01: workspaces and compute, no online endpoints or deployments, so it "
        "cannot serve at all; azure-ai-ml carries its own generated clients for the newer API versions.",
        "- Chosen: REST over one pooled httpx client (`shared/endpoints/control.py`) for every endpoint and "
        "deployment read and write; the SDK stays for what only it does well (pipeline submission, the "
        "registry's model and component reads), imported only by the functions that submit.",
        "",
    ]
    args.output.write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
