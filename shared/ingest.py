"""Ingest: a dataset lands in the drop container → validated → REJECTED or SUBMITTED.

A file at the top of the drop container is a dataset alone (its manifest, if any, in its blob metadata
``tuneflow_manifest``). A file in a folder is part of that folder's dataset, read once the folder has
settled (see ``shared.folders``): its ``tuneflow.json`` names the data and what the run wants, or, without
one, ``train.*``/``test.*`` are the dataset and any other file is a dataset alone.

A manifest is checked before any data is read — its keys, the guardrails, then against Azure (the model,
its allow lists, the component's inputs) — and one streaming pass per file validates, hashes, splits and
writes the prepared JSONL (staged blocks, committed only when the dataset is accepted). The run id comes
from the content hash and the effective configuration, so re-delivered events, concurrent deliveries and
re-uploads of the same bytes with the same manifest all meet on one run record (created with a
conditional write) and one Azure ML job (named from the run id).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal, Protocol

import orjson

from shared.chat_templates import reserved_tokens
from shared.errors import DatasetError, ManifestError, TuneflowError
from shared.events import BlobCreated
from shared.folders import FolderState, SettledFolders, read_folder
from shared.manifest import MANIFEST_NAME, METADATA_KEY, Manifest, guardrail_problems, parse_manifest, run_config
from shared.manifest import settings_for as run_settings
from shared.runs import Run, RunState, RunStore, Transition, apply, now_iso, run_id_for
from shared.settings import Settings
from shared.storage import BlockWriter, SeekableBlob
from shared.validation import ValidationOptions, ValidationReport, detect_format, validate_dataset

if TYPE_CHECKING:
    from azure.storage.blob import BlobClient, BlobServiceClient

    from shared.azureml.submit import SubmittedJob
    from shared.drops import DropLedger
    from shared.queue import JsonQueue

log = logging.getLogger(__name__)
MiB, KiB = 1024 * 1024, 1024
DEFAULT_MAX_SEQ_LENGTH = 4096  # the reference model's context (Phi-3-mini-4k)
Outcome = Literal["ignored", "waiting", "rejected", "submitted", "duplicate", "failed"]


class Submitter(Protocol):
    def submit(self, run: Run) -> SubmittedJob: ...

    def check(self, settings: Settings, manifest: Manifest) -> list[str]:
        """What Azure says about the manifest's choices (model, allow lists, parameters), as key-path problems."""
        ...


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
    metadata: dict[str, str] = field(default_factory=dict)

    def open(self) -> IO[bytes]:
        # Ranged reads: Parquet reads its footer first, and a known size lets the validator
        # refuse an oversized file without downloading it.
        return io.BufferedReader(SeekableBlob(self.blob, self.size, self.etag), 1024 * 1024)


def validation_options(settings: Settings, finetune: Mapping[str, Any] | None = None) -> ValidationOptions:
    params = {**settings.finetune_params, **(finetune or {})}
    try:
        max_seq = int(params.get("max_seq_length", -1) or -1)
    except (TypeError, ValueError):  # refused with its key path by the component check
        max_seq = -1
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


def run_identity(config: dict[str, Any], manifest: Manifest | None) -> dict[str, Any]:
    """What besides content decides a run (part of the run id): its configuration and what the manifest adds."""
    m = manifest or Manifest()
    return {"config": config, "tags": dict(m.tags), "notify_url": m.notify_url, "deploy": m.deploy,
            "source": m.source.fingerprint() if m.source else None}


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
        settled: SettledFolders | None = None,
        work: JsonQueue | None = None,
        check_url: Callable[[str], str | None] | None = None,
    ) -> None:
        """``work``: the queue that carries settle and source messages (without it, folders are read at
        once); ``check_url``: the SSRF guard for a manifest's ``notify_url`` (a problem, or None)."""
        self._s = settings
        self._blobs = blobs
        self._runs = runs
        self._submitter = submitter
        self._new_attempt = new_attempt
        self._ledger = ledger
        self._settled = settled
        self._work = work
        self._check_url = check_url

    def handle(self, event: BlobCreated) -> IngestResult:
        """One BlobCreated to an outcome; noted in the drop ledger unless it raised (then it is retried)."""
        result = self._handle(event)
        # A folder file waiting for its settle message is noted when the folder is read (``settle``): if
        # that message is lost, the reconciler's sweep finds the file un-noted and schedules it again.
        if self._ledger is not None and event.container == self._s.drop_container and result.outcome != "waiting":
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
        s = self._s
        if event.container != s.drop_container:
            return self._ignore(event, f"container {event.container!r} is not the drop container")
        if not event.creates_content:
            return self._ignore(event, f"api {event.api} does not create blob content")
        folder, _, filename = event.blob_name.rpartition("/")
        if filename == MANIFEST_NAME and not folder:
            return self._ignore(event, f"a {MANIFEST_NAME} belongs in a dataset folder, beside the data it names")
        if detect_format(filename) is None and filename != MANIFEST_NAME:
            return self._ignore(event, "not a dataset file (expected .jsonl, .json or .parquet)")
        if folder:
            return self.schedule(folder + "/")
        return self._single(event.blob_name, now_iso())

    # -- folders: settle, then read as a whole -------------------------------------------------
    def schedule(self, folder: str, delay_s: float | None = None) -> IngestResult:
        """Read ``folder`` once it has settled: later (a delayed work message), or now without a queue."""
        wait = self._s.settle_seconds if delay_s is None else delay_s
        if wait <= 0 or self._work is None:
            return self.settle(folder)
        self._work.send_json({"kind": "settle", "folder": folder}, wait)
        return IngestResult("waiting", f"folder {folder} is read once its files are quiet for {wait:g} s")

    def settle(self, folder: str) -> IngestResult:
        """A settle message: ingest the folder if its files have been quiet long enough, else wait again."""
        from datetime import UTC, datetime

        received = now_iso()
        state = read_folder(self._blobs.get_container_client(self._s.drop_container), folder)
        if not state.files:
            return IngestResult("ignored", f"folder {folder} is empty")
        quiet = (datetime.now(UTC) - state.newest).total_seconds()
        window = self._s.settle_seconds
        if self._work is not None and quiet < window:
            return self.schedule(folder, window - quiet + 0.5)
        if self._settled is not None and self._settled.done(state):
            if self._ledger is not None:  # a sweep's re-schedule: the files are accounted for now
                for file in state.files.values():
                    self._ledger.note(file.name, file.etag, "duplicate")
            return IngestResult("duplicate", f"folder {folder} was already read as it is now")
        result = self._folder(state, received)
        if self._settled is not None:
            self._settled.mark(state, result.outcome)
        if self._ledger is not None:
            for file in state.files.values():
                self._ledger.note(file.name, file.etag, result.outcome)
        return result

    def _folder(self, state: FolderState, received: str) -> IngestResult:
        folder, files = state.folder, state.files
        if MANIFEST_NAME in files:
            return self._manifest_folder(state, received)
        stems = _by_stem(files)
        results = []
        if "train" in stems or "test" in stems:
            if "train" not in stems or "test" not in stems:
                missing = "test" if "train" in stems else "train"
                log.info("dataset folder %s: waiting for its %s file", folder, missing)
                results.append(IngestResult("waiting", f"folder {folder} has no {missing}.* file yet"))
            else:
                try:
                    train, test = self._source(folder + stems["train"]), self._source(folder + stems["test"])
                except DatasetError as gone:
                    return IngestResult("ignored", str(gone))
                results.append(self._ingest(folder, train, test, received))
        paired = set(stems.values())
        for name in sorted(files):  # any other dataset file in a folder without a manifest is a dataset alone
            if name not in paired and detect_format(name) is not None:
                results.append(self._single(folder + name, received))
        if len(results) == 1:
            return results[0]
        return IngestResult(_worst(results), "; ".join(f"{r.outcome}: {r.reason}" for r in results),
                            results[0].run if results else None)

    def _manifest_folder(self, state: FolderState, received: str) -> IngestResult:
        folder, files = state.folder, state.files
        where = f"{self._s.drop_container}/{folder}{MANIFEST_NAME}"
        try:
            manifest = parse_manifest(self._read_manifest(files[MANIFEST_NAME].name), where)
        except ManifestError as exc:
            return self._reject_manifest(folder, where, exc.problems, state.fingerprint, received)
        if manifest.source is not None:
            return self._prepare_later(folder)
        stems = _by_stem(files)
        train = manifest.train or stems.get("train")
        test = manifest.test if manifest.train else stems.get("test")
        if train is None:
            return IngestResult("waiting", f"{where} names no train file and the folder has no train.* file")
        missing = [name for name in (train, test) if name is not None and name not in files]
        if missing:
            log.info("dataset folder %s: waiting for %s", folder, ", ".join(missing))
            return IngestResult("waiting", f"folder {folder} has no {', '.join(missing)} yet ({where} names it)")
        try:
            train_source = self._source(folder + train)
            test_source = self._source(folder + test) if test else None
        except DatasetError as gone:
            return IngestResult("ignored", str(gone))
        return self._ingest(folder, train_source, test_source, received, manifest, where=where)

    def _read_manifest(self, name: str) -> bytes:
        from shared.manifest.schema import MAX_MANIFEST_BYTES

        blob = self._blobs.get_blob_client(self._s.drop_container, name)
        return bytes(blob.download_blob(offset=0, length=MAX_MANIFEST_BYTES + 1).readall())

    def _prepare_later(self, folder: str) -> IngestResult:
        if self._work is None:
            return self.prepare_source(folder)
        self._work.send_json({"kind": "source", "folder": folder})
        return IngestResult("waiting", f"folder {folder}: its source dataset is being prepared")

    def prepare_source(self, folder: str) -> IngestResult:
        """A source message: prepare the manifest's Hugging Face dataset as the run's files, then ingest them."""
        from shared.sources import SourceUnavailable, prepare

        received, s = now_iso(), self._s
        state = read_folder(self._blobs.get_container_client(s.drop_container), folder)
        where = f"{s.drop_container}/{folder}{MANIFEST_NAME}"
        if MANIFEST_NAME not in state.files:
            return IngestResult("ignored", f"{where} is gone")
        try:
            manifest = parse_manifest(self._read_manifest(state.files[MANIFEST_NAME].name), where)
        except ManifestError as exc:
            return self._reject_manifest(folder, where, exc.problems, state.fingerprint, received)
        if manifest.source is None:
            return IngestResult("ignored", f"{where} no longer names a source")
        problems = self._manifest_problems(run_settings(s, run_config(s, manifest)), manifest)
        if problems:  # before a row is downloaded
            return self._reject_manifest(folder, where, problems, state.fingerprint, received)
        output = self._blobs.get_container_client(s.output_container)
        base = f"sources/{state.fingerprint[:20]}"
        writers = {split: BlockWriter(output.get_blob_client(f"{base}/{split}.jsonl")) for split in ("train", "test")}
        mirror = Path(s.hub_mirror_dir) if s.hub_mirror_dir else None
        try:
            counts = prepare(manifest.source, lambda split, line: writers[split].write(line + b"\n"),
                             mirror_dir=mirror)
        except SourceUnavailable as exc:
            problem = str(exc) if str(exc).startswith("source") else f"source: {exc}"
            return self._reject_manifest(folder, where, [problem], state.fingerprint, received)
        for split, writer in writers.items():
            if counts.get(split):
                writer.commit()
        train = self._source(f"{base}/train.jsonl", s.output_container)
        test = self._source(f"{base}/test.jsonl", s.output_container) if counts.get("test") else None
        log.info("folder %s: prepared %s from %s", folder, counts, manifest.source.hub)
        return self._ingest(folder, train, test, received, manifest, where=where, checked=True)

    # -- single files ----------------------------------------------------------------------------
    def _single(self, name: str, received: str) -> IngestResult:
        try:
            source = self._source(name)
        except DatasetError as gone:
            return IngestResult("ignored", str(gone))
        raw = source.metadata.get(METADATA_KEY)
        if raw is None:
            return self._ingest(name, source, None, received)
        where = f"{self._s.drop_container}/{name} (metadata {METADATA_KEY})"
        try:
            manifest = parse_manifest(raw, where)
            named = [key for key in ("train", "test", "source") if key in manifest.keys]
            if named:
                raise ManifestError(where, [f"{key}: a single file's manifest cannot name other data (the file is "
                                            "the data); use a folder with tuneflow.json" for key in named])
        except ManifestError as exc:
            return self._reject_manifest(name, where, exc.problems, f"{source.name}@{source.etag}", received)
        return self._ingest(name, source, None, received, manifest, where=where)

    def _source(self, name: str, container: str | None = None) -> BlobSource:
        from azure.core.exceptions import ResourceNotFoundError

        blob = self._blobs.get_blob_client(container or self._s.drop_container, name)
        try:
            props = blob.get_blob_properties()
        except ResourceNotFoundError:
            raise DatasetError(f"blob {name} was deleted before it could be read", blob=name) from None
        fmt = detect_format(name)
        if fmt is None:
            raise DatasetError(f"{name} is not a .jsonl, .json or .parquet file", blob=name)
        return BlobSource(name, fmt, blob, int(props.size), str(props.etag), dict(props.metadata or {}))

    # -- manifests refused before any data is read ----------------------------------------------
    def _reject_manifest(self, dataset: str, where: str, problems: list[str], identity: str,
                         received: str) -> IngestResult:
        s = self._s
        digest = hashlib.sha256(f"manifest\0{where}\0{identity}".encode()).hexdigest()
        run_id = run_id_for(digest, {"manifest": where, "problems": problems})
        summary = f"manifest {where} refused: " + "; ".join(problems)
        output = self._blobs.get_container_client(s.output_container)
        report = {"valid": False, "manifest": where, "problems": problems}
        output.upload_blob(f"reports/{run_id}.json", orjson.dumps(report, option=orjson.OPT_INDENT_2), overwrite=True)
        output.upload_blob(f"reports/{run_id}.txt", (summary + "\n").encode(), overwrite=True)
        run = Run(run_id=run_id, state=RunState.RECEIVED, dataset=f"{s.drop_container}/{dataset}", sources=[],
                  base_model=s.base_model, history=[Transition(RunState.RECEIVED, received)],
                  report_path=f"reports/{run_id}.json", summary=summary[:500], manifest=where)
        apply(run, RunState.REJECTED, note=summary[:500], last_error=summary)
        stored, created = self._runs.create(run)
        log.info("run %s: %s", run_id, summary)
        return IngestResult("rejected" if created else "duplicate", summary, stored)

    def _manifest_problems(self, settings: Settings, manifest: Manifest) -> list[str]:
        """Guardrails first (no call needed), then what Azure and the SSRF guard say."""
        problems = guardrail_problems(manifest, self._s)
        if problems:
            return problems
        problems = list(self._submitter.check(settings, manifest))
        if manifest.notify_url and self._check_url is not None:
            refused = self._check_url(manifest.notify_url)
            if refused:
                problems.append(f"notify_url: {refused}")
        return problems

    # -- the pass --------------------------------------------------------------------------------
    def _ingest(self, dataset: str, train: BlobSource, test: BlobSource | None, received: str,
                manifest: Manifest | None = None, *, where: str | None = None,
                checked: bool = False) -> IngestResult:
        """``checked``: the manifest's problems were looked for already (a source, before its preparation)."""
        from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError

        config = run_config(self._s, manifest)
        s = run_settings(self._s, config)
        if manifest is not None and where is not None and not manifest.empty and not checked:
            problems = self._manifest_problems(s, manifest)
            if problems:
                identity = f"{train.name}@{train.etag}" + (f"+{test.name}@{test.etag}" if test else "")
                return self._reject_manifest(dataset, where, problems, identity, received)
        started = now_iso()
        output = self._blobs.get_container_client(s.output_container)
        attempt = self._new_attempt()
        paths = {split: f"prepared/{attempt}/{split}.jsonl" for split in ("train", "test")}
        writers = {split: BlockWriter(output.get_blob_client(path)) for split, path in paths.items()}

        def sink(split: Literal["train", "test"], row: bytes) -> None:
            writers[split].write(row + b"\n")

        try:
            report = validate_dataset(train, test, validation_options(s, manifest.finetune if manifest else None), sink)
        except (ResourceNotFoundError, ResourceModifiedError):
            # Gone or replaced mid-read: the replacement has its own event; nothing to record.
            return IngestResult("ignored", f"dataset {dataset} changed or vanished while being read")
        content_sha = _content_sha(report, [train] + ([test] if test else []))
        run_id = run_id_for(content_sha, run_identity(config, manifest))
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
            config=config,
            manifest=where,
            tags=dict(manifest.tags) if manifest else {},
            notify_url=manifest.notify_url if manifest else None,
            deploy=manifest.deploy if manifest else "auto",
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


def _by_stem(files: dict[str, Any]) -> dict[str, str]:
    """``train``/``test`` → the folder's dataset file of that stem (the first, by name)."""
    found: dict[str, str] = {}
    for name in sorted(files):
        if detect_format(name) and _stem(name) in ("train", "test"):
            found.setdefault(_stem(name), name)
    return found


_SEVERITY = ("failed", "rejected", "submitted", "duplicate", "waiting", "ignored")


def _worst(results: list[IngestResult]) -> Outcome:
    """One outcome for a folder holding several datasets: the one most worth a look."""
    if not results:
        return "ignored"
    return min((r.outcome for r in results), key=_SEVERITY.index)


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
