"""``requirements.txt`` is exactly what the deployed functions import.

The set is derived, not listed: every module reachable from ``function_app`` through ``functions/`` and
``shared/`` (imports inside functions count: they run when the function does) is read with ``ast``; each
third-party import is traced to the distribution whose files hold it. A package only the CLI, the
emulator or the tests import must not ship, and one the app imports must be pinned.
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import re
import sys
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
APP_PACKAGES = ("function_app", "functions", "shared")
# Imported on the app's behalf by the Python worker, not by the app (so no import of the app names them):
# the Azure Monitor OpenTelemetry distro, which the worker configures when telemetry is on.
WORKER_IMPORTS = {"azure-monitor-opentelemetry"}


def _source(module: str) -> Path | None:
    path = ROOT.joinpath(*module.split("."))
    for candidate in (path / "__init__.py", path.with_suffix(".py")):
        if candidate.is_file():
            return candidate
    return None


def _imports(module: str, source: Path) -> set[str]:
    """Dotted names ``module`` imports (``from a import b`` gives ``a`` and ``a.b``; relative resolved)."""
    package = module if source.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(source.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


@cache
def app_imports() -> tuple[set[str], set[str]]:
    """(app modules reached from function_app, third-party names they import)."""
    seen: set[str] = set()
    third_party: set[str] = set()
    todo = ["function_app"]
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        source = _source(module)
        if source is None:
            continue  # `from shared.x import name`: the name is not a module
        for name in _imports(module, source):
            top = name.split(".")[0]
            if top in APP_PACKAGES:
                parts = name.split(".")
                todo.extend(".".join(parts[: i + 1]) for i in range(len(parts)))
            elif top not in sys.stdlib_module_names and top != "__future__":
                third_party.add(name)
    return seen, third_party


@cache
def _module_owners(top: str) -> dict[str, str]:
    """Every module under ``top`` that an installed distribution's files hold, by dotted name (from each
    candidate's RECORD: nothing is imported)."""
    owners = {}
    for name in md.packages_distributions().get(top, ()):
        for file in md.distribution(name).files or ():
            if file.suffix not in (".py", ".so", ".pyd") or ".." in file.parts:
                continue
            parts = [*file.parts[:-1], file.name.split(".", 1)[0]]
            if parts[-1] == "__init__":
                parts.pop()
            if parts:
                owners[".".join(parts)] = _normal(name)
    return owners


@cache
def distribution_of(name: str) -> str | None:
    """The distribution holding ``name``'s longest module prefix (``azure`` is a namespace shared by many)."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        owner = _module_owners(parts[0]).get(".".join(parts[:i]))
        if owner:
            return owner
    return None


def _normal(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pinned() -> dict[str, str]:
    pins = {}
    for raw in (ROOT / "requirements.txt").read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep, f"requirements.txt: {line!r} is not pinned with =="
            pins[_normal(name)] = version
    return pins


def test_requirements_txt_is_exactly_what_the_deployed_functions_import() -> None:
    modules, names = app_imports()
    assert {"functions.api", "shared.handlers", "shared.ingest"} <= modules  # the walk reaches the app
    imported = {d for d in map(distribution_of, names) if d}
    # a namespace package (``from opentelemetry import trace``) belongs to no one: what is imported from it does
    unknown = sorted(n for n in names if distribution_of(n) is None
                     and not any(m.startswith(n + ".") and distribution_of(m) for m in names))
    assert unknown == [], f"imports no installed distribution provides: {unknown}"
    assert imported | WORKER_IMPORTS == set(pinned()), (
        f"missing from requirements.txt: {sorted(imported - set(pinned()))}; "
        f"listed but never imported by the app: {sorted(set(pinned()) - imported)}"
    )


def test_pins_are_what_is_installed() -> None:
    wrong = {name: (version, md.version(name)) for name, version in pinned().items() if md.version(name) != version}
    assert wrong == {}


def test_the_walk_sees_function_level_imports() -> None:
    # shared/azureml/submit.py imports azure.ai.ml inside functions: a top-level-only walk would miss it
    _, names = app_imports()
    assert any(n.startswith("azure.ai.ml") for n in names)
