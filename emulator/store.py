"""Durable state: one JSON file per object under ``<data-dir>/state/<collection>/``, written atomically.

Every write goes to a temporary file that replaces the old one (``os.replace``), so a crash or a kill
leaves either the old or the new object, never half of one. Objects are cached in memory; the files
are read once at start.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote

Doc = dict[str, Any]
LONG_KEY = "__store_key__"


def atomic_write_json(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        json.dump(value, fh, indent=1, sort_keys=True)
    os.replace(tmp, path)


class Collection:
    """A keyed set of JSON documents persisted one file per key."""

    def __init__(self, root: Path) -> None:
        self._root = root
        root.mkdir(parents=True, exist_ok=True)
        self._docs: dict[str, Doc] = {}
        self._lock = threading.Lock()
        for path in sorted(root.glob("*.json")):
            try:
                doc = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, json.JSONDecodeError):
                continue  # a torn temp file never has the .json suffix; skip anything unreadable
            key = doc.pop(LONG_KEY, None) if path.stem.startswith("%h-") else unquote(path.stem)
            if isinstance(key, str):
                self._docs[key] = doc

    def _path(self, key: str) -> Path:
        name = quote(key, safe="")
        if len(name) > 200:  # file names stop at 255 bytes: long keys get a hash (the key goes inside)
            name = "%h-" + hashlib.sha256(key.encode()).hexdigest()
        return self._root / (name + ".json")

    def get(self, key: str) -> Doc | None:
        return self._docs.get(key)

    def __contains__(self, key: str) -> bool:
        return key in self._docs

    def put(self, key: str, doc: Doc) -> Doc:
        with self._lock:
            path = self._path(key)
            atomic_write_json(path, {**doc, LONG_KEY: key} if path.stem.startswith("%h-") else doc)
            self._docs[key] = doc
        return doc

    def delete(self, key: str) -> Doc | None:
        with self._lock:
            doc = self._docs.pop(key, None)
            with contextlib.suppress(FileNotFoundError):
                self._path(key).unlink()
        return doc

    def keys(self) -> list[str]:
        return list(self._docs)

    def values(self) -> list[Doc]:
        return list(self._docs.values())

    def items(self) -> Iterator[tuple[str, Doc]]:
        return iter(list(self._docs.items()))


class Store:
    """All collections of one emulator data directory."""

    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir / "state"
        self._collections: dict[str, Collection] = {}

    def __getitem__(self, name: str) -> Collection:
        coll = self._collections.get(name)
        if coll is None:
            coll = self._collections[name] = Collection(self.root / name)
        return coll
