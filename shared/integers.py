"""Integers read from text — query parameters, headers, settings, CLI arguments, event fields: one parser.

``str.isdigit()`` is true for ``"²"`` and ``"①"``, which ``int()`` then refuses with an error nobody
caught; ``int()`` itself takes ``"٣"`` (any Unicode decimal digit), ``"1_000"`` and surrounding
whitespace. Here an integer is an optional minus sign and ASCII digits, nothing else, within bounds.
"""

from __future__ import annotations

import re
from collections.abc import Callable

_INTEGER = re.compile(r"-?[0-9]{1,32}")  # [0-9], not \d: \d is every Unicode digit


def expected(lo: int | None = None, hi: int | None = None) -> str:
    """What an integer in these bounds is called in a message: "a positive integer", "an integer from 1 to 9"."""
    if lo is not None and hi is not None:
        return f"an integer from {lo} to {hi}"
    if lo == 1:
        return "a positive integer"
    if lo == 0:
        return "zero or a positive integer"
    if lo is not None:
        return f"an integer of at least {lo}"
    if hi is not None:
        return f"an integer of at most {hi}"
    return "an integer"


def parse_int(text: str, name: str | None = None, *, lo: int | None = None, hi: int | None = None) -> int:
    """``text`` as an integer in [lo, hi], or ValueError.

    With ``name`` the message names the parameter and the value (``limit must be an integer from 1 to
    1000 (got '²')``); without it the message is only what was expected, for a caller that names both
    itself (settings: ``TUNEFLOW_X: expected a positive integer (got '²')``).
    """
    value = int(text) if isinstance(text, str) and _INTEGER.fullmatch(text) else None
    if value is None or (lo is not None and value < lo) or (hi is not None and value > hi):
        what = expected(lo, hi)
        shown = text[:40] + "…" if isinstance(text, str) and len(text) > 40 else text
        raise ValueError(f"{name} must be {what} (got {shown!r})" if name else f"expected {what}")
    return value


def argument(lo: int | None = 1, hi: int | None = None) -> Callable[[str], int]:
    """An argparse ``type=``: the same parser, refusing with argparse's usage error (exit code 2)."""

    def integer(text: str) -> int:
        import argparse  # only the CLI needs it, not the HTTP path that imports this module

        try:
            return parse_int(text, lo=lo, hi=hi)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{exc}, got {text!r}") from None

    return integer
