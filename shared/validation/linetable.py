"""A table of non-zero 64-bit conversation key → first line it was seen on, compact when it grows.

This is the validator's only per-row memory. Up to ``small`` entries (default 100,000) it is a
plain ``dict`` — C speed, ~100 bytes an entry, so at most ~10 MB. Past that it moves into an
open-addressing table storing each distinct conversation as an 8-byte hash plus a 4-byte line
number in two flat arrays kept at most 2/3 full (12–36 bytes an entry): a million distinct
conversations take ~24 MB instead of ~100 MB.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator

_MAX_LINE = (1 << 32) - 1
SMALL = 100_000


def _zeros(code: str, n: int) -> array[int]:
    return array(code, bytes(array(code).itemsize * n))


class LineTable:
    __slots__ = ("_keys", "_limit", "_lines", "_mask", "_size", "_small")

    def __init__(self, small: int = SMALL) -> None:
        self._small: dict[int, int] | None = {}
        self._limit = small
        self._keys = _zeros("Q", 0)
        self._lines = _zeros("I", 0)
        self._mask = 0
        self._size = 0

    def __len__(self) -> int:
        return len(self._small) if self._small is not None else self._size

    @property
    def compact(self) -> bool:
        return self._small is None

    def items(self) -> Iterator[tuple[int, int]]:
        """Every ``(key, first line)``, in no particular order."""
        if self._small is not None:
            return iter(self._small.items())
        return ((key, line) for key, line in zip(self._keys, self._lines, strict=True) if key)

    def get(self, key: int) -> int:
        """The line ``key`` was first added with, or 0 if it was never added."""
        if self._small is not None:
            return self._small.get(key, 0)
        keys, mask = self._keys, self._mask
        i = key & mask
        while True:
            k = keys[i]
            if k == key:
                return self._lines[i]
            if k == 0:
                return 0
            i = (i + 1) & mask

    def add(self, key: int, line: int) -> int:
        """Record ``key`` at ``line`` (lines increase) unless present; the earlier line, or 0 if new."""
        small = self._small
        if small is not None:
            first = small.setdefault(key, line)
            if first != line:
                return first
            if len(small) > self._limit:
                self._compact(small)
            return 0
        keys, mask = self._keys, self._mask
        i = key & mask
        while True:
            k = keys[i]
            if k == key:
                return self._lines[i]
            if k == 0:
                break
            i = (i + 1) & mask
        keys[i] = key
        self._lines[i] = min(line, _MAX_LINE)
        self._size += 1
        if self._size * 3 >= len(keys) * 2:
            self._rebuild(len(keys) * 2, zip(self._keys, self._lines, strict=True))
        return 0

    def _compact(self, small: dict[int, int]) -> None:
        capacity = 1 << (len(small) * 2 - 1).bit_length()
        self._small = None
        self._size = len(small)
        self._rebuild(capacity, small.items())

    def _rebuild(self, capacity: int, entries: Iterable[tuple[int, int]]) -> None:
        keys, lines = _zeros("Q", capacity), _zeros("I", capacity)
        mask = capacity - 1
        for key, line in entries:
            if key:
                i = key & mask
                while keys[i]:
                    i = (i + 1) & mask
                keys[i] = key
                lines[i] = min(line, _MAX_LINE)
        self._keys, self._lines, self._mask = keys, lines, mask
