"""What the lifecycle steps share: settings, the run store, Azure ML clients and a smoke tester."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from shared.runs import RunStore
from shared.settings import Settings

if TYPE_CHECKING:
    from shared.azureml.clients import AzureML


@dataclass
class LifecycleContext:
    settings: Settings
    runs: RunStore
    clients: Callable[[], AzureML]
    read_test_sample: Callable[[str], bytes | None] = field(default=lambda path: None)

    @property
    def ml(self) -> AzureML:
        return self.clients()
