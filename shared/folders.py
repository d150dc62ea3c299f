"""Dataset folders: what a folder holds right now, and which of its states were already ingested.

Uploads of a folder are not atomic: its files (and its manifest) arrive one by one, in any order. A
folder is read as a whole only once its newest file has been quiet for the settle window, and each
state of it (its files' names and ETags) is ingested at most once: the settle messages of its several
BlobCreated events meet on one record under ``settled/``, and a file added later is a new state.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import orjson

from shared.records import RecordStore, put

if TYPE_CHECKING:
    from azure.storage.blob import ContainerClient

PREFIX = "settled/"


@dataclass(frozen=True)
class FolderFile:
    name: str  # the full blob name
    etag: str
    size: int
    modified: datetime


@dataclass(frozen=True)
class FolderState:
    folder: str  # "name/"
    files: dict[str, FolderFile]  # file name inside the folder → the blob

    @property
    def newest(self) -> datetime:
        return max(f.modified for f in self.files.values())

    @property
    def fingerprint(self) -> str:
        pairs = sorted(f"{name}\0{f.etag.strip(chr(34))}" for name, f in self.files.items())
        return hashlib.sha256("\n".join(pairs).encode()).hexdigest()


def read_folder(container: ContainerClient, folder: str) -> FolderState:
    """The files directly inside ``folder`` (one listing; sub-folders are datasets of their own)."""
    files = {}
    for blob in container.list_blobs(name_starts_with=folder):
        child = str(blob.name)[len(folder):]
        if child and "/" not in child:
            modified = blob.last_modified or datetime.now(UTC)
            files[child] = FolderFile(str(blob.name), str(blob.etag), int(blob.size or 0), modified)
    return FolderState(folder, files)


class SettledFolders:
    """Which folder states were ingested (one record per folder; the last state wins)."""

    def __init__(self, records: RecordStore) -> None:
        self._records = records

    @staticmethod
    def key(folder: str) -> str:
        return PREFIX + hashlib.sha256(folder.encode()).hexdigest()[:40] + ".json"

    def done(self, state: FolderState) -> bool:
        record = self._records.read(self.key(state.folder))
        return record is not None and record.meta.get("fingerprint") == state.fingerprint

    def mark(self, state: FolderState, outcome: str) -> None:
        key, meta = self.key(state.folder), {"fingerprint": state.fingerprint}
        data = orjson.dumps({"folder": state.folder, "outcome": outcome, "files": sorted(state.files),
                             "at": datetime.now(UTC).isoformat(timespec="seconds")})
        put(self._records, key, data, meta)
