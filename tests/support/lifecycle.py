"""The lifecycle's test world: services over an in-memory workspace, a fake ARM for endpoints and a fake
work queue, and the steps that bring a run to the point a test starts from."""

from __future__ import annotations

import json
from types import SimpleNamespace

from shared.events import Envelope, parse_model_registered, parse_run_event
from shared.lifecycle.registration import on_run_event
from shared.records import MemoryRecordStore
from shared.runs import Run, RunState, RunStore
from shared.services import Services
from shared.settings import Settings
from tests.support.events import load_event
from tests.support.fake_endpoints import FakeOnlineEndpoints, control_plane
from tests.support.fake_queue import FakeQueue
from tests.support.fake_registry import PHI3_TAGS
from tests.support.fake_workspace import FakeWorkspace

RUN_ID = "3f2a9c0d1e5b7a8c6d4e"
SAMPLE = json.dumps({"messages": [{"role": "user", "content": "What is 2 plus 2?"},
                                  {"role": "assistant", "content": "4"}]}).encode()


SETTINGS = {"TUNEFLOW_STORAGE_CONNECTION": "x", "TUNEFLOW_EMULATOR_CONNECTION": "/x",
            "TUNEFLOW_BASE_MODEL": "Phi-3-mini-4k-instruct",  # the model the fake registry holds
            "TUNEFLOW_GATE_ENABLED": "false"}  # blue/green mechanics; the gate has tests/unit/test_gate_lifecycle.py


def services(fake: SimpleNamespace, **env: str) -> Services:
    base = SimpleNamespace(tags=PHI3_TAGS, id="azureml://registries/azureml/models/Phi-3-mini-4k-instruct/versions/7")
    registry = SimpleNamespace(models=SimpleNamespace(get=lambda *a, **k: base))
    clients = SimpleNamespace(workspace=fake.workspace.ws, registry=registry, registry_for=lambda name: registry)
    records = MemoryRecordStore()
    return Services(Settings.from_env({**SETTINGS, **env}), records=records, runs=RunStore(records), ml=clients,
                    control=control_plane(fake.arm), read_test_sample=lambda path: SAMPLE,
                    read_test_split=lambda path: iter(fake.test_split), work=fake.work)


def make_world() -> tuple[Services, SimpleNamespace]:
    """(services, fakes): ``fakes.workspace`` holds jobs and models (SDK), ``fakes.arm`` the endpoints (REST)."""
    fake = SimpleNamespace(workspace=FakeWorkspace(), arm=FakeOnlineEndpoints(), work=FakeQueue(), test_split=[SAMPLE])
    fake.add_job = fake.workspace.add_job
    return services(fake), fake


def submitted(ctx, run_id: str = RUN_ID) -> Run:
    run = Run(run_id=run_id, state=RunState.SUBMITTED, dataset="datasets/a.jsonl", sources=["a.jsonl"],
              base_model="Phi-3-mini-4k-instruct", job_name=f"tuneflow-{run_id}", test_path="prepared/x/test.jsonl")
    ctx.runs.create(run)
    return run


def run_event(name: str, **changes):
    raw = load_event(name)
    raw["data"].update(changes)
    return parse_run_event(Envelope.from_dict(raw))


def model_event(name: str, **changes):
    raw = load_event(name)
    raw["data"].update(changes)
    return parse_model_registered(Envelope.from_dict(raw))


def deploy_ready(ctx, fake, run_id: str = RUN_ID) -> Run:
    submitted(ctx, run_id)
    fake.add_job(f"tuneflow-{run_id}", "Completed")
    on_run_event(ctx, run_event("run_completed_camel", runId=f"tuneflow-{run_id}",
                                runTags={"tuneflow.run_id": run_id}))
    return ctx.runs.get(run_id)


