"""Blob Storage access: clients from settings, streaming reads and block-by-block writes.

Datasets are never held whole in memory: reads are ranged (4 MiB at a time, pinned to one ETag),
and prepared files are written as staged blocks that only
become visible on commit — so an abandoned write leaves nothing behind.
"""

from __future__ import annotations

import base64
import contextlib
import io
import os
import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from azure.storage.blob import BlobClient, BlobServiceClient, ContainerClient

    from shared.settings import Settings

_clients: dict[tuple[str | None, str | None], BlobServiceClient] = {}
_lock = threading.Lock()
_ensured: set[tuple[str, str]] = set()


def blob_service(settings: Settings) -> BlobServiceClient:
    """One pooled client per account, reused across invocations."""
    from azure.storage.blob import BlobServiceClient

    key = (settings.storage_connection, settings.storage_account_url)
    with _lock:
        client = _clients.get(key)
        if client is None:
            if settings.storage_connection:
                client = BlobServiceClient.from_connection_string(settings.storage_connection)
            else:
                from azure.identity import DefaultAzureCredential

                client = BlobServiceClient(str(settings.storage_account_url), DefaultAzureCredential())
            _clients[key] = client
    return client


def container(settings: Settings, name: str) -> ContainerClient:
    """A container client; the container is created once per process if missing."""
    from azure.core.exceptions import ResourceExistsError

    client = blob_service(settings).get_container_client(name)
    marker = (client.url, name)
    if marker not in _ensured:
        with contextlib.suppress(ResourceExistsError):
            client.create_container()
        _ensured.add(marker)
    return client


class BlockWriter:
    """Append bytes to a block blob in staged blocks; nothing is visible until ``commit``."""

    def __init__(self, blob: BlobClient, block_size: int = 4 * 1024 * 1024) -> None:
        self._blob = blob
        self._block_size = block_size
        self._buffer = bytearray()
        self._blocks: list[str] = []
        self.bytes_written = 0

    def write(self, data: bytes) -> None:
        self._buffer += data
        self.bytes_written += len(data)
        if len(self._buffer) >= self._block_size:
            self._flush()

    def _flush(self) -> None:
        if not self._buffer:
            return
        block_id = base64.b64encode(f"{len(self._blocks):08d}".encode()).decode()
        self._blob.stage_block(block_id, bytes(self._buffer))
        self._blocks.append(block_id)
        self._buffer.clear()

    def commit(self, content_type: str = "application/jsonl") -> str:
        from azure.storage.blob import BlobBlock, ContentSettings

        self._flush()
        result = self._blob.commit_block_list(
            [BlobBlock(block_id=b) for b in self._blocks],
            content_settings=ContentSettings(content_type=content_type),
        )
        return str(result["etag"])


class SeekableBlob(io.RawIOBase):
    """A read-only, seekable file over ranged blob reads (for Parquet's footer-first layout).

    Reads are pinned to one ETag, so a blob replaced mid-read fails instead of mixing versions.
    """

    def __init__(self, blob: BlobClient, size: int, etag: str | None, chunk: int = 4 * 1024 * 1024):
        super().__init__()
        self._blob, self._size, self._etag, self._chunk = blob, size, etag, chunk
        self._pos = 0
        self._cache_start, self._cache = 0, b""

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        base = {os.SEEK_SET: 0, os.SEEK_CUR: self._pos, os.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        want = min(len(view), self._size - self._pos)
        if want <= 0:
            return 0
        start = self._pos - self._cache_start
        if not (start >= 0 and start + want <= len(self._cache)):
            self._fill(max(want, self._chunk))
            start = 0
        view[:want] = self._cache[start : start + want]
        self._pos += want
        return want

    def _fill(self, length: int) -> None:
        from azure.core import MatchConditions

        length = min(length, self._size - self._pos)
        kwargs: dict[str, Any] = {}
        if self._etag:
            kwargs = {"etag": self._etag, "match_condition": MatchConditions.IfNotModified}
        self._cache = self._blob.download_blob(offset=self._pos, length=length, **kwargs).readall()
        self._cache_start = self._pos
