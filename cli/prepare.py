"""``python -m cli prepare``: a share of a chat dataset's splits, written as JSONL.

The reference notebook's ``download-dataset.py`` (``load_dataset(name, split=...)``, the first N% of
each split, ``to_json``), done so that it scales and fails clearly:

- a source is a Hugging Face Hub id, a local clone of a hub dataset (a folder), a dataset saved
  with ``save_to_disk``, or local ``.jsonl``/``.json``/``.parquet`` files and globs;
- rows are never materialised as a whole: hub datasets and Parquet files are *streamed* (the first
  5% of ultrachat's train_sft reads a few MB, not the 1.4 GB split), ``save_to_disk`` datasets are
  memory-mapped, and rows are written batch by batch;
- per split, the first N% (as the reference does) or a seeded random sample, always the same rows
  for the same seed; rows keep their columns and their order in the source;
- ``--upload`` puts the result in the drop container as one dataset (``<name>/train.jsonl`` +
  ``<name>/test.jsonl``), which starts a run.
"""

from __future__ import annotations

import argparse
import glob
import os
import random
import re
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from cli.main import EXIT_OK, fail
from shared.errors import PrepareError

if TYPE_CHECKING:
    from shared.settings import Settings

Kind = Literal["hub", "repo", "disk", "files"]
Sample = Literal["first", "random"]
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*(/[\w.-]+)?")
_GLOB = re.compile(r"[*?\[]")
_LOADERS = {".jsonl": "json", ".ndjson": "json", ".json": "json", ".parquet": "parquet"}
BATCH_ROWS = 1000

_EPILOG = """\
SOURCE is one of
  a Hugging Face Hub dataset id        HuggingFaceH4/ultrachat_200k  (--config for a subset)
  a local folder laid out like one     ./ultrachat_200k  (data/train_sft-*.parquet, ...)
  a dataset saved with save_to_disk    ./ultrachat_disk  (a DatasetDict, or one Dataset = split "train")
  files or globs, one split each       train_sft=data/train.parquet test_sft='data/test-*.jsonl'
  (a single file or glob without SPLIT= is the split "train"). Formats: .jsonl, .ndjson, .json, .parquet.

Each chosen split is written to OUTPUT_DIR/<split>.jsonl, one JSON object per line with every column
kept (ultrachat's prompt, prompt_id, messages). --percent takes the first N% of a split's rows (as the
reference notebook does) or, with --sample random, a seeded random N% (the whole split is read).
Hub datasets and Parquet files are streamed: the first N% reads only what it needs.

--upload sends the result to the drop container (storage settings as for `upload`): two splits go up
as <name>/train.jsonl and <name>/test.jsonl — one dataset, submitted once both have arrived — the
split whose name holds "train" as train, the one holding "test" or "val" as test; a single split goes
up as <name>.jsonl (ingest then holds out its test rows).

Exit codes: 0 written (and uploaded), 2 usage error, unreadable source, unreachable hub, upload error.

Examples:
  python -m cli prepare HuggingFaceH4/ultrachat_200k --splits train_sft test_sft --percent 5
  python -m cli prepare HuggingFaceH4/ultrachat_200k --splits train_sft test_sft \\
      --percent train_sft=5 test_sft=10 --sample random --seed 7 --upload --name ultrachat-5pct
  python -m cli prepare ./ultrachat_disk --splits train_sft test_sft --percent 1 --output-dir data/uc1
  python -m cli prepare train=data/demo.jsonl test=data/demo-test.jsonl --upload
"""


def register(subparsers: Any) -> None:
    """Add the ``prepare`` command."""
    parser = subparsers.add_parser(
        "prepare",
        help="take N%% of a dataset's splits (hub, save_to_disk or files) into JSONL; --upload it",
        description="Prepare a fine-tuning dataset: load a hub dataset, a save_to_disk folder or local files,\n"
        "keep the first (or a seeded random) N% of each split, write one JSONL file per split, and\n"
        "optionally upload the result to the drop container.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("source", nargs="+", metavar="SOURCE", help="hub id, folder, or [SPLIT=]FILE-OR-GLOB ...")
    parser.add_argument("--config", metavar="NAME", help="the hub dataset's configuration (subset), if it has several")
    parser.add_argument("--splits", nargs="+", metavar="SPLIT", help="splits to keep (default: all of them)")
    parser.add_argument(
        "--percent", nargs="+", default=["100"], metavar="N|SPLIT=N",
        help="share of each split, e.g. 5, or per split: train_sft=5 test_sft=10 (default 100)",
    )
    parser.add_argument("--sample", choices=("first", "random"), default="first",
                        help="first: the first N%% of rows (default, as the reference); random: a seeded sample")
    parser.add_argument("--seed", type=int, default=42, metavar="N", help="seed of --sample random (default 42)")
    parser.add_argument("--output-dir", type=Path, metavar="DIR", help="where <split>.jsonl go (default: data/<name>)")
    parser.add_argument("--name", metavar="NAME",
                        help="dataset name: output folder and blob folder (default: from SOURCE)")
    parser.add_argument("--upload", action="store_true", help="upload the result to the drop container")
    parser.add_argument("--overwrite", action="store_true", help="with --upload: replace blobs of the same name")
    parser.add_argument("--cache-dir", type=Path, metavar="DIR",
                        help="Hugging Face datasets cache (default: HF_HOME's)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.set_defaults(handler=_prepare)


def _has_magic(pattern: str) -> bool:
    return _GLOB.search(pattern) is not None



# -- sources ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    kind: Kind
    location: str  # hub id, folder path, or a description of the files
    files: Mapping[str, tuple[str, ...]] | None = None  # kind "files": split → paths
    loader: str | None = None  # kind "files": "json" | "parquet"

    @property
    def default_name(self) -> str:
        if self.kind == "files" and self.files:
            first = next(iter(self.files.values()))[0]
            stem = Path(first).name.split(".", 1)[0]
            # "demo.jsonl" → demo; "data/train_sft-00000-of-00003.parquet" → data (a split's file: its folder)
            base = re.sub(r"[-_]?(train|test)(_sft|_gen)?([-_]\d+(-of-\d+)?)?$", "", stem, flags=re.I)
            base = base or Path(first).resolve().parent.name
        else:
            base = Path(self.location.rstrip("/")).name or self.location
        return re.sub(r"[^A-Za-z0-9._-]+", "-", base).strip("-.") or "dataset"


def resolve_source(specs: Sequence[str]) -> Source:
    """What SOURCE arguments name: a hub id, a folder, a save_to_disk dataset, or files per split."""
    if len(specs) == 1 and "=" not in specs[0]:
        spec = specs[0]
        path = Path(spec).expanduser()
        if path.is_dir():
            saved = (path / "dataset_dict.json").is_file() or (path / "state.json").is_file()
            return Source("disk" if saved else "repo", str(path))
        if path.is_file() or _has_magic(spec) or Path(spec).suffix.lower() in _LOADERS:
            return _files({"train": [spec]})
        if spec.startswith((".", "/", "~")) or not _HUB_ID.fullmatch(spec):
            raise PrepareError(f"{spec}: no such file or folder")
        return Source("hub", spec)
    per_split: dict[str, list[str]] = {}
    for spec in specs:
        split, sep, pattern = spec.partition("=")
        if not sep or not split or not pattern:
            raise PrepareError(f"{spec!r}: with several sources, name each one's split: SPLIT=FILE-OR-GLOB "
                               "(e.g. train_sft=data/train.parquet)")
        per_split.setdefault(split, []).append(pattern)
    return _files(per_split)


def _files(per_split: Mapping[str, Sequence[str]]) -> Source:
    files: dict[str, tuple[str, ...]] = {}
    loaders: set[str] = set()
    for split, patterns in per_split.items():
        if not re.fullmatch(r"\w[\w.-]*", split):
            raise PrepareError(f"{split!r} is not a split name (letters, digits, _ . -)")
        found: list[str] = []
        for pattern in patterns:
            matches = sorted(glob.glob(os.path.expanduser(pattern), recursive=True)) if _has_magic(pattern) \
                else [os.path.expanduser(pattern)]
            matches = [m for m in matches if Path(m).is_file()]
            if not matches:
                raise PrepareError(f"{pattern}: " + ("matches no file" if _has_magic(pattern) else "no such file"))
            found += matches
        for match in found:
            loader = _LOADERS.get(Path(match).suffix.lower())
            if loader is None:
                raise PrepareError(f"{match}: not a dataset file (expected .jsonl, .ndjson, .json or .parquet)")
            loaders.add(loader)
        files[split] = tuple(found)
    if len(loaders) > 1:
        raise PrepareError("mixed formats: give all splits as JSON/JSONL, or all as Parquet")
    where = " ".join(f"{s}={','.join(f)}" for s, f in files.items())
    return Source("files", where, files, loaders.pop())


# -- splits: how many rows, and reading chosen ones ---------------------------------------------------


@dataclass
class SplitData:
    """One split: its row count and a reader of chosen rows (by ascending index)."""

    name: str
    total: int
    dataset: Any  # datasets.Dataset (random access) or datasets.IterableDataset (streamed)
    streamed: bool

    def rows(self, indices: Sequence[int]) -> Iterator[dict[str, Any]]:
        if not indices:
            return
        if not self.streamed:
            subset = self.dataset.select(indices)  # a contiguous range is a slice, others an index map
            for table in subset.with_format("arrow").iter(batch_size=BATCH_ROWS):
                yield from table.to_pylist()
            return
        wanted = iter(indices)
        target = next(wanted)
        for i, row in enumerate(self.dataset):
            if i == target:
                yield row
                nxt = next(wanted, None)
                if nxt is None:
                    return  # streaming stops here: the rest of the split is never fetched
                target = nxt


def load_splits(source: Source, config: str | None, cache_dir: Path | None) -> dict[str, SplitData]:
    """Open every split of ``source`` (nothing is read but metadata where the source allows it)."""
    import datasets

    cache = str(cache_dir) if cache_dir else None
    if source.kind == "disk":
        loaded = datasets.load_from_disk(source.location)
        if isinstance(loaded, datasets.Dataset):
            return {"train": SplitData("train", len(loaded), loaded, streamed=False)}
        return {name: SplitData(name, len(ds), ds, streamed=False) for name, ds in loaded.items()}
    if source.kind == "files":
        assert source.files is not None and source.loader is not None
        data_files = {split: list(paths) for split, paths in source.files.items()}
        if source.loader == "parquet":  # row counts are in the footers: stream, read only what is kept
            import pyarrow.parquet as pq

            streams = datasets.load_dataset("parquet", data_files=data_files, streaming=True, cache_dir=cache)
            return {
                name: SplitData(name, sum(pq.ParquetFile(p).metadata.num_rows for p in paths), streams[name], True)
                for name, paths in data_files.items()
            }
        built = datasets.load_dataset("json", data_files=data_files, cache_dir=cache)  # memory-mapped Arrow
        return {name: SplitData(name, len(ds), ds, streamed=False) for name, ds in built.items()}
    # A hub dataset, or a local folder laid out like one: the builder knows the splits and, from the
    # dataset card, their sizes — enough to stream. Without sizes, it downloads and prepares instead.
    builder = datasets.load_dataset_builder(source.location, config, cache_dir=cache)
    sizes = {name: info.num_examples for name, info in (builder.info.splits or {}).items()}
    if sizes and all(isinstance(n, int) and n > 0 for n in sizes.values()):
        return {name: SplitData(name, n, _LazyStream(builder, name), streamed=True) for name, n in sizes.items()}
    builder.download_and_prepare()
    return {name: SplitData(name, len(ds), ds, streamed=False)
            for name, ds in ((n, builder.as_dataset(split=n)) for n in builder.info.splits)}


class _LazyStream:
    """A split's streaming dataset, opened when first iterated (only chosen splits are opened)."""

    def __init__(self, builder: Any, split: str) -> None:
        self._builder, self._split = builder, split

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self._builder.as_streaming_dataset(split=self._split))


# -- choosing rows ----------------------------------------------------------------------------------------


def parse_percents(specs: Sequence[str]) -> tuple[Decimal, dict[str, Decimal]]:
    """``["5"]`` → (5, {}); ``["train_sft=5", "test_sft=10"]`` → (100, {...}); a bare N sets the default."""
    default, per_split = Decimal(100), {}
    for spec in specs:
        split, sep, number = spec.rpartition("=")
        value = _percent(number, spec)
        if sep:
            if not split:
                raise PrepareError(f"--percent {spec!r}: expected N or SPLIT=N")
            per_split[split] = value
        else:
            default = value
    return default, per_split


def _percent(text: str, spec: str) -> Decimal:
    try:
        value = Decimal(text.strip().rstrip("%"))
    except InvalidOperation:
        raise PrepareError(f"--percent {spec!r}: {text!r} is not a number") from None
    if not Decimal(0) < value <= Decimal(100):
        raise PrepareError(f"--percent {spec!r}: expected more than 0 and at most 100")
    return value


def rows_for(total: int, percent: Decimal) -> int:
    """⌊total × percent / 100⌋, exactly (the reference's ``int(len * pct / 100)`` without float error)."""
    return int(total * percent / 100)


def choose(total: int, count: int, sample: Sample, seed: int, split: str) -> Sequence[int]:
    """Row indices, ascending: the first ``count``, or ``count`` drawn at random (seeded per split)."""
    if sample == "first" or count >= total:
        return range(min(count, total))
    rng = random.Random(f"{seed}:{split}")  # str seeds hash deterministically (not PYTHONHASHSEED)
    return sorted(rng.sample(range(total), count))


# -- writing ------------------------------------------------------------------------------------------------


def _default(value: Any) -> Any:
    """orjson fallback: Decimal, numpy scalars and the like as JSON numbers or strings."""
    if hasattr(value, "item"):
        return value.item()
    if isinstance(value, (bytes, bytearray)):
        return value.decode("utf-8", "replace")
    return str(value)


def write_jsonl(rows: Iterator[dict[str, Any]], path: Path, progress: Callable[[int], None]) -> int:
    """Rows → one JSON object per line, written to a temporary name and renamed when complete."""
    import orjson

    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".part")
    written = 0
    try:
        with partial.open("wb") as out:
            buffer: list[bytes] = []
            for row in rows:
                buffer.append(orjson.dumps(row, default=_default))
                written += 1
                if len(buffer) == BATCH_ROWS:
                    out.write(b"\n".join(buffer) + b"\n")
                    progress(len(buffer))
                    buffer.clear()
            if buffer:
                out.write(b"\n".join(buffer) + b"\n")
                progress(len(buffer))
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return written


@dataclass(frozen=True)
class Written:
    split: str
    path: Path
    rows: int
    total: int
    percent: Decimal


def prepare(
    source: Source,
    output_dir: Path,
    *,
    splits: Sequence[str] | None = None,
    percents: Sequence[str] = ("100",),
    sample: Sample = "first",
    seed: int = 42,
    config: str | None = None,
    cache_dir: Path | None = None,
    progress: bool = True,
    check_splits: Callable[[list[str]], object] | None = None,
) -> list[Written]:
    """Load, choose and write; one ``Written`` per split, in the order asked.

    ``check_splits`` sees the chosen split names before anything is written (and may raise).
    """
    from tqdm import tqdm

    default, per_split = parse_percents(percents)
    available = _load(source, config, cache_dir)
    chosen = list(dict.fromkeys(splits)) if splits else list(available)
    unknown = [s for s in chosen if s not in available]
    if unknown:
        hint = "; a file's split is named as SPLIT=FILE, e.g. train_sft=data.jsonl" if source.kind == "files" else ""
        raise PrepareError(f"no split {', '.join(map(repr, unknown))} in {source.location}; "
                           f"available: {', '.join(available)}{hint}")
    stray = [s for s in per_split if s not in chosen]
    if stray:
        raise PrepareError(f"--percent names {', '.join(stray)}, which is not among the chosen splits "
                           f"({', '.join(chosen)})")
    if check_splits is not None:
        check_splits(chosen)
    sources = {Path(p).resolve() for paths in (source.files or {}).values() for p in paths}
    clash = [n for n in chosen if (output_dir / f"{n}.jsonl").resolve() in sources]
    if clash:
        raise PrepareError(f"{output_dir / (clash[0] + '.jsonl')} is a source file; choose another --output-dir")
    results = []
    for name in chosen:
        split = available[name]
        percent = per_split.get(name, default)
        indices = choose(split.total, rows_for(split.total, percent), sample, seed, name)
        path = output_dir / f"{name}.jsonl"
        with tqdm(total=len(indices), unit=" rows", desc=name, disable=None if progress else True,
                  file=sys.stderr) as bar:
            written = write_jsonl(_reading(split.rows(indices), name), path, bar.update)
        if written < len(indices):  # a streamed split shorter than its dataset card says
            print(f"warning: {name}: the source had only some of the {split.total} rows its metadata announces; "
                  f"wrote {written}", file=sys.stderr)
        results.append(Written(name, path, written, split.total, percent))
    return results


def _reading(rows: Iterator[dict[str, Any]], split: str) -> Iterator[dict[str, Any]]:
    """Rows, with a failure to read them (a corrupt shard, a dropped connection) said in one line."""
    try:
        yield from rows
    except Exception as exc:
        raise PrepareError(f"cannot read split {split}: {type(exc).__name__}: {_first_line(exc)}") from None


def _load(source: Source, config: str | None, cache_dir: Path | None) -> dict[str, SplitData]:
    try:
        return load_splits(source, config, cache_dir)
    except ConnectionError as exc:  # datasets' "Couldn't reach '<id>' on the Hub (...)"
        raise PrepareError(
            f"cannot reach the Hugging Face Hub for {source.location!r} ({exc}; nor is it a local file or "
            "folder). Without the hub, prepare "
            "local files (prepare train_sft=train.parquet test_sft=test.parquet ...) or a dataset saved where "
            f"the hub is reachable: python -c \"import datasets; datasets.load_dataset('{source.location}')"
            ".save_to_disk('saved')\", then prepare saved"
        ) from None
    except Exception as exc:
        from datasets.exceptions import DatasetNotFoundError

        if isinstance(exc, DatasetNotFoundError):
            raise PrepareError(f"no dataset {source.location!r} on the Hugging Face Hub (a private or gated one "
                               "needs `hf auth login`), nor a local file or folder of that name") from None
        raise PrepareError(f"cannot load {source.location}: {type(exc).__name__}: {_first_line(exc)}") from None


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


# -- upload ---------------------------------------------------------------------------------------------------


def blob_names(splits: Sequence[str], name: str) -> dict[str, str]:
    """Split → blob name: two splits → <name>/train.jsonl + <name>/test.jsonl; one → <name>.jsonl."""
    if len(splits) == 1:
        return {splits[0]: f"{name}.jsonl"}
    train = [s for s in splits if "train" in s.lower()]
    test = [s for s in splits if s not in train and ("test" in s.lower() or "val" in s.lower())]
    if len(splits) != 2 or len(train) != 1 or len(test) != 1:
        raise PrepareError(
            "--upload takes one split, or two: one named *train* and one named *test* or *val* "
            f"(got {', '.join(splits)}); choose them with --splits, e.g. --splits train_sft test_sft"
        )
    return {train[0]: f"{name}/train.jsonl", test[0]: f"{name}/test.jsonl"}


# -- the command -----------------------------------------------------------------------------------------------


def _prepare(args: argparse.Namespace) -> int:
    try:
        source = resolve_source(args.source)
        parse_percents(args.percent)  # usage errors before any loading
        name = args.name or source.default_name
        if args.name is not None and (not re.fullmatch(r"[\w.-]+(/[\w.-]+)*", name) or ".." in name.split("/")):
            raise PrepareError(f"--name {name!r}: use letters, digits, _ . - (and / for folders)")
        output_dir = args.output_dir or Path("data") / name
        if source.kind in ("disk", "repo") and _inside(output_dir, Path(source.location)):
            raise PrepareError(f"the output folder {output_dir} is inside the source {source.location}; "
                               "choose another with --output-dir")
        settings = _upload_settings() if args.upload else None
        if args.splits and args.upload:
            blob_names(args.splits, name)  # before loading anything
        if args.quiet:
            import datasets

            datasets.disable_progress_bars()
        written = prepare(source, output_dir, splits=args.splits, percents=args.percent, sample=args.sample,
                          seed=args.seed, config=args.config, cache_dir=args.cache_dir, progress=not args.quiet,
                          check_splits=(lambda chosen: blob_names(chosen, name)) if args.upload else None)
    except PrepareError as exc:
        return fail(str(exc))
    except OSError as exc:
        return fail(f"cannot write the output: {exc}")
    for w in written:
        how = f"first {w.percent}%" if args.sample == "first" else f"random {w.percent}%, seed {args.seed}"
        print(f"{w.split}: {w.rows} of {w.total} rows ({how}) → {w.path}")
        if w.rows == 0:
            print(f"warning: {w.split}: no rows ({w.percent}% of {w.total} rounds down to 0)", file=sys.stderr)
    if settings is None:
        return EXIT_OK
    return _upload(settings, written, name, args)


def _inside(path: Path, folder: Path) -> bool:
    return path.resolve() == folder.resolve() or folder.resolve() in path.resolve().parents


def _upload_settings() -> Settings:
    from shared.errors import SettingsError
    from shared.settings import Settings

    try:
        return Settings.from_env()
    except SettingsError as exc:
        raise PrepareError(f"--upload: {exc}") from None


def _upload(settings: Settings, written: Sequence[Written], name: str, args: argparse.Namespace) -> int:
    from cli.upload import PlannedBlob, upload_blobs
    from shared.errors import UploadRefused

    try:
        names = blob_names([w.split for w in written], name)
        empty = [w.split for w in written if w.rows == 0]
        if empty:
            raise PrepareError(f"not uploaded: {', '.join(empty)} has no rows (raise --percent)")
        planned = [PlannedBlob(w.path, names[w.split]) for w in written]
        upload_blobs(settings, planned, overwrite=args.overwrite, progress=not args.quiet)
    except (PrepareError, UploadRefused) as exc:
        return fail(str(exc))
    except Exception as exc:  # the storage service said no: one line, no traceback
        return fail(f"upload failed: {_first_line(exc)}")
    for item in planned:
        print(f"uploaded {item.path} → {settings.drop_container}/{item.blob_name}")
    print("follow the run with: python -m cli status --watch")
    return EXIT_OK
