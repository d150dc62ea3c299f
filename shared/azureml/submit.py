"""Submit a run's pipeline job to Azure ML, at most once.

The job name derives from the run id and Azure ML never reuses a job name, so "already exists" is
the proof of an earlier submission: it is looked up and returned, never submitted twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shared.azureml import params as finetune_params
from shared.azureml import tags
from shared.azureml.pipeline import build_pipeline_job, job_name_for
from shared.azureml.preflight import (
    MANIFEST_HINT,
    MANIFEST_NAMES,
    check_compute,
    get_base_model,
    inference_size_problem,
    tag_dict,
)
from shared.azureml.sdk import azure_errors
from shared.connections import AzureML
from shared.errors import ComputeError, FinetuneParameterError, ModelUnavailableError, QuotaError
from shared.manifest import Manifest, settings_for
from shared.runs import Run
from shared.settings import Settings
from shared.telemetry import span

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SubmittedJob:
    name: str
    studio_url: str | None
    already_existed: bool


def datastore_uri(settings: Settings, path: str) -> str:
    return f"azureml://datastores/{settings.datastore}/paths/{path}"


def run_tags(run: Run) -> dict[str, str]:
    """The user's tags (from the manifest) and tuneflow's own, which win: they are how events find the run."""
    return {
        **run.tags,
        tags.RUN_ID: run.run_id,
        tags.DATASET: run.dataset,
        tags.SHA256: run.sha256 or "",
        tags.BASE_MODEL: run.base_model,
    }


class PipelineSubmitter:
    def __init__(self, settings: Settings, clients: Callable[[], AzureML]) -> None:
        self._settings = settings
        self._clients = clients

    @property
    def clients(self) -> AzureML:
        return self._clients()

    def submit(self, run: Run) -> SubmittedJob:
        with span("submit", run_id=run.run_id):
            return self._submit(run)

    def _submit(self, run: Run) -> SubmittedJob:
        from shared.azureml.quota import quota_problem

        if not (run.train_path and run.test_path):
            raise ValueError(f"run {run.run_id} has no prepared data to submit")
        name = job_name_for(run.run_id)
        existing = self._existing_job(name)
        if existing is not None:
            return SubmittedJob(name, getattr(existing, "studio_url", None), already_existed=True)
        settings, ml = settings_for(self._settings, run.config), self.clients
        model = get_base_model(ml.registry_for(settings.registry), settings)
        target = check_compute(ml.workspace, settings, model)
        short = quota_problem(ml.workspace, target.instance_type, target.num_nodes)
        if short:  # a job that cannot get its cores would sit queued forever
            raise QuotaError(f"not submitted: the fine-tuning job {short}", instance_type=target.instance_type)
        component = self._component(settings)
        params = finetune_params.resolve(
            component.inputs, tag_dict(model.tags, "model_specific_defaults"), settings.finetune_params,
            run.config.get("finetune"), test_split=bool(run.test_path),
        )
        self._ensure_datastore()
        job = build_pipeline_job(
            component,
            base_model_id=model.id,
            target=target,
            train_uri=datastore_uri(settings, run.train_path),
            test_uri=datastore_uri(settings, run.test_path),
            params=params,
            job_name=name,
            experiment=settings.experiment,
            tags=run_tags(run),
        )
        from azure.core.exceptions import ResourceExistsError

        try:
            with azure_errors(f"submitting pipeline job {name}"):
                created = ml.workspace.jobs.create_or_update(job, experiment_name=settings.experiment)
        except ResourceExistsError:  # a concurrent delivery won the race: same job, not a second one
            created = self._existing_job(name)
            return SubmittedJob(name, getattr(created, "studio_url", None), already_existed=True)
        log.info("submitted pipeline job %s for run %s", name, run.run_id)
        return SubmittedJob(str(created.name), getattr(created, "studio_url", None), already_existed=False)

    def _existing_job(self, name: str) -> Any | None:
        from azure.core.exceptions import ResourceNotFoundError

        try:
            with azure_errors(f"looking up job {name}"):
                return self.clients.workspace.jobs.get(name)
        except ResourceNotFoundError:
            return None

    def check(self, settings: Settings, manifest: Manifest) -> list[str]:
        """The manifest's choices held against Azure before anything is spent: the model is there and may be
        fine-tuned, the compute and VM sizes are in its allow lists, the component takes the parameters.
        Only problems the manifest caused are returned (the app's own defaults fail at submission instead)."""
        keys, ml, problems = manifest.keys, self.clients, []
        model_keys = [k for k in ("base_model", "base_model_version", "registry") if k in keys]
        try:
            model = get_base_model(ml.registry_for(settings.registry), settings, MANIFEST_HINT)
        except ModelUnavailableError as exc:
            if not model_keys:
                return []
            return [f"{model_keys[0]}: {exc.message}"]
        if model_keys or keys & {"compute", "instance_type", "num_nodes"}:
            try:
                check_compute(ml.workspace, settings, model, MANIFEST_NAMES)
            except ComputeError as exc:
                chosen = [k for k in ("instance_type", "compute", "num_nodes") if k in keys] or model_keys
                problems.append(f"{chosen[0]}: {exc.message}")
        if model_keys or "deployment" in keys:
            refused = inference_size_problem(model.tags, settings.instance_type, model.name)
            if refused:
                problems.append(f"deployment.instance_type: {refused}")
        if model_keys or "finetune" in keys:
            try:
                finetune_params.resolve(self._component(settings).inputs,
                                        tag_dict(model.tags, "model_specific_defaults"), settings.finetune_params,
                                        manifest.finetune)
            except FinetuneParameterError as exc:
                problems.extend(p for p in exc.context.get("problems", []) if p.startswith("finetune."))
        return problems

    def _component(self, settings: Settings | None = None) -> Any:
        s = settings or self._settings
        # the pipeline component is the app's (its registry); a manifest's ``registry`` is its base model's
        with azure_errors(f"reading component {s.pipeline_component} from registry {self._settings.registry}"):
            if s.pipeline_version == "latest":
                return self.clients.registry.components.get(s.pipeline_component, label="latest")
            return self.clients.registry.components.get(s.pipeline_component, version=s.pipeline_version)

    def _ensure_datastore(self) -> None:
        """Register the output container as a datastore once, so jobs read prepared data in place."""
        from azure.ai.ml.entities import AccountKeyConfiguration, AzureBlobDatastore
        from azure.core.exceptions import ResourceNotFoundError

        s, ml = self._settings, self.clients
        try:
            with azure_errors(f"reading datastore {s.datastore}"):
                ml.workspace.datastores.get(s.datastore)
            return
        except ResourceNotFoundError:
            pass
        account, key = storage_account(s)
        store = AzureBlobDatastore(
            name=s.datastore,
            account_name=account,
            container_name=s.output_container,
            description="tuneflow prepared datasets",
            credentials=AccountKeyConfiguration(account_key=key) if key else None,
        )
        with azure_errors(f"creating datastore {s.datastore}"):
            ml.workspace.datastores.create_or_update(store)


# Azurite's well-known development key (public, documented by Microsoft).
_AZURITE_KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="


def storage_account(settings: Settings) -> tuple[str, str | None]:
    """(account name, account key or None for identity-based access) from the storage settings."""
    if settings.storage_connection == "UseDevelopmentStorage=true":
        return "devstoreaccount1", _AZURITE_KEY
    if settings.storage_connection:
        parts = dict(
            p.split("=", 1) for p in settings.storage_connection.split(";") if "=" in p
        )
        return parts.get("AccountName", ""), parts.get("AccountKey")
    from urllib.parse import urlparse

    return (urlparse(str(settings.storage_account_url)).hostname or "").split(".")[0], None
