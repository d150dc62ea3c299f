"""The rules of the house, read off the source: one connection layer, one error tree, no cycles in shared/."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import pytest

import cli
import shared
from shared import errors
from shared.api.http import http_answer

ROOT = Path(__file__).resolve().parents[2]
APP = [ROOT / "function_app.py", *sorted((ROOT / "functions").rglob("*.py")), *sorted((ROOT / "shared").rglob("*.py"))]


def _module_name(path: Path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def _imports(path: Path, *, typing_only: bool = True) -> set[str]:
    """Every module ``path`` imports, at module level or inside functions (the app imports lazily);
    with ``typing_only=False``, not those under ``if TYPE_CHECKING:`` (never imported at run time)."""
    tree = ast.parse(path.read_text())
    if not typing_only:
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
                node.body = []
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def test_one_credential_and_no_process_environment_writes():
    credential = [p.name for p in APP if "DefaultAzureCredential(" in p.read_text()]
    assert credential == ["connections.py"], credential
    assert len(re.findall(r"DefaultAzureCredential\(", (ROOT / "shared" / "connections.py").read_text())) == 1
    writes = [str(p.relative_to(ROOT)) for p in APP
              if re.search(r"os\.environ\s*\[[^]]+\]\s*=|os\.environ\.(setdefault|update|pop)\(|os\.putenv", p.read_text())]
    assert writes == []


def test_shared_imports_no_entry_points_stand_ins_or_tools():
    forbidden = ("functions", "function_app", "emulator", "devhost", "devstack", "cli", "tests", "bench")
    for path in (ROOT / "shared").rglob("*.py"):
        bad = {m for m in _imports(path) if m.split(".")[0] in forbidden}
        assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def test_no_import_cycles_inside_shared():
    modules = {_module_name(p): p for p in (ROOT / "shared").rglob("*.py")}
    graph = {name: {m for m in _imports(path, typing_only=False) if m in modules and m != name}
             for name, path in modules.items()}
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                pytest.fail("import cycle: " + " → ".join([*trail[trail.index(nxt):], nxt]))
            if nxt not in state:
                visit(nxt, [*trail, nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


def _app_exception_classes() -> list[type[BaseException]]:
    found = []
    modules = [info.name for package in (shared, cli) for info in pkgutil.walk_packages(package.__path__, f"{package.__name__}.")]
    for name in modules:
        if name == "cli.__main__":  # running it is the CLI itself
            continue
        module = importlib.import_module(name)
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, BaseException) and cls.__module__ == name:
                found.append(cls)
    return found


def test_every_exception_the_app_defines_is_in_the_one_documented_tree():
    classes = _app_exception_classes()
    outside = [f"{c.__module__}.{c.__qualname__}" for c in classes if not issubclass(c, errors.TuneflowError)]
    assert outside == []
    public_elsewhere = [f"{c.__module__}.{c.__qualname__}" for c in classes
                        if c.__module__ != "shared.errors" and not c.__name__.startswith("_")]
    assert public_elsewhere == [], "public exceptions belong in shared/errors.py"
    tree = errors.__doc__ or ""
    in_module = [c for c in classes if c.__module__ == "shared.errors"]
    assert {c.__name__ for c in in_module} == set(re.findall(r"[─└├]── (\w+)", tree)) | {"TuneflowError"}
    for cls in in_module:  # the tree's nesting is the classes' inheritance
        line = next(line for line in tree.splitlines() if re.search(rf"(── |^\s*){cls.__name__}\b", line))
        depth = (line.index(cls.__name__) - 4) // 4
        assert depth == len(cls.__mro__) - 4, cls.__name__  # object, BaseException, Exception, TuneflowError


@pytest.mark.parametrize(("error", "status", "code"), [
    (errors.EventError("bad event"), 400, "invalid_request"),
    (errors.CallbackRefused("no"), 400, "callback_refused"),
    (errors.EndpointNotFound("gone"), 404, "endpoint_not_found"),
    (errors.ModelUnavailableError("retired"), 502, "azureml_error"),
    (errors.TransportTimeout("slow"), 504, "timeout"),
    (errors.ConflictError("raced"), 409, "conflict"),
    (errors.SettingsError("TUNEFLOW_X: bad"), 500, "misconfigured"),
    (errors.ScoringError(429, "throttled", "busy", retry_after=3), 429, "throttled"),
])
def test_http_answers_come_from_the_class_hierarchy(error, status, code):
    answer = http_answer(error)
    body = answer.json()["error"]
    assert answer.status == status and body["code"] == code and error.message in body["message"]


def test_answers_carry_the_errors_headers_and_unknown_errors_leak_nothing():
    assert http_answer(errors.TransientError("later")).headers["Retry-After"] == "5"
    assert http_answer(errors.ScoringError(503, "busy", "busy", retry_after=2.4)).headers["Retry-After"] == "2"
    assert http_answer(errors.CallbackRefused("private")).json()["error"]["param"] == "callback_url"
    secret = http_answer(RuntimeError("password=hunter2"))
    assert secret.status == 500 and "hunter2" not in secret.body.decode()


def test_the_http_path_never_imports_the_azure_ml_sdk(tmp_path):
    """Scoring, teardown and status build their parts without azure.ai.ml (~1.8 s on a cold instance)."""
    import json
    import subprocess
    import sys

    conn = tmp_path / "connection.json"
    conn.write_text(json.dumps({"cloud_metadata": {"resource_manager": "https://127.0.0.1:1/"}, "subscription_id": "s",
                                "resource_group": "g", "workspace_name": "w", "cloud_name": "local"}))
    code = f"""
import sys
import function_app  # noqa: F401
from shared.api import routes  # noqa: F401
from shared.services import Services
from shared.settings import Settings
svc = Services(Settings.from_env({{"TUNEFLOW_STORAGE_CONNECTION": "UseDevelopmentStorage=true",
                                  "TUNEFLOW_EMULATOR_CONNECTION": {str(conn)!r}}}))
parts = (svc.scorer, svc.teardown, svc.control, svc.deliverer, svc.control.url("/onlineEndpoints"))
print(sorted(m for m in sys.modules if m.startswith(("azure.ai.ml", "datasets", "pyarrow"))))
"""
    out = subprocess.run([sys.executable, "-c", code], check=False, cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_test_modules_do_not_import_each_other() -> None:
    # shared fakes and helpers live in tests/support (or a conftest), never in another test module
    offenders = []
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            offenders += [f"{path.relative_to(ROOT)} imports {n}" for n in names
                          if n.startswith("tests.") and n.rsplit(".", 1)[-1].startswith("test_")]
    assert offenders == []
