"""Blob access to the Azurite account behind the workspace's datastores (synchronous; call in a thread)."""

from __future__ import annotations

import contextlib
import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
from azure.storage.blob import (
    AccountSasPermissions,
    BlobServiceClient,
    ResourceTypes,
    generate_account_sas,
)


def parse_connection_string(conn: str) -> dict[str, str]:
    parts: dict[str, str] = {}
    for chunk in conn.split(";"):
        if "=" in chunk:
            key, _, value = chunk.partition("=")
            parts[key.strip()] = value.strip()
    return parts


@dataclass(frozen=True)
class BlobInfo:
    container: str
    name: str
    etag: str
    size: int
    content_type: str
    blob_type: str


class BlobStore:
    def __init__(self, connection_string: str) -> None:
        self.connection_string = connection_string
        parts = parse_connection_string(connection_string)
        self.account_name = parts.get("AccountName", "devstoreaccount1")
        self.account_key = parts.get("AccountKey", "")
        self.client = BlobServiceClient.from_connection_string(connection_string)
        self.blob_endpoint = self.client.url.rstrip("/")

    def ensure_container(self, name: str) -> None:
        with contextlib.suppress(ResourceExistsError):
            self.client.create_container(name)

    def account_sas(self, hours: float = 24.0) -> str:
        return generate_account_sas(
            self.account_name,
            self.account_key,
            resource_types=ResourceTypes(service=True, container=True, object=True),
            permission=AccountSasPermissions(
                read=True, write=True, delete=True, list=True, add=True, create=True, update=True, tag=True
            ),
            expiry=dt.datetime.now(dt.UTC) + dt.timedelta(hours=hours),
        )

    def blob_url(self, container: str, name: str) -> str:
        return f"{self.blob_endpoint}/{container}/{name}"

    def download_file(self, container: str, name: str, dest: Path) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        blob = self.client.get_blob_client(container, name)
        try:
            with dest.open("wb") as fh:
                blob.download_blob().readinto(fh)
        except ResourceNotFoundError:
            dest.unlink(missing_ok=True)
            raise FileNotFoundError(f"blob {container}/{name} does not exist") from None

    def download_prefix(self, container: str, prefix: str, dest: Path) -> int:
        """Download every blob under ``prefix`` (a folder) into ``dest``; return how many."""
        cc = self.client.get_container_client(container)
        prefix = prefix.rstrip("/") + "/" if prefix else ""
        count = 0
        for item in cc.list_blobs(name_starts_with=prefix):
            rel = item.name[len(prefix):]
            if not rel:
                continue
            self.download_file(container, item.name, dest / rel)
            count += 1
        return count

    def upload_dir(self, container: str, prefix: str, src: Path) -> int:
        self.ensure_container(container)
        count = 0
        for path in sorted(p for p in src.rglob("*") if p.is_file()):
            name = f"{prefix.rstrip('/')}/{path.relative_to(src).as_posix()}"
            with path.open("rb") as fh:
                self.client.get_blob_client(container, name).upload_blob(fh, overwrite=True)
            count += 1
        return count

    def put(self, container: str, name: str, data: bytes) -> None:
        self.client.get_blob_client(container, name).upload_blob(data, overwrite=True)

    def exists(self, container: str, name: str) -> bool:
        try:
            self.client.get_blob_client(container, name).get_blob_properties()
        except ResourceNotFoundError:
            return False
        return True

    def list_containers(self) -> list[str]:
        return [c.name for c in self.client.list_containers()]

    def list_blobs(self, container: str) -> list[BlobInfo]:
        cc = self.client.get_container_client(container)
        try:
            return [
                BlobInfo(
                    container=container,
                    name=b.name,
                    etag=str(b.etag).strip('"'),
                    size=int(b.size or 0),
                    content_type=(b.content_settings.content_type if b.content_settings else None)
                    or "application/octet-stream",
                    blob_type=str(getattr(b.blob_type, "value", b.blob_type) or "BlockBlob"),
                )
                for b in cc.list_blobs()
            ]
        except ResourceNotFoundError:
            return []

    def committed_block_count(self, container: str, name: str) -> int:
        """Blocks in a block blob's committed list: 0 for a single-shot Put Blob upload."""
        try:
            committed, _ = self.client.get_blob_client(container, name).get_block_list("committed")
        except (ResourceNotFoundError, ValueError):
            return 0
        return len(committed or [])
