"""Ingest: a dataset blob lands in the drop container → validated → REJECTED or SUBMITTED.

One streaming pass per file validates, hashes, splits and writes the prepared JSONL (as staged
blocks, committed only when the dataset is accepted). The run id comes from the content hash, so
re-delivered events, concurrent deliveries and re-uploads of the same bytes all meet on one run
record (created with a conditional write) and one Azure ML job (named from the run id).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING, Any, Literal, Protocol

from shared.chat_templates import reserved_tokens
from shared.errors import DatasetError, TuneflowError
from shared.events import BlobCreated
from shared.runs import Run, RunState, RunStore, Transition, apply, now_iso, run_id_for
from shared.settings import Settings
from shared.storage import BlockWriter, SeekableBlob
from shared.validation import ValidationOptions, ValidationReport, detect_format, validate_dataset

if TYPE_CHECKING:
    from azure.storage.blob import BlobClient, BlobServiceClient

    from shared.azureml.submit import SubmittedJob
    from shared.drops import DropLedger

log = logging.getLogger(__name__)
MiB, KiB = 1024 * 1024, 1024
DEFAULT_MAX_SEQ_LENGTH = 4096  # the reference model's context (Phi-3-mini-4k)
Outcome = Literal["ignored", "waiting", "rejected", "submitted", "duplicate", "failed"]


class Submitter(Protocol):
    def submit(self, run: Run) -> SubmittedJob: ...


@dataclass(frozen=True)
class IngestResult:
    outcome: Outcome
    reason: str
    run: Run | None = None


@dataclass(frozen=True)
class BlobSource:
    """A dataset file in Blob Storage, opened as a stream pinned to the ETag it was sized at."""

    name: str
    fmt: Literal["jsonl", "json", "parquet"]
    blob: BlobClient
    size: int
    etag: str

    def open(self) -> IO[bytes]:
        # Ranged reads: Parquet reads its footer first, and a known size lets the validator
        # refuse an oversized file without downloading it.
        return io.BufferedReader(SeekableBlob(self.blob, self.size, self.etag), 1024 * 1024)


def validation_options(settings: Settings) -> ValidationOptions:
    max_seq = int(settings.finetune_params.get("max_seq_length", -1) or -1)
    return ValidationOptions(
        max_file_bytes=settings.max_file_mb * MiB,
        max_line_bytes=settings.max_line_kb * KiB,
        max_seq_length=max_seq if max_seq > 0 else DEFAULT_MAX_SEQ_LENGTH,
        reserved_tokens=reserved_tokens(settings.base_model, settings.reserved_tokens),
        min_examples=settings.min_examples,
        policy=settings.validation_policy,
        max_drop_fraction=settings.max_drop_fraction,
        max_examples_per_code=settings.report_examples,
        test_fraction=settings.test_fraction,
    )


def finetune_fingerprint(settings: Settings) -> dict[str, Any]:
    """What besides content and base model decides a run's outcome (part of the run id)."""
    return {
        "params": dict(settings.finetune_params),
        "pipeline": f"{settings.registry}/{settings.pipeline_component}@{settings.pipeline_version}",
        "test_fraction": settings.test_fraction,
        "policy": settings.validation_policy,
    }


class Ingestor:
    def __init__(
        self,
        settings: Settings,
        blobs: BlobServiceClient,
        runs: RunStore,
        submitter: Submitter,
        *,
        new_attempt: Callable[[], str] = lambda: uuid.uuid4().hex[:12],
        ledger: DropLedger | None = None,
    ) -> None:
        self._s = settings
        self._blobs = blobs
        self._runs = runs
        self._submitter = submitter
        self._new_attempt = new_attempt
        self._ledger = ledger

    def handle(self, event: BlobCreated) -> IngestResult:
        """One BlobCreated to an outcome; noted in the drop ledger unless it raised (then it is retried)."""
        result = self._handle(event)
        if self._ledger is not None and event.container == self._s.drop_container:
            self._ledger.note(event.blob_name, event.etag, result.outcome)
        return result

    def sweep(self) -> int:
        """Ingest dataset blobs whose event never came (see ``shared.drops``)."""
        from datetime import timedelta

        from shared.drops import sweep

        s = self._s
        if self._ledger is None or s.sweep_after_minutes <= 0:
            return 0
        return sweep(self._blobs.get_container_client(s.drop_container), self._ledger, self.handle,
                     older_than=timedelta(minutes=s.sweep_after_minutes), limit=s.sweep_max)

    def _handle(self, event: BlobCreated) -> IngestResult:
        received = now_iso()
        s = self._s
        if event.container != s.drop_container:
            return self._ignore(event, f"container {event.container!r} is not the drop container")
        if not event.creates_content:
            return self._ignore(event, f"api {event.api} does not create blob content")
        if detect_format(event.blob_name) is None:
            return self._ignore(event, "not a dataset file (expected .jsonl, .json or .parquet)")
        located = self._locate(event.blob_name)
        if isinstance(located, IngestResult):
            return located
        dataset, train_name, test_name = located
        try:
            train = self._source(train_name)
            test = self._source(test_name) if test_name else None
        except DatasetError as gone:
            return self._ignore(event, str(gone))
        return self._ingest(dataset, train, test, received)

    # -- locating the dataset ------------------------------------------------------------------
    def _locate(self, blob_name: str) -> tuple[str, str, str | None] | IngestResult:
        """A folder holding train.* and test.* is one dataset; any other file is a dataset alone."""
        folder, _, filename = blob_name.rpartition("/")
        if not folder or _stem(filename) not in ("train", "test"):
            return blob_name, blob_name, None
        container = self._blobs.get_container_client(self._s.drop_container)
        found: dict[str, str] = {}
        for blob in container.list_blobs(name_starts_with=folder + "/"):
            child = blob.name[len(folder) + 1 :]
            if "/" not in child and detect_format(child) and _stem(child) in ("train", "test"):
                found.setdefault(_stem(child), blob.name)
        if "train" not in found or "test" not in found:
            missing = "test" if "train" in found else "train"
            log.info("dataset folder %s/: waiting for its %s file", folder, missing)
            return IngestResult("waiting", f"folder {folder}/ has no {missing}.* file yet")
        return folder + "/", found["train"], found["test"]

    def _source(self, name: str) -> BlobSource:
        from azure.core.exceptions import ResourceNotFoundError

        blob = self._blobs.get_blob_client(self._s.drop_container, name)
        try:
            props = blob.get_blob_properties()
        except ResourceNotFoundError:
            raise DatasetError(f"blob {name} was deleted before it could be read", blob=name) from None
        fmt = detect_format(name)
        assert fmt is not None
        return BlobSource(name, fmt, blob, int(props.size), str(props.etag))

    # -- the pass --------------------------------------------------------------------------------
    def _ingest(self, dataset: str, train: BlobSource, test: BlobSource | None, received: str) -> IngestResult:
        from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError

        s = self._s
        started = now_iso()
        output = self._blobs.get_container_client(s.output_container)
        attempt = self._new_attempt()
        paths = {split: f"prepared/{attempt}/{split}.jsonl" for split in ("train", "test")}
        writers = {split: BlockWriter(output.get_blob_client(path)) for split, path in paths.items()}

        def sink(split: Literal["train", "test"], row: bytes) -> None:
            writers[split].write(row + b"\n")

        try:
            report = validate_dataset(train, test, validation_options(s), sink)
        except (ResourceNotFoundError, ResourceModifiedError):
            # Gone or replaced mid-read: the replacement has its own event; nothing to record.
            return IngestResult("ignored", f"dataset {dataset} changed or vanished while being read")
        content_sha = _content_sha(report, [train] + ([test] if test else []))
        run_id = run_id_for(content_sha, s.base_model, finetune_fingerprint(s))
        report_path = f"reports/{run_id}.json"
        output.upload_blob(report_path, report.to_json(), overwrite=True)
        output.upload_blob(f"reports/{run_id}.txt", report.summary().encode(), overwrite=True)

        run = Run(
            run_id=run_id,
            state=RunState.RECEIVED,
            dataset=f"{s.drop_container}/{dataset}",
            sources=[train.name] + ([test.name] if test else []),
            base_model=s.base_model,
            history=[Transition(RunState.RECEIVED, received)],
            sha256=content_sha,
            report_path=report_path,
            summary=report.summary().splitlines()[0] if report.summary() else None,
        )
        apply(run, RunState.VALIDATING)
        run.history[-1].at = started
        if not report.valid:
            apply(run, RunState.REJECTED, note=run.summary, last_error=run.summary)
            stored, created = self._runs.create(run)
            log.info("run %s: dataset %s rejected: %s", run_id, dataset, run.summary)
            return IngestResult("rejected" if created else "duplicate", run.summary or "invalid", stored)

        for writer in writers.values():
            writer.commit()
        run.train_path, run.test_path = paths["train"], paths["test"]
        stored, created = self._runs.create(run)
        if not created:
            self._discard(output, paths)  # the run already has its own prepared copy
            if stored.state != RunState.VALIDATING:
                return IngestResult("duplicate", f"run {run_id} is already {stored.state}", stored)
            log.info("run %s: resuming an unfinished submission", run_id)
        return self.resume(stored)

    def resume(self, run: Run) -> IngestResult:
        """Submit a validated run (first time, or again after an interrupted attempt)."""
        current = self._runs.get(run.run_id)
        if current is not None and current.state == RunState.CANCELED:  # canceled before it was submitted
            return IngestResult("duplicate", f"run {run.run_id} was canceled", current)
        try:
            job = self._submitter.submit(run)
        except TuneflowError as exc:
            if exc.transient:
                raise  # the run stays VALIDATING; the redelivered event resumes here
            failed = self._runs.advance(run.run_id, RunState.FAILED, note=str(exc), last_error=str(exc))
            log.error("run %s: submission refused: %s", run.run_id, exc)
            return IngestResult("failed", str(exc), failed)
        submitted = self._runs.advance(
            run.run_id, RunState.SUBMITTED, job_name=job.name, studio_url=job.studio_url
        )
        return IngestResult("submitted", f"job {job.name}", submitted)

    def _discard(self, output: Any, paths: dict[str, str]) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        for path in paths.values():
            with contextlib.suppress(ResourceNotFoundError):
                output.delete_blob(path)

    def _ignore(self, event: BlobCreated, reason: str) -> IngestResult:
        log.info("ignoring %s/%s (event %s): %s", event.container, event.blob_name, event.event_id, reason)
        return IngestResult("ignored", reason)


def _stem(filename: str) -> str:
    return filename.rsplit(".", 1)[0].lower()


def _content_sha(report: ValidationReport, sources: list[BlobSource]) -> str:
    """One digest over every file of the dataset (train, then test when dropped).

    A file the validator did not read to the end (refused as too large, unreadable) has no content
    digest; its blob identity (name, ETag, size) stands in, so distinct refused uploads stay distinct.
    """
    digests = []
    for stats, source in zip(report.files.values(), sources, strict=False):
        if stats.complete and stats.sha256:
            digests.append(stats.sha256)
        else:
            identity = f"blob:{source.name}@{source.etag}:{source.size}"
            digests.append(hashlib.sha256(identity.encode()).hexdigest())
    return digests[0] if len(digests) == 1 else hashlib.sha256("".join(digests).encode()).hexdigest()
