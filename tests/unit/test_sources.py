"""shared.sources: a manifest's ``source`` parsed with key-path problems; a Hugging Face dataset prepared
from an offline mirror (save_to_disk or hub-shaped), its share as ``datasets`` slices ``split[:N%]``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.errors import SourceError, TransientError
from shared.sources import DEFAULT_SPLITS, SourceSpec, SourceUnavailable, choose, parse_source, prepare, rows_for
from tests.support.hf_sources import HUB_ID, LAYOUTS, Collected, ultrachat, write_mirror

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def hf_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the datasets cache (locks, Arrow files) out of the user's home."""
    import datasets.config

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path_factory.getbasetemp() / "hf-datasets")


@pytest.fixture(scope="module", params=LAYOUTS)
def mirror(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """ultrachat_200k's sft and gen splits, small: 200 / 40 / 20 rows (train_sft in two shards)."""
    splits = {"train_sft": ultrachat(200), "test_sft": ultrachat(40, start=1000), "train_gen": ultrachat(20, 2000)}
    return write_mirror(tmp_path_factory.mktemp(request.param), splits, request.param, shards=2)


def spec(**source: Any) -> SourceSpec:
    parsed, problems = parse_source({"hub": HUB_ID, **source})
    assert problems == [] and parsed is not None
    return parsed


def run(source: SourceSpec, mirror_dir: Path | None, **kwargs: Any) -> tuple[dict[str, int], Collected]:
    sink = Collected()
    return prepare(source, sink, mirror_dir=mirror_dir, **kwargs), sink


# -- parsing ---------------------------------------------------------------------------------------------


def test_a_hub_id_alone_takes_the_notebooks_splits_whole() -> None:
    assert parse_source({"hub": HUB_ID}) == (SourceSpec(HUB_ID, "train_sft", "test_sft", 100.0, "first", 42), [])
    assert spec().splits == dict(DEFAULT_SPLITS)


def test_every_key_parses() -> None:
    parsed = spec(splits={"train": "train_gen"}, percent=2.5, sample="random", seed=7)
    assert parsed == SourceSpec(HUB_ID, "train_gen", None, 2.5, "random", 7)
    assert parsed.splits == {"train": "train_gen"}
    assert spec(hub="squad").hub == "squad"  # a name without an owner is a hub id too


@pytest.mark.parametrize(("source", "problem"), [
    ({"hub": HUB_ID, "percent": "five"},
     'source.percent: expected a number between 0 (exclusive) and 100, got "five"'),
    ({"hub": HUB_ID, "percent": True}, "source.percent: expected a number between 0 (exclusive) and 100, got true"),
    ({"hub": HUB_ID, "percent": 0}, "source.percent: expected a number between 0 (exclusive) and 100, got 0"),
    ({"hub": HUB_ID, "percent": 100.5}, "source.percent: expected a number between 0 (exclusive) and 100, got 100.5"),
    ({"hub": HUB_ID, "percent": float("nan")},
     "source.percent: expected a number between 0 (exclusive) and 100, got NaN"),
    ({"hub": HUB_ID, "splts": {}}, "source.splts: unknown key (did you mean 'splits'?)"),
    ({"hub": HUB_ID, "zzz": 1}, "source.zzz: unknown key; known keys: hub, splits, percent, sample, seed"),
    ({"hub": HUB_ID, "splits": {"train": "t", "tset": "x"}}, "source.splits.tset: unknown key (did you mean 'test'?)"),
    ({"hub": HUB_ID, "splits": {"test": "test_sft"}},
     'source.splits.train: required (the split to train on, such as "train_sft")'),
    ({"hub": HUB_ID, "splits": {"train": "a", "test": "a"}}, "source.splits.test: the same split as train"),
    ({"hub": HUB_ID, "splits": {"train": "train[:5%]"}}, "source.splits.train: expected a split name"),
    ({"hub": HUB_ID, "splits": ["train_sft"]}, "source.splits: expected an object"),
    ({"hub": HUB_ID, "sample": "all"}, 'source.sample: expected "first" or "random", got "all"'),
    ({"hub": HUB_ID, "seed": 1.5}, "source.seed: expected an integer from 0 to 2**63 - 1, got 1.5"),
    ({"hub": HUB_ID, "seed": False}, "source.seed: expected an integer"),
    ({"percent": 5}, 'source.hub: required (a Hugging Face dataset id such as "HuggingFaceH4/ultrachat_200k"'),
    ("HuggingFaceH4/ultrachat_200k", 'source: expected an object such as {"hub": "HuggingFaceH4/ultrachat_200k"}'),
])
def test_problems_name_their_key_path(source: object, problem: str) -> None:
    parsed, problems = parse_source(source)
    assert parsed is None
    assert len(problems) == 1 and problems[0].startswith(problem), problems


@pytest.mark.parametrize("hub", ["../etc", "/abs/path", "owner/../x", "a/b/c", "", "-x", "x-", "a..b", "a--b",
                                 "owner/", "/", "C:\\data", "naïve", "x" * 97, 5, None])
def test_a_hub_id_is_never_a_path(hub: object) -> None:
    parsed, problems = parse_source({"hub": hub})
    assert parsed is None and len(problems) == 1 and problems[0].startswith("source.hub: expected a Hugging Face")


def test_every_problem_is_collected_under_the_callers_path() -> None:
    parsed, problems = parse_source({"hub": "../x", "percent": 0, "sample": "all", "seed": -1, "splts": {},
                                     "splits": {"train": ""}}, "manifest.source")
    assert parsed is None
    assert [p.split(":")[0] for p in problems] == [
        "manifest.source.hub", "manifest.source.percent", "manifest.source.sample", "manifest.source.seed",
        "manifest.source.splts", "manifest.source.splits.train"]


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=10,
)
_sources = st.fixed_dictionaries({}, optional={
    "hub": _json | st.sampled_from([HUB_ID, "squad", "../x", "a/b/c", "owner/name.v2"]),
    "splits": _json | st.fixed_dictionaries({}, optional={"train": _json | st.sampled_from(["train_sft", "a.b"]),
                                                          "test": _json | st.just("test_sft"), "tset": _json}),
    "percent": _json | st.floats(min_value=-1, max_value=101),
    "sample": _json | st.sampled_from(["first", "random"]),
    "seed": _json | st.integers(min_value=-1, max_value=2**64),
    "splts": _json,
})


@settings(max_examples=300, deadline=None)
@given(_json | _sources)
def test_any_json_value_parses_or_says_what_is_wrong(value: object) -> None:
    parsed, problems = parse_source(value)
    assert (parsed is None) == bool(problems)
    assert all(p.startswith(("source.", "source:")) for p in problems), problems
    if parsed is not None:  # and what it parsed to, written back, parses to the same spec
        again = {"hub": parsed.hub, "splits": parsed.splits, "percent": parsed.percent, "sample": parsed.sample,
                 "seed": parsed.seed}
        assert parse_source(json.loads(json.dumps(again))) == (parsed, [])


def test_the_fingerprint_is_what_the_prepared_bytes_depend_on() -> None:
    first = spec(percent=5).fingerprint()
    assert first == spec(percent=5.0, seed=9).fingerprint()  # 5 is 5.0; first rows ignore the seed
    assert json.loads(json.dumps(first)) == first
    assert first["percent"] == 5 and first["splits"] == {"train": "train_sft", "test": "test_sft"}
    random7 = spec(percent=5, sample="random", seed=7).fingerprint()
    assert random7 != first and random7 != spec(percent=5, sample="random", seed=8).fingerprint()
    assert spec(percent=2.5).fingerprint()["percent"] == 2.5


# -- how many rows: datasets' own split[:N%] -------------------------------------------------------------


@settings(max_examples=500, deadline=None)
@given(st.integers(min_value=0, max_value=10**7), st.integers(min_value=1, max_value=100))
def test_rows_for_is_datasets_percent_slicing(total: int, percent: int) -> None:
    from datasets import ReadInstruction

    (absolute,) = ReadInstruction("s", to=percent, unit="%").to_absolute({"s": total})
    assert rows_for(total, percent) == absolute.to - absolute.from_


def test_rounding_is_to_the_closest_row_halves_to_even() -> None:
    # neither ceil (the brief's guess) nor the old notebook's int(): round(), banker's rounding
    assert [rows_for(n, 5) for n in (9, 10, 30, 50, 70, 90, 207_865)] == [0, 0, 2, 2, 4, 4, 10_393]
    assert rows_for(40, 2.5) == 1 and rows_for(200, 100) == 200


def test_the_share_written_is_what_datasets_loads_for_split_percent(tmp_path: Path) -> None:
    import datasets

    sizes = (30, 50, 70, 90, 107)  # 1.5, 2.5, 3.5, 4.5, 5.35 rows
    mirror = write_mirror(tmp_path, {f"s{n}": ultrachat(n) for n in sizes}, "hub")
    for n in sizes:
        _, sink = run(spec(splits={"train": f"s{n}"}, percent=5), mirror)
        theirs = datasets.load_dataset(str(mirror / HUB_ID), split=f"s{n}[:5%]", cache_dir=str(tmp_path / "cache"))
        assert sink.rows("train") == [{"messages": m} for m in theirs["messages"]], n


# -- which rows -------------------------------------------------------------------------------------------


def test_first_takes_the_first_rows_of_each_split_in_order(mirror: Path) -> None:
    counts, sink = run(spec(percent=10), mirror)
    assert counts == {"train": 20, "test": 4}
    assert sink.numbers("train") == list(range(20)) and sink.numbers("test") == [1000, 1001, 1002, 1003]
    assert sink.rows("train")[3] == {"messages": ultrachat(1, start=3)[0]["messages"]}


def test_random_is_a_seeded_sample_in_source_order(mirror: Path) -> None:
    counts, sink = run(spec(percent=10, sample="random", seed=7), mirror)
    again = run(spec(percent=10, sample="random", seed=7), mirror)[1]
    other = run(spec(percent=10, sample="random", seed=8), mirror)[1]
    assert counts == {"train": 20, "test": 4}
    numbers = sink.numbers("train")
    assert numbers == sorted(set(numbers)) and set(numbers) <= set(range(200)) and numbers != list(range(20))
    assert sink.content() == again.content()
    assert other.numbers("train") != numbers


def test_a_sample_of_everything_is_everything(mirror: Path) -> None:
    _, everything = run(spec(sample="random", seed=3), mirror)
    assert everything.numbers("train") == list(range(200))


@given(st.integers(min_value=1, max_value=500), st.data())
def test_choose_picks_distinct_rows_ascending(total: int, data: st.DataObject) -> None:
    count = data.draw(st.integers(min_value=0, max_value=total))
    seed = data.draw(st.integers(min_value=0, max_value=2**63 - 1))
    picked = list(choose(total, count, "random", seed, "train_sft"))
    assert len(picked) == count and picked == sorted(set(picked)) and all(0 <= i < total for i in picked)
    assert picked == list(choose(total, count, "random", seed, "train_sft"))


def test_both_layouts_prepare_the_same_bytes(tmp_path: Path) -> None:
    splits = {"train_sft": ultrachat(60), "test_sft": ultrachat(20, start=500)}
    disk, hub = write_mirror(tmp_path / "d", splits, "disk"), write_mirror(tmp_path / "h", splits, "hub", shards=3)
    for source in (spec(percent=25), spec(percent=25, sample="random", seed=1)):
        assert run(source, disk)[1].content() == run(source, hub)[1].content()


# -- what each row keeps ----------------------------------------------------------------------------------


def test_only_messages_survive_as_compact_json_lines(mirror: Path) -> None:
    _, sink = run(spec(percent=5), mirror)
    for line in sink.lines["train"] + sink.lines["test"]:
        assert b"\n" not in line  # one row each; the sink ends the line (JSON escapes newlines in strings)
        assert line == orjson.dumps(orjson.loads(line))  # compact: orjson's own form
        assert list(orjson.loads(line)) == ["messages"]


@pytest.mark.parametrize("layout", LAYOUTS)
def test_fields_only_some_messages_have_are_not_invented_for_the_others(tmp_path: Path, layout: str) -> None:
    rows = ultrachat(4)
    rows[0]["messages"][0]["name"] = "ada"  # Arrow's struct gives every other message name: null
    _, sink = run(spec(splits={"train": "train_sft"}), write_mirror(tmp_path, {"train_sft": rows}, layout))
    assert sink.rows("train") == [{"messages": r["messages"]} for r in rows]


# -- what cannot be prepared --------------------------------------------------------------------------------


def test_a_missing_split_is_named_with_the_splits_there_are(mirror: Path) -> None:
    sink = Collected()
    with pytest.raises(SourceUnavailable) as raised:
        prepare(spec(splits={"train": "train_sft", "test": "test_gen"}), sink, mirror_dir=mirror)
    assert isinstance(raised.value, SourceError) and not raised.value.transient  # the app's tree: rejected
    context = raised.value.context
    assert (context["hub"], context["split"], sorted(context["available"])) == (
        HUB_ID, "test_gen", ["test_sft", "train_gen", "train_sft"])
    message = str(raised.value)
    assert message.startswith(f"source.splits.test: {HUB_ID!r} has no split 'test_gen'")
    assert all(name in message for name in ("train_sft", "test_sft", "train_gen"))
    assert sink.lines == {}  # nothing written: every split is found before the first row


@pytest.mark.parametrize("layout", LAYOUTS)
def test_a_dataset_without_messages_is_refused_naming_split_and_hub(tmp_path: Path, layout: str) -> None:
    rows = [{"prompt": f"q{i}", "completion": f"a{i}"} for i in range(5)]
    mirror = write_mirror(tmp_path, {"train": rows}, layout, hub="someone/completions")
    with pytest.raises(SourceError, match=r"split 'train' of 'someone/completions' has no 'messages' column "
                                          r"\(it has prompt, completion\)"):
        prepare(SourceSpec("someone/completions", "train", None), Collected(), mirror_dir=mirror)


def test_a_hub_id_the_mirror_lacks_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="'someone/else' is not in the offline mirror"):
        prepare(SourceSpec("someone/else"), Collected(), mirror_dir=tmp_path)


def test_an_empty_share_or_one_over_max_rows_writes_nothing(mirror: Path) -> None:
    sink = Collected()
    with pytest.raises(SourceError, match=r"train: 2% of split 'train_gen' .* \(20 rows\) rounds to no rows"):
        prepare(spec(splits={"train": "train_gen"}, percent=2), sink, mirror_dir=mirror)
    with pytest.raises(SourceError, match=r"train: 50% of split 'train_sft' .* is 100 rows, more than the 99"):
        prepare(spec(percent=50), sink, mirror_dir=mirror, max_rows=99)
    assert sink.lines == {}
    assert prepare(spec(percent=50), sink, mirror_dir=mirror, max_rows=100) == {"train": 100, "test": 20}


def test_a_corrupt_shard_is_reported_with_its_split(tmp_path: Path) -> None:
    mirror = write_mirror(tmp_path, {"train_sft": ultrachat(10)}, "hub", shards=2)
    (mirror / HUB_ID / "data" / "train_sft-00001-of-00002.parquet").write_bytes(b"not parquet at all")
    with pytest.raises(SourceError, match=f"cannot read split 'train_sft' of {HUB_ID!r}"):
        prepare(spec(splits={"train": "train_sft"}), Collected(), mirror_dir=mirror)


# -- without a mirror: the hub (only its wiring can be tested here: no network) -----------------------------


def test_without_a_mirror_the_hub_id_goes_to_datasets(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    mirror = write_mirror(tmp_path / "m", {"train_sft": ultrachat(20), "test_sft": ultrachat(10, 100)}, "hub")
    asked: list[str] = []
    real = datasets.load_dataset_builder

    def the_hub(path: str, *args: Any, **kwargs: Any) -> Any:  # the hub, played by the local folder
        asked.append(path)
        return real(str(mirror / path), *args, **kwargs)

    monkeypatch.setattr(datasets, "load_dataset_builder", the_hub)
    monkeypatch.chdir(tmp_path)
    counts, sink = run(spec(percent=50), None)
    assert asked == [HUB_ID] and counts == {"train": 10, "test": 5}
    assert sink.content() == run(spec(percent=50), mirror)[1].content()


def test_an_unreachable_hub_is_transient_an_unknown_dataset_is_not(monkeypatch: pytest.MonkeyPatch,
                                                                    tmp_path: Path) -> None:
    import datasets
    from datasets.exceptions import DatasetNotFoundError

    def offline(path: str, *args: Any, **kwargs: Any) -> Any:
        raise ConnectionError(f"Couldn't reach '{path}' on the Hub (LocalEntryNotFoundError)")

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(datasets, "load_dataset_builder", offline)
    with pytest.raises(TransientError, match=f"cannot reach {HUB_ID!r} \\(ConnectionError: Couldn't reach"):
        prepare(spec(), Collected())

    def unknown(path: str, *args: Any, **kwargs: Any) -> Any:
        raise DatasetNotFoundError(f"Dataset '{path}' doesn't exist on the Hub or cannot be accessed.")

    monkeypatch.setattr(datasets, "load_dataset_builder", unknown)
    with pytest.raises(SourceError, match=f"no dataset {HUB_ID!r} on the Hugging Face Hub"):
        prepare(spec(), Collected())


def test_a_local_folder_never_stands_in_for_the_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    write_mirror(tmp_path, {"train_sft": ultrachat(5)}, "hub")  # ./HuggingFaceH4/ultrachat_200k beside the app
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(datasets, "load_dataset_builder", lambda *a, **k: pytest.fail("asked datasets"))
    with pytest.raises(SourceError, match="names a file or folder beside the app"):
        prepare(spec(), Collected())


def test_importing_sources_does_not_import_datasets() -> None:
    code = "import sys, shared.sources; print(sorted(m for m in ('datasets', 'pyarrow') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                         check=True)
    assert out.stdout.strip() == "[]"
