"""Pipeline jobs, run for real: one training process at a time, child step runs, logs, metrics, events.

A job built on ``chat_completion_pipeline`` runs its five steps as: validation (inputs and files),
model import (base model weights), preprocess (download the ``uri_file`` inputs from Azurite), finetune
(``python -m emulator.training``), model converter (check the MLflow folder and upload it to the default
datastore). The parent and every step move NotStarted → Running → Completed / Failed / Canceled and
publish RunStatusChanged (and RunCompleted) events. Jobs queue (status Queued) while another trains.
State persists; a job that was running when the emulator stopped starts again after a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from emulator import arm, pipeline_component
from emulator.procutil import child_preexec, reap, stop_group

if TYPE_CHECKING:
    from emulator.core import Emulator

log = logging.getLogger("emulator.jobs")

NOT_STARTED = "NotStarted"
QUEUED = "Queued"
RUNNING = "Running"
COMPLETED = "Completed"
FAILED = "Failed"
CANCELED = "Canceled"
CANCEL_REQUESTED = "CancelRequested"
TERMINAL = {COMPLETED, FAILED, CANCELED}
RUN_STATUS_CHANGED = "Microsoft.MachineLearningServices.RunStatusChanged"
RUN_COMPLETED = "Microsoft.MachineLearningServices.RunCompleted"
STAGE_PREFIX = re.compile(r"^\[([a-z_]+)\]")
# The trainer's stages → the pipeline's steps ("evaluate" runs inside the fine-tune step on Azure).
TRAINER_STAGES = {
    "validation": "validation",
    "model_import": "model_import",
    "preprocess": "preprocess",
    "finetune": "finetune",
    "evaluate": "finetune",
    "model_converter": "model_converter",
}


class JobFailure(Exception):
    """A step failed; the message becomes the run's error."""

    def __init__(self, message: str, code: str = "UserError", step: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.step = step


class JobCanceled(Exception):
    pass


class JobRunner:
    def __init__(self, emu: Emulator) -> None:
        self.emu = emu
        self.jobs = emu.store["jobs"]
        self.experiments = emu.store["experiments"]
        self._queue: asyncio.Queue[str] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._current: str | None = None
        self._cancel: set[str] = set()
        self._stopping = False

    # ---------------------------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        unfinished = sorted(
            (d for d in self.jobs.values() if d.get("kind") == "pipeline" and d["status"] not in TERMINAL),
            key=lambda d: d.get("seq", 0),
        )
        for doc in unfinished:
            reap(doc.get("train_pid"), "--metrics")  # a trainer left behind by a crash
            if doc["status"] == CANCEL_REQUESTED:
                self._finish_canceled(doc["name"])
                continue
            if doc["status"] != NOT_STARTED:
                self._log(doc["name"], "Emulator restarted: the job starts again from the beginning.")
                self._reset_children(doc["name"])
            self._queue.put_nowait(doc["name"])
        self._worker = asyncio.get_running_loop().create_task(self._run_forever(), name="job-runner")

    async def stop(self) -> None:
        self._stopping = True
        await self._kill_process()
        if self._worker:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._worker

    # ---------------------------------------------------------------------------------- paths

    def job_dir(self, name: str) -> Path:
        return self.emu.cfg.data_dir / "jobs" / name

    def log_path(self, name: str) -> Path:
        return self.job_dir(name) / "logs" / "executionlogs.txt"

    def step_log_path(self, run_id: str) -> Path:
        return self.emu.cfg.data_dir / "runs" / run_id / "std_log.txt"

    def output_dir(self, name: str) -> Path:
        return self.job_dir(name) / "outputs" / "mlflow_model_folder"

    def metrics_path(self, name: str) -> Path:
        return self.job_dir(name) / "metrics.jsonl"

    # ---------------------------------------------------------------------------------- submission

    def experiment_id(self, experiment: str) -> str:
        doc = self.experiments.get(experiment)
        if doc is None:
            doc = self.experiments.put(experiment, {"name": experiment, "id": str(uuid.uuid4()), "created": arm.iso()})
        return str(doc["id"])

    def submit(self, name: str, properties: dict[str, Any], plan: dict[str, Any]) -> dict[str, Any]:
        now = arm.iso()
        experiment = properties.get("experimentName") or "Default"
        seq = 1 + max((d.get("seq", 0) for d in self.jobs.values()), default=0)
        children = [
            {
                "run_id": str(uuid.uuid4()),
                "node": node,
                "step": step,
                "status": NOT_STARTED,
            }
            for node, step, _ in pipeline_component.STEPS
        ]
        doc = {
            "name": name,
            "kind": "pipeline",
            "seq": seq,
            "created": now,
            "modified": now,
            "properties": properties,
            "experiment": experiment,
            "experiment_id": self.experiment_id(experiment),
            "plan": plan,
            "status": NOT_STARTED,
            "start_time": None,
            "end_time": None,
            "error": None,
            "children": children,
            "metrics": {},
        }
        self.jobs.put(name, doc)
        for child in children:
            self.jobs.put(
                child["run_id"],
                {
                    "name": child["run_id"],
                    "kind": "step",
                    "parent": name,
                    "node": child["node"],
                    "step": child["step"],
                    "created": now,
                    "status": NOT_STARTED,
                    "experiment": experiment,
                    "experiment_id": doc["experiment_id"],
                },
            )
        self.job_dir(name).mkdir(parents=True, exist_ok=True)
        self._log(name, f"Submitted pipeline job {name} (experiment {experiment}).")
        self._emit(doc, NOT_STARTED)
        for child in children:
            self._emit_child(doc, child, NOT_STARTED)
        if self._current is not None or not self._queue.empty():
            self._set_status(name, QUEUED)
        self._queue.put_nowait(name)
        return doc

    def request_cancel(self, name: str) -> dict[str, Any] | None:
        doc = self.jobs.get(name)
        if doc is None:
            return None
        if doc["status"] in TERMINAL:
            return doc
        if self._current == name:
            self._cancel.add(name)
            self._set_status(name, CANCEL_REQUESTED)
            loop = self.emu.loop
            if loop is not None:
                loop.create_task(self._kill_process())
        else:
            self._finish_canceled(name)
        return self.jobs.get(name)

    # ---------------------------------------------------------------------------------- status

    def _set_status(self, name: str, status: str, **extra: Any) -> dict[str, Any]:
        doc = dict(self.jobs.get(name) or {})
        if doc.get("status") == status and not extra:
            return doc
        doc.update(extra)
        doc["status"] = status
        doc["modified"] = arm.iso()
        if status == RUNNING and not doc.get("start_time"):
            doc["start_time"] = doc["modified"]
        if status in TERMINAL:
            doc["end_time"] = doc["modified"]
        self.jobs.put(name, doc)
        if doc.get("kind") == "pipeline" and status != CANCEL_REQUESTED:
            self._emit(doc, status)
            self._log(name, f"Run {name} status: {status}")
        return doc

    def _set_child(self, name: str, step: str, status: str, error: dict[str, Any] | None = None) -> None:
        doc = dict(self.jobs.get(name) or {})
        now = arm.iso()
        for child in doc["children"]:
            if child["step"] != step or child["status"] == status:
                continue
            child["status"] = status
            if status == RUNNING:
                child["start_time"] = now
            if status in TERMINAL:
                child["end_time"] = now
            if error:
                child["error"] = error
            self.jobs.put(name, doc)
            step_doc = dict(self.jobs.get(child["run_id"]) or {})
            step_doc.update({"status": status, "modified": now})
            if status == RUNNING:
                step_doc["start_time"] = now
            if status in TERMINAL:
                step_doc["end_time"] = now
            if error:
                step_doc["error"] = error
            self.jobs.put(child["run_id"], step_doc)
            self._emit_child(doc, child, status)
            self._log(name, f"Step {child['node']} ({child['run_id']}) status: {status}")
            self._step_log(child["run_id"], f"Status: {status}")

    def _reset_children(self, name: str) -> None:
        doc = dict(self.jobs.get(name) or {})
        for child in doc.get("children", []):
            child["status"] = NOT_STARTED
            child.pop("error", None)
            step_doc = self.jobs.get(child["run_id"])
            if step_doc:
                self.jobs.put(child["run_id"], {**step_doc, "status": NOT_STARTED, "error": None})
        doc["status"] = QUEUED
        self.jobs.put(name, doc)

    def _finish_canceled(self, name: str) -> None:
        doc = self.jobs.get(name)
        if doc is None:
            return
        for child in doc["children"]:
            if child["status"] not in TERMINAL:
                self._set_child(name, child["step"], CANCELED)
        self._set_status(name, CANCELED)

    # ---------------------------------------------------------------------------------- events and logs

    def _emit(self, doc: dict[str, Any], status: str) -> None:
        props = doc["properties"]
        data = {
            "experimentId": doc["experiment_id"],
            "experimentName": doc["experiment"],
            "runId": doc["name"],
            "runType": "azureml.PipelineRun",
            "runTags": dict(props.get("tags") or {}),
            "runProperties": {
                **{k: str(v) for k, v in (props.get("properties") or {}).items()},
                "azureml.runsource": "azureml.PipelineRun",
                "runSource": "MFE",
                "runType": "HTTP",
            },
            "runStatus": status,
        }
        self._publish(doc, doc["name"], data, status)

    def _emit_child(self, doc: dict[str, Any], child: dict[str, Any], status: str) -> None:
        data = {
            "experimentId": doc["experiment_id"],
            "experimentName": doc["experiment"],
            "runId": child["run_id"],
            "runType": "azureml.StepRun",
            "runTags": {"azureml.nodeid": child["node"], "azureml.pipeline": doc["name"]},
            "runProperties": {
                "azureml.nodeid": child["node"],
                "azureml.pipelinerunid": doc["name"],
                "azureml.pipeline": doc["name"],
                "azureml.parentrunid": doc["name"],
                "azureml.runsource": "azureml.StepRun",
                "StepType": "CommandStep",
            },
            "runStatus": status,
        }
        self._publish(doc, child["run_id"], data, status)

    def _publish(self, doc: dict[str, Any], run_id: str, data: dict[str, Any], status: str) -> None:
        subject = f"experiments/{doc['experiment_id']}/runs/{run_id}"
        topic = self.emu.ws_id
        events = self.emu.events
        events.publish(events.system_event(topic, RUN_STATUS_CHANGED, subject, data))
        if status == COMPLETED:
            completed = {k: v for k, v in data.items() if k != "runStatus"}
            events.publish(events.system_event(topic, RUN_COMPLETED, subject, completed))

    def _log(self, name: str, line: str) -> None:
        path = self.log_path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as fh:
            fh.write(f"[{arm.iso()}] {line}\n")

    def _step_log(self, run_id: str, line: str) -> None:
        path = self.step_log_path(run_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as fh:
            fh.write(line.rstrip("\n") + "\n")

    # ---------------------------------------------------------------------------------- execution

    async def _run_forever(self) -> None:
        while True:
            name = await self._queue.get()
            doc = self.jobs.get(name)
            if doc is None or doc["status"] in TERMINAL:
                continue
            self._current = name
            try:
                await self._run(name)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("job %s crashed the runner", name)
                with contextlib.suppress(Exception):
                    self._fail(name, "InternalError", "The emulator failed while running the job.")
            finally:
                self._current = None
                self._cancel.discard(name)

    def _check_cancel(self, name: str) -> None:
        if name in self._cancel:
            raise JobCanceled()

    def _fail(self, name: str, code: str, message: str, step: str | None = None) -> None:
        """The failing step (and any other running one) fails; steps not reached are canceled."""
        error = {"code": code, "message": message}
        doc = self.jobs.get(name)
        if doc is None:
            return
        for child in doc["children"]:
            if child["step"] == step and child["status"] not in TERMINAL:
                if child["status"] != RUNNING:
                    self._set_child(name, child["step"], RUNNING)
                self._set_child(name, child["step"], FAILED, error)
            elif child["status"] == RUNNING:
                self._set_child(name, child["step"], FAILED, error)
        doc = self.jobs.get(name) or doc
        for child in doc["children"]:
            if child["status"] not in TERMINAL:
                self._set_child(name, child["step"], CANCELED)
        self._log(name, f"Error: {message}")
        self._set_status(name, FAILED, error=error)

    async def _run(self, name: str) -> None:
        """Prepare (the validation step: inputs, files, base model), then train; stages drive the steps."""
        doc = self.jobs.get(name)
        assert doc is not None
        self._set_status(name, RUNNING)
        work = self.emu.work_dir / name
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True, exist_ok=True)
        try:
            plan = doc["plan"]
            self._set_child(name, "validation", RUNNING)
            forced = self.emu.faults.take_job_failure(name)
            await self._validate_plan(plan)
            files = await self._download_inputs(plan, work)
            self._check_cancel(name)
            self._step_log(self._run_id(name, "validation"), "Resolving the base model's weights")
            base_model = await self._import_model(plan)
            self._step_log(self._run_id(name, "validation"), f"Base model weights: {base_model}")
            self._check_cancel(name)
            if forced is not None:
                for step in ("validation", "model_import", "preprocess"):
                    self._advance(name, step, COMPLETED)
                raise JobFailure(forced, step="finetune")
            out = self.output_dir(name)
            shutil.rmtree(out, ignore_errors=True)
            await self._train(name, base_model=base_model, files=files, plan=plan, work=work, out=out)
            self._check_cancel(name)
            self._advance(name, "model_converter", RUNNING)
            try:
                await self._publish_output(name, out)
            except Exception as exc:
                raise JobFailure(f"Uploading the model output failed: {exc}", step="model_converter") from None
            self._advance(name, "model_converter", COMPLETED)
            self._set_status(name, COMPLETED)
        except JobCanceled:
            if self._stopping:
                return  # shutting down: the job stays Running and restarts with the emulator
            self._finish_canceled(name)
        except JobFailure as exc:
            if self._stopping:
                return
            self._fail(name, exc.code, str(exc), exc.step or self._running_step(name) or "validation")
        finally:
            if not self._stopping:
                shutil.rmtree(work, ignore_errors=True)

    def _running_step(self, name: str) -> str | None:
        for child in (self.jobs.get(name) or {}).get("children", []):
            if child["status"] == RUNNING:
                return str(child["step"])
        return None

    def _advance(self, name: str, step: str, status: str) -> None:
        """Move ``step`` to ``status``; the steps before it that are still open complete first."""
        order = [s for _, s, _ in pipeline_component.STEPS]
        doc = self.jobs.get(name) or {}
        states = {c["step"]: c["status"] for c in doc.get("children", [])}
        for earlier in order[: order.index(step)]:
            if states.get(earlier) not in TERMINAL:
                if states.get(earlier) != RUNNING:
                    self._set_child(name, earlier, RUNNING)
                self._set_child(name, earlier, COMPLETED)
        if states.get(step) not in TERMINAL and states.get(step) != status:
            if status in TERMINAL and states.get(step) != RUNNING:
                self._set_child(name, step, RUNNING)
            self._set_child(name, step, status)

    def _run_id(self, name: str, step: str) -> str:
        doc = self.jobs.get(name) or {}
        for child in doc.get("children", []):
            if child["step"] == step:
                return str(child["run_id"])
        return ""

    async def _validate_plan(self, plan: dict[str, Any]) -> None:
        problems = pipeline_component.validate_inputs(plan["literals"])
        if problems:
            raise JobFailure("Invalid pipeline inputs: " + "; ".join(problems))
        for key in ("train",):
            if key not in plan["files"]:
                raise JobFailure("train_file_path is required: the emulator trains from uri_file inputs")

    async def _import_model(self, plan: dict[str, Any]) -> Path:
        uri = plan.get("model")
        if not uri:
            raise JobFailure("mlflow_model_path (or pytorch_model_path) is required")
        try:
            return await asyncio.to_thread(self.emu.resolve_model_dir, uri)
        except (LookupError, RuntimeError, OSError) as exc:
            raise JobFailure(f"Model import failed: {exc}") from None

    async def _download_inputs(self, plan: dict[str, Any], work: Path) -> dict[str, Path]:
        files: dict[str, Path] = {}
        for key, uri in plan["files"].items():
            dest = work / "inputs" / key / (uri.rstrip("/").rsplit("/", 1)[-1] or f"{key}.jsonl")
            try:
                await asyncio.to_thread(self.emu.download_uri, uri, dest)
            except (FileNotFoundError, LookupError, ValueError) as exc:
                raise JobFailure(f"Input {key}_file_path could not be read: {exc}") from None
            files[key] = dest
        return files

    async def _train(
        self, name: str, *, base_model: Path, files: dict[str, Path], plan: dict[str, Any], work: Path, out: Path
    ) -> None:
        """Run the trainer; its stage events (metrics file) move the child steps, its stdout is their log."""
        params_path = work / "params.json"
        params_path.write_text(json.dumps(plan["params"], indent=1))
        metrics = self.metrics_path(name)
        metrics.unlink(missing_ok=True)
        test = files.get("test") or files.get("validation") or files["train"]
        cmd = [
            *self.emu.cfg.trainer_command,
            "--base-model", str(base_model),
            "--train", str(files["train"]),
            "--test", str(test),
            "--params", str(params_path),
            "--output", str(out),
            "--metrics", str(metrics),
        ]
        self._step_log(self._run_id(name, "validation"), "Command: " + " ".join(cmd))
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        proc = await asyncio.create_subprocess_exec(
            *cmd,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
            preexec_fn=child_preexec(),
        )
        self._proc = proc
        if name in self._cancel:  # cancelled after the last check but before there was a process to stop
            await stop_group(proc)
        self.jobs.put(name, {**(self.jobs.get(name) or {}), "train_pid": proc.pid})
        stderr_tail: list[str] = []
        failed_stage: list[str] = []
        offset = 0

        def follow_stages() -> None:
            nonlocal offset
            try:
                with metrics.open("rb") as fh:
                    fh.seek(offset)
                    chunk = fh.read()
            except FileNotFoundError:
                return
            complete = chunk[: chunk.rfind(b"\n") + 1]
            offset += len(complete)
            for line in complete.splitlines():
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if not isinstance(event, dict) or "stage" not in event:
                    continue
                step = TRAINER_STAGES.get(str(event["stage"]))
                status = str(event.get("status"))
                if step is None:
                    continue
                if status == "Running":
                    self._advance(name, step, RUNNING)
                elif status == "Completed" and step not in ("finetune", "model_converter"):
                    self._advance(name, step, COMPLETED)
                elif status == "Failed":
                    failed_stage.append(step)

        async def pump_stdout() -> None:
            assert proc.stdout is not None
            async for raw in proc.stdout:
                line = raw.decode("utf-8", "replace").rstrip()
                # The trainer prefixes its lines with "[<stage>]": that step's log gets the line.
                tagged = STAGE_PREFIX.match(line)
                step = TRAINER_STAGES.get(tagged.group(1)) if tagged else None
                self._step_log(self._run_id(name, step or self._running_step(name) or "validation"), line)
                self._log(name, f"[trainer] {line}")

        async def pump_stderr() -> None:
            assert proc.stderr is not None
            async for raw in proc.stderr:
                line = raw.decode("utf-8", "replace").rstrip()
                if line:
                    stderr_tail.append(line)
                    del stderr_tail[:-50]
                    self._step_log(self._run_id(name, self._running_step(name) or "validation"), line)

        async def poll_stages() -> None:
            ticks = 0
            while proc.returncode is None:
                follow_stages()
                ticks += 1
                if ticks % 4 == 0:  # every second: the job's metrics grow while it trains, as Azure ML's do
                    self._record_metrics(name)
                await asyncio.sleep(0.25)

        poller = asyncio.get_running_loop().create_task(poll_stages())
        try:
            await asyncio.gather(pump_stdout(), pump_stderr())
            code = await proc.wait()
        finally:
            self._proc = None
            poller.cancel()
        follow_stages()
        self._record_metrics(name)
        self._check_cancel(name)
        if self._stopping:
            raise JobCanceled()
        if code != 0:
            message = stderr_tail[-1] if stderr_tail else f"training exited with code {code}"
            step = failed_stage[-1] if failed_stage else (self._running_step(name) or "finetune")
            raise JobFailure(message, step=step)
        if not (out / "MLmodel").exists():
            raise JobFailure("training finished without writing an MLflow model (no MLmodel file)", step="finetune")
        self._advance(name, "finetune", COMPLETED)

    def _record_metrics(self, name: str) -> None:
        """Train-loss history, eval-loss history and the final summary from the trainer's metrics file."""
        path = self.metrics_path(name)
        if not path.exists():
            return
        train: list[dict[str, Any]] = []
        evals: list[dict[str, Any]] = []
        summary: dict[str, Any] = {}
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if not isinstance(row, dict) or "stage" in row:
                continue
            if "step" in row:
                if "train_loss" in row:
                    train.append({k: row[k] for k in ("step", "train_loss", "learning_rate", "epoch", "time")
                                  if k in row})
                if "eval_loss" in row:
                    evals.append({k: row[k] for k in ("step", "eval_loss", "epoch", "time") if k in row})
                continue
            summary.update({k: v for k, v in row.items() if isinstance(v, int | float) and not isinstance(v, bool)})
        metrics: dict[str, Any] = {"train_loss_history": train, "eval_loss_history": evals}
        if train:
            metrics["train_loss"] = train[-1]["train_loss"]
        metrics.update(summary)
        doc = dict(self.jobs.get(name) or {})
        doc["metrics"] = metrics
        self.jobs.put(name, doc)
        run_id = self._run_id(name, "finetune")
        step_doc = self.jobs.get(run_id)
        if step_doc:
            self.jobs.put(run_id, {**step_doc, "metrics": metrics})

    async def _publish_output(self, name: str, out: Path) -> None:
        doc = self.jobs.get(name) or {}
        container, prefix = self.emu.resolve_datastore_uri(doc["plan"]["output_uri"])
        count = await asyncio.to_thread(self.emu.blobs.upload_dir, container, prefix, out)
        self._step_log(self._run_id(name, "model_converter"), f"Uploaded {count} files to {container}/{prefix}")

    async def _kill_process(self) -> None:
        proc = self._proc
        if proc is None or proc.returncode is not None:
            return
        await stop_group(proc)
