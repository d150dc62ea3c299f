"""Training progress: the summary of a job's metric series, the poll chain that never multiplies, the events."""

from __future__ import annotations

import asyncio
import json
from types import SimpleNamespace

from shared.handlers import on_work
from shared.lifecycle import progress
from shared.records import MemoryRecordStore
from shared.runs import Run, RunState, RunStore
from shared.services import Services
from shared.settings import Settings
from tests.support.fake_queue import FakeQueue

RUN_ID = "7a1b2c3d4e5f60718293"


def series(steps: int, every_ms: int = 500, total: int = 40) -> dict:
    train = [{"step": s, "value": 2.0 / s, "timestamp": 1_000_000 + s * every_ms} for s in range(2, steps + 1, 2)]
    return {"train_loss": train, "eval_loss": [{"step": 10, "value": 0.9, "timestamp": 0}],
            "learning_rate": [{"step": r["step"], "value": 1e-3, "timestamp": r["timestamp"]} for r in train],
            "epoch": [{"step": r["step"], "value": r["step"] / 20, "timestamp": r["timestamp"]} for r in train],
            "total_steps": [{"step": 0, "value": total, "timestamp": 0}]}


def test_the_summary_has_step_total_epoch_losses_and_an_eta_from_the_step_rate():
    got = progress.summary(series(12))
    assert got == {"step": 12, "total_steps": 40, "epoch": 0.6, "train_loss": 2.0 / 12, "eval_loss": 0.9,
                   "learning_rate": 1e-3, "eta_s": 14.0}  # 0.5 s a step, 28 steps to go
    assert progress.summary({"train_loss": []}) is None  # nothing logged yet: no progress to show
    no_total = progress.summary({**series(4), "total_steps": []})
    assert no_total is not None and no_total["total_steps"] is None and no_total["eta_s"] is None


class Announced:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict]] = []

    def announce(self, run, kind, data) -> None:
        self.events.append((kind, data))


def world(monkeypatch, found):
    records = MemoryRecordStore()
    runs = RunStore(records)
    runs.create(Run(run_id=RUN_ID, state=RunState.RUNNING, dataset="datasets/a.jsonl", sources=["a.jsonl"],
                    base_model="Phi-4-mini-instruct", job_name=f"tuneflow-{RUN_ID}"))
    ctx = Services(Settings.from_env({"TUNEFLOW_STORAGE_CONNECTION": "x"}), records=records, runs=runs,
                   work=FakeQueue(), notifier=Announced(), control=SimpleNamespace())
    monkeypatch.setattr(progress, "series", lambda control, job: found[0])
    return ctx


def test_a_poll_writes_the_summary_announces_it_and_asks_for_the_next_once(monkeypatch):
    found = [series(6)]
    ctx = world(monkeypatch, found)
    assert asyncio.run(on_work(json.dumps({"kind": "progress", "run_id": RUN_ID}), ctx)) == "polled"
    run = ctx.runs.get(RUN_ID)
    assert run.progress["step"] == 6 and run.progress["total_steps"] == 40 and run.progress["updated_at"]
    (kind, data), = ctx.notifier.events
    assert kind == "tuneflow.run.progress" and data["step"] == 6 and data["run_id"] == RUN_ID
    assert [m for m, _ in ctx.work.sent] == [{"kind": "progress", "run_id": RUN_ID}]
    assert ctx.work.sent[0][1] == ctx.settings.progress_seconds == 5.0
    progress.start(ctx, ctx.runs.get(RUN_ID))  # another Running event while a poll is pending: no second chain
    assert len(ctx.work.sent) == 1
    progress.poll(ctx, RUN_ID)  # nothing moved since: no write, no event
    assert len(ctx.notifier.events) == 1
    found[0] = series(10)
    progress.poll(ctx, RUN_ID)
    assert ctx.runs.get(RUN_ID).progress["step"] == 10 and len(ctx.notifier.events) == 2


def test_polls_stop_when_training_ends_and_bad_messages_are_dropped(monkeypatch):
    ctx = world(monkeypatch, [series(6)])
    ctx.runs.advance(RUN_ID, RunState.TRAINED, note="job Completed")
    assert progress.poll(ctx, RUN_ID) == "ignored" and ctx.work.sent == []
    for message in ({"kind": "progress"}, {"kind": "progress", "run_id": "../etc"}, {"kind": "progress", "run_id": 7}):
        assert asyncio.run(on_work(json.dumps(message), ctx)) == "ignored"


def test_a_failed_metrics_read_keeps_polling(monkeypatch):
    ctx = world(monkeypatch, [series(6)])

    def down(control, job):
        raise OSError("run history unreachable")

    monkeypatch.setattr(progress, "series", down)
    assert progress.poll(ctx, RUN_ID) == "polled"
    assert ctx.runs.get(RUN_ID).progress == {"next_poll": ctx.runs.get(RUN_ID).progress["next_poll"]}
    assert len(ctx.work.sent) == 1 and ctx.notifier.events == []


def test_status_and_make_run_show_the_progress():
    from cli.status import training_line
    from devstack.run import progress_bar

    shown = {"step": 12, "total_steps": 40, "epoch": 0.6, "train_loss": 1.2345, "eval_loss": None, "eta_s": 42}
    assert training_line(shown) == "step 12/40 (30%), epoch 0.60, train loss 1.234, ETA 42s"
    assert progress_bar(shown, width=10) == "training [###-------] step 12/40 (30%), epoch 0.60, train loss 1.234, ETA 42s"
    assert training_line(None) is None and progress_bar({"next_poll": "x"}) is None
