"""Histogram.bins: the token-length chart's bins cover every value once, in order, up to the maximum."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.validation.histogram import Histogram


@settings(max_examples=200, deadline=None)
@given(values=st.lists(st.integers(0, 40_000), max_size=300), n=st.integers(1, 30))
def test_bins_count_every_value_in_contiguous_ranges(values, n):
    h = Histogram()
    for v in values:
        h.add(v)
    bins = h.bins(n)
    assert sum(count for _, _, count in bins) == len(values)
    assert len(bins) <= n
    if values:
        assert bins[0][0] == 0 and bins[-1][1] == max(values)
        assert all(low <= high for low, high, _ in bins)
        assert all(a[1] + 1 == b[0] for a, b in itertools.pairwise(bins))
        small = [v for v in values if v < 8192]
        for low, high, count in bins:  # exact below 8192: each small value is in its own bin
            if high < 8192:
                assert count == sum(1 for v in small if low <= v <= high)
    else:
        assert bins == []
