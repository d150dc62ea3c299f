"""The deployment package, built as azd and Core Tools build it: ``python -m devstack.package [--out DIR]``.

The project's files minus what ``.funcignore`` excludes (gitignore syntax, read with ``pathspec``), and the
packages of ``requirements.txt`` alone installed into ``.python_packages/lib/site-packages`` (where the
Python worker looks), zipped as ``tuneflow.zip``. ``--worker`` also fetches the Python worker's own loader
(``azure-functions-runtime``, the code the platform runs to index an app), so a test can index the package
as Azure would and catch "0 functions found" before a deploy.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SITE_PACKAGES = Path(".python_packages") / "lib" / "site-packages"
WORKER = "azure-functions-runtime==1.3.0"  # the worker for Python 3.13+; its loader is plain Python


def app_files(root: Path = ROOT) -> list[Path]:
    """The files that are deployed, relative to ``root``: tracked or not, minus ``.funcignore``."""
    import pathspec

    ignore = pathspec.GitIgnoreSpec.from_lines((root / ".funcignore").read_text().splitlines())
    files = []
    for path in sorted(root.rglob("*")):
        relative = path.relative_to(root)
        if path.is_file() and not ignore.match_file(relative.as_posix()):  # "tests/" covers what is under it
            files.append(relative)
    return files


def build(out: Path, *, worker: bool = False) -> Path:
    """Build the package under ``out`` (``out/app``, ``out/tuneflow.zip``); the zip's path."""
    app = out / "app"
    shutil.rmtree(app, ignore_errors=True)
    app.mkdir(parents=True)
    for relative in app_files():
        target = app / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / relative, target)
    # a clean install from requirements.txt alone: nothing from the development environment leaks in
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                    "--no-warn-script-location", "--target", str(app / SITE_PACKAGES), "-r",
                    str(app / "requirements.txt")], check=True)
    archive = out / "tuneflow.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        for path in sorted(app.rglob("*")):
            if path.is_file():
                z.write(path, path.relative_to(app).as_posix())
    if worker:
        fetch_worker(out / "worker")
    return archive


def fetch_worker(target: Path) -> Path:
    """The Python worker's package (its loader indexes the app), unpacked into ``target``."""
    wheels = target.parent / "worker-wheel"
    shutil.rmtree(target, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", "--no-deps",
                    "--only-binary=:all:", "--python-version", "3.13", "-d", str(wheels), WORKER], check=True)
    (wheel,) = wheels.glob("azure_functions_runtime-*.whl")
    with zipfile.ZipFile(wheel) as z:
        z.extractall(target)
    return target


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / ".data" / "package")
    parser.add_argument("--worker", action="store_true", help="also fetch the Python worker's loader")
    args = parser.parse_args()
    archive = build(args.out.resolve(), worker=args.worker)
    print(f"{archive} ({archive.stat().st_size / 1024 / 1024:.1f} MiB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
