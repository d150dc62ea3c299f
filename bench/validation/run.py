"""Validation throughput: our streaming validator against pandas and Hugging Face datasets.

Usage: .venv/bin/python bench/validation/run.py [--mb 200] [--repeat 5] [--shape ultrachat|short]

Generates (deterministically, into bench/.work/) a JSONL file of --mb MiB and one of twice that size, in
one of two row shapes (``ultrachat``: ultrachat_200k-like rows of a few long turns; ``short``: short chats
of many brief turns, where per-message costs dominate), then times, each in a fresh subprocess, on the
same file in the same run:

  * cli       — ``python -m cli validate FILE --json``, the command a user runs: the whole process
  * ours      — ``validate_dataset`` with every check on (the CLI path: no sink), on every core
  * ours-1    — the same in one process (``workers=1``)
  * ours+sink — the ingest path: also serialises every kept row, hash-splits it and hands it to a sink
  * pandas    — ``pandas.read_json(path, lines=True)``
  * datasets  — ``datasets.load_dataset("json", data_files=path, split="train")`` with a fresh
                cache_dir each time, so the time includes building its Arrow cache

Wall time is the child process's whole life (interpreter start, imports, work); the child also
reports its import time and the time of the call alone. Peak RSS is the child's VmHWM
(/proc/self/status). Each tool runs --repeat times, interleaved; the table shows medians.
Writes bench/validation/results.md (results-non-ascii-<share>.md for another --non-ascii).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import random
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
WORK = ROOT / "bench" / ".work"
RESULTS = Path(__file__).resolve().parent / "results.md"
MiB = 1024 * 1024

# -- the data ------------------------------------------------------------------------------------
_TEXT = (
    "the of and to in is that for it as with was on be by this are or an at from which but not have has "
    "you can will your more also these their about other into some what when they there than then only "
    "data model training language system example function value result process method approach research "
    "study however therefore because between during through important different several include provide "
    "support climate energy history culture economy health education technology science community policy "
    "development analysis performance structure network design information experience environment "
    "government population strategy customer product market business quality water food recipe travel "
    "city music art story character team project plan goal step question answer reason benefit risk"
)
_WORDS = tuple(_TEXT.split())
_NON_ASCII = ("café", "naïve", "—", "’s", "“quoted”", "résumé", "Zürich", "°C", "€", "…", "São Paulo", "東京")


def _paragraph(rng: random.Random, words: int, non_ascii: bool) -> str:
    out = rng.choices(_WORDS, k=words)
    for i in range(0, words, rng.randint(8, 20)):
        out[i] = out[i] + "."
        if i + 1 < words:
            out[i + 1] = out[i + 1].capitalize()
    if non_ascii:
        out[rng.randrange(words)] = rng.choice(_NON_ASCII)
    if rng.random() < 0.05:  # a quote and a path, which JSON escapes
        out[rng.randrange(words)] = '"really"'
        out[rng.randrange(words)] = "C:\\temp"
    return out[0].capitalize() + " " + " ".join(out[1:]) + "."


NON_ASCII = 0.15  # share of messages that carry a non-ASCII character (--non-ascii)


def _content(rng: random.Random, chars: int, share: float) -> str:
    non_ascii = rng.random() < share
    paragraphs: list[str] = []
    size = 0
    while size < chars:
        p = _paragraph(rng, rng.randint(40, 110), non_ascii and not paragraphs)
        paragraphs.append(p)
        size += len(p) + 2
    if rng.random() < 0.1:
        paragraphs.append("- first point\n- second point\n- third point")
    return "\n\n".join(paragraphs)


def conversation(rng: random.Random, non_ascii: float = NON_ASCII) -> dict[str, Any]:
    """One ultrachat_200k-like row: prompt, prompt_id, 2–8 alternating user/assistant messages."""
    turns = rng.choice((2, 4, 4, 6, 6, 8))
    messages = [
        {"content": _content(rng, 280 if k % 2 == 0 else 1150, non_ascii), "role": ("user", "assistant")[k % 2]}
        for k in range(turns)
    ]
    prompt = messages[0]["content"]
    return {"prompt": prompt, "prompt_id": hashlib.sha256(prompt.encode()).hexdigest(), "messages": messages}


def short_chat(rng: random.Random, non_ascii: float = NON_ASCII) -> dict[str, Any]:
    """A short chat of many brief turns: 10-30 alternating messages of a sentence or two."""
    turns = rng.randrange(10, 31, 2)
    messages = [{"content": _paragraph(rng, rng.randint(4, 18), rng.random() < non_ascii),
                 "role": ("user", "assistant")[k % 2]} for k in range(turns)]
    return {"messages": messages}


SHAPES = {"ultrachat": conversation, "short": short_chat}
SHAPE_TEXT = {"ultrachat": "ultrachat_200k-like", "short": "short many-turn chats"}
SHAPE_ROWS = {"ultrachat": "prompt, prompt_id and 2–8 alternating user/assistant turns of multi-paragraph text",
              "short": "10–30 alternating user/assistant turns of a sentence or two each"}


def generate(path: Path, mib: int, non_ascii: float = NON_ASCII, seed: int = 20240601,
             shape: str = "ultrachat") -> None:
    """Write ``mib`` MiB of JSONL rows (deterministic for a seed); skip if already there."""
    import orjson

    if path.exists() and path.stat().st_size >= mib * MiB:
        return
    rng = random.Random(seed)
    tmp = path.with_suffix(".tmp")
    written = 0
    with tmp.open("wb") as f:
        while written < mib * MiB:
            line = orjson.dumps(SHAPES[shape](rng, non_ascii)) + b"\n"
            f.write(line)
            written += len(line)
    tmp.replace(path)


# -- one measurement (in a child process) --------------------------------------------------------
def floor(path: str) -> None:
    """The two parts of validation no Python code can avoid, each alone on one core: the SHA-256
    of the file and orjson parsing every line (best of 3, page cache warm). Prints both in seconds."""
    import orjson

    data = Path(path).read_bytes()
    lines = data.split(b"\n")
    sha = parse = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        hashlib.sha256(data).digest()
        sha = min(sha, time.perf_counter() - t)
        t = time.perf_counter()
        for line in lines:
            if line:
                orjson.loads(line)
        parse = min(parse, time.perf_counter() - t)
    print(f"{sha:.4f} {parse:.4f}")


def child(tool: str, path: str, cache: str) -> None:
    """Run one tool once; print rows, import seconds, call seconds, peak RSS (KiB)."""
    start = time.perf_counter()
    workers_kib = 0
    if tool.startswith("ours"):
        sys.path.insert(0, str(ROOT))
        from shared.validation import LocalFile, validate_dataset
        from shared.validation.parallel import available_cpus

        imported = time.perf_counter()
        sent = [0]

        def sink(split: str, row: bytes) -> None:
            sent[0] += len(row)

        workers = 1 if tool == "ours-1" else None
        report = validate_dataset(LocalFile.at(path), sink=sink if tool == "ours+sink" else None, workers=workers)
        rows = report.files["train"].rows
        assert report.valid, report.summary()
        # the worker processes' memory counts too: each one's peak (an upper bound: pages a forked
        # worker shares with this process are counted in both)
        worker_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
        workers_kib = (available_cpus() if worker_kib else 0) * worker_kib
    elif tool == "pandas":
        import pandas as pd

        imported = time.perf_counter()
        rows = len(pd.read_json(path, lines=True))
    elif tool == "datasets":
        import datasets

        datasets.disable_progress_bars()
        imported = time.perf_counter()
        rows = len(datasets.load_dataset("json", data_files=path, split="train", cache_dir=cache))
    else:
        raise SystemExit(f"unknown tool {tool}")
    done = time.perf_counter()
    print(f"{rows} {imported - start:.4f} {done - imported:.4f} {peak_rss_kib() + workers_kib}")


def peak_rss_kib() -> int:
    """This process's peak RSS. VmHWM, not ru_maxrss: on Linux ru_maxrss survives fork+exec, so a
    child would report its parent's peak if that was higher."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux


def measure_cli(path: Path) -> dict[str, float]:
    """The command a user runs, as a whole process: interpreter start, imports, validation, the report."""
    import orjson

    started = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "cli", "validate", str(path), "--json"], capture_output=True,
                         check=False, cwd=ROOT)
    wall = time.perf_counter() - started
    if out.returncode:
        raise SystemExit(f"cli validate failed ({out.returncode}):\n{out.stderr.decode()[-2000:]}")
    rows = orjson.loads(out.stdout)["files"]["train"]["rows"]
    nan = float("nan")
    return {"rows": int(rows), "wall": wall, "import": nan, "op": nan, "rss": nan}


def measure(tool: str, path: Path) -> dict[str, float]:
    if tool == "cli":
        return measure_cli(path)
    cache = WORK / "hf-cache"
    shutil.rmtree(cache, ignore_errors=True)
    started = time.perf_counter()
    out = subprocess.run(
        [sys.executable, __file__, "--child", tool, str(path), str(cache)],
        capture_output=True, text=True, check=False, cwd=ROOT,
        env={**os.environ, "HF_DATASETS_CACHE": str(cache), "HF_HUB_OFFLINE": "1"},
    )
    wall = time.perf_counter() - started
    shutil.rmtree(cache, ignore_errors=True)
    if out.returncode:
        raise SystemExit(f"{tool} failed:\n{out.stderr}")
    rows, imports, call, rss = out.stdout.split()[-4:]
    return {"rows": int(rows), "wall": wall, "import": float(imports), "op": float(call), "rss": int(rss) / 1024}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mb", type=int, default=200, help="size of the main file in MiB (default 200)")
    parser.add_argument("--repeat", type=int, default=5, help="runs per tool, interleaved (median reported)")
    parser.add_argument(
        "--non-ascii", type=float, default=NON_ASCII, help="share of messages with a non-ASCII character (0.15)"
    )
    parser.add_argument("--shape", choices=sorted(SHAPES), default="ultrachat", help="row shape (ultrachat)")
    parser.add_argument("--child", nargs=3, metavar=("TOOL", "PATH", "CACHE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        if args.child[0] == "floor":
            floor(args.child[1])
        else:
            child(*args.child)
        return

    WORK.mkdir(parents=True, exist_ok=True)
    tag = "" if args.non_ascii == 0.15 else f"-na{args.non_ascii:g}"
    main_file = WORK / f"{args.shape}-like-{args.mb}mb{tag}.jsonl"
    double = WORK / f"{args.shape}-like-{2 * args.mb}mb{tag}.jsonl"
    t = time.perf_counter()
    generate(main_file, args.mb, args.non_ascii, shape=args.shape)
    generate(double, 2 * args.mb, args.non_ascii, shape=args.shape)
    print(f"data ready in {time.perf_counter() - t:.1f}s: {main_file.name}, {double.name}")

    load_before = os.getloadavg()
    tools = ["cli", "ours", "ours-1", "ours+sink", "pandas", "datasets"]
    runs: dict[str, list[dict[str, float]]] = {tool: [] for tool in tools}
    big: list[dict[str, float]] = []
    for i in range(args.repeat):
        for tool in tools:
            r = measure(tool, main_file)
            runs[tool].append(r)
            print(f"run {i + 1} {tool:10s} wall {r['wall']:.2f}s import {r['import']:.2f}s "
                  f"call {r['op']:.2f}s rss {r['rss']:.0f} MB")
        big.append(measure("ours", double))
    out = subprocess.run([sys.executable, __file__, "--child", "floor", str(main_file), "-"], capture_output=True,
                         text=True, check=True, cwd=ROOT)
    floors = tuple(float(x) for x in out.stdout.split())
    load_after = os.getloadavg()
    print(results(args, main_file, runs, big, (load_before, load_after), floors))


def results(  # noqa: PLR0917
    args: argparse.Namespace,
    main_file: Path,
    runs: dict[str, list[dict[str, float]]],
    big: list[dict[str, float]],
    load: tuple[tuple[float, ...], tuple[float, ...]],
    floors: tuple[float, ...],
) -> str:
    size_mb = main_file.stat().st_size / MiB
    keys = ("wall", "import", "op", "rss")
    med = {tool: {k: statistics.median(r[k] for r in rs) for k in keys} for tool, rs in runs.items()}
    cli_runs = runs.pop("cli")
    best = {tool: min(r["wall"] for r in rs) for tool, rs in runs.items()}
    rows = int(runs["ours"][0]["rows"])
    ours = med["ours"]
    labels = {
        "cli": "`python -m cli validate FILE --json`: the whole command (interpreter, imports, validation, report)",
        "ours": "ours: `validate_dataset`, every check, one worker process per core (the CLI path, no sink)",
        "ours-1": "ours in one process (`workers=1`)",
        "ours+sink": "ours + sink: also re-serialise, hash-split, hand each row to a sink (ingest path)",
        "pandas": "`pandas.read_json(path, lines=True)`",
        "datasets": "`datasets.load_dataset('json', ...)`, fresh cache_dir (building the cache included)",
    }
    lines = [
        "# Dataset validation throughput",
        "",
        f"Command: `.venv/bin/python bench/validation/run.py --mb {args.mb} --repeat {args.repeat}"
        + (f" --shape {args.shape}" if args.shape != "ultrachat" else "")
        + (f" --non-ascii {args.non_ascii:g}" if args.non_ascii != 0.15 else "")
        + "` on "
        f"{os.cpu_count()} cores ({platform.machine()}), Python {platform.python_version()}, "
        f"{time.strftime('%Y-%m-%d')}. "
        f"Load average {load[0][0]:.1f} before, {load[1][0]:.1f} after: the machine is shared, so times vary "
        "from run to run; tools are interleaved and medians reported.",
        "",
        f"File: {size_mb:,.0f} MiB {SHAPE_TEXT[args.shape]} JSONL, {rows:,} rows "
        f"(~{size_mb * MiB / rows / 1024:.1f} KiB a row; {SHAPE_ROWS[args.shape]}; "
        f"{args.non_ascii:.0%} of messages hold a non-ASCII character), generated deterministically by this script. "
        "Page cache warm.",
        "",
        "Each tool runs in a fresh child process. *wall*: the child's whole life (interpreter start, imports, work); "
        "*import*: importing the tool; *call*: the call alone. Peak RSS: the child's VmHWM, plus for ours "
        "each worker process's peak (an upper bound: pages a forked worker shares with its parent count twice). "
        "× ours: the tool's time over ours (higher means we are faster).",
        "",
        "| tool | wall s (best) | import s | call s | MB/s (call) | peak RSS MB | × ours (wall) | × ours (call) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for tool in runs:
        m = med[tool]
        lines.append(
            f"| {labels[tool]} | {m['wall']:.2f} ({best[tool]:.2f}) | {m['import']:.2f} | {m['op']:.2f} "
            f"| {size_mb / m['op']:,.0f} | {m['rss']:.0f} "
            f"| {m['wall'] / ours['wall']:.1f}× | {m['op'] / ours['op']:.1f}× |"
        )
    big_rss = statistics.median(r["rss"] for r in big)
    big_op = statistics.median(r["op"] for r in big)
    pandas_wall, pandas_call = med["pandas"]["wall"] / ours["wall"], med["pandas"]["op"] / ours["op"]
    ds_wall, ds_call = med["datasets"]["wall"] / ours["wall"], med["datasets"]["op"] / ours["op"]
    def rounds(tool: str, key: str, against: list[dict[str, float]] | None = None) -> str:
        base = against if against is not None else runs["ours"]
        return ", ".join(f"{t[key] / o[key]:.1f}×" for t, o in zip(runs[tool], base, strict=True))

    cli_wall = statistics.median(r["wall"] for r in cli_runs)
    lines.insert(lines.index("|---|---|---|---|---|---|---|---|") + 1,
                 f"| {labels['cli']} | {cli_wall:.2f} ({min(r['wall'] for r in cli_runs):.2f}) | — | — | — | — "
                 f"| {cli_wall / ours['wall']:.1f}× | — |")
    lines += [
        "",
        "Every round's ratio (each round runs every tool back to back, in the order of the table):",
        "",
        f"- pandas over ours: wall {rounds('pandas', 'wall')}; call {rounds('pandas', 'op')}",
        f"- datasets over ours: wall {rounds('datasets', 'wall')}; call {rounds('datasets', 'op')}",
        f"- pandas over the whole `cli validate` command: wall {rounds('pandas', 'wall', cli_runs)}",
        f"- datasets over the whole `cli validate` command: wall {rounds('datasets', 'wall', cli_runs)}",
    ]
    verdict = [
        f"- ≥ 8× pandas: {pandas_wall:.1f}× wall, {pandas_call:.1f}× call — "
        + ("met" if min(pandas_wall, pandas_call) >= 8 else "met on wall only" if pandas_wall >= 8 else "not met"),
        f"- ≥ 3× datasets: {ds_wall:.1f}× wall, {ds_call:.1f}× call — "
        + ("met" if min(ds_wall, ds_call) >= 3 else "met on wall only" if ds_wall >= 3 else "not met"),
        f"- peak RSS ≤ 150 MB, independent of file size: {ours['rss']:.0f} MB at {size_mb:,.0f} MiB, "
        f"{big_rss:.0f} MB at {2 * size_mb:,.0f} MiB ({big_op:.2f} s call, {2 * size_mb / big_op:,.0f} MB/s) — "
        + ("met" if max(ours["rss"], big_rss) <= 150 else "not met"),
    ]
    sha, parse = floors
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    work = med["ours-1"]["op"] + sha  # one process: parsing and checks on one core, SHA-256 on a helper thread
    ds_op = med["datasets"]["op"]
    verdict += [
        "",
        f"Where the time goes: alone on one core, the file's SHA-256 takes {sha:.2f} s and orjson (the fastest "
        f"Python JSON parser) {parse:.2f} s to parse every line; the per-row checks in Python cost about as much "
        f"again. In all, ours in one process uses about {work:.2f} core-seconds ({med['ours-1']['op']:.2f} s of "
        f"parsing and checks, the SHA-256 overlapped on a helper thread). Spread perfectly over {cores} cores "
        f"that is {work / cores:.2f} s, {ds_op / (work / cores):.1f}× datasets' call; the workers reach "
        f"{ours['op']:.2f} s. The SHA-256 cannot be split (it reads the bytes in order), and on this machine it "
        "slows the workers by more than its share of a core.",
    ]
    text = "\n".join([*lines, "", "Targets:", *verdict]) + "\n"
    name = "results" + ("" if args.shape == "ultrachat" else f"-{args.shape}")
    name += "" if args.non_ascii == NON_ASCII else f"-non-ascii-{args.non_ascii:g}"
    out = RESULTS.with_name(f"{name}.md")
    out.write_text(text)
    return text


if __name__ == "__main__":
    main()
