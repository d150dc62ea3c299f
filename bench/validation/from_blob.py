"""Validation streamed from Blob Storage (Azurite), as ingest reads it, against the same file on disk.

Uploads the benchmark file to a fresh Azurite, then validates it (every check on) in the same run
from the local file and from the blob (ranged 8 MiB reads pinned to the ETag, one read ahead: the ingest path),
each in its own child process, and reports the ratio and the child's peak RSS.

Usage: .venv/bin/python bench/validation/from_blob.py [--mb 200] [--repeat 3]   (writes from_blob.md)
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bench.validation.run import generate  # noqa: E402


def child(mode: str, path: str, connection: str) -> None:
    """Validate once; print the seconds (imports excluded) and this process's peak RSS in MB."""
    from shared.validation import LocalFile, validate_dataset

    if mode == "local":
        source = LocalFile.at(path)
        began = time.perf_counter()
        report = validate_dataset(source, workers=1)  # one process, as ingest: only the source differs
    else:
        from azure.storage.blob import BlobServiceClient

        from shared.ingest import BlobSource

        blob = BlobServiceClient.from_connection_string(connection).get_blob_client("bench", Path(path).name)
        props = blob.get_blob_properties()
        began = time.perf_counter()
        report = validate_dataset(BlobSource(Path(path).name, "jsonl", blob, int(props.size), str(props.etag)))
    assert report.files["train"].complete
    print(time.perf_counter() - began, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def run(mode: str, path: Path, connection: str) -> tuple[float, float]:
    out = subprocess.run([sys.executable, __file__, "--child", mode, str(path), connection], cwd=ROOT,
                         capture_output=True, text=True, check=True)
    seconds, rss_mb = out.stdout.strip().splitlines()[-1].split()
    return float(seconds), float(rss_mb)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=int, default=200)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    from azure.storage.blob import BlobServiceClient

    from devstack.azurite import start_azurite

    path = ROOT / "bench" / ".work" / f"ultrachat-like-{args.mb}mb.jsonl"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        generate(path, args.mb)
    azurite = start_azurite()
    try:
        service = BlobServiceClient.from_connection_string(azurite.connection_string)
        service.create_container("bench")
        with path.open("rb") as data:
            service.get_blob_client("bench", path.name).upload_blob(data, max_concurrency=4)
        times: dict[str, list[float]] = {"local": [], "azurite": []}
        rss: dict[str, float] = {}
        for _ in range(args.repeat):
            for mode, samples in times.items():
                seconds, peak = run(mode, path, azurite.connection_string)
                samples.append(seconds)
                rss[mode] = max(rss.get(mode, 0.0), peak)
    finally:
        azurite.stop()
    size_mb = path.stat().st_size / 1024 / 1024
    local, remote = statistics.median(times["local"]), statistics.median(times["azurite"])
    lines = [
        "# Validation streamed from Azurite", "",
        f"Command: `.venv/bin/python bench/validation/from_blob.py --mb {args.mb} --repeat {args.repeat}` "
        f"({os.cpu_count()} cores, Azurite on the same machine). {size_mb:.0f} MiB ultrachat-like JSONL "
        "(the file `bench/validation/run.py` generates), every check on, median of the runs; each run in a "
        "fresh child process, imports excluded. Peak RSS: the child's own ru_maxrss.", "",
        "| source | seconds | MB/s | × local | peak RSS MB |", "|---|---|---|---|---|",
        f"| local file, one process | {local:.2f} | {size_mb / local:.0f} | 1.00× | {rss['local']:.0f} |",
        f"| Azurite blob (ranged reads, ingest's `BlobSource`) | {remote:.2f} | {size_mb / remote:.0f} | "
        f"{remote / local:.2f}× | {rss['azurite']:.0f} |",
    ]
    text = "\n".join(lines) + "\n"
    (ROOT / "bench" / "validation" / "from_blob.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
