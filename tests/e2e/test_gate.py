"""Judge before serving, end to end through Azurite + the emulator + devhost (real training, real scoring).

A weakly trained first model serves; a better-trained second one is evaluated against it on its own
test split and promoted, with its report; a poisoned third (answers shuffled between its training
examples, a clean test split) ends GATED while the second keeps 100% of the traffic and every scoring
call made meanwhile succeeds; an evaluation interrupted by the host going down resumes and finishes.
Then canaries under continuous load: a good one reaches 100% without a failed call, one whose
deployment starts failing (the emulator's bad_answers knob) rolls back by itself within a bake interval.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from azure.storage.blob import BlobServiceClient

from cli.demo_dataset import generate
from devstack.stack import LocalStack, start_stack
from shared.evaluation.runner import report_key
from shared.records import BlobRecordStore
from shared.runs import SETTLED, Run, RunState, RunStore
from tests.e2e.conftest import FAST_FINETUNE, run_for, wait_for
from tests.support.browser import chromium, dashboard_url, new_page, screenshots

pytestmark = [pytest.mark.e2e, pytest.mark.slow]
ENDPOINT = "gate-chat"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    work: Path = tmp_path_factory.mktemp("gate")
    settings = {"TUNEFLOW_FINETUNE_PARAMS": FAST_FINETUNE, "TUNEFLOW_TEST_FRACTION": "0.1",
                "TUNEFLOW_SETTLE_SECONDS": "2", "TUNEFLOW_ENDPOINT": ENDPOINT, "TUNEFLOW_EVAL_MAX_ROWS": "24",
                "TUNEFLOW_EVAL_CHUNK_SECONDS": "3", "TUNEFLOW_EVAL_MAX_NEW_TOKENS": "24",
                "TUNEFLOW_EVAL_CONCURRENCY": "2", "TUNEFLOW_PROGRESS_SECONDS": "1"}
    with start_stack(work / "stack", settings) as s:
        yield s
        print(s.devhost.log_text()[-6000:])


@pytest.fixture(scope="module")
def store(stack: LocalStack) -> BlobRecordStore:
    blobs = BlobServiceClient.from_connection_string(stack.azurite.connection_string)
    return BlobRecordStore(blobs.get_container_client("tuneflow"))


@pytest.fixture(scope="module")
def runs(store: BlobRecordStore) -> RunStore:
    return RunStore(store)


def jsonl(rows: list[dict[str, Any]]) -> bytes:
    return b"".join(orjson.dumps(r) + b"\n" for r in rows)


def poisoned(rows: list[dict[str, Any]], seed: int) -> list[dict[str, Any]]:
    """The same questions with their answers shuffled between examples: fluent, and wrong."""
    answers = [r["messages"][-1]["content"] for r in rows]
    random.Random(seed).shuffle(answers)
    out = []
    for r, answer in zip(rows, answers, strict=True):
        messages = [*r["messages"][:-1], {"role": "assistant", "content": answer}]
        out.append({**r, "messages": messages})
    return out


def drop(stack: LocalStack, folder: str, manifest: dict[str, Any], files: dict[str, bytes]) -> None:
    blobs = BlobServiceClient.from_connection_string(stack.azurite.connection_string)
    container = blobs.get_container_client(stack.settings["TUNEFLOW_DROP_CONTAINER"])
    container.upload_blob(f"{folder}/tuneflow.json", json.dumps(manifest).encode(), overwrite=True)
    for name, data in files.items():
        container.upload_blob(f"{folder}/{name}", data, overwrite=True)


def settled(runs: RunStore, folder: str) -> Run:
    return wait_for(run_for(runs, f"datasets/{folder}/", set(SETTLED)), 900, f"the {folder} run to settle")


def traffic(stack: LocalStack) -> dict[str, int]:
    """The endpoint's traffic split, deployments at 0% left out (a deleted candidate's share until it is gone)."""
    split = stack.emulator.ml_client().online_endpoints.get(ENDPOINT).traffic or {}
    return {name: int(share) for name, share in split.items() if int(share) > 0}


def api(stack: LocalStack, method: str, path: str, **kwargs: Any) -> httpx.Response:
    return httpx.request(method, f"{stack.api}{path}", headers={"x-functions-key": stack.devhost.function_key},
                         timeout=120, **kwargs)


@pytest.fixture(scope="module")
def weak(stack: LocalStack, runs: RunStore) -> Run:
    drop(stack, "weak", {"train": "train.jsonl", "finetune": {"max_steps": 2}},
         {"train.jsonl": jsonl(list(generate(150, seed=1)))})
    run = settled(runs, "weak")
    assert run.state == RunState.DEPLOYED, f"{run.state}: {run.last_error}"
    return run


@pytest.fixture(scope="module")
def better(stack: LocalStack, runs: RunStore, store: BlobRecordStore, weak: Run,
           tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The better run, with what was seen while it evaluated: the host went down mid-evaluation."""
    from devhost.process import start_devhost

    # Every scoring call takes a second (both deployments alike): the evaluation spans several 3-s chunks
    stack.admin("POST", "/faults", {"bad_answers": {"*": {"latency_ms": 1000}}})
    drop(stack, "better", {"train": "train.jsonl"}, {"train.jsonl": jsonl(list(generate(200, seed=2)))})
    partial: dict[str, Any] = {}

    def mid_evaluation() -> Run | None:
        run = run_for(runs, "datasets/better/", {RunState.DEPLOYING})()
        record = store.read(report_key(run.run_id)) if run else None
        report = orjson.loads(record.data) if record else None
        if report and len(report["outcomes"]["candidate"]) > 0 and "scores" not in report:
            partial.update(report)
            return run
        return None

    try:
        wait_for(mid_evaluation, 900, "the better run's evaluation to be under way")
    finally:
        stack.admin("POST", "/faults", {"bad_answers": None})
    port = int(stack.devhost.url.rsplit(":", 1)[1])
    keys = tmp_path_factory.mktemp("host-keys") / "keys.json"  # the host's keys outlive it, as in Azure
    keys.write_bytes(stack.devhost.keys_path.read_bytes())
    stack.devhost.stop()  # mid-chunk: whatever that chunk scored is lost; what earlier chunks saved is not
    time.sleep(2)
    stack.devhost = start_devhost("function_app:app", port=port, settings=stack.settings, keys=keys, timeout=60)
    return {"run": settled(runs, "better"), "partial": partial}


def test_a_better_candidate_is_promoted_with_its_evaluation_report(stack, runs, store, weak, better):
    run: Run = better["run"]
    assert run.state == RunState.DEPLOYED, f"{run.state}: {run.last_error}"
    evaluation = run.evaluation or {}
    scores = evaluation["scores"]
    assert evaluation["deployments"] == {"candidate": run.deployment, "serving": weak.deployment}
    assert evaluation["verdict"]["promote"] and evaluation["verdict"]["metric"] == "token_f1"
    assert scores["candidate"]["token_f1"] > scores["serving"]["token_f1"], scores
    assert scores["candidate"]["examples"] == scores["serving"]["examples"] == evaluation["examples"] > 5
    assert scores["candidate"]["error_rate"] == 0.0 and scores["candidate"]["latency_p95_ms"] > 0
    assert runs.get(weak.run_id).state == RunState.RETIRED and traffic(stack) == {run.deployment: 100}
    report = orjson.loads(store.read(report_key(run.run_id)).data)
    assert report["scores"] == scores and len(report["outcomes"]["serving"]) == evaluation["examples"]
    shown = api(stack, "GET", f"/runs/{run.run_id}").json()
    assert shown["evaluation"]["verdict"] == evaluation["verdict"]
    events = [r["event"] for r in stack.admin("GET", "/topic/events")["value"]]
    deployed = [e for e in events if e.get("type") == "tuneflow.run.deployed" and e["subject"] == f"runs/{run.run_id}"]
    assert deployed and deployed[-1]["data"]["evaluation"]["scores"] == scores


def test_an_interrupted_evaluation_resumes_and_keeps_what_was_saved(better):
    partial, run = better["partial"], better["run"]
    report_outcomes = run.evaluation["examples"]
    saved = partial["outcomes"]["candidate"]
    assert 0 < len(saved) < report_outcomes  # the host went down with the evaluation part done
    assert run.state == RunState.DEPLOYED


def test_a_poisoned_dataset_is_gated_and_the_serving_model_never_misses_a_call(stack, runs, better):
    serving: Run = better["run"]
    assert serving.state == RunState.DEPLOYED
    rows = list(generate(200, seed=3))
    failures: list[str] = []
    served = [0]
    stop = threading.Event()

    def keep_scoring() -> None:
        while not stop.is_set():
            response = api(stack, "POST", "/v1/chat/completions", json={
                "model": ENDPOINT, "max_tokens": 16,
                "messages": [{"role": "user", "content": "What is the capital of France?"}]})
            served[0] += 1
            if response.status_code != 200:
                failures.append(f"{response.status_code} {response.text[:200]}")
            time.sleep(0.1)

    scorer = threading.Thread(target=keep_scoring)
    scorer.start()
    try:
        drop(stack, "poisoned", {"train": "train.jsonl", "test": "test.jsonl", "eval": {"compare_base": True}},
             {"train.jsonl": jsonl(poisoned(rows[:170], seed=3)), "test.jsonl": jsonl(rows[170:])})
        gated = settled(runs, "poisoned")
    finally:
        stop.set()
        scorer.join()
    assert gated.state == RunState.GATED, f"{gated.state}: {gated.last_error}"
    verdict = (gated.evaluation or {})["verdict"]
    assert verdict["rule"] == "min_delta" and verdict["candidate"] < verdict["serving"]
    assert "below the serving deployment's" in str(gated.history[-1].note)
    scores = (gated.evaluation or {})["scores"]  # eval.compare_base: the base model on a deployment of its own
    assert set(scores) == {"candidate", "serving", "base"} and scores["base"]["examples"] == scores["serving"]["examples"]
    assert scores["serving"]["token_f1"] > scores["base"]["token_f1"]  # what fine-tuning bought
    assert traffic(stack) == {serving.deployment: 100}
    assert served[0] > 10 and failures == []
    ml = stack.emulator.ml_client()
    deadline = time.monotonic() + 60  # the candidate's deletion is asynchronous
    while [d.name for d in ml.online_deployments.list(ENDPOINT)] != [serving.deployment]:
        assert time.monotonic() < deadline, "the gated candidate was not deleted"
        time.sleep(1)
    assert runs.get(serving.run_id).state == RunState.DEPLOYED


# A 2-core machine running training beside scoring gives noisy p95s over a few calls: these canaries are judged
# on failures (the p95 rule has its unit tests)
CANARY = {"strategy": "canary", "steps": [30, 100], "bake_minutes": 0.25, "min_requests": 5, "max_p95_ratio": 10}
# These candidates are judged by their canary: the gate lets any answering one through (min_delta -1)
OPEN_GATE = {"min_delta": -1}


class Load:
    """Continuous chat calls through tuneflow's API; every failure kept with the time it happened."""

    def __init__(self, stack: LocalStack) -> None:
        self.stack, self.served = stack, 0
        self.failures: list[str] = []
        self.first_failure: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        while not self._stop.is_set():
            response = api(self.stack, "POST", "/v1/chat/completions", json={
                "model": ENDPOINT, "max_tokens": 16,
                "messages": [{"role": "user", "content": "What is the capital of Peru?"}]})
            self.served += 1
            if response.status_code != 200:
                self.first_failure = self.first_failure or time.time()
                self.failures.append(f"{response.status_code} {response.text[:200]}")
            time.sleep(0.05)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def test_a_good_canary_reaches_all_traffic_under_load_without_a_failed_call(stack, runs, better, tmp_path):
    serving: Run = runs.get(better["run"].run_id)
    assert serving.state == RunState.DEPLOYED
    seen: list[dict[str, Any]] = []  # the run's training progress, as GET /api/runs/{id} showed it meanwhile

    def watched() -> Run | None:
        run = run_for(runs, "datasets/canary-good/", set(RunState))()
        if run is not None and run.state == RunState.RUNNING:
            shown = api(stack, "GET", f"/runs/{run.run_id}").json().get("progress") or {}
            if shown.get("step"):
                seen.append(shown)
        return run if run is not None and run.state in SETTLED else None

    with Load(stack) as load:
        drop(stack, "canary-good", {"train": "train.jsonl", "rollout": CANARY, "gate": OPEN_GATE,
                                    "finetune": {"max_steps": 80, "logging_steps": 4, "apply_early_stopping": False}},
             {"train.jsonl": jsonl(list(generate(200, seed=4)))})
        run = wait_for(watched, 900, "the good canary's run to settle")
    assert run.state == RunState.DEPLOYED, f"{run.state}: {run.last_error}"
    # live training progress: seen while it trained, every step in the metrics route, announced as events
    assert seen and all(p["total_steps"] == 80 for p in seen), seen
    assert seen[0]["step"] < 80 and [p["step"] for p in seen] == sorted(p["step"] for p in seen)
    metrics = api(stack, "GET", f"/runs/{run.run_id}/metrics").json()
    assert [r["step"] for r in metrics["series"]["train_loss"]] == list(range(4, 81, 4))
    assert metrics["progress"]["step"] == 80 and len(metrics["series"]["learning_rate"]) == 20
    events = [r["event"] for r in stack.admin("GET", "/topic/events")["value"]]
    steps = [e["data"]["step"] for e in events
             if e.get("type") == "tuneflow.run.progress" and e["subject"] == f"runs/{run.run_id}"]
    assert steps and steps == sorted(steps), steps
    history = (run.rollout or {})["history"]
    assert [h["share"] for h in history] == [30] and history[0]["outcome"] == "baked"
    assert history[0]["candidate"]["requests"] >= 5 and history[0]["candidate"]["errors"] == 0
    assert load.served > 20 and load.failures == []
    assert traffic(stack) == {run.deployment: 100} and runs.get(serving.run_id).state == RunState.RETIRED
    shown_in_the_dashboard(stack, run, tmp_path)


def shown_in_the_dashboard(stack: LocalStack, run: Run, tmp_path: Path) -> None:
    """The run page shows this canary as the API has it: its steps, the comparison with what served, the loss."""
    with chromium() as browser, new_page(browser) as page:
        page.goto(dashboard_url(stack.api, stack.devhost.function_key))
        row = page.locator(f'#runs tr[data-run-id="{run.run_id}"]')
        row.wait_for(timeout=30_000)
        assert "DEPLOYED" in row.inner_text() and page.locator("#runs tbody tr").count() >= 3  # weak, better, this
        page.screenshot(path=str(screenshots(tmp_path) / "dashboard-runs.png"), full_page=True)
        row.click()
        history = page.locator("#rollout-history")
        history.wait_for(timeout=30_000)
        assert "30%" in history.inner_text() and "baked" in history.inner_text()
        header = page.locator("#evaluation-table thead").inner_text()
        assert "candidate" in header and "serving" in header
        steps = page.locator("#loss-chart").get_attribute("data-steps") or ""
        assert steps == ",".join(str(s) for s in range(4, 81, 4))
        page.screenshot(path=str(screenshots(tmp_path) / "dashboard-canary.png"), full_page=True)
        assert page.errors == []


def test_an_erroring_canary_rolls_back_by_itself_within_one_bake_interval(stack, runs):
    with Load(stack) as load:
        drop(stack, "canary-bad", {"train": "train.jsonl", "rollout": CANARY, "gate": OPEN_GATE},
             {"train.jsonl": jsonl(list(generate(200, seed=5)))})
        baking = wait_for(lambda: next((r for r in [run_for(runs, "datasets/canary-bad/", {RunState.DEPLOYING})()]
                                        if r and (r.rollout or {}).get("share") == 30), None), 900,
                          "the bad canary's first step")
        serving = [name for name, share in traffic(stack).items() if name != baking.deployment]
        stack.admin("POST", "/faults", {"bad_answers": {str(baking.deployment): {"error_rate": 1.0}}})
        try:
            run = settled(runs, "canary-bad")
        finally:
            stack.admin("POST", "/faults", {"bad_answers": None})
    assert run.state == RunState.ROLLED_BACK, f"{run.state}: {run.last_error}"
    evidence = run.rollout["history"][-1]
    assert evidence["outcome"] == "rolled back" and evidence["candidate"]["errors"] >= 5
    assert "live calls" in run.last_error
    assert traffic(stack) == {serving[0]: 100}
    assert load.first_failure is not None
    rolled_back = datetime.fromisoformat(run.history[-1].at).timestamp()
    assert rolled_back - load.first_failure <= CANARY["bake_minutes"] * 60, (rolled_back - load.first_failure)
    print(f"canary rollback: {rolled_back - load.first_failure:.1f} s after the first failed call; "
          f"{len(load.failures)} of {load.served} calls failed meanwhile")


def test_a_mirror_rollout_shadows_live_calls_then_switches(stack, runs):
    mirror = {"strategy": "mirror", "mirror_percent": 50, "bake_minutes": 0.25, "min_requests": 5}
    serving = list(traffic(stack))
    with Load(stack) as load:
        drop(stack, "mirrored", {"train": "train.jsonl", "rollout": mirror, "gate": OPEN_GATE},
             {"train.jsonl": jsonl(list(generate(200, seed=6)))})
        run = settled(runs, "mirrored")
    assert run.state == RunState.DEPLOYED, f"{run.state}: {run.last_error}"
    (baked,) = (run.rollout or {})["history"]
    assert baked["outcome"] == "baked" and baked["source"] == "Azure Monitor" and baked["mirror"] == 50
    assert baked["candidate"]["requests"] >= 5 and baked["candidate"]["errors"] == 0  # the copies it answered
    assert baked["serving"]["requests"] >= baked["candidate"]["requests"]
    endpoint = stack.emulator.ml_client().online_endpoints.get(ENDPOINT)
    assert traffic(stack) == {run.deployment: 100} and not (endpoint.mirror_traffic or {})
    assert load.served > 20 and load.failures == []
    assert run.deployment not in serving
