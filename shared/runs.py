"""Run records: one per dataset drop, kept as JSON blobs and advanced with ETag compare-and-swap.

States move forward only (see ``NEXT``). An event that would move a run backwards — a late or
re-delivered one — is a no-op rather than an error: events are hints, the record is the truth.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import time
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any
from urllib.parse import quote, unquote

import orjson

from shared.errors import ConflictError, InputError
from shared.records import RecordStore, put

# tuneflow makes run ids of 20 hex digits; a record's id is ASCII letters, digits and dashes (a blob name segment).
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,63}")


def is_run_id(value: object) -> bool:
    """Whether ``value`` can name a run record (always a full match: no trailing newline, no Unicode digits)."""
    return isinstance(value, str) and _RUN_ID.fullmatch(value) is not None


class RunState(StrEnum):
    RECEIVED = "RECEIVED"
    VALIDATING = "VALIDATING"
    REJECTED = "REJECTED"
    SUBMITTED = "SUBMITTED"
    RUNNING = "RUNNING"
    TRAINED = "TRAINED"
    FAILED = "FAILED"
    REGISTERED = "REGISTERED"
    DEPLOYING = "DEPLOYING"
    DEPLOYED = "DEPLOYED"
    DEPLOY_FAILED = "DEPLOY_FAILED"
    GATED = "GATED"  # evaluated and not promoted: worse than what serves (see shared.evaluation)
    ROLLED_BACK = "ROLLED_BACK"  # promoted, then worse than what serves on live traffic during its canary
    RETIRED = "RETIRED"
    TORN_DOWN = "TORN_DOWN"
    CANCELED = "CANCELED"


S = RunState
# Allowed transitions. Anything else is refused (or ignored when it moves a run backwards).
NEXT: Mapping[RunState, frozenset[RunState]] = {
    S.RECEIVED: frozenset({S.VALIDATING, S.REJECTED, S.CANCELED}),
    S.VALIDATING: frozenset({S.REJECTED, S.SUBMITTED, S.FAILED, S.CANCELED}),
    S.REJECTED: frozenset(),
    S.SUBMITTED: frozenset({S.RUNNING, S.TRAINED, S.FAILED, S.CANCELED}),
    S.RUNNING: frozenset({S.TRAINED, S.FAILED, S.CANCELED}),
    S.TRAINED: frozenset({S.REGISTERED, S.FAILED}),
    S.FAILED: frozenset(),
    S.REGISTERED: frozenset({S.DEPLOYING, S.TORN_DOWN}),
    S.DEPLOYING: frozenset({S.DEPLOYED, S.DEPLOY_FAILED, S.GATED, S.ROLLED_BACK, S.TORN_DOWN}),
    S.DEPLOYED: frozenset({S.RETIRED, S.TORN_DOWN}),
    S.DEPLOY_FAILED: frozenset({S.DEPLOYING, S.TORN_DOWN}),
    S.GATED: frozenset(),
    S.ROLLED_BACK: frozenset(),
    S.RETIRED: frozenset({S.TORN_DOWN}),
    S.TORN_DOWN: frozenset(),
    S.CANCELED: frozenset(),
}
# States a user may cancel a run in: its data is not yet trained into a model.
CANCELABLE: frozenset[RunState] = frozenset({S.RECEIVED, S.VALIDATING, S.SUBMITTED, S.RUNNING})
# States the reconciler has nothing left to do for (a DEPLOYED run may still be retired or torn down,
# but by a user or a later run, not by converging); every other state is work in progress.
SETTLED: frozenset[RunState] = frozenset({S.REJECTED, S.FAILED, S.DEPLOYED, S.DEPLOY_FAILED, S.GATED,
                                          S.ROLLED_BACK, S.RETIRED, S.TORN_DOWN, S.CANCELED})
ACTIVE: frozenset[RunState] = frozenset(RunState) - SETTLED


def finished(run: Run) -> bool:
    """Whether nothing is left to do for ``run``: a settled state, or registered when its manifest said
    ``"deploy": "never"`` (the model is what it asked for)."""
    return run.state in SETTLED or (run.state == RunState.REGISTERED and run.deploy == "never")


def now_iso() -> str:
    """Now, as run records and reports spell it (UTC, milliseconds)."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass
class Transition:
    state: RunState
    at: str
    note: str | None = None


@dataclass
class Run:
    run_id: str
    state: RunState
    dataset: str
    sources: list[str]
    base_model: str
    history: list[Transition] = field(default_factory=list)
    sha256: str | None = None
    report_path: str | None = None
    summary: str | None = None
    train_path: str | None = None
    test_path: str | None = None
    job_name: str | None = None
    studio_url: str | None = None
    model: str | None = None
    endpoint: str | None = None
    deployment: str | None = None
    last_error: str | None = None
    # What the drop asked for (its manifest over the app settings; see shared.manifest.effective)
    config: dict[str, Any] = field(default_factory=dict)
    manifest: str | None = None  # where it came from: the folder's tuneflow.json or the blob's metadata
    tags: dict[str, str] = field(default_factory=dict)
    notify_url: str | None = None
    deploy: str = "auto"  # "never": registered only
    # The candidate's evaluation against what served, and the gate's verdict (see shared.evaluation)
    evaluation: dict[str, Any] | None = None
    # A progressive rollout's position and evidence (see shared.lifecycle.rollout): a crash resumes it
    rollout: dict[str, Any] | None = None
    # Training progress while the job runs (see shared.lifecycle.progress): step, total, epoch, losses, ETA
    progress: dict[str, Any] | None = None
    stalled_passes: int = 0  # reconciler passes in a row that failed on this run (see shared.lifecycle.reconcile)
    created_at: str = field(default_factory=now_iso)
    updated_at: str = field(default_factory=now_iso)

    def to_json(self) -> bytes:
        return orjson.dumps(asdict(self), option=orjson.OPT_INDENT_2)

    @classmethod
    def from_json(cls, data: bytes) -> Run:
        raw = orjson.loads(data)
        known = {f.name for f in fields(cls)}
        raw = {k: v for k, v in raw.items() if k in known}  # tolerate records from newer versions
        raw["state"] = RunState(raw["state"])
        raw["history"] = [Transition(RunState(t["state"]), t["at"], t.get("note")) for t in raw["history"]]
        return cls(**raw)

    def summary_dict(self) -> dict[str, Any]:
        """What notifications and the status API show."""
        data = asdict(self)
        data["history"] = [{"state": t.state.value, "at": t.at, "note": t.note} for t in self.history]
        return data


def run_id_for(content_sha256: str, config: Mapping[str, Any]) -> str:
    """Deterministic run id: same bytes, same effective configuration → same run, job, model."""
    material = json.dumps({"sha256": content_sha256, "config": config}, sort_keys=True, default=str)
    return hashlib.sha256(material.encode()).hexdigest()[:20]


@dataclass(frozen=True)
class RunEntry:
    """A run as a listing sees it: what its record's metadata carries (the runs table's columns)."""

    run_id: str
    state: RunState
    updated_at: str
    created_at: str = ""
    dataset: str = ""
    base_model: str = ""
    model: str | None = None
    endpoint: str | None = None
    deployment: str | None = None
    job_name: str | None = None
    studio_url: str | None = None
    last_error: str | None = None
    """At most ``ERROR_CHARS`` characters of it (the record has it whole)."""

    @classmethod
    def of(cls, run: Run) -> RunEntry:
        return cls(run.run_id, run.state, run.updated_at, run.created_at, run.dataset, run.base_model, run.model,
                   run.endpoint, run.deployment, run.job_name, run.studio_url, _clip(run.last_error))

    @classmethod
    def from_meta(cls, run_id: str, meta: Mapping[str, str]) -> RunEntry | None:
        """The entry its metadata describes; None when the record predates some of it (read it instead)."""
        if meta.get("v") != META_VERSION or not {"state", "updated", "created"} <= meta.keys():
            return None
        text = {key: unquote(meta.get(key, "")) or None for key in _TEXT_META}
        return cls(run_id, RunState(meta["state"]), meta["updated"], meta["created"], text["dataset"] or "",
                   text["base"] or "", text["model"], text["endpoint"], text["deployment"], text["job"],
                   text["studio"], text["error"])


ERROR_CHARS = 300
META_VERSION = "2"  # records written with every column below; older ones are read once per listing
_TEXT_META = ("dataset", "base", "model", "endpoint", "deployment", "job", "studio", "error")


def _clip(text: str | None) -> str | None:
    if not text:
        return None
    return text if len(text) <= ERROR_CHARS else text[: ERROR_CHARS - 1] + "…"


def _meta(run: Run) -> dict[str, str]:
    """The listing's columns as blob metadata, written with the record. Metadata is ASCII (HTTP headers):
    text that may be anything (a dataset's name, an error) is percent-encoded."""
    entry = RunEntry.of(run)
    text = {"dataset": entry.dataset, "base": entry.base_model, "model": entry.model, "endpoint": entry.endpoint,
            "deployment": entry.deployment, "job": entry.job_name, "studio": entry.studio_url,
            "error": entry.last_error}
    return {"v": META_VERSION, "state": run.state.value, "updated": run.updated_at, "created": run.created_at,
            **{key: quote(value, safe="/:@-._~") for key, value in text.items() if value}}


Entries = list[RunEntry]


def _timeline_key(run_id: str, created_at: str) -> str:
    """Newest first in key order: the creation time, in milliseconds, counted down from year 2286."""
    millis = int(datetime.fromisoformat(created_at).timestamp() * 1000)
    return f"{RunStore.TIMELINE}{10**13 - 1 - millis:013d}-{run_id}"


def _timeline_id(key: str) -> str:
    return key[len(RunStore.TIMELINE) + 14 :]


def _cursor(token: str | None, skip: int) -> str:
    """Where a page ends: the listing page it is in (None: the first) and how many of that page were shown."""
    return base64.urlsafe_b64encode(orjson.dumps([token or "", skip])).decode().rstrip("=")


def _uncursor(cursor: str | None) -> tuple[str | None, int]:
    if not cursor:
        return None, 0
    try:
        token, skip = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if isinstance(token, str) and isinstance(skip, int) and 0 <= skip <= 10_000:
            return token or None, skip
    except (ValueError, TypeError):
        pass
    raise InputError("not a page token of this listing")


class RunStore:
    """Runs persisted through a ``RecordStore``; every update is a compare-and-swap loop.

    Beside each record ``runs/<id>.json`` an empty record ``runs-by-time/<newest first>-<id>`` carries the
    same listing metadata, so a page of the newest runs is one short listing, whatever the number of runs.
    It is written after the record (a crash in between leaves it to the run's next change, or ``reindex``)
    and only when a listed column changed."""

    PREFIX = "runs/"
    TIMELINE = "runs-by-time/"
    SCAN_SECONDS = 0.25  # a filtered page's listing time: it stops before a page that would go past it

    def __init__(
        self, records: RecordStore, on_transition: Callable[[Run, int], None] | None = None, retries: int = 20
    ) -> None:
        self._records = records
        self._on_transition = on_transition
        self._retries = retries
        self._timeline_ready = False

    def _key(self, run_id: str) -> str:
        if not is_run_id(run_id):
            raise InputError(f"not a run id: {run_id!r}", run_id=run_id)
        return f"{self.PREFIX}{run_id}.json"

    def get(self, run_id: str) -> Run | None:
        record = self._records.read(self._key(run_id))
        return Run.from_json(record.data) if record else None

    def find(self, run_id: str) -> Run | None:
        """The run a caller names, or None: also when the text cannot even be a run id."""
        return self.get(run_id) if is_run_id(run_id) else None

    def index(self, states: Collection[str] | None = None) -> list[RunEntry]:
        """Runs in ``states`` (default: all), newest first, from the listing alone: each record carries
        what a listing shows as metadata, so no record is read (one written before some of that metadata
        existed is read here)."""
        wanted = None if states is None else {RunState(s).value for s in states}
        found = []
        for key, meta in self._records.entries(self.PREFIX):
            if wanted is not None and meta.get("v") == META_VERSION and meta.get("state") not in wanted:
                continue  # not wanted, and its metadata is current: no need to decode the rest
            run_id = key[len(self.PREFIX) : -len(".json")]
            entry = RunEntry.from_meta(run_id, meta)
            if entry is None:
                run = self.get(run_id) if is_run_id(run_id) else None
                if run is None:
                    continue
                entry = RunEntry.of(run)
            if wanted is None or entry.state in wanted:
                found.append(entry)
        found.sort(key=lambda e: (e.created_at, e.run_id), reverse=True)
        return found

    def list(self, states: Collection[str] | None = None, limit: int | None = None) -> Iterator[Run]:
        """The runs ``index`` names, read one by one (at most ``limit``); a run deleted meanwhile is skipped."""
        for entry in self.index(states)[:limit]:
            run = self.get(entry.run_id)
            if run is not None:
                yield run

    def create(self, run: Run) -> tuple[Run, bool]:
        """Store a new run; when one with this id exists, return it unchanged (and False)."""
        if not run.history:
            run.history.append(Transition(run.state, run.created_at))
        meta = _meta(run)
        if self._records.create(self._key(run.run_id), run.to_json(), meta) is not None:
            self._list(run, meta, None)
            self._notify(run, 0)
            return run, True
        existing = self.get(run.run_id)
        if existing is None:  # deleted between the two calls: try once more
            return self.create(run)
        return existing, False

    def update(self, run_id: str, change: Callable[[Run], bool]) -> Run:
        """Apply ``change`` (returns True when it changed the run) with optimistic concurrency."""
        key = self._key(run_id)
        for _ in range(self._retries):
            record = self._records.read(key)
            if record is None:
                raise InputError(f"run {run_id} does not exist", run_id=run_id)
            run = Run.from_json(record.data)
            seen = len(run.history)
            if not change(run):
                return run
            run.updated_at = now_iso()
            meta = _meta(run)
            if self._records.replace(key, run.to_json(), record.etag, meta) is not None:
                self._list(run, meta, record.meta)
                self._notify(run, seen)
                return run
        raise ConflictError(f"run {run_id}: gave up after {self._retries} concurrent updates", run_id=run_id)

    def advance(self, run_id: str, state: RunState, note: str | None = None, **changes: Any) -> Run:
        """Move to ``state`` (recording ``changes``); a backwards or repeated move changes nothing."""

        def change(run: Run) -> bool:
            if not can_advance(run.state, state):
                return False
            apply(run, state, note, **changes)
            return True

        return self.update(run_id, change)

    def timeline(self, limit: int, cursor: str | None = None,
                 keep: Callable[[RunEntry], bool] | None = None) -> tuple[Entries, str | None]:
        """Up to ``limit`` runs, newest first, that ``keep`` accepts (default: all), and the cursor of what
        follows (None: nothing). One listing of ``limit`` entries when nothing is filtered; a filtered page
        lists page after page while the next one fits in ``SCAN_SECONDS`` (judged by the last one's time) and
        may come back short, with a cursor to go on from."""
        token, skip = _uncursor(cursor)
        found: list[RunEntry] = []
        started = time.monotonic()
        while True:
            size = (limit if keep is None else max(100, limit)) + skip  # the page the cursor counted in
            listed = time.monotonic()
            items, following = self._records.page(self.TIMELINE, size, token)
            took = time.monotonic() - listed
            for at in range(skip, len(items)):
                key, meta = items[at]
                entry = RunEntry.from_meta(_timeline_id(key), meta)
                if entry is not None and (keep is None or keep(entry)):
                    found.append(entry)
                if len(found) == limit:
                    if at + 1 < len(items):
                        return found, _cursor(token, at + 1)
                    return found, _cursor(following, 0) if following is not None else None
            if following is None:
                return found, None
            token, skip = following, 0
            if time.monotonic() - started + took > self.SCAN_SECONDS:  # the next page would not fit
                return found, _cursor(token, 0)

    MARKER = "index/runs-by-time.v1"

    def ensure_timeline(self) -> int:
        """``reindex`` once per store (the marker record says it was done): runs stored before the timeline
        existed appear in it. Cheap after the first time: one read per process, then nothing."""
        if self._timeline_ready:
            return 0
        written = 0
        if self._records.read(self.MARKER) is None:
            written = self.reindex()
            self._records.create(self.MARKER, now_iso().encode())
        self._timeline_ready = True
        return written

    def reindex(self) -> int:
        """Write the timeline entry of every run that has none (records from before it existed, or a crash
        between a record and its entry); the number written. One full listing of both prefixes."""
        listed = {_timeline_id(key) for key, _ in self._records.entries(self.TIMELINE)}
        written = 0
        for key, _ in self._records.entries(self.PREFIX):
            run_id = key[len(self.PREFIX) : -len(".json")]
            run = self.get(run_id) if run_id not in listed and is_run_id(run_id) else None
            if run is not None:
                self._list(run, _meta(run), None)
                written += 1
        return written

    def _list(self, run: Run, meta: Mapping[str, str], before: Mapping[str, str] | None) -> None:
        """Bring the run's timeline entry up to ``meta`` (what the record was just written with), when a listed
        column changed (``before``: the record's metadata before). Concurrent writers converge on the latest."""
        if before is not None and {**before, "updated": ""} == {**meta, "updated": ""}:
            return
        put(self._records, _timeline_key(run.run_id, run.created_at), b"", meta,
            unchanged=lambda current: current.meta.get("updated", "") > run.updated_at)

    def _notify(self, run: Run, seen: int) -> None:
        """Call the hook once per transition recorded since ``seen`` (a new run may hold several)."""
        if self._on_transition is not None:
            for index in range(seen, len(run.history)):
                self._on_transition(run, index)


def can_advance(current: RunState, target: RunState) -> bool:
    return target in NEXT[current]


def apply(run: Run, state: RunState, note: str | None = None, **changes: Any) -> None:
    """Set ``state`` and fields on an in-memory run (the caller persists it)."""
    if state != run.state and state not in NEXT[run.state]:
        raise InputError(f"run {run.run_id}: cannot go from {run.state} to {state}", run_id=run.run_id)
    for name, value in changes.items():
        if not hasattr(run, name):
            raise AttributeError(name)
        setattr(run, name, value)
    if state != run.state:
        run.state = state
        run.history.append(Transition(state, now_iso(), note))

