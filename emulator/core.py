"""The emulator's state and services, shared by every route (``request.app.state.emu``)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import threading
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from emulator import arm, catalog
from emulator.blobstore import BlobStore
from emulator.catalog import RegistryModel
from emulator.config import EmulatorConfig
from emulator.faults import FaultState
from emulator.lro import Operations
from emulator.store import Store, atomic_write_json

log = logging.getLogger("emulator")

DEFAULT_DATASTORE = "workspaceblobstore"


class RequestCounters:
    """Requests served, per category ("arm", "scoring", ...) and per route template."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.by_category: Counter[str] = Counter()
        self.by_route: dict[str, Counter[str]] = {}

    def add(self, category: str, route: str) -> None:
        with self._lock:
            self.by_category[category] += 1
            self.by_route.setdefault(category, Counter())[route] += 1

    def arrived(self, category: str) -> None:
        """Count a request when it arrives (its route is known, and added, once it has been routed)."""
        with self._lock:
            self.by_category[category] += 1

    def routed(self, category: str, route: str) -> None:
        with self._lock:
            self.by_route.setdefault(category, Counter())[route] += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "totals": dict(self.by_category),
                "routes": {cat: dict(routes) for cat, routes in self.by_route.items()},
            }

    def reset(self) -> None:
        with self._lock:
            self.by_category.clear()
            self.by_route.clear()


class Emulator:
    def __init__(self, cfg: EmulatorConfig) -> None:
        from emulator.blob_events import BlobWatcher
        from emulator.deployments import Deployments
        from emulator.eventgrid import EventGrid
        from emulator.jobs import JobRunner

        self.cfg = cfg
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        self.store = Store(cfg.data_dir)
        self.faults = FaultState(cfg.faults)
        self.blobs = BlobStore(cfg.storage)
        self.identity = self._load_identity()
        self.operations = Operations(self)
        self.counters = RequestCounters()
        from emulator.monitor import EndpointMetrics

        self.metrics = EndpointMetrics()  # Azure Monitor's per-deployment request metrics (emulator.monitor)
        self.base_url = ""
        self.scoring_base = ""
        self.blob_proxy_port = 0
        self.tasks: list[asyncio.Task[Any]] = []
        self.loop: asyncio.AbstractEventLoop | None = None
        self.events = EventGrid(self)
        self.jobs = JobRunner(self)
        self.deployments = Deployments(self)
        self.blob_watcher = BlobWatcher(self)

    # ------------------------------------------------------------------------------------ identity

    def _load_identity(self) -> dict[str, str]:
        path = self.cfg.data_dir / "identity.json"
        if path.exists():
            ident: dict[str, str] = json.loads(path.read_text())
            return ident
        ident = {
            "workspace_id": str(uuid.uuid4()),
            "tenant_id": str(uuid.uuid4()),
            "principal_id": str(uuid.uuid4()),
            "created": arm.iso(),
            "topic_key": base64.b64encode(os.urandom(32)).decode(),
        }
        atomic_write_json(path, ident)
        return ident

    @property
    def ws_id(self) -> str:
        c = self.cfg
        return (
            f"/subscriptions/{c.subscription_id}/resourceGroups/{c.resource_group}"
            f"/providers/{arm.PROVIDER}/workspaces/{c.workspace_name}"
        )

    @property
    def default_container(self) -> str:
        return f"azureml-blobstore-{self.identity['workspace_id']}"

    @property
    def work_dir(self) -> Path:
        return self.cfg.data_dir / "work"

    # ------------------------------------------------------------------------------------ lifecycle

    def seed(self) -> None:
        """The workspace's built-in resources: the GPU cluster and the default datastore."""
        from emulator.routes_workspace import DEFAULT_COMPUTE

        computes = self.store["computes"]
        if DEFAULT_COMPUTE["name"] not in computes:
            computes.put(
                str(DEFAULT_COMPUTE["name"]),
                {**DEFAULT_COMPUTE, "tier": "Dedicated", "min_nodes": 0, "created": self.identity["created"]},
            )
        datastores = self.store["datastores"]
        if DEFAULT_DATASTORE not in datastores:
            datastores.put(
                DEFAULT_DATASTORE,
                {
                    "name": DEFAULT_DATASTORE,
                    "account_name": self.blobs.account_name,
                    "container": self.default_container,
                    "is_default": True,
                    "credentials_type": "AccountKey",
                    "created": self.identity["created"],
                },
            )

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        await asyncio.to_thread(self.blobs.ensure_container, self.default_container)
        self.seed()
        await self.events.start()
        await self.jobs.start()
        await self.deployments.start()
        await self.blob_watcher.start()

    async def stop(self) -> None:
        await self.blob_watcher.stop()
        await self.jobs.stop()
        await self.deployments.stop()
        await self.events.stop()
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        """Run a background task, log its failure, and cancel it on shutdown."""
        task = asyncio.get_running_loop().create_task(coro, name=name)

        def done(t: asyncio.Task[Any]) -> None:
            if t in self.tasks:
                self.tasks.remove(t)
            if not t.cancelled() and t.exception() is not None:
                log.error("background task %s failed", name, exc_info=t.exception())

        self.tasks.append(task)
        task.add_done_callback(done)
        return task

    # ------------------------------------------------------------------------------------ datastore paths

    def resolve_datastore_uri(self, uri: str) -> tuple[str, str]:
        """``azureml://[subscriptions/../workspaces/<ws>/]datastores/<name>/paths/<path>`` → (container, path)."""
        marker = "datastores/"
        if not uri.startswith("azureml://") or marker not in uri or "/paths/" not in uri:
            raise ValueError(f"not a datastore URI: {uri}")
        rest = uri.split(marker, 1)[1]
        name, path = rest.split("/paths/", 1)
        doc = self.store["datastores"].get(name)
        if doc is None:
            raise LookupError(f"datastore '{name}' does not exist in workspace {self.cfg.workspace_name}")
        return doc["container"], path

    def _blob_url_parts(self, uri: str) -> tuple[str, str] | None:
        """A plain blob URL of the emulator's account (Azurite form) → (container, path)."""
        prefix = self.blobs.blob_endpoint + "/"
        if uri.startswith(prefix):
            container, _, path = uri[len(prefix):].partition("/")
            return container, path.split("?", 1)[0]
        return None

    def check_readable_uri(self, uri: str) -> None:
        """Raise LookupError/ValueError when a data input's URI cannot name a blob of the workspace."""
        if self._blob_url_parts(uri) is None:
            self.resolve_datastore_uri(uri)

    def download_uri(self, uri: str, dest: Path) -> None:
        parts = self._blob_url_parts(uri) or self.resolve_datastore_uri(uri)
        container, path = parts
        self.blobs.download_file(container, path, dest)

    # ------------------------------------------------------------------------------------ models

    def _registry_model(self, uri: str) -> tuple[str, str, str] | None:
        m = re.match(r"^azureml://registries/([^/]+)/models/([^/]+)/versions/([^/]+)$", uri)
        return (m.group(1), m.group(2), m.group(3)) if m else None

    def workspace_model_ref(self, uri: str) -> tuple[str, str] | None:
        """(name, version) from an ARM id, ``azureml:name:version`` or ``azureml://.../models/n/versions/v``."""
        m = re.search(r"/models/([^/]+)/versions/([^/]+)$", uri)
        if m and "registries/" not in uri:
            return m.group(1), m.group(2)
        m = re.match(r"^azureml:([^/:]+):([^/:]+)$", uri)
        if m:
            return m.group(1), m.group(2)
        return None

    def registry_model(self, uri: str) -> RegistryModel | None:
        """The catalog model an ``azureml://registries/<reg>/models/<name>/versions/<v>`` id names, if any;
        LookupError when it names a registry, model or version the catalog does not hold."""
        reg = self._registry_model(uri)
        if reg is None:
            return None
        registry, name, version = reg
        model = catalog.find(self.cfg, name) if registry == self.cfg.registry_name else None
        if model is None:
            raise LookupError(f"Model {uri} was not found in registry {registry}.")
        if version != model.version:
            raise LookupError(f"Model {name} version {version} was not found in registry {registry}.")
        return model

    def check_model_uri(self, uri: str) -> None:
        if self.registry_model(uri) is not None:
            return
        ref = self.workspace_model_ref(uri)
        if ref is None or f"{ref[0]}/{ref[1]}" not in self.store["models"]:
            raise LookupError(f"Model {uri} was not found.")

    def base_model_dir(self, standin: str = "phi3") -> Path:
        """A registry model's weights: ``--base-model-dir`` (for every registry model), else the stand-in
        ``emulator.basemodel`` builds for it (cached).

        Built in a subprocess (``python -m emulator.basemodel``): training the tiny model is CPU-bound and
        must not hold this server's interpreter.
        """
        if self.cfg.base_model_dir is not None:
            if not (self.cfg.base_model_dir / "config.json").is_file():
                raise RuntimeError(f"base model directory {self.cfg.base_model_dir} has no config.json")
            return self.cfg.base_model_dir
        cache = self.cfg.cache_dir
        proc = subprocess.run(
            [sys.executable, "-m", "emulator.basemodel", "--cache-dir", str(cache), "--model", standin],
            capture_output=True,
            text=True,
            check=False,
        )
        lines = [ln for ln in proc.stdout.splitlines() if ln.strip()]
        if proc.returncode != 0 or not lines:
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise RuntimeError(f"building the base model failed: {tail}")
        return Path(lines[-1].strip())

    def resolve_model_dir(self, uri: str) -> Path:
        """Local weights for a model asset id (a registry model's stand-in, or a registered workspace model)."""
        self.check_model_uri(uri)
        model = self.registry_model(uri)
        if model is not None:
            return self.base_model_dir(model.standin)
        ref = self.workspace_model_ref(uri)
        assert ref is not None
        return self.model_local_dir(ref[0], ref[1])

    def model_local_dir(self, name: str, version: str) -> Path:
        """A registered model's files on local disk (fetched from Azurite once if need be)."""
        doc = self.store["models"].get(f"{name}/{version}")
        if doc is None:
            raise LookupError(f"Model {name}:{version} was not found.")
        local = doc.get("local_path")
        if local and Path(local).exists():
            return Path(local)
        dest = self.cfg.data_dir / "models" / name / version
        uri = doc["properties"]["modelUri"]
        parts = self._blob_url_parts(uri) or self.resolve_datastore_uri(uri)
        if dest.exists():
            shutil.rmtree(dest)
        count = self.blobs.download_prefix(parts[0], parts[1], dest)
        if count == 0:
            self.blobs.download_file(parts[0], parts[1], dest / parts[1].rsplit("/", 1)[-1])
        return dest

    def connection_info(self, ca_bundle: Path) -> dict[str, Any]:
        cfg = self.cfg
        host = self.base_url
        return {
            "subscription_id": cfg.subscription_id,
            "resource_group": cfg.resource_group,
            "workspace_name": cfg.workspace_name,
            "registry_name": cfg.registry_name,
            "location": cfg.location,
            # One cloud name per emulator address *and* storage proxy: azure-ai-ml keeps the first metadata
            # registered under a name for the life of the process, and a later emulator can get the same
            # control-plane port with another proxy port (its uploads then went to a closed port).
            "cloud_name": f"TuneflowLocal{host.rsplit(':', 1)[-1]}p{self.blob_proxy_port}",
            "cloud_metadata": {
                "azure_portal": host + "/",
                "resource_manager": host + "/",
                "active_directory": host + "/",
                "aml_resource_id": host + "/",
                # The SDK builds https://<account>.blob.<storage_endpoint>; the user-info trick makes
                # that https://<account>.blob.emulator@127.0.0.1:<port>, the emulator's storage proxy.
                "storage_endpoint": f"emulator@127.0.0.1:{self.blob_proxy_port}",
                "registry_discovery_endpoint": host + "/",
            },
            "ca_bundle": str(ca_bundle),
            "base_url": host,
            "admin_endpoint": host + "/_emulator",
            "scoring_base": self.scoring_base,
            "eventgrid_topic_endpoint": host + "/api/events",
            "eventgrid_topic_key": self.identity["topic_key"],
            "storage_connection_string": cfg.storage,
            "datastore_container": self.default_container,
            "base_model_name": cfg.base_model_name,
            "registry_models": [m.name for m in catalog.models(cfg)],
        }
