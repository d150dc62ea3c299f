"""SDK values that are sometimes plain strings and sometimes ``(str, Enum)`` members."""

from __future__ import annotations

from typing import Any


def text(value: Any) -> str:
    """``"Completed"`` for both ``"Completed"`` and ``JobStatus.COMPLETED`` (whose ``str()`` is its name)."""
    if value is None:
        return ""
    return str(getattr(value, "value", value))
