"""`python -m cli prepare` on local data: save_to_disk folders, Parquet and JSONL files, a
hub-like folder (the code path of a hub id, streamed), seeded sampling, upload, and clear failures."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

from cli import main as cli
from cli.prepare import choose, resolve_source, rows_for
from shared.errors import PrepareError

ROOT = Path(__file__).resolve().parents[2]
TRAIN, TEST = 100, 40


def conv(split: str, i: int) -> dict[str, Any]:
    prompt = f"{split} question {i}? ünïcödé"
    return {"prompt": prompt, "prompt_id": f"{split}-{i:04d}",
            "messages": [{"role": "user", "content": prompt}, {"role": "assistant", "content": f"answer {i}."}]}


def rows(split: str, n: int) -> list[dict[str, Any]]:
    return [conv(split, i) for i in range(n)]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One ultrachat-shaped dataset, as save_to_disk folders, Parquet, JSONL, JSON and a hub-like folder."""
    from datasets import Dataset, DatasetDict

    root = tmp_path_factory.mktemp("sources")
    train, test = Dataset.from_list(rows("train_sft", TRAIN)), Dataset.from_list(rows("test_sft", TEST))
    DatasetDict({"train_sft": train, "test_sft": test, "train_gen": test}).save_to_disk(str(root / "disk"))
    train.save_to_disk(str(root / "one"))
    train.to_parquet(str(root / "train.parquet"))
    test.to_parquet(str(root / "test.parquet"))
    (root / "chats.jsonl").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows("train_sft", TRAIN)))
    for part in range(2):
        (root / f"part-{part}.jsonl").write_bytes(
            b"".join(orjson.dumps(r) + b"\n" for r in rows("train_sft", TRAIN)[part * 50 : part * 50 + 50]))
    (root / "array.json").write_bytes(orjson.dumps(rows("test_sft", TEST)))
    # Laid out like HuggingFaceH4/ultrachat_200k on the hub: a dataset card with split sizes, and shards.
    # The second train shard is garbage: only a read that stops early (streaming) can succeed.
    repo = root / "repo"
    (repo / "data").mkdir(parents=True)
    train.to_parquet(str(repo / "data" / "train_sft-00000-of-00002.parquet"))
    (repo / "data" / "train_sft-00001-of-00002.parquet").write_bytes(os.urandom(4096))
    test.to_parquet(str(repo / "data" / "test_sft-00000-of-00001.parquet"))
    (repo / "README.md").write_text(CARD.format(train=2 * TRAIN, test=TEST))
    return root


CARD = """---
dataset_info:
  features:
  - name: prompt
    dtype: string
  - name: prompt_id
    dtype: string
  - name: messages
    list:
    - name: content
      dtype: string
    - name: role
      dtype: string
  splits:
  - name: train_sft
    num_examples: {train}
  - name: test_sft
    num_examples: {test}
configs:
- config_name: default
  data_files:
  - split: train_sft
    path: data/train_sft-*
  - split: test_sft
    path: data/test_sft-*
---
"""


@pytest.fixture(autouse=True)
def hf_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep the datasets cache (Arrow files, locks) out of the user's home."""
    import datasets.config

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path_factory.getbasetemp() / "hf-datasets")


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def read(path: Path) -> list[dict[str, Any]]:
    lines = path.read_bytes().split(b"\n")
    assert lines[-1] == b""  # newline-terminated
    parsed = [orjson.loads(line) for line in lines[:-1]]
    assert all(isinstance(r, dict) for r in parsed)  # one JSON object per line
    return parsed


def test_save_to_disk_first_percent_per_split(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    code, stdout, err = run(["prepare", str(data / "disk"), "--splits", "train_sft", "test_sft", "--percent", "5",
                             "--output-dir", str(out), "--quiet"], capsys)
    assert code == 0, err
    assert sorted(p.name for p in out.iterdir()) == ["test_sft.jsonl", "train_sft.jsonl"]
    assert read(out / "train_sft.jsonl") == rows("train_sft", 5)  # the first 5%, all keys, order kept
    assert read(out / "test_sft.jsonl") == rows("test_sft", 2)
    assert "train_sft: 5 of 100 rows (first 5%)" in stdout and "test_sft: 2 of 40 rows" in stdout
    assert "ünïcödé" in (out / "train_sft.jsonl").read_text(encoding="utf-8")  # UTF-8, not \\u escapes


def test_percent_per_split_and_default_all_splits(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    code, _, err = run(["prepare", str(data / "disk"), "--percent", "50", "test_sft=12.5", "--output-dir", str(out)],
                       capsys)
    assert code == 0, err
    assert len(read(out / "train_sft.jsonl")) == 50 and len(read(out / "test_sft.jsonl")) == 5
    assert len(read(out / "train_gen.jsonl")) == 20  # every split when --splits is not given


def test_random_sample_is_seeded_and_a_subset(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    def sample(seed: int, out: Path) -> list[dict[str, Any]]:
        code, _, err = run(["prepare", str(data / "disk"), "--splits", "train_sft", "--percent", "20",
                            "--sample", "random", "--seed", str(seed), "--output-dir", str(out)], capsys)
        assert code == 0, err
        return read(out / "train_sft.jsonl")

    first, again, other = sample(7, tmp_path / "a"), sample(7, tmp_path / "b"), sample(8, tmp_path / "c")
    assert first == again and (tmp_path / "a/train_sft.jsonl").read_bytes() == (tmp_path / "b/train_sft.jsonl").read_bytes()
    assert first != other and len(first) == len(other) == 20
    source = rows("train_sft", TRAIN)
    positions = [source.index(r) for r in first]
    assert positions == sorted(positions) and positions != list(range(20))  # source order, not the first 20


def test_parquet_files_are_streamed_by_split(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    code, _, err = run(["prepare", f"train_sft={data / 'train.parquet'}", f"test_sft={data / 'test.parquet'}",
                        "--percent", "train_sft=10", "test_sft=50", "--output-dir", str(out)], capsys)
    assert code == 0, err
    assert read(out / "train_sft.jsonl") == rows("train_sft", 10)
    assert read(out / "test_sft.jsonl") == rows("test_sft", 20)
    code, _, err = run(["prepare", f"train_sft={data / 'train.parquet'}", "--sample", "random", "--seed", "7",
                        "--percent", "20", "--output-dir", str(tmp_path / "r")], capsys)
    assert code == 0, err
    streamed = read(tmp_path / "r/train_sft.jsonl")
    run(["prepare", str(data / "disk"), "--splits", "train_sft", "--sample", "random", "--seed", "7",
         "--percent", "20", "--output-dir", str(tmp_path / "d")], capsys)
    assert streamed == read(tmp_path / "d/train_sft.jsonl")  # same rows, whether streamed or memory-mapped


def test_jsonl_glob_and_json_array(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, cache = tmp_path / "out", tmp_path / "cache"
    code, _, err = run(["prepare", f"train_sft={data}/part-*.jsonl", f"test_sft={data / 'array.json'}",
                        "--percent", "train_sft=60", "test_sft=100", "--output-dir", str(out), "--cache-dir", str(cache)],
                       capsys)
    assert code == 0, err
    assert read(out / "train_sft.jsonl") == rows("train_sft", 60)  # across both files, in order
    assert read(out / "test_sft.jsonl") == rows("test_sft", TEST)


def test_a_single_file_is_the_train_split_named_after_it(data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    code, stdout, err = run(["prepare", str(data / "chats.jsonl"), "--percent", "3", "--cache-dir", "cache"], capsys)
    assert code == 0, err
    assert read(tmp_path / "data/chats/train.jsonl") == rows("train_sft", 3)
    assert "→ data/chats/train.jsonl" in stdout
    code, _, err = run(["prepare", str(data / "one"), "--percent", "2", "--output-dir", "one"], capsys)
    assert code == 0, err
    assert read(tmp_path / "one/train.jsonl") == rows("train_sft", 2)  # a saved Dataset (not a dict): "train"


def test_a_hub_layout_is_streamed_reading_only_what_it_keeps(data: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    code, stdout, err = run(["prepare", str(data / "repo"), "--splits", "train_sft", "test_sft", "--percent", "25",
                             "--output-dir", str(out), "--cache-dir", str(tmp_path / "cache")], capsys)
    assert code == 0, err
    assert "train_sft: 50 of 200 rows" in stdout  # the size comes from the dataset card
    assert read(out / "train_sft.jsonl") == rows("train_sft", 50)  # never touched the corrupt second shard
    assert len(read(out / "test_sft.jsonl")) == 10
    code, _, err = run(["prepare", str(data / "repo"), "--splits", "train_sft", "--sample", "random",
                        "--output-dir", str(tmp_path / "r"), "--cache-dir", str(tmp_path / "cache")], capsys)
    assert code == 2 and "cannot read split train_sft: ArrowInvalid" in err  # a random sample reads it all
    assert not (tmp_path / "r" / "train_sft.jsonl").exists() and not list((tmp_path / "r").glob("*.part"))


def test_unknown_split_lists_the_available_ones(data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["prepare", str(data / "disk"), "--splits", "train", "--output-dir", str(tmp_path)], capsys)
    assert code == 2
    assert "no split 'train' in" in err and "available: train_sft, test_sft, train_gen" in err
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--percent", "0"], "expected more than 0 and at most 100"),
        (["--percent", "101"], "expected more than 0 and at most 100"),
        (["--percent", "five"], "'five' is not a number"),
        (["--splits", "train_sft", "--percent", "test_sft=5"], "--percent names test_sft, which is not among"),
        (["--upload", "--splits", "train_sft", "test_sft", "train_gen"], "--upload takes one split, or two"),
        (["--upload"], "--upload takes one split, or two"),
    ],
)
def test_usage_errors_exit_2_before_writing(argv: list[str], message: str, data: Path, tmp_path: Path, *,
                                            monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TUNEFLOW_STORAGE_CONNECTION", "UseDevelopmentStorage=true")  # never reached
    out = tmp_path / "out"
    code, _, err = run(["prepare", str(data / "disk"), "--output-dir", str(out), *argv], capsys)
    assert code == 2 and message in err
    assert not out.exists()


@pytest.mark.parametrize(
    ("sources", "message"),
    [
        (["missing.jsonl"], "missing.jsonl: no such file"),
        (["./nowhere"], "./nowhere: no such file or folder"),
        (["train=none-*.parquet"], "none-*.parquet: matches no file"),
        (["train=a.csv"], "a.csv: not a dataset file"),
        (["a.jsonl", "b.jsonl"], "name each one's split: SPLIT=FILE-OR-GLOB"),
        (["train=x.jsonl", "test=y.parquet"], "mixed formats"),
    ],
)
def test_bad_sources_exit_2(sources: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                            capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("a.csv", "a.jsonl", "b.jsonl", "x.jsonl", "y.parquet"):
        (tmp_path / name).write_text("{}\n")
    code, _, err = run(["prepare", *sources], capsys)
    assert code == 2 and message in err


def test_output_inside_the_source_is_refused(data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["prepare", str(data / "disk"), "--output-dir", str(data / "disk" / "x")], capsys)
    assert code == 2 and "inside the source" in err


def test_a_hub_id_offline_fails_clearly(tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf")}
    done = subprocess.run(
        [sys.executable, "-m", "cli", "prepare", "HuggingFaceH4/ultrachat_200k", "--splits", "train_sft",
         "--percent", "5", "--output-dir", str(tmp_path / "out")],
        cwd=ROOT, env=env, capture_output=True, text=True, check=False, timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "cannot reach the Hugging Face Hub for 'HuggingFaceH4/ultrachat_200k'" in done.stderr
    assert "save_to_disk" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()


def test_upload_sends_a_train_test_folder(data: Path, tmp_path: Path, azurite: Any, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    from azure.storage.blob import BlobServiceClient

    drop = f"drop-{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("TUNEFLOW_STORAGE_CONNECTION", azurite.connection_string)
    monkeypatch.setenv("TUNEFLOW_DROP_CONTAINER", drop)
    out = tmp_path / "out"
    code, stdout, err = run(["prepare", str(data / "disk"), "--splits", "test_sft", "train_sft", "--percent", "10",
                             "--output-dir", str(out), "--upload", "--name", "uc-10pct"], capsys)
    assert code == 0, err
    container = BlobServiceClient.from_connection_string(azurite.connection_string).get_container_client(drop)
    assert sorted(b.name for b in container.list_blobs()) == ["uc-10pct/test.jsonl", "uc-10pct/train.jsonl"]
    assert container.download_blob("uc-10pct/train.jsonl").readall() == (out / "train_sft.jsonl").read_bytes()
    assert container.download_blob("uc-10pct/test.jsonl").readall() == (out / "test_sft.jsonl").read_bytes()
    assert f"→ {drop}/uc-10pct/train.jsonl" in stdout
    code, _, err = run(["prepare", str(data / "disk"), "--splits", "train_sft", "--percent", "10",
                        "--output-dir", str(out), "--upload", "--name", "uc-train"], capsys)
    assert code == 0, err
    assert container.get_blob_client("uc-train.jsonl").exists()  # one split: a file of its own


def test_helpers() -> None:
    from decimal import Decimal

    assert rows_for(100, Decimal("29")) == 29 and rows_for(1000, Decimal("0.7")) == 7 and rows_for(19, Decimal(5)) == 0
    assert list(choose(10, 3, "first", 1, "s")) == [0, 1, 2]
    assert choose(1000, 5, "random", 1, "a") == choose(1000, 5, "random", 1, "a") != choose(1000, 5, "random", 1, "b")
    assert resolve_source(["HuggingFaceH4/ultrachat_200k"]).kind == "hub"
    with pytest.raises(PrepareError, match="not a split name"):
        resolve_source([f"bad split={__file__}"])


def test_help_says_what_prepare_does(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["prepare", "--help"])
    out = capsys.readouterr().out
    assert "keep the first (or a seeded random) N% of each split" in out
    assert "python -m cli prepare HuggingFaceH4/ultrachat_200k --splits train_sft test_sft --percent 5" in out
