"""A read-only raw stream of known size that keeps its own position (seek/tell without I/O).

The base of readers that fetch or hash byte ranges on demand: a blob read by ranges
(``shared.storage.SeekableBlob``) and a file hashed as Parquet seeks through it
(``shared.validation.readers.HashingFile``). Subclasses implement ``readinto`` at ``_pos``.
"""

from __future__ import annotations

import io


class PositionedReader(io.RawIOBase):
    def __init__(self, size: int) -> None:
        super().__init__()
        self._size = size
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        return self._pos
