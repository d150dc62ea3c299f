"""Teardown (endpoint, deployment), its status, idle teardown and the activity record, on a fake ARM."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace
from typing import Any

import pytest

from shared.azureml import tags
from shared.endpoints.activity import Activity
from shared.endpoints.idle import idle_teardown
from shared.endpoints.teardown import Teardown, rebalance
from shared.records import MemoryRecordStore
from shared.runs import Run, RunState, RunStore
from shared.settings import Settings
from tests.support.fake_endpoints import FakeOnlineEndpoints, control_plane


def run(run_id: str, state: RunState, endpoint: str = "tuneflow-chat", deployment: str = "blue") -> Run:
    return Run(run_id, state, "d.jsonl", ["d.jsonl"], "Phi-3", endpoint=endpoint, deployment=deployment,
               model=f"chat-ft:{run_id}")


@pytest.fixture
def world() -> Any:
    arm = FakeOnlineEndpoints()
    records = MemoryRecordStore()
    runs = RunStore(MemoryRecordStore())
    invalidated: list[str] = []
    clock = [datetime.now(UTC)]
    activity = Activity(lambda: records, flush_every=3600, clock=lambda: clock[0])
    teardown = Teardown(control_plane(arm), lambda: runs, lambda: records, invalidate=invalidated.append,
                        forget=activity.forget)
    return SimpleNamespace(arm=arm, records=records, runs=runs, teardown=teardown, invalidated=invalidated,
                           activity=activity, clock=clock)


def test_rebalance_keeps_proportions_and_sums_to_100():
    assert rebalance({"a": 50, "b": 30, "c": 20}, "a") == {"a": 0, "b": 60, "c": 40}
    assert rebalance({"a": 90, "b": 5, "c": 5}, "a") == {"a": 0, "b": 50, "c": 50}
    assert sum(rebalance({"a": 10, "b": 1, "c": 1, "d": 1}, "a").values()) == 100
    assert rebalance({"a": 100, "b": 0}, "a") == {"a": 0, "b": 0}


def test_endpoint_teardown_deletes_and_tears_down_its_runs(world):
    world.arm.add("tuneflow-chat", {"blue": 100})
    for rid, state in (("r1", RunState.DEPLOYED), ("r2", RunState.RETIRED), ("r3", RunState.DEPLOY_FAILED),
                       ("r4", RunState.FAILED)):
        world.runs.create(run(rid, state))
    world.runs.create(run("r5", RunState.DEPLOYED, endpoint="other-endpoint"))
    outcome = world.teardown.endpoint("tuneflow-chat", note="test")
    assert outcome["state"] == "Deleting" and sorted(outcome["runs_torn_down"]) == ["r1", "r2", "r3"]
    assert "tuneflow-chat" not in world.arm.endpoints
    assert world.runs.get("r1").state == RunState.TORN_DOWN
    assert world.runs.get("r1").history[-1].note == "test"
    assert world.runs.get("r4").state == RunState.FAILED  # not a deployable run: left alone
    assert world.runs.get("r5").state == RunState.DEPLOYED  # another endpoint
    assert world.invalidated == ["tuneflow-chat"]


def test_endpoint_teardown_of_what_is_gone_is_not_an_error(world):
    outcome = world.teardown.endpoint("tuneflow-chat", note="again")
    assert outcome["state"] == "Deleted" and outcome["runs_torn_down"] == []
    assert world.teardown.endpoint_status("tuneflow-chat") == {
        "endpoint": "tuneflow-chat", "exists": False, "state": "Deleted", "deployments": []}


def test_deployment_with_traffic_is_drained_then_deleted(world):
    world.arm.add("tuneflow-chat", {"blue": 70, "green": 30})
    world.runs.create(run("r1", RunState.DEPLOYED, deployment="blue"))
    world.runs.create(run("r2", RunState.DEPLOYED, deployment="green"))
    outcome = world.teardown.deployment("tuneflow-chat", "blue", note="drop blue")
    assert outcome["state"] == "Deleting" and outcome["runs_torn_down"] == ["r1"]
    assert world.arm.traffic("tuneflow-chat") == {"blue": 0, "green": 100}
    assert ("tuneflow-chat", "blue") not in world.arm.deployments
    assert world.runs.get("r2").state == RunState.DEPLOYED
    again = world.teardown.deployment("tuneflow-chat", "blue", note="again")
    assert again["state"] == "Deleted"


def test_slow_traffic_update_leaves_a_pending_deletion_that_status_completes(world, monkeypatch):
    monkeypatch.setattr("shared.endpoints.teardown.TRAFFIC_WAIT_S", 0.0)
    world.arm.add("tuneflow-chat", {"blue": 100, "green": 0})
    world.arm.traffic_updates_finish = False
    outcome = world.teardown.deployment("tuneflow-chat", "blue", note="slow")
    assert outcome["state"] == "PendingTrafficUpdate"
    assert ("tuneflow-chat", "blue") in world.arm.deployments
    status = world.teardown.deployment_status("tuneflow-chat", "blue")
    assert status["state"] == "PendingTrafficUpdate"
    world.arm.endpoints["tuneflow-chat"]["properties"]["traffic"] = {"blue": 0, "green": 0}  # the update landed
    status = world.teardown.deployment_status("tuneflow-chat", "blue")
    assert status["state"] == "Deleted" and ("tuneflow-chat", "blue") not in world.arm.deployments


def test_endpoint_status_lists_deployments(world):
    world.arm.add("tuneflow-chat", {"blue": 100, "green": 0})
    status = world.teardown.endpoint_status("tuneflow-chat")
    assert status["exists"] and status["state"] == "Succeeded"
    assert {d["name"]: (d["traffic"], d["model"]) for d in status["deployments"]} == {
        "blue": (100, "chat-ft:blue"), "green": (0, "chat-ft:green")}


def test_activity_is_recorded_without_a_write_per_call():
    writes = []

    class CountingStore(MemoryRecordStore):
        def create(self, key, data, meta=None):
            writes.append(key)
            return super().create(key, data, meta)

        def replace(self, key, data, etag, meta=None):
            writes.append(key)
            return super().replace(key, data, etag, meta)

    store = CountingStore()
    clock = [datetime(2025, 1, 1, tzinfo=UTC)]
    activity = Activity(lambda: store, flush_every=60, clock=lambda: clock[0])
    for _ in range(1000):
        activity.touch("tuneflow-chat")
    activity._background.wait()  # the background flush
    assert len(writes) == 1
    clock[0] += timedelta(seconds=30)
    activity.touch("tuneflow-chat")  # within the minute: memory only
    assert len(writes) == 1
    activity.flush()
    assert activity.get("tuneflow-chat").last_scored == clock[0]


def test_activity_never_moves_backwards():
    store = MemoryRecordStore()
    t0 = datetime(2025, 1, 1, tzinfo=UTC)
    late, early = Activity(lambda: store, 60, clock=lambda: t0 + timedelta(minutes=5)), Activity(
        lambda: store, 60, clock=lambda: t0)
    late._pending["e"] = t0 + timedelta(minutes=5)
    late.flush()
    early._pending["e"] = t0
    early.flush()
    assert early.get("e").last_scored == t0 + timedelta(minutes=5)


def settings(minutes: float) -> Settings:
    return Settings.from_env({"TUNEFLOW_STORAGE_CONNECTION": "UseDevelopmentStorage=true",
                              "TUNEFLOW_IDLE_TEARDOWN_MINUTES": str(minutes)})


def idle(world: Any, s: Settings) -> list[str]:
    return idle_teardown(s, world.activity, world.teardown, lambda: world.runs, now=lambda: world.clock[0])


def test_idle_teardown_is_off_by_default(world):
    world.arm.add("tuneflow-chat", {"blue": 100})
    world.clock[0] += timedelta(days=30)
    assert idle(world, settings(0)) == []
    # the endpoint is read (its own tag could ask for teardown), never changed
    assert "tuneflow-chat" in world.arm.endpoints and all(method == "GET" for method, _ in world.arm.calls)


def test_an_endpoint_tagged_with_its_own_idle_minutes_is_torn_down_even_when_the_app_default_is_off(world):
    world.arm.add("tuneflow-chat", {"blue": 100})
    world.arm.endpoints["tuneflow-chat"]["tags"] = {tags.IDLE_MINUTES: "10"}
    assert idle(world, settings(0)) == []  # the first pass starts its idle clock
    world.clock[0] += timedelta(minutes=9)
    assert idle(world, settings(0)) == []
    world.clock[0] += timedelta(minutes=2)
    assert idle(world, settings(0)) == ["tuneflow-chat"]
    assert "tuneflow-chat" not in world.arm.endpoints


def test_idle_endpoint_is_torn_down_and_recorded_on_its_runs(world):
    world.arm.add("tuneflow-chat", {"blue": 100})
    world.runs.create(run("r1", RunState.DEPLOYED))
    s = settings(30)
    assert idle(world, s) == []  # the idle clock starts
    world.clock[0] += timedelta(minutes=20)
    world.activity.touch("tuneflow-chat")  # scored: the clock restarts
    world.clock[0] += timedelta(minutes=25)
    assert idle(world, s) == []
    world.clock[0] += timedelta(minutes=40)
    assert idle(world, s) == ["tuneflow-chat"]
    assert "tuneflow-chat" not in world.arm.endpoints
    torn = world.runs.get("r1")
    assert torn.state == RunState.TORN_DOWN and "idle teardown" in torn.history[-1].note
    assert idle(world, s) == []  # gone: nothing more to do
