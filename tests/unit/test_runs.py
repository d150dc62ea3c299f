import threading

import pytest

from shared.errors import InputError
from shared.records import MemoryRecordStore
from shared.runs import Run, RunState, RunStore, run_id_for


def new_run(run_id: str = "abc123") -> Run:
    return Run(run_id=run_id, state=RunState.RECEIVED, dataset="datasets/a.jsonl", sources=["a.jsonl"],
               base_model="Phi-3-mini-4k-instruct")


def test_create_is_conditional_and_returns_the_existing_run():
    seen: list[RunState] = []
    store = RunStore(MemoryRecordStore(), on_transition=lambda r, i: seen.append(r.history[i].state))
    run, created = store.create(new_run())
    assert created and run.history[0].state == RunState.RECEIVED
    again, created_again = store.create(new_run())
    assert not created_again and again.run_id == run.run_id
    assert seen == [RunState.RECEIVED]


def test_advance_moves_forward_only_and_records_history():
    store = RunStore(MemoryRecordStore())
    store.create(new_run())
    store.advance("abc123", RunState.VALIDATING)
    store.advance("abc123", RunState.SUBMITTED, job_name="tuneflow-abc123")
    run = store.advance("abc123", RunState.RUNNING)
    # a late, re-delivered SUBMITTED event changes nothing
    stale = store.advance("abc123", RunState.SUBMITTED, job_name="other")
    assert stale.state == RunState.RUNNING and stale.job_name == "tuneflow-abc123"
    assert [t.state for t in run.history] == ["RECEIVED", "VALIDATING", "SUBMITTED", "RUNNING"]
    assert store.get("abc123") == run


def test_concurrent_updates_lose_nothing():
    store = RunStore(MemoryRecordStore(), retries=1000)
    store.create(new_run())
    def bump(i: int) -> None:
        def change(run: Run) -> bool:
            run.sources.append(str(i))
            return True
        store.update("abc123", change)
    threads = [threading.Thread(target=bump, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    run = store.get("abc123")
    assert run is not None and sorted(run.sources[1:], key=int) == [str(i) for i in range(16)]


def test_json_round_trip_and_bad_ids():
    run = new_run()
    assert Run.from_json(run.to_json()) == run
    with pytest.raises(InputError):
        RunStore(MemoryRecordStore()).get("../etc/passwd")


def test_run_id_is_deterministic_in_content_settings_and_model():
    a = run_id_for("sha", "Phi-3-mini-4k-instruct", {"params": {"num_train_epochs": 1}})
    assert a == run_id_for("sha", "Phi-3-mini-4k-instruct", {"params": {"num_train_epochs": 1}})
    assert a != run_id_for("sha2", "Phi-3-mini-4k-instruct", {"params": {"num_train_epochs": 1}})
    assert a != run_id_for("sha", "Phi-4-mini-instruct", {"params": {"num_train_epochs": 1}})
    assert a != run_id_for("sha", "Phi-3-mini-4k-instruct", {"params": {"num_train_epochs": 2}})
