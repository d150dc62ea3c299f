"""An in-memory stand-in for ``shared.queue.JsonQueue``: records what was sent and with what delay."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class FakeQueue:
    sent: list[tuple[dict[str, Any], float]] = field(default_factory=list)
    error: Exception | None = None  # raised by send_json, as a storage outage would

    def send_json(self, message: dict[str, Any], delay_s: float = 0) -> None:
        if self.error is not None:
            raise self.error
        self.sent.append((message, delay_s))
