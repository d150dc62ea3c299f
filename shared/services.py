"""The composition root: the objects handlers use, built once per process from settings."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING

from shared.ingest import Ingestor
from shared.lifecycle.context import LifecycleContext
from shared.notify import Notifier
from shared.records import BlobRecordStore
from shared.runs import RunStore
from shared.settings import Settings, get_settings
from shared.storage import blob_service, container

if TYPE_CHECKING:
    from shared.azureml.clients import AzureML


@dataclass(frozen=True)
class Services:
    settings: Settings
    runs: RunStore
    ingestor: Ingestor
    lifecycle: LifecycleContext
    notifier: Notifier


def build_services(settings: Settings, clients: AzureML | None = None) -> Services:
    """Everything handlers need; ``clients`` replaces the Azure ML clients (tests)."""
    from shared.azureml.clients import azureml
    from shared.azureml.submit import PipelineSubmitter

    container(settings, settings.drop_container)
    output = container(settings, settings.output_container)
    records = BlobRecordStore(output)
    notifier = Notifier(settings, records)
    runs = RunStore(records, on_transition=notifier.on_transition)
    ingestor = Ingestor(settings, blob_service(settings), runs, PipelineSubmitter(settings, clients))

    def read_test_sample(path: str) -> bytes | None:
        """The first row of a prepared test split (a ranged read, not the whole file)."""
        head = output.download_blob(path, offset=0, length=64 * 1024).readall()
        line = head.split(b"\n", 1)[0]
        return line or None

    lifecycle = LifecycleContext(settings, runs, lambda: clients or azureml(settings), read_test_sample)
    return Services(settings, runs, ingestor, lifecycle, notifier)


@cache
def services() -> Services:
    return build_services(get_settings())
