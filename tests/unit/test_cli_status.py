"""`python -m cli status` against Azurite, with runs written through RunStore."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from azure.storage.blob import BlobServiceClient

from cli import main as cli
from cli import status as cli_status
from devstack.azurite import Azurite
from shared.records import BlobRecordStore
from shared.runs import Run, RunState, RunStore, Transition

pytestmark = pytest.mark.integration
S = RunState


@pytest.fixture
def store(azurite: Azurite, monkeypatch: pytest.MonkeyPatch) -> Iterator[RunStore]:
    """A RunStore on a fresh output container, and the CLI's settings pointing at it."""
    name = f"out-{uuid.uuid4().hex[:10]}"
    monkeypatch.setenv("TUNEFLOW_STORAGE_CONNECTION", azurite.connection_string)
    monkeypatch.setenv("TUNEFLOW_OUTPUT_CONTAINER", name)
    container = BlobServiceClient.from_connection_string(azurite.connection_string).get_container_client(name)
    container.create_container()
    yield RunStore(BlobRecordStore(container))
    container.delete_container()


def make(store: RunStore, run_id: str, states: list[tuple[RunState, str]], **fields: Any) -> Run:
    history = [Transition(state, at, f"note {i}" if i == 1 else None) for i, (state, at) in enumerate(states)]
    run = Run(run_id=run_id, state=states[-1][0], dataset=fields.pop("dataset", "ultra/"),
              sources=fields.pop("sources", ["ultra/train.jsonl", "ultra/test.jsonl"]), base_model="Phi-4-mini-instruct",
              history=history, created_at=states[0][1], updated_at=states[-1][1], **fields)
    created, _ = store.create(run)
    return created


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = cli.main(argv)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def three(store: RunStore) -> RunStore:
    make(store, "aaaa1111deployed", [(S.RECEIVED, "2025-01-01T10:00:00.000+00:00"),
                                     (S.VALIDATING, "2025-01-01T10:00:02.000+00:00"),
                                     (S.SUBMITTED, "2025-01-01T10:01:17.000+00:00"),
                                     (S.DEPLOYED, "2025-01-01T11:01:17.000+00:00")],
         model="Phi-4-mini-instruct-ft:aaaa1111deployed", endpoint="tuneflow-chat", deployment="v1-aaaa1111",
         job_name="tuneflow-aaaa1111deployed")
    make(store, "aaaa2222failed", [(S.RECEIVED, "2025-01-02T09:00:00.000+00:00"),
                                   (S.FAILED, "2025-01-02T09:00:30.000+00:00")],
         dataset="bad.jsonl", sources=["bad.jsonl"], last_error="compute gpu-cluster-big not found")
    make(store, "bbbb3333running", [(S.RECEIVED, "2025-01-03T08:00:00.000+00:00"),
                                    (S.RUNNING, "2025-01-03T08:00:05.000+00:00")], dataset="chats.parquet")
    return store


def test_the_table_lists_runs_newest_first(three: RunStore, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["status"], capsys)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].split() == ["RUN", "STATE", "DATASET", "MODEL", "ENDPOINT", "UPDATED"]
    assert [line.split()[0] for line in lines[1:]] == ["bbbb3333running", "aaaa2222failed", "aaaa1111deployed"]
    deployed = lines[3].split()
    assert deployed[1:5] == ["DEPLOYED", "ultra/", "Phi-4-mini-instruct-ft:aaaa1111deployed", "tuneflow-chat/v1-aaaa1111"]
    assert "2025-01-01 11:01:17Z (" in lines[3] and " ago)" in lines[3]
    assert lines[2].split()[1:5] == ["FAILED", "bad.jsonl", "-", "-"]


def test_state_filter_and_limit(three: RunStore, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["status", "--state", "deployed,FAILED"], capsys)
    assert code == 0 and [line.split()[0] for line in out.splitlines()[1:]] == ["aaaa2222failed", "aaaa1111deployed"]
    code, out, _ = run(["status", "--limit", "1", "--json"], capsys)
    assert code == 0 and [r["run_id"] for r in json.loads(out)] == ["bbbb3333running"]


def test_one_run_shows_its_timeline_with_time_spent(three: RunStore, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["status", "aaaa1111deployed"], capsys)
    assert code == 0, err
    assert out.startswith("run aaaa1111deployed: DEPLOYED\n")
    assert "  dataset     ultra/ (ultra/train.jsonl, ultra/test.jsonl)" in out
    assert "  job         tuneflow-aaaa1111deployed" in out and "error" not in out
    timeline = out[out.index("STATE"):].splitlines()
    assert timeline[0].split() == ["STATE", "AT", "SPENT", "NOTE"]
    assert timeline[1].split() == ["RECEIVED", "2025-01-01", "10:00:00Z", "2s"]
    assert timeline[2].split() == ["VALIDATING", "2025-01-01", "10:00:02Z", "1m", "15s", "note", "1"]
    assert timeline[3].split() == ["SUBMITTED", "2025-01-01", "10:01:17Z", "1h"]
    assert timeline[4].split() == ["DEPLOYED", "2025-01-01", "11:01:17Z", "-"]  # terminal: no time "spent"


def test_a_live_state_counts_time_so_far_and_errors_show(three: RunStore, capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = run(["status", "bbbb3333running"], capsys)
    assert out.splitlines()[-1].split()[:3] == ["RUNNING", "2025-01-03", "08:00:05Z"] and "so far" in out
    _, out, _ = run(["status", "aaaa2222failed"], capsys)
    assert "  error       compute gpu-cluster-big not found" in out


def test_a_prefix_finds_the_run_when_unique(three: RunStore, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["status", "bbbb"], capsys)
    assert code == 0 and out.startswith("run bbbb3333running: RUNNING")
    code, _, err = run(["status", "aaaa"], capsys)
    assert code == 1 and "'aaaa' matches 2 runs" in err
    code, _, err = run(["status", "cccc"], capsys)
    assert code == 1 and "no run 'cccc'" in err
    code, _, err = run(["status", "../etc"], capsys)
    assert code == 1 and "not a run id" in err


def test_json_of_one_run_is_its_record(three: RunStore, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["status", "aaaa1111deployed", "--json"], capsys)
    data = json.loads(out)
    assert code == 0 and data == three.get("aaaa1111deployed").summary_dict()  # type: ignore[union-attr]
    assert [h["state"] for h in data["history"]] == ["RECEIVED", "VALIDATING", "SUBMITTED", "DEPLOYED"]


def test_watch_follows_a_run_to_deployed(store: RunStore, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    make(store, "cccc4444", [(S.RECEIVED, "2025-01-03T08:00:00.000+00:00"), (S.SUBMITTED, "2025-01-03T08:00:05.000+00:00")])
    steps = iter([S.RUNNING, None, S.TRAINED, S.REGISTERED, S.DEPLOYING, S.DEPLOYED])  # None: nothing changed
    pauses: list[float] = []

    def sleep(seconds: float) -> None:  # between two renderings, the app moves the run on
        pauses.append(seconds)
        state = next(steps)
        if state is not None:
            store.advance("cccc4444", state)

    monkeypatch.setattr(cli_status, "_sleep", sleep)
    code, out, err = run(["status", "cccc4444", "--watch", "--interval", "0.5"], capsys)
    assert code == 0, err
    assert pauses == [0.5] * 6
    states = [line.split(": ")[1] for line in out.splitlines() if line.startswith("run cccc4444: ")]
    assert states == ["SUBMITTED", "RUNNING", "TRAINED", "REGISTERED", "DEPLOYING", "DEPLOYED"]  # printed on change


def test_watch_ending_in_failure_exits_1(store: RunStore, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    make(store, "dddd5555", [(S.RECEIVED, "2025-01-03T08:00:00.000+00:00"), (S.RUNNING, "2025-01-03T08:00:05.000+00:00")])
    monkeypatch.setattr(cli_status, "_sleep", lambda s: store.advance("dddd5555", S.FAILED, last_error="OOM"))
    code, out, _ = run(["status", "dddd5555", "--watch"], capsys)
    assert code == 1 and "run dddd5555: FAILED" in out and "OOM" in out


def test_watching_the_table_ends_with_ctrl_c(three: RunStore, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    def interrupt(seconds: float) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli_status, "_sleep", interrupt)
    code, out, _ = run(["status", "--watch"], capsys)
    assert code == 130 and out.startswith("RUN ") and "bbbb3333running" in out


def test_no_container_means_no_runs_yet(azurite: Azurite, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TUNEFLOW_STORAGE_CONNECTION", azurite.connection_string)
    monkeypatch.setenv("TUNEFLOW_OUTPUT_CONTAINER", f"never-{uuid.uuid4().hex[:8]}")
    code, out, _ = run(["status"], capsys)
    assert code == 0 and out.startswith("no runs yet")
    code, _, err = run(["status", "abc123"], capsys)
    assert code == 1 and "no run 'abc123'" in err


def test_storage_errors_exit_2_in_one_line(azurite: Azurite, monkeypatch: pytest.MonkeyPatch,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TUNEFLOW_STORAGE_CONNECTION", azurite.connection_string)
    monkeypatch.setenv("TUNEFLOW_OUTPUT_CONTAINER", "Not_A_Container")
    code, _, err = run(["status"], capsys)
    assert code == 2 and err.startswith("error: cannot read the runs from container 'Not_A_Container': ")
    assert len(err.strip().splitlines()) == 1


def test_missing_settings_and_bad_options_exit_2(monkeypatch: pytest.MonkeyPatch,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    for var in ("TUNEFLOW_STORAGE_CONNECTION", "TUNEFLOW_STORAGE_ACCOUNT_URL"):
        monkeypatch.delenv(var, raising=False)
    code, _, err = run(["status"], capsys)
    assert code == 2 and "TUNEFLOW_STORAGE_CONNECTION or TUNEFLOW_STORAGE_ACCOUNT_URL" in err
    with pytest.raises(SystemExit) as done:
        cli.main(["status", "--state", "DONE"])
    assert done.value.code == 2 and "unknown state DONE; states are RECEIVED" in capsys.readouterr().err


def test_durations() -> None:
    assert [cli_status.duration(s) for s in (0, 2, 75, 3600, 3661, 90061)] == ["0s", "2s", "1m 15s", "1h", "1h 1m",
                                                                              "1d 1h"]


def test_help_says_what_status_does(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["status", "--help"])
    out = capsys.readouterr().out
    assert "Show tuneflow's runs as a table" in out and "python -m cli status 3f2a9c --watch" in out
