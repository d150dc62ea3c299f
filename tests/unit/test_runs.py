import threading
from collections.abc import Callable

import pytest

from shared.errors import ConflictError, InputError
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


def _appending(source: str) -> Callable[[Run], bool]:
    """Another writer's mutation: it adds one source."""

    def mutate(run: Run) -> bool:
        run.sources.append(source)
        return True

    return mutate


def test_a_lost_compare_and_swap_is_retried_on_the_new_record():
    store = RunStore(MemoryRecordStore(), retries=5)
    store.create(new_run())
    attempts: list[list[str]] = []

    def mine(run: Run) -> bool:
        attempts.append(list(run.sources))
        if len(attempts) == 1:  # another writer lands between our read and our write
            store.update("abc123", _appending("theirs"))
        run.sources.append("mine")
        return True

    after = store.update("abc123", mine)
    assert len(attempts) == 2 and "theirs" in attempts[1]  # the retry saw the other write
    assert after.sources[-2:] == ["theirs", "mine"] and store.get("abc123").sources == after.sources


def test_an_update_that_always_loses_gives_up_with_a_conflict():
    store = RunStore(MemoryRecordStore(), retries=3)
    store.create(new_run())
    calls = []

    def always_raced(run: Run) -> bool:
        calls.append(1)
        store.update("abc123", _appending("x"))
        return True

    with pytest.raises(ConflictError, match="gave up after 3"):
        store.update("abc123", always_raced)
    assert len(calls) == 3


def test_json_round_trip_and_bad_ids():
    run = new_run()
    assert Run.from_json(run.to_json()) == run
    with pytest.raises(InputError):
        RunStore(MemoryRecordStore()).get("../etc/passwd")


def test_run_id_is_deterministic_in_content_settings_and_model():
    config = {"base_model": "Phi-3-mini-4k-instruct", "finetune": {"num_train_epochs": 1}}
    a = run_id_for("sha", config)
    assert a == run_id_for("sha", dict(reversed(config.items())))  # key order does not matter
    assert a != run_id_for("sha2", config)
    assert a != run_id_for("sha", {**config, "base_model": "Phi-4-mini-instruct"})
    assert a != run_id_for("sha", {**config, "finetune": {"num_train_epochs": 2}})


class CountingReads(MemoryRecordStore):
    def __init__(self) -> None:
        super().__init__()
        self.reads: list[str] = []

    def read(self, key):
        self.reads.append(key)
        return super().read(key)


def test_listing_filters_and_sorts_on_metadata_and_reads_only_what_it_returns(monkeypatch):
    records = CountingReads()
    store = RunStore(records)
    clock = iter(f"2026-01-01T00:00:{i:02d}+00:00" for i in range(60))
    monkeypatch.setattr("shared.runs.now_iso", lambda: next(clock))
    for i in range(10):
        store.create(new_run(f"run{i}"))
        store.advance(f"run{i}", RunState.VALIDATING)
        if i % 2:
            store.advance(f"run{i}", RunState.REJECTED)
    records.reads.clear()
    index = store.index()
    assert records.reads == []  # the listing alone
    assert [e.run_id for e in index] == [f"run{i}" for i in reversed(range(10))]  # newest first
    assert {e.run_id for e in store.index([RunState.REJECTED])} == {"run1", "run3", "run5", "run7", "run9"}
    newest = list(store.list(["VALIDATING"], limit=2))
    assert [r.run_id for r in newest] == ["run8", "run6"] and all(r.state == "VALIDATING" for r in newest)
    assert records.reads == ["runs/run8.json", "runs/run6.json"]


def test_records_written_without_metadata_are_still_listed():
    records = MemoryRecordStore()
    old = new_run("legacy")
    records.create("runs/legacy.json", old.to_json())  # as an earlier version wrote it: no meta
    store = RunStore(records)
    store.create(new_run("fresh"))
    assert {e.run_id: e.state for e in store.index()} == {"legacy": "RECEIVED", "fresh": "RECEIVED"}
    assert [r.run_id for r in store.list(["RECEIVED"]) if r.run_id == "legacy"] == ["legacy"]
