"""Evaluation of a candidate deployment, in bounded chunks that resume.

The first chunk samples the run's test split and stores it with the deployments to compare in
``reports/<run>.eval.json``. Each chunk claims the report (a lease written with an ETag, so two
workers never score the same run at once), scores what is still missing for at most
``eval_chunk_seconds`` with ``eval_concurrency`` calls in flight per deployment, and merges what it got
into the report. The chunk that scores the last example computes the scores: the report is then
complete and every later call returns it unchanged. A crash loses at most one chunk's calls.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import orjson

from shared.errors import ConflictError, TuneflowError
from shared.evaluation.examples import Example, sample
from shared.evaluation.metrics import Outcome, Scores, score
from shared.runs import Run, now_iso

if TYPE_CHECKING:
    from shared.endpoints.control import ScoringTarget
    from shared.records import RecordStore
    from shared.services import Services
    from shared.settings import Settings

log = logging.getLogger(__name__)
CANDIDATE, SERVING, BASE = "candidate", "serving", "base"
LEASE_MARGIN = timedelta(seconds=30)  # a chunk's lease outlives its budget by this much (its last calls, the save)
CALL_TIMEOUT_S = 60.0
Report = dict[str, Any]


def report_key(run_id: str) -> str:
    return f"reports/{run_id}.eval.json"


def complete(report: Report | None) -> bool:
    return bool(report) and "scores" in (report or {})


def scores_of(report: Report) -> dict[str, Scores]:
    return {role: Scores.from_dict(raw) for role, raw in report.get("scores", {}).items()}


class Evaluation:
    """One run's evaluation report in the record store."""

    def __init__(self, records: RecordStore, run_id: str) -> None:
        self.records, self.key = records, report_key(run_id)

    def read(self) -> tuple[Report | None, str | None]:
        record = self.records.read(self.key)
        return (orjson.loads(record.data), record.etag) if record else (None, None)

    def start(self, report: Report) -> Report:
        """Store a new report; one stored meanwhile by another worker wins."""
        if self.records.create(self.key, orjson.dumps(report), {"kind": "evaluation"}) is None:
            stored, _ = self.read()
            return stored or report
        return report

    def change(self, edit: Callable[[Report], bool], retries: int = 20) -> Report | None:
        """Apply ``edit`` (False: leave it) with compare-and-swap; None when there is no report."""
        for _ in range(retries):
            report, etag = self.read()
            if report is None or etag is None:
                return None
            if not edit(report):
                return report
            report["updated_at"] = now_iso()
            if self.records.replace(self.key, orjson.dumps(report), etag, {"kind": "evaluation"}) is not None:
                return report
        raise ConflictError(f"{self.key}: gave up after {retries} concurrent updates")


def begin(ctx: Services, run: Run, s: Settings, serving: str | None, base: str | None = None) -> Report:
    """The run's report, created (sampling the test split) if this is its first chunk; ``base``: the base
    model's own deployment, evaluated beside them (informational: the gate does not use it)."""
    evaluation = Evaluation(ctx.records, run.run_id)
    report, _ = evaluation.read()
    if report is not None:
        return report
    lines = ctx.read_test_split(run.test_path) if run.test_path else []
    examples = sample(lines, s.eval_max_rows, seed=run.run_id)
    roles = {CANDIDATE: run.deployment, SERVING: serving, BASE: base}
    return evaluation.start({
        "run_id": run.run_id, "endpoint": run.endpoint, "created_at": now_iso(), "updated_at": now_iso(),
        "deployments": {role: name for role, name in roles.items() if name},
        "examples": [{"index": e.index, "prompt": e.prompt, "reference": e.reference} for e in examples],
        "outcomes": {role: {} for role, name in roles.items() if name},
    })


BUSY = "busy"  # another worker holds the lease: it hands on when its chunk is done
MORE = "more"  # this chunk is done, the evaluation is not: the caller asks for the next one


def advance(ctx: Services, run: Run, s: Settings, serving: str | None, base: str | None = None) -> Report | str:
    """One chunk of ``run``'s evaluation: the complete report once every example is scored, else
    ``MORE`` (a next chunk is needed) or ``BUSY`` (another worker's chunk is running)."""
    report = begin(ctx, run, s, serving, base)
    if complete(report):
        return report
    evaluation = Evaluation(ctx.records, run.run_id)
    holder = f"{id(report):x}-{time.monotonic_ns():x}"
    until = datetime.now(UTC) + timedelta(seconds=s.eval_chunk_seconds) + LEASE_MARGIN
    claimed = evaluation.change(lambda r: _claim(r, holder, until))
    if claimed is None or complete(claimed):
        return claimed or MORE
    if claimed.get("lease", {}).get("holder") != holder:
        return BUSY
    examples = [Example(e["index"], e["prompt"], e["reference"]) for e in claimed["examples"]]
    pending = [(role, e) for e in examples for role, done in claimed["outcomes"].items() if str(e.index) not in done]
    got = _score_chunk(ctx, s, str(run.endpoint), claimed["deployments"], pending)
    final = evaluation.change(lambda r: _merge(r, got, holder))
    log.info("run %s: evaluation chunk scored %d of %d pending calls", run.run_id, len(got), len(pending))
    return final if final is not None and complete(final) else MORE


def _claim(report: Report, holder: str, until: datetime) -> bool:
    if complete(report):
        return False
    lease = report.get("lease") or {}
    if lease.get("until") and datetime.fromisoformat(lease["until"]) > datetime.now(UTC):
        return False  # a live chunk elsewhere: it hands on when done
    report["lease"] = {"holder": holder, "until": until.isoformat(timespec="milliseconds")}
    return True


def _merge(report: Report, got: Iterable[tuple[str, int, Outcome]], holder: str) -> bool:
    for role, index, outcome in got:
        report["outcomes"].setdefault(role, {}).setdefault(str(index), outcome.to_dict())
    if report.get("lease", {}).get("holder") == holder:
        report.pop("lease", None)
    references = {str(e["index"]): e["reference"] for e in report["examples"]}
    if all(len(done) >= len(references) for done in report["outcomes"].values()):
        report["scores"] = {role: score((Outcome.from_dict(done[i]), ref) for i, ref in references.items()).to_dict()
                            for role, done in report["outcomes"].items()}
        report["finished_at"] = now_iso()
    return True


def request_body(prompt: list[dict[str, str]], max_new_tokens: int) -> bytes:
    """An Azure ML chat request, greedy: an evaluation must score the same answers every time it runs."""
    return orjson.dumps({"input_data": {"input_string": prompt, "parameters": {
        "max_new_tokens": max_new_tokens, "do_sample": False}}})


def call(ctx: Services, target: ScoringTarget, deployment: str, prompt: list[dict[str, str]],
         max_new_tokens: int) -> Outcome:
    """One evaluation call; a throttled or unavailable answer is retried once after a second."""
    from shared.scoring.normalise import normalise

    body = request_body(prompt, max_new_tokens)
    started = time.perf_counter()
    for attempt in (1, 2):
        try:
            answer = normalise(ctx.control.invoke_at(target, deployment, body, CALL_TIMEOUT_S)).text
            return Outcome(answer.strip(), (time.perf_counter() - started) * 1000)
        except TuneflowError as exc:
            if attempt == 1 and (exc.transient or exc.context.get("status") in (429, 503)):
                time.sleep(1.0)
                continue
            return Outcome(None, (time.perf_counter() - started) * 1000, str(exc)[:300])
    raise AssertionError("unreachable")  # pragma: no cover


def _score_chunk(ctx: Services, s: Settings, endpoint: str, deployments: dict[str, str],
                 pending: list[tuple[str, Example]]) -> list[tuple[str, int, Outcome]]:
    """Score ``pending`` until the chunk's budget is spent; calls started in time are waited for."""
    if not pending:
        return []
    target = ctx.control.scoring_target(endpoint)
    deadline = time.monotonic() + s.eval_chunk_seconds
    got: list[tuple[str, int, Outcome]] = []
    todo = iter(pending)
    width = s.eval_concurrency * len(deployments)
    with ThreadPoolExecutor(width, thread_name_prefix="eval") as pool:
        running: dict[Future[Outcome], tuple[str, int]] = {}

        def submit() -> None:
            while len(running) < width and time.monotonic() < deadline:
                item = next(todo, None)
                if item is None:
                    return
                role, example = item
                future = pool.submit(call, ctx, target, deployments[role], example.prompt, s.eval_max_new_tokens)
                running[future] = (role, example.index)

        submit()
        while running:
            done, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in done:
                role, index = running.pop(future)
                got.append((role, index, future.result()))
            submit()
    return got
