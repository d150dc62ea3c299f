"""`python -m cli validate`: exit codes, output, options, and the command registry."""

from __future__ import annotations

import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import orjson
import pytest

from cli import main as cli

ROOT = Path(__file__).resolve().parents[2]


def conv(i: int) -> dict[str, Any]:
    return {"prompt": f"q{i}", "messages": [{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "a"}]}


def write(tmp_path: Path, rows: list[Any], name: str = "train.jsonl") -> Path:
    path = tmp_path / name
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in rows))
    return path


@pytest.fixture
def valid(tmp_path: Path) -> Path:
    return write(tmp_path, [conv(i) for i in range(30)])


@pytest.fixture
def one_bad(tmp_path: Path) -> Path:
    return write(tmp_path, [conv(i) for i in range(29)] + [{"messages": [{"role": "user", "content": "?"}]}], "bad.jsonl")


def test_subprocess_valid_dataset_exits_0_with_a_summary(valid: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "cli", "validate", str(valid)], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("VALID: 30 rows") and done.stderr == ""


def test_invalid_dataset_exits_1(one_bad: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["validate", str(one_bad)]) == 1
    out = capsys.readouterr().out
    assert out.startswith("INVALID: 1 error in 30 rows — missing_assistant (1): line 30")


def test_json_output_is_the_report(one_bad: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["validate", str(one_bad), "--json"]) == 1
    report = orjson.loads(capsys.readouterr().out)
    assert report["valid"] is False and report["errors"]["missing_assistant"]["count"] == 1
    assert report["files"]["train"]["rows"] == 30


def test_policy_and_limits_are_passed_through(one_bad: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["validate", str(one_bad), "--policy", "drop-invalid"]) == 0
    assert "1 invalid rows dropped" in capsys.readouterr().out
    assert cli.main(["validate", str(one_bad), "--json", "--max-seq-length", "7", "--min-examples", "40"]) == 1
    report = orjson.loads(capsys.readouterr().out)
    assert report["options"]["max_seq_length"] == 7 and report["options"]["min_examples"] == 40
    assert "too_few_examples" in report["errors"] and "exceeds_max_seq_length" in report["warnings"]


def test_base_model_picks_the_reserved_tokens(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rows = [conv(i) for i in range(20)]
    rows[5]["messages"][1]["content"] = "ok <|im_end|>"
    path = write(tmp_path, rows)
    assert cli.main(["validate", str(path)]) == 0  # not a Phi-3 token
    capsys.readouterr()
    assert cli.main(["validate", str(path), "--base-model", "Phi-4", "--json"]) == 1
    assert "reserved_token" in orjson.loads(capsys.readouterr().out)["errors"]


def test_test_file_option(valid: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    test = write(tmp_path, [conv(2), conv(500)], "test.jsonl")
    assert cli.main(["validate", str(valid), "--test", str(test), "--json"]) == 0
    report = orjson.loads(capsys.readouterr().out)
    assert report["files"]["test"]["rows"] == 2 and report["warnings"]["train_test_overlap"]["count"] == 1


def test_missing_file_exits_2_naming_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.jsonl"
    assert cli.main(["validate", str(missing)]) == 2
    err = capsys.readouterr().err
    assert str(missing) in err and "no such file" in err


def test_missing_test_file_exits_2(valid: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["validate", str(valid), "--test", str(tmp_path / "t.parquet")]) == 2
    assert "t.parquet: no such file" in capsys.readouterr().err


def test_unknown_extension_exits_2_saying_what_is_expected(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "data.csv"
    path.write_text("a,b\n")
    assert cli.main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and ".jsonl, .ndjson, .json or .parquet" in err


def test_a_directory_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "x.jsonl"
    folder.mkdir()
    assert cli.main(["validate", str(folder)]) == 2
    assert "not a file" in capsys.readouterr().err


def test_a_read_error_exits_2(valid: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from shared.validation import LocalFile

    def denied(self: LocalFile) -> Any:
        raise PermissionError(13, "Permission denied", str(self.path))

    monkeypatch.setattr(LocalFile, "open", denied)
    assert cli.main(["validate", str(valid)]) == 2
    err = capsys.readouterr().err
    assert "cannot read the dataset" in err and "Permission denied" in err and str(valid) in err


@pytest.mark.parametrize("argv", [[], ["validate"], ["validate", "x.jsonl", "--policy", "lenient"],
                                  ["validate", "x.jsonl", "--max-seq-length", "0"], ["frobnicate"],
                                  ["validate", "x.jsonl", "--bogus"]])  # fmt: skip
def test_usage_errors_exit_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    try:
        code = cli.main(argv)
    except SystemExit as exc:
        code = int(exc.code or 0)
    assert code == 2
    assert "usage:" in capsys.readouterr().err


def test_help_says_what_validate_does_with_examples(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main(["validate", "--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert "Validate a chat fine-tuning dataset" in out and "python -m cli validate data/train.jsonl" in out
    assert "Exit codes: 0 valid, 1 invalid, 2 usage or I/O error" in out


def test_commands_come_from_registered_modules(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    module = types.ModuleType("fake_cli_status")

    def register(subparsers: Any) -> None:
        parser = subparsers.add_parser("status", help="show a run")
        parser.add_argument("run_id")
        parser.set_defaults(handler=lambda args: print(f"status of {args.run_id}") or 0)

    module.register = register  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "fake_cli_status", module)
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("fake_cli_status",))
    assert cli.main(["status", "r1"]) == 0
    assert capsys.readouterr().out == "status of r1\n"


def test_the_cli_imports_nothing_heavy() -> None:
    """Building the parser (what `--help` and every command do first) loads no heavy module."""
    heavy = ("orjson", "pyarrow", "shared.validation", "azure.storage.blob", "azure.ai.ml", "datasets", "pandas")
    code = f"import sys, cli.main; cli.main.build_parser(); print(sorted(m for m in {heavy!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


