"""Blob Storage access: clients from settings, streaming reads and block-by-block writes.

Datasets are never held whole in memory: reads are ranged (8 MiB at a time, the next range fetched
ahead while one is parsed, all pinned to one ETag), and prepared files are written as staged
blocks that only become visible on commit — so an abandoned write leaves nothing behind.
"""

from __future__ import annotations

import base64
import contextlib
import threading
from typing import TYPE_CHECKING, Any

from shared.rawio import PositionedReader

if TYPE_CHECKING:
    from concurrent.futures import Future, ThreadPoolExecutor

    from azure.storage.blob import BlobClient, BlobServiceClient, ContainerClient


_ensured: set[str] = set()
_lock = threading.Lock()


def ensure_container(service: BlobServiceClient, name: str) -> ContainerClient:
    """A container client; the container is created once per process if missing."""
    from azure.core.exceptions import ResourceExistsError

    client = service.get_container_client(name)
    with _lock:
        known = client.url in _ensured
    if not known:
        with contextlib.suppress(ResourceExistsError):
            client.create_container()
        with _lock:
            _ensured.add(client.url)
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


class SeekableBlob(PositionedReader):
    """A read-only, seekable file over ranged blob reads (for Parquet's footer-first layout).

    Reads are pinned to one ETag, so a blob replaced mid-read fails instead of mixing versions.
    Once two ranges in a row are read back to back (a stream, not Parquet's seeks), the next range
    is fetched on a helper thread while the caller works on this one, so network time and
    parsing overlap; at most one range is held ahead.
    """

    def __init__(self, blob: BlobClient, size: int, etag: str | None, chunk: int = 8 * 1024 * 1024):
        super().__init__(size)
        self._blob, self._etag, self._chunk = blob, etag, chunk
        self._cache_start, self._cache = 0, b""
        self._ahead: Future[bytes] | None = None
        self._ahead_at = -1
        self._pool: ThreadPoolExecutor | None = None

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        want = min(len(view), self._size - self._pos)
        if want <= 0:
            return 0
        start = self._pos - self._cache_start
        if not (0 <= start < len(self._cache)):
            self._fill(max(want, self._chunk))
            start = 0
        got = min(want, len(self._cache) - start)  # a short read is fine: the caller asks again
        view[:got] = self._cache[start : start + got]
        self._pos += got
        return got

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._ahead, self._cache = None, b""
        super().close()

    def _fill(self, length: int) -> None:
        streaming = self._pos == self._cache_start + len(self._cache) and self._pos > 0
        if self._ahead is not None and self._ahead_at == self._pos:
            data = self._ahead.result()  # its error (a replaced blob, say) is this read's error
        else:
            data = self._download(self._pos, min(length, self._size - self._pos))
        self._ahead = None
        self._cache, self._cache_start = data, self._pos
        following = self._pos + len(data)
        if streaming and following < self._size:
            if self._pool is None:
                from concurrent.futures import ThreadPoolExecutor

                self._pool = ThreadPoolExecutor(1, thread_name_prefix="blob-read-ahead")
            length = min(self._chunk, self._size - following)
            self._ahead, self._ahead_at = self._pool.submit(self._download, following, length), following

    def _download(self, offset: int, length: int) -> bytes:
        from azure.core import MatchConditions

        kwargs: dict[str, Any] = {}
        if self._etag:
            kwargs = {"etag": self._etag, "match_condition": MatchConditions.IfNotModified}
        data: bytes = self._blob.download_blob(offset=offset, length=length, **kwargs).readall()
        return data
