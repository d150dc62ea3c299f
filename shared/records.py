"""A small persistence interface with conditional writes (the idempotency primitive).

Records are opaque bytes under a key, each version identified by an ETag. ``create`` succeeds only
when the key is absent and ``replace`` only when the caller holds the current ETag, so concurrent
writers never lose each other's updates. A write may attach a few short ASCII strings (``meta``,
blob metadata in Blob Storage), written atomically with the bytes and returned by ``entries``
without reading any record: a listing can filter and sort on them. ``BlobRecordStore`` maps this
onto Blob Storage ETags; ``MemoryRecordStore`` is the same contract in memory for unit tests.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from shared.errors import InputError

if TYPE_CHECKING:
    from azure.storage.blob import ContainerClient, ContentSettings


Meta = Mapping[str, str]


@dataclass(frozen=True)
class Record:
    data: bytes
    etag: str
    meta: Meta = field(default_factory=dict)


class RecordStore(Protocol):
    def read(self, key: str) -> Record | None: ...

    def create(self, key: str, data: bytes, meta: Meta | None = None) -> str | None:
        """Write a new record; the new ETag, or None when the key already exists."""
        ...

    def replace(self, key: str, data: bytes, etag: str, meta: Meta | None = None) -> str | None:
        """Overwrite if ``etag`` is still current; the new ETag, or None when it is not."""
        ...

    def entries(self, prefix: str = "") -> Iterator[tuple[str, Meta]]:
        """Each key under ``prefix`` (in key order) with the meta of its last write (one listing, no reads)."""
        ...

    def page(self, prefix: str, size: int, token: str | None = None) -> tuple[list[tuple[str, Meta]], str | None]:
        """One page of ``entries`` (at most ``size``, in key order) starting at ``token`` (None: the first
        page), and the token of the next page (None: there is none). An unusable token is an InputError."""
        ...

    def delete(self, key: str) -> None:
        """Remove a record; removing one that is gone is not an error."""
        ...


def put(records: RecordStore, key: str, data: bytes, meta: Meta, *,
        unchanged: Callable[[Record], bool] = lambda current: False, attempts: int = 3) -> bool:
    """Write ``key`` whatever is there (the last writer wins), unless ``unchanged(current)`` says the record
    already says this; False when concurrent writers kept winning for ``attempts`` rounds."""
    for _ in range(attempts):
        if records.create(key, data, meta) is not None:
            return True
        current = records.read(key)
        if current is None:
            continue
        if unchanged(current) or records.replace(key, data, current.etag, meta) is not None:
            return True
    return False


class MemoryRecordStore:
    def __init__(self) -> None:
        self._items: dict[str, Record] = {}
        self._lock = threading.Lock()
        self._versions = itertools.count(1)

    def read(self, key: str) -> Record | None:
        return self._items.get(key)

    def create(self, key: str, data: bytes, meta: Meta | None = None) -> str | None:
        with self._lock:
            if key in self._items:
                return None
            return self._put(key, data, meta)

    def replace(self, key: str, data: bytes, etag: str, meta: Meta | None = None) -> str | None:
        with self._lock:
            current = self._items.get(key)
            if current is None or current.etag != etag:
                return None
            return self._put(key, data, meta)

    def entries(self, prefix: str = "") -> Iterator[tuple[str, Meta]]:
        with self._lock:
            found = sorted((k, r.meta) for k, r in self._items.items() if k.startswith(prefix))
        return iter(found)

    def page(self, prefix: str, size: int, token: str | None = None) -> tuple[list[tuple[str, Meta]], str | None]:
        if token is not None and not token.startswith(prefix):
            raise InputError("not a page token of this listing")
        with self._lock:
            keys = sorted(k for k in self._items if k.startswith(prefix) and (token is None or k >= token))
            found = [(k, self._items[k].meta) for k in keys[:size]]
        return found, keys[size] if len(keys) > size else None

    def delete(self, key: str) -> None:
        with self._lock:
            self._items.pop(key, None)

    def _put(self, key: str, data: bytes, meta: Meta | None) -> str:
        etag = f'"{next(self._versions)}"'
        self._items[key] = Record(data, etag, dict(meta or {}))
        return etag


class BlobRecordStore:
    """Records as block blobs; ETags give compare-and-swap without locks or leases."""

    def __init__(self, container: ContainerClient) -> None:
        self._container = container

    def read(self, key: str) -> Record | None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            downloader = self._container.download_blob(key)
            data = downloader.readall()
        except ResourceNotFoundError:
            return None
        return Record(data, downloader.properties.etag, dict(downloader.properties.metadata or {}))

    def create(self, key: str, data: bytes, meta: Meta | None = None) -> str | None:
        from azure.core.exceptions import ResourceExistsError

        try:
            result = self._container.get_blob_client(key).upload_blob(
                data, overwrite=False, content_settings=_json_content(), metadata=dict(meta or {})
            )
        except ResourceExistsError:
            return None
        return str(result["etag"])

    def replace(self, key: str, data: bytes, etag: str, meta: Meta | None = None) -> str | None:
        from azure.core import MatchConditions
        from azure.core.exceptions import ResourceModifiedError, ResourceNotFoundError

        try:
            result = self._container.get_blob_client(key).upload_blob(
                data,
                overwrite=True,
                etag=etag,
                match_condition=MatchConditions.IfNotModified,
                content_settings=_json_content(),
                metadata=dict(meta or {}),
            )
        except (ResourceModifiedError, ResourceNotFoundError):
            return None
        return str(result["etag"])

    def entries(self, prefix: str = "") -> Iterator[tuple[str, Meta]]:
        for blob in self._container.list_blobs(name_starts_with=prefix, include=["metadata"]):
            yield blob.name, dict(blob.metadata or {})

    def page(self, prefix: str, size: int, token: str | None = None) -> tuple[list[tuple[str, Meta]], str | None]:
        from azure.core.exceptions import HttpResponseError

        pages = self._container.list_blobs(name_starts_with=prefix, include=["metadata"],
                                           results_per_page=size).by_page(continuation_token=token)
        try:
            found: list[tuple[str, Meta]] = [(blob.name, dict(blob.metadata or {})) for blob in next(pages)]
        except StopIteration:
            return [], None
        except HttpResponseError as exc:
            if token is not None and exc.status_code == 400:  # the service refused the marker
                raise InputError("not a page token of this listing") from None
            raise
        following: str | None = getattr(pages, "continuation_token", None)
        return found, following or None

    def delete(self, key: str) -> None:
        from azure.core.exceptions import ResourceNotFoundError

        with contextlib.suppress(ResourceNotFoundError):
            self._container.delete_blob(key)


def _json_content() -> ContentSettings:
    from azure.storage.blob import ContentSettings

    return ContentSettings(content_type="application/json")
