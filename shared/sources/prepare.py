"""Preparing a source: each split streamed, its share chosen, one JSON line per row handed to a sink.

Where rows come from: with ``mirror_dir`` (offline), ``<mirror_dir>/<hub id>`` — a ``DatasetDict.save_to_disk``
folder (found by its ``dataset_dict.json``; memory-mapped) or a folder laid out as the hub stores datasets
(``data/<split>-00000-of-00001.parquet``, a README with ``configs``; streamed); without it, the hub itself,
streamed. How many rows: what ``datasets`` gives for ``split[:N%]``. Which: the first ones, or a seeded sample
kept in source order. Only ``messages`` is kept. Same spec and data → same bytes: the run id hashes them.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import xxhash

from shared.errors import SourceError, TransientError
from shared.sources.spec import Sample, SourceSpec

Sink = Callable[[str, bytes], None]  # (role "train" | "test", one row as compact JSON, no newline)
COLUMN = "messages"
BATCH_ROWS = 1000
# Network failures worth a retry, by class name along the MRO (builtins, requests, httpx) so that neither
# HTTP library is imported here just to name its exceptions.
_TRANSIENT = {"ConnectionError", "TimeoutError", "Timeout", "TransportError"}


@dataclass(frozen=True)
class _Split:
    role: str  # "train" | "test"
    name: str  # the dataset's split name
    total: int
    rows: Any  # datasets.Dataset (memory-mapped) or datasets.IterableDataset (streamed)
    streamed: bool


def rows_for(total: int, percent: float) -> int:
    """Rows in ``split[:percent%]`` as ``datasets`` counts them ("closest" rounding: round(), halves to even)."""
    return min(total, round(percent * total / 100.0))


def choose(total: int, count: int, sample: Sample, seed: int, split: str) -> Sequence[int]:
    """Row numbers, ascending: the first ``count``, or the ``count`` a seeded hash ranks lowest (a uniform
    sample that no Python upgrade reshuffles, unlike ``random.sample``)."""
    if sample == "first" or count >= total:
        return range(min(count, total))
    key = xxhash.xxh3_64_intdigest(f"{seed}:{split}".encode())
    ranked = heapq.nsmallest(count, range(total),
                             key=lambda i: xxhash.xxh3_64_intdigest(i.to_bytes(8, "little"), seed=key))
    return sorted(ranked)


def prepare(spec: SourceSpec, sink: Sink, *, mirror_dir: Path | None = None,
            max_rows: int | None = None) -> dict[str, int]:
    """Hand the spec's rows to ``sink`` (``sink("train", b'{"messages":[...]}')``), train then test; returns the
    rows written per role.

    Every split is found and counted before the first row is written, so a missing split, a missing
    ``messages`` column, an empty share or one over ``max_rows`` writes nothing. Raises SourceError
    (permanent) or TransientError (the hub unreachable).
    """
    chosen = []
    for split in _open(spec, mirror_dir):
        count = rows_for(split.total, spec.percent)
        share = f"{spec.percent:g}% of split {split.name!r} of {spec.hub!r} ({split.total} rows)"
        if count == 0:
            raise SourceError(f"{split.role}: {share} rounds to no rows; raise source.percent",
                              hub=spec.hub, split=split.name)
        if max_rows is not None and count > max_rows:
            raise SourceError(f"{split.role}: {share} is {count} rows, more than the {max_rows} allowed; "
                              "lower source.percent", hub=spec.hub, split=split.name)
        chosen.append((split, choose(split.total, count, spec.sample, spec.seed, split.name)))
    return {split.role: _write(spec, split, indices, sink) for split, indices in chosen}


def _open(spec: SourceSpec, mirror_dir: Path | None) -> list[_Split]:
    if mirror_dir is None:
        if Path(spec.hub).exists():  # datasets would read that local folder, not the hub
            raise SourceError(f"{spec.hub!r} names a file or folder beside the app; refusing to read it as a "
                              "Hugging Face dataset", hub=spec.hub)
        return _open_built(spec, spec.hub)
    folder = Path(mirror_dir) / spec.hub
    if not folder.is_dir():
        raise SourceError(f"{spec.hub!r} is not in the offline mirror: no folder {folder}", hub=spec.hub)
    if (folder / "dataset_dict.json").is_file():
        return _open_saved(spec, folder)
    return _open_built(spec, str(folder))


def _open_saved(spec: SourceSpec, folder: Path) -> list[_Split]:
    import datasets

    saved = _loading(spec, None, datasets.load_from_disk, str(folder))
    found = []
    for role, name in spec.splits.items():
        if name not in saved:
            raise _missing(spec, role, name, list(saved))
        rows = saved[name]
        _need_messages(spec, name, rows.column_names)
        found.append(_Split(role, name, rows.num_rows, rows.select_columns([COLUMN]), streamed=False))
    return found


def _open_built(spec: SourceSpec, location: str) -> list[_Split]:
    """A hub dataset or a folder shaped like one, through its builder: it knows the splits and their files."""
    import datasets

    builder = _loading(spec, None, datasets.load_dataset_builder, location)
    files = builder.config.data_files or {}
    known = list(files) or list(builder.info.splits or {})
    found = []
    for role, name in spec.splits.items():
        if known and name not in known:
            raise _missing(spec, role, name, known)
        rows = _loading(spec, name, builder.as_streaming_dataset, split=name)
        if rows.column_names is not None:  # None: columns unknown until read (JSON files without a card)
            _need_messages(spec, name, rows.column_names)
            rows = rows.select_columns([COLUMN])
        total = _total(spec, name, files.get(name), builder.info.splits, rows)
        found.append(_Split(role, name, total, rows, streamed=True))
    return found


def _total(spec: SourceSpec, name: str, files: Sequence[str] | None, infos: Any, rows: Any) -> int:
    """Parquet footers when the files are local (exact, cheap); else the dataset card's count (the hub's
    ultrachat_200k has one); else one counting pass over the stream."""
    if files and all(str(f).endswith(".parquet") and Path(f).is_file() for f in files):
        return int(_loading(spec, name, _footers, files))
    info = (infos or {}).get(name)
    if info is not None and info.num_examples:
        return int(info.num_examples)
    return sum(table.num_rows for table in _batches(spec, name, rows))


def _footers(files: Sequence[str]) -> int:
    import pyarrow.parquet as pq

    return sum(pq.ParquetFile(f).metadata.num_rows for f in files)


def _write(spec: SourceSpec, split: _Split, indices: Sequence[int], sink: Sink) -> int:
    rows = split.rows
    if not split.streamed:  # random access: a range is a slice, a sample an index map
        rows, indices = rows.select(indices), range(len(indices))
    wanted = iter(indices)
    target = next(wanted, None)
    offset = written = 0
    for table in _batches(spec, split.name, rows):
        end, picked = offset + table.num_rows, []
        while target is not None and target < end:
            picked.append(target - offset)
            target = next(wanted, None)
        kept = table if len(picked) == table.num_rows else table.take(picked)
        for messages in kept.column(COLUMN).to_pylist():
            sink(split.role, _line(messages))
            written += 1
        offset = end
        if target is None:
            return written  # a stream stops here: the rest of the split is never read
    raise SourceError(f"split {split.name!r} of {spec.hub!r} ended after {offset} rows; its metadata announced "
                      f"{split.total}", hub=spec.hub, split=split.name)


def _batches(spec: SourceSpec, name: str, rows: Any) -> Iterator[Any]:
    """The rows as pyarrow Tables of BATCH_ROWS, each checked for the messages column."""
    tables = iter(rows.with_format("arrow").iter(batch_size=BATCH_ROWS))
    while True:
        try:
            table = next(tables)
        except StopIteration:
            return
        except Exception as exc:  # a corrupt shard, a dropped connection: said once, with the split
            raise _failure(spec, name, exc) from exc
        _need_messages(spec, name, table.column_names)
        yield table


def _line(messages: Any) -> bytes:
    # Arrow gives each message every field of the column's struct, None where a message had none: drop those
    if isinstance(messages, list):
        messages = [{k: v for k, v in m.items() if v is not None} if isinstance(m, dict) else m for m in messages]
    return orjson.dumps({COLUMN: messages}, default=_default)


def _default(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return value.decode("utf-8", "replace")
    return str(value)


def _need_messages(spec: SourceSpec, name: str, columns: Sequence[str]) -> None:
    if COLUMN not in columns:
        raise SourceError(f"split {name!r} of {spec.hub!r} has no {COLUMN!r} column (it has "
                          f"{', '.join(columns) or 'none'}): tuneflow trains on chat rows, a list of "
                          "{role, content} messages", hub=spec.hub, split=name)


def _missing(spec: SourceSpec, role: str, name: str, known: Sequence[str]) -> SourceError:
    return SourceError(f"source.splits.{role}: {spec.hub!r} has no split {name!r} (its splits: "
                       f"{', '.join(known)})", hub=spec.hub, split=name, available=list(known))


def _loading(spec: SourceSpec, where: str | None, call: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    """``call(*args, **kwargs)``, its failure said as the source's (``where``: the split, if one)."""
    try:
        return call(*args, **kwargs)
    except Exception as exc:
        raise _failure(spec, where, exc) from exc


def _failure(spec: SourceSpec, split: str | None, exc: Exception) -> Exception:
    what = f"split {split!r} of {spec.hub!r}" if split else repr(spec.hub)
    detail = f"{type(exc).__name__}: {(str(exc).strip().splitlines() or ['-'])[0]}"
    if _transient(exc):
        return TransientError(f"cannot reach {what} ({detail})", hub=spec.hub, split=split)
    from datasets.exceptions import DatasetNotFoundError

    if isinstance(exc, DatasetNotFoundError):
        return SourceError(f"no dataset {spec.hub!r} on the Hugging Face Hub (a private or gated one needs a "
                           "token)", hub=spec.hub)
    return SourceError(f"cannot read {what}: {detail}", hub=spec.hub, split=split)


def _transient(exc: BaseException | None) -> bool:
    """A connection or timeout failure, or an HTTP 429/5xx, here or in what caused it."""
    for _ in range(5):
        if exc is None:
            return False
        if any(cls.__name__ in _TRANSIENT for cls in type(exc).__mro__):
            return True
        status = getattr(getattr(exc, "response", None), "status_code", None)
        if isinstance(status, int) and (status == 429 or status >= 500):
            return True
        exc = exc.__cause__ or exc.__context__
    return False
