"""A constant-memory histogram of non-negative integers with accurate quantiles.

Values below ``EXACT`` are counted exactly (one list slot each), so their quantiles are exact.
Larger values fall into geometric buckets 1% wide and a quantile there is reported as the bucket's
geometric midpoint: within 0.5% of the true value. Memory: ``EXACT`` slots plus at most a few
thousand buckets, whatever the number of values.
"""

from __future__ import annotations

import math

EXACT = 8192
_RATIO = 1.01
_LOG_RATIO = math.log(_RATIO)


class Histogram:
    __slots__ = ("count", "exact", "large", "maximum", "total")

    def __init__(self) -> None:
        self.exact = [0] * EXACT
        self.large: dict[int, int] = {}
        self.count = 0
        self.total = 0
        self.maximum = 0

    def add(self, value: int) -> None:
        self.count += 1
        self.total += value
        self.maximum = max(self.maximum, value)
        if value < EXACT:
            self.exact[value] += 1
        else:
            self.add_large(value)

    def add_large(self, value: int) -> None:
        """Bucket a value ≥ ``EXACT`` without counting it: for callers that count into ``exact``
        themselves and report their totals through ``absorb``."""
        bucket = int(math.log(value / EXACT) / _LOG_RATIO)
        self.large[bucket] = self.large.get(bucket, 0) + 1

    def absorb(self, count: int, total: int, maximum: int) -> None:
        """Account for values a caller put into ``exact`` / ``add_large`` directly."""
        self.count += count
        self.total += total
        self.maximum = max(self.maximum, maximum)

    def merge(self, other: Histogram) -> None:
        """Add every value counted by ``other``."""
        self.exact = [a + b for a, b in zip(self.exact, other.exact, strict=True)]
        for bucket, n in other.large.items():
            self.large[bucket] = self.large.get(bucket, 0) + n
        self.absorb(other.count, other.total, other.maximum)

    def bins(self, n: int = 20) -> list[tuple[int, int, int]]:
        """``n`` equal-width bins over [0, maximum] as (low, high, count), ``high`` inclusive: the shape of
        the spread for a chart (a large value counts in the bin of its bucket's midpoint)."""
        if not self.count:
            return []
        width = max(1, math.ceil((self.maximum + 1) / n))
        counts = [0] * n
        for value, seen in enumerate(self.exact):
            if seen:
                counts[min(n - 1, value // width)] += seen
        for bucket, seen in self.large.items():
            middle = min(self.maximum, round(EXACT * _RATIO**bucket * math.sqrt(_RATIO)))
            counts[min(n - 1, middle // width)] += seen
        last = self.maximum // width  # no empty bins past the largest value
        return [(i * width, min(self.maximum, (i + 1) * width - 1), counts[i]) for i in range(min(n, last + 1))]

    def quantile(self, q: float) -> int:
        """The nearest-rank quantile (the smallest value with at least ``q`` of the values ≤ it)."""
        if not self.count:
            return 0
        rank = max(1, math.ceil(q * self.count))
        seen = 0
        for value, n in enumerate(self.exact):
            seen += n
            if seen >= rank:
                return value
        for bucket in sorted(self.large):
            seen += self.large[bucket]
            if seen >= rank:
                low = EXACT * _RATIO**bucket
                return min(self.maximum, round(low * math.sqrt(_RATIO)))
        return self.maximum
