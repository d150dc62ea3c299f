"""The composition root: the objects handlers use, built once per process from settings."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from shared.ingest import Ingestor
from shared.records import BlobRecordStore
from shared.runs import RunStore
from shared.settings import Settings, get_settings
from shared.storage import blob_service, container


@dataclass(frozen=True)
class Services:
    settings: Settings
    runs: RunStore
    ingestor: Ingestor


def build_services(settings: Settings) -> Services:
    from shared.azureml.submit import PipelineSubmitter

    container(settings, settings.drop_container)
    output = container(settings, settings.output_container)
    runs = RunStore(BlobRecordStore(output))
    ingestor = Ingestor(settings, blob_service(settings), runs, PipelineSubmitter(settings))
    return Services(settings, runs, ingestor)


@cache
def services() -> Services:
    return build_services(get_settings())
