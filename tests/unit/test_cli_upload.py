"""`python -m cli upload` against a real Azurite: bytes round-trip, blocks, refusals."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from azure.storage.blob import BlobServiceClient

from cli import main as cli
from cli.upload import PlannedBlob, byte_size, plan
from devstack.azurite import Azurite
from shared.errors import UploadRefused

pytestmark = pytest.mark.integration


def conv(i: int) -> dict[str, Any]:
    return {"prompt": f"q{i}", "prompt_id": f"{i:04d}",
            "messages": [{"role": "user", "content": f"question {i}?"}, {"role": "assistant", "content": f"answer {i}."}]}


def write_jsonl(path: Path, rows: int, pad: int = 0) -> Path:
    path.write_bytes(b"".join(orjson.dumps({**conv(i), "pad": "x" * pad}) + b"\n" for i in range(rows)))
    return path


@pytest.fixture
def drop(azurite: Azurite, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh drop container name, with the CLI's settings pointing at Azurite."""
    name = f"drop-{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("TUNEFLOW_STORAGE_CONNECTION", azurite.connection_string)
    monkeypatch.setenv("TUNEFLOW_DROP_CONTAINER", name)
    monkeypatch.setenv("TUNEFLOW_OUTPUT_CONTAINER", f"out-{name}")
    return name


@pytest.fixture
def service(azurite: Azurite) -> BlobServiceClient:
    return BlobServiceClient.from_connection_string(azurite.connection_string)


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_a_file_round_trips_byte_for_byte(tmp_path: Path, drop: str, service: BlobServiceClient,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    path = write_jsonl(tmp_path / "chats.jsonl", 40)
    code, out, err = run(["upload", str(path)], capsys)
    assert code == 0, err
    blob = service.get_blob_client(drop, "chats.jsonl")
    assert blob.download_blob().readall() == path.read_bytes()
    assert blob.get_blob_properties().content_settings.content_type == "application/jsonl"
    assert f"→ {drop}/chats.jsonl ({path.stat().st_size} bytes)" in out


def test_a_large_file_goes_up_in_blocks(tmp_path: Path, drop: str, service: BlobServiceClient,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    path = write_jsonl(tmp_path / "big.jsonl", 300, pad=1000)  # ~ 420 KiB
    code, _, err = run(["upload", str(path), "--name", "team/big.jsonl", "--block-size", "64K",
                        "--max-concurrency", "3"], capsys)
    assert code == 0, err
    blob = service.get_blob_client(drop, "team/big.jsonl")
    assert blob.download_blob().readall() == path.read_bytes()
    committed, _ = blob.get_block_list("committed")
    assert len(committed) == -(-path.stat().st_size // (64 * 1024))  # ceil: every block 64 KiB but the last
    assert {b.size for b in committed[:-1]} == {64 * 1024}


def test_progress_hook_reports_every_byte(tmp_path: Path, azurite: Azurite, drop: str,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from cli import upload as cli_upload
    from shared.settings import Settings

    seen: list[int] = []

    class Bar:
        def __init__(self, total: int, **_: Any) -> None:
            self.total, self.n = total, 0

        def update(self, delta: int) -> None:
            self.n += delta
            seen.append(self.n)

        def __enter__(self) -> Bar:
            return self

        def __exit__(self, *exc: object) -> None:
            pass

    monkeypatch.setattr("tqdm.tqdm", Bar)
    path = write_jsonl(tmp_path / "train.jsonl", 100, pad=500)
    cli_upload.upload_blobs(Settings.from_env(), [PlannedBlob(path, "p.jsonl")], block_size=16 * 1024)
    assert len(seen) > 1 and seen[-1] == path.stat().st_size and seen == sorted(seen)


def test_a_folder_becomes_name_train_and_test(tmp_path: Path, drop: str, service: BlobServiceClient,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "ultra"
    folder.mkdir()
    write_jsonl(folder / "train.jsonl", 30)
    (folder / "test.parquet").write_bytes(b"PAR1 not really")
    (folder / "notes.txt").write_text("ignored")
    code, out, err = run(["upload", str(folder), "--name", "ultra-5pct"], capsys)
    assert code == 0, err
    assert f"→ {drop}/ultra-5pct/train.jsonl" in out
    names = sorted(b.name for b in service.get_container_client(drop).list_blobs())
    assert names == ["ultra-5pct/test.parquet", "ultra-5pct/train.jsonl"]
    assert service.get_blob_client(drop, "ultra-5pct/test.parquet").download_blob().readall() == b"PAR1 not really"


def test_an_existing_blob_is_kept_unless_overwrite(tmp_path: Path, drop: str, service: BlobServiceClient,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", 20)
    assert run(["upload", str(path), "--quiet"], capsys)[0] == 0
    write_jsonl(path, 25)
    code, _, err = run(["upload", str(path), "--quiet"], capsys)
    assert code == 2 and f"{drop}/d.jsonl already exists; --overwrite replaces it" in err
    assert run(["upload", str(path), "--quiet", "--overwrite"], capsys)[0] == 0
    assert service.get_blob_client(drop, "d.jsonl").download_blob().readall() == path.read_bytes()


def test_another_container_must_exist(tmp_path: Path, drop: str, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_jsonl(tmp_path / "d.jsonl", 20)
    code, _, err = run(["upload", str(path), "--container", f"nope-{drop}"], capsys)
    assert code == 2 and f"container 'nope-{drop}' does not exist" in err


def test_validate_uploads_only_a_valid_dataset(tmp_path: Path, drop: str, service: BlobServiceClient,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_bytes(write_jsonl(tmp_path / "x.jsonl", 20).read_bytes() + b'{"messages": []}\n')
    code, out, err = run(["upload", str(bad), "--validate"], capsys)
    assert code == 1 and out.startswith("INVALID") and "not uploaded" in err
    assert not service.get_container_client(drop).get_blob_client("bad.jsonl").exists()
    good = write_jsonl(tmp_path / "good.jsonl", 20)
    code, out, err = run(["upload", str(good), "--validate"], capsys)
    assert code == 0, err
    assert out.startswith("VALID") and service.get_blob_client(drop, "good.jsonl").exists()


# -- refused up front: nothing is sent, and settings are not even needed --------------------------------


@pytest.mark.parametrize(
    ("files", "argv", "message"),
    [
        ({"data.csv": "a,b"}, ["data.csv"], "data.csv: not a dataset file (expected .jsonl, .ndjson, .json or .parquet)"),
        ({"d.jsonl": "{}"}, ["d.jsonl", "--name", "d"], "--name 'd' must end in .jsonl, .ndjson, .json or .parquet"),
        ({"d.jsonl": "{}"}, ["d.jsonl", "--name", "d.parquet"], "names another format than d.jsonl"),
        ({}, ["missing.jsonl"], "missing.jsonl: no such file or folder"),
        ({"f/train.jsonl": "{}"}, ["f"], "f: no test.* file"),
        ({"f/train.jsonl": "{}", "f/test.jsonl": "{}", "f/extra.json": "[]"}, ["f"],
         "holds other dataset files (extra.json)"),
    ],
)
def test_refusals_exit_2_before_any_upload(files: dict[str, str], argv: list[str], message: str, tmp_path: Path, *,
                                           monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TUNEFLOW_STORAGE_CONNECTION", raising=False)
    code, _, err = run(["upload", *argv], capsys)
    assert code == 2 and message in err


def test_missing_storage_settings_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    for var in ("TUNEFLOW_STORAGE_CONNECTION", "TUNEFLOW_STORAGE_ACCOUNT_URL"):
        monkeypatch.delenv(var, raising=False)
    path = write_jsonl(tmp_path / "d.jsonl", 3)
    code, _, err = run(["upload", str(path)], capsys)
    assert code == 2 and "TUNEFLOW_STORAGE_CONNECTION or TUNEFLOW_STORAGE_ACCOUNT_URL" in err


def test_plan_and_sizes() -> None:
    assert byte_size("8M") == 8 * 1024 * 1024 and byte_size("512k") == 512 * 1024 and byte_size("4MiB") == 4 << 20
    for bad in ("0", "lots", "5000M"):
        with pytest.raises(Exception, match="expected a size"):
            byte_size(bad)
    with pytest.raises(UploadRefused, match="not a usable blob name"):
        plan(Path(__file__), "x//y.jsonl")


def test_help_says_what_upload_does(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["upload", "--help"])
    out = capsys.readouterr().out
    assert "Upload a dataset to the drop container" in out and "python -m cli upload data/train.jsonl" in out



def test_a_manifest_folder_sends_the_manifest_first_then_only_the_files_it_names(
        tmp_path: Path, drop: str, service: BlobServiceClient, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "support"
    folder.mkdir()
    write_jsonl(folder / "chats.jsonl", 20)
    write_jsonl(folder / "notes.jsonl", 3)  # not named: not sent
    (folder / "tuneflow.json").write_text('{"train": "chats.jsonl", "suffix": "support"}')
    assert [p.blob_name for p in plan(folder)] == ["support/tuneflow.json", "support/chats.jsonl"]
    assert cli.main(["upload", str(folder), "--quiet"]) == 0
    blobs = sorted(b.name for b in service.get_container_client(drop).list_blobs())
    assert blobs == ["support/chats.jsonl", "support/tuneflow.json"]


def test_a_single_file_carries_its_manifest_as_blob_metadata(tmp_path: Path, drop: str,
                                                              service: BlobServiceClient) -> None:
    data, manifest = write_jsonl(tmp_path / "chats.jsonl", 20), tmp_path / "m.json"
    manifest.write_text('{\n  "endpoint": "team-a-chat",\n  "tags": {"team": "a"}\n}')
    assert cli.main(["upload", str(data), "--manifest", str(manifest), "--quiet"]) == 0
    meta = service.get_blob_client(drop, "chats.jsonl").get_blob_properties().metadata
    assert orjson.loads(meta["tuneflow_manifest"]) == {"endpoint": "team-a-chat", "tags": {"team": "a"}}


def test_a_bad_manifest_is_refused_before_any_upload_naming_each_key(
        tmp_path: Path, drop: str, service: BlobServiceClient, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "bad"
    folder.mkdir()
    write_jsonl(folder / "train.jsonl", 20)
    (folder / "tuneflow.json").write_text('{"compte": "x", "num_nodes": "two"}')
    assert cli.main(["upload", str(folder), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "compte: unknown key (did you mean 'compute'?)" in err and 'num_nodes: expected an integer' in err
    container = service.get_container_client(drop)
    assert not container.exists() or list(container.list_blobs()) == []
    manifest = tmp_path / "named.json"
    manifest.write_text('{"train": "x.jsonl"}')
    with pytest.raises(UploadRefused, match="a single file's manifest cannot name other data"):
        plan(folder / "train.jsonl", manifest=manifest)
