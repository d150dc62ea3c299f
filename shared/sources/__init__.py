"""Dataset sources: a Hugging Face dataset the app prepares itself, instead of dropped files.

``spec`` parses a manifest's ``source`` object (every problem with its key path); ``prepare`` streams the
chosen share of each split to a sink, one compact JSON row at a time. ``datasets`` is imported only when
preparing (cold start).
"""

from shared.errors import SourceError
from shared.sources.prepare import Sink, choose, prepare, rows_for
from shared.sources.spec import DEFAULT_SPLITS, Sample, SourceSpec, parse_source

# What prepare() raises when a source cannot be prepared (a permanent failure; an unreachable hub raises
# TransientError). The class itself is shared.errors.SourceError: the app's exceptions live in one tree.
SourceUnavailable = SourceError

__all__ = ["DEFAULT_SPLITS", "Sample", "Sink", "SourceSpec", "SourceUnavailable", "choose", "parse_source",
           "prepare", "rows_for"]
