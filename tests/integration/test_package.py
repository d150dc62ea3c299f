"""The deployment package, indexed by the Python worker's own loader: what Azure would find after a deploy.

``devstack.package`` builds the zip as azd does (``.funcignore`` applied, ``requirements.txt`` alone
installed into ``.python_packages``); a bare interpreter (``-I -S``: no site-packages of this environment)
then runs ``azure_functions_runtime``'s loader over it. This is the check for "0 functions found" and for
a package missing a module the app imports.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from devstack.package import build
from tests.support.indexed import function_specs

pytestmark = pytest.mark.integration
INDEX = Path(__file__).resolve().parents[1] / "support" / "worker_index.py"


@pytest.fixture(scope="module")
def package(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    out = tmp_path_factory.mktemp("package")
    build(out, worker=True)
    yield out


def indexed(package: Path) -> dict[str, Any]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHON_ENABLE_INIT_INDEXING": "1"}
    out = subprocess.run([sys.executable, "-I", "-S", str(INDEX), str(package / "app"), str(package / "worker")],
                         capture_output=True, text=True, env=env, check=False, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def test_the_workers_loader_finds_every_function_with_its_trigger(package: Path) -> None:
    found = indexed(package)
    ours = {name: spec.trigger["type"] for name, spec in function_specs().items()}
    theirs = {name: next(b["type"] for b in bindings if b["type"].endswith("Trigger"))
              for name, bindings in found["functions"].items()}
    assert theirs == ours and len(theirs) >= 15
    # indexing the package loads the entry points, not the heavy SDKs (they load on first use)
    assert not {"torch", "transformers", "datasets", "pandas"} & set(found["modules"])


def test_the_package_holds_the_app_and_nothing_else(package: Path) -> None:
    with zipfile.ZipFile(package / "tuneflow.zip") as z:
        names = z.namelist()
    tops = {n.split("/", 1)[0] for n in names}
    assert {"function_app.py", "host.json", "requirements.txt", "functions", "shared", ".python_packages"} == tops
    app = [n for n in names if not n.startswith(".python_packages/")]
    assert not [n for n in app if n.split("/")[0] in ("tests", "emulator", "devhost", "devstack", "bench", "cli")]
    assert not [n for n in app if "__pycache__" in n or n.endswith((".pyc", "local.settings.json"))]
    static = "shared/dashboard/static/"  # the dashboard ships its page, script and chart library
    assert {f"{static}index.html", f"{static}app.js", f"{static}vendor/uPlot.iife.min.js"} <= set(app)
    site = {n.split("/")[3] for n in names if n.startswith(".python_packages/lib/site-packages/") and n.count("/") > 3}
    assert "azure" in site and "orjson" in site and "torch" not in site  # requirements.txt alone
