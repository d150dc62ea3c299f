"""Ranged, ETag-pinned blob reads through real Azurite: sequential streams read ahead, seeks don't."""

from __future__ import annotations

import io
import random
import threading
import uuid
from typing import Any

import pytest
from azure.core.exceptions import ResourceModifiedError
from azure.storage.blob import BlobServiceClient

from shared.storage import SeekableBlob

pytestmark = pytest.mark.integration

CHUNK = 64 * 1024


@pytest.fixture
def blob(azurite: Any) -> Any:
    service = BlobServiceClient.from_connection_string(azurite.connection_string)
    box = service.create_container(f"seek-{uuid.uuid4().hex[:8]}")
    client = box.get_blob_client("data.bin")
    data = random.Random(7).randbytes(20 * CHUNK + 123)
    etag = client.upload_blob(data)["etag"]
    yield client, data, etag
    box.delete_container()


class Counting:
    """The blob client, counting the ranges downloaded."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.ranges: list[tuple[int, int]] = []

    def download_blob(self, offset: int, length: int, **kw: Any) -> Any:
        self.ranges.append((offset, length))
        return self.client.download_blob(offset=offset, length=length, **kw)


def read_ahead_threads() -> int:
    return sum(t.name.startswith("blob-read-ahead") for t in threading.enumerate())


def test_a_stream_reads_every_byte_once_and_reads_ahead(blob: Any) -> None:
    client, data, etag = blob
    counting = Counting(client)
    raw = SeekableBlob(counting, len(data), etag, chunk=CHUNK)  # type: ignore[arg-type]
    with io.BufferedReader(raw, 16 * 1024) as stream:
        got = b"".join(iter(lambda: stream.read(10_000), b""))
        assert read_ahead_threads() == 1
    assert got == data
    starts = [offset for offset, _ in counting.ranges]
    assert starts == sorted(set(starts)) and starts == list(range(0, len(data), CHUNK))  # no range twice
    assert read_ahead_threads() == 0  # close() stops the helper


def test_seeks_read_what_they_ask_and_start_no_read_ahead(blob: Any) -> None:
    client, data, etag = blob
    counting = Counting(client)
    raw = SeekableBlob(counting, len(data), etag, chunk=CHUNK)  # type: ignore[arg-type]
    rng = random.Random(3)
    for _ in range(30):
        at, size = rng.randrange(len(data)), rng.randrange(1, 3 * CHUNK)
        raw.seek(at)
        got = bytearray()
        while len(got) < size and (piece := raw.read(size - len(got))):
            got += piece
        assert bytes(got) == data[at : at + size]
    raw.seek(-5, io.SEEK_END)
    assert raw.read(100) == data[-5:] and raw.read(1) == b""
    raw.close()
    assert read_ahead_threads() == 0


def test_a_blob_replaced_mid_stream_fails_instead_of_mixing_versions(blob: Any) -> None:
    client, data, etag = blob
    with io.BufferedReader(SeekableBlob(client, len(data), etag, chunk=CHUNK), CHUNK) as stream:
        assert stream.read(3 * CHUNK) == data[: 3 * CHUNK]  # streaming: the next range is on its way
        client.upload_blob(b"x" * len(data), overwrite=True)
        with pytest.raises(ResourceModifiedError):
            while stream.read(CHUNK):
                pass
