"""How tuneflow reaches Azure: decided once, from settings, for every client the app builds.

- **Where Azure ML is.** ``TUNEFLOW_EMULATOR_CONNECTION`` names the local emulator's ``connection.json``
  (its ARM base URL, workspace, custom cloud and CA); otherwise it is Azure's public cloud and the
  workspace the settings name. Nothing else in the app asks this question.
- **Who we are.** One credential: ``DefaultAzureCredential`` in Azure (managed identity; a user-assigned
  one is chosen by ``AZURE_CLIENT_ID``), or a static token the emulator accepts.
- **Whom we trust.** The emulator's CA is handed to each client that talks to it (``connection_verify``,
  an ``ssl.SSLContext``); the process environment is never written.

Every client is built on first use and then reused: importing a client library (``azure.ai.ml`` costs
~1.8 s) is only paid by the function that needs it.
"""

from __future__ import annotations

import base64
import json
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from shared.errors import SettingsError

if TYPE_CHECKING:
    import httpx
    from azure.ai.ml import MLClient
    from azure.core.credentials import AccessToken, TokenCredential
    from azure.storage.blob import BlobServiceClient
    from azure.storage.queue import QueueClient

    from shared.settings import Settings

PUBLIC_ARM = "https://management.azure.com"
ML_SCOPE = "https://ml.azure.com/.default"
T = TypeVar("T")


@dataclass(frozen=True)
class AzureMLTarget:
    """The workspace tuneflow works in, and the ARM endpoint that serves it."""

    kind: Literal["azure", "emulator"]
    arm_base: str
    subscription_id: str
    resource_group: str
    workspace: str
    registry: str
    ca_bundle: str | None = None
    cloud: tuple[str, dict[str, Any]] | None = None  # (name, metadata) of the emulator's custom cloud

    @property
    def workspace_path(self) -> str:
        return (f"/subscriptions/{self.subscription_id}/resourceGroups/{self.resource_group}"
                f"/providers/Microsoft.MachineLearningServices/workspaces/{self.workspace}")

    @property
    def arm_scope(self) -> str:
        return self.arm_base.rstrip("/") + "/.default"


@dataclass(frozen=True)
class AzureML:
    """The SDK clients for the workspace and the registry."""

    workspace: MLClient
    registry: MLClient
    subscription_id: str
    resource_group: str
    workspace_name: str
    registry_name: str = "azureml"
    # another registry's client (a manifest's ``registry``), built on first use and kept
    other_registry: Callable[[str], MLClient] | None = None

    def registry_for(self, name: str) -> MLClient:
        if name == self.registry_name or self.other_registry is None:
            return self.registry
        return self.other_registry(name)


def load_emulator_connection(path: str) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise SettingsError(
            f"TUNEFLOW_EMULATOR_CONNECTION: cannot read {path} ({exc}); start the emulator "
            "(`python -m emulator --data-dir DIR`) and point this at DIR/connection.json"
        ) from exc
    if not isinstance(data, dict):
        raise SettingsError(f"TUNEFLOW_EMULATOR_CONNECTION: {path} is not a JSON object")
    return data


def azureml_target(settings: Settings) -> AzureMLTarget:
    settings.require_azureml()
    if settings.emulator_connection:
        conn = load_emulator_connection(settings.emulator_connection)
        try:
            return AzureMLTarget(
                "emulator", str(conn["cloud_metadata"]["resource_manager"]).rstrip("/"),
                str(conn["subscription_id"]), str(conn["resource_group"]), str(conn["workspace_name"]),
                settings.registry, str(conn["ca_bundle"]) if conn.get("ca_bundle") else None,
                (str(conn["cloud_name"]), dict(conn["cloud_metadata"])))
        except (KeyError, TypeError) as exc:
            raise SettingsError(f"TUNEFLOW_EMULATOR_CONNECTION: {settings.emulator_connection} lacks {exc}") from None
    return AzureMLTarget("azure", PUBLIC_ARM, str(settings.subscription_id), str(settings.resource_group),
                         str(settings.workspace), settings.registry)


class StaticTokenCredential:
    """Any bearer token satisfies the emulator. The SDK decodes tokens as JWTs (for the caller's
    object id), so this is an unsigned JWT with the claims it reads."""

    def get_token(self, *scopes: str, **kwargs: Any) -> AccessToken:
        from azure.core.credentials import AccessToken

        expires = int(time.time()) + 24 * 3600
        claims = {"oid": "00000000-0000-0000-0000-000000000001", "tid": "00000000-0000-0000-0000-000000000000",
                  "upn": "tuneflow@local", "exp": expires}
        if scopes:  # the SDK checks the audience of the token it asked for
            claims["aud"] = scopes[0].removesuffix("/.default")
        token = ".".join(_b64(part) for part in ({"alg": "none", "typ": "JWT"}, claims)) + ".c2ln"
        return AccessToken(token, expires)


def _b64(obj: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")


class Connections:
    """Every client the app uses, built once per process from settings (tests pass their own pieces)."""

    def __init__(self, settings: Settings, *, credential: TokenCredential | None = None,
                 target: AzureMLTarget | None = None) -> None:
        self.settings = settings
        self._credential = credential
        self._target = target
        self._lock = threading.RLock()
        self._built: dict[str, Any] = {}

    def _once(self, key: str, build: Callable[[], T]) -> T:
        """Build ``key`` on first use, once, whichever thread asks first."""
        with self._lock:
            if key not in self._built:
                self._built[key] = build()
            value: T = self._built[key]
            return value

    # ------------------------------------------------------------------------------ identity and trust

    @property
    def target(self) -> AzureMLTarget:
        """Where Azure ML is (raises SettingsError naming what to set when it is not configured)."""
        return self._target or self._once("target", lambda: azureml_target(self.settings))

    @property
    def credential(self) -> TokenCredential:
        """Managed identity (or the developer's login) in Azure; a static token for the emulator."""
        if self._credential is not None:
            return self._credential
        return self._once("credential", self._build_credential)

    def _build_credential(self) -> TokenCredential:
        return StaticTokenCredential() if self.settings.emulator_connection else self.identity()

    def identity(self) -> TokenCredential:
        """The app's own Entra identity: storage, Event Grid and (in Azure) Azure ML trust it."""
        if self._credential is not None:
            return self._credential
        return self._once("identity", self._build_identity)

    def _build_identity(self) -> TokenCredential:
        from azure.identity import DefaultAzureCredential

        # a user-assigned managed identity must be named; a system-assigned one or a developer login need not
        client_id = self.settings.azure_client_id
        return DefaultAzureCredential(**({"managed_identity_client_id": client_id} if client_id else {}))

    @cached_property
    def ca_bundle(self) -> str | None:
        """The emulator's CA (PEM path), when Azure ML is the emulator; None means the system's CAs."""
        return self.target.ca_bundle if self.settings.emulator_connection else None

    def tls(self) -> ssl.SSLContext:
        """The TLS context for Azure ML's control and data planes (ARM, scoring URIs)."""
        return self._once("tls", lambda: ssl.create_default_context(cafile=self.ca_bundle))

    # ------------------------------------------------------------------------------------------ clients

    def ml(self) -> AzureML:
        """The azure-ai-ml clients (the SDK import is paid here, on first use)."""
        return self._once("ml", self._build_ml)

    def _build_ml(self) -> AzureML:
        from azure.ai.ml import MLClient

        t = self.target
        kwargs: dict[str, Any] = {"show_progress": False}
        if t.cloud is not None:
            kwargs.update(cloud=t.cloud[0], cloud_metadata=t.cloud[1])
        if t.ca_bundle:
            kwargs["connection_verify"] = t.ca_bundle
        ws = MLClient(self.credential, t.subscription_id, t.resource_group, t.workspace, **kwargs)
        reg = MLClient(self.credential, registry_name=t.registry, **kwargs)
        others: dict[str, MLClient] = {}
        lock = threading.Lock()

        def other(name: str) -> MLClient:
            with lock:
                if name not in others:
                    others[name] = MLClient(self.credential, registry_name=name, **kwargs)
                return others[name]

        return AzureML(ws, reg, t.subscription_id, t.resource_group, t.workspace, t.registry, other)

    def http(self) -> httpx.Client:
        """The pooled HTTP client for Azure's REST APIs: Azure ML's control plane and smoke tests, the
        notification topic (the emulator serves both, with its CA)."""
        return self._once("http", self._build_http)

    def _build_http(self) -> httpx.Client:
        import httpx

        return httpx.Client(verify=self.tls(), follow_redirects=False, timeout=httpx.Timeout(30.0, connect=10.0),
                            limits=httpx.Limits(max_connections=32, max_keepalive_connections=16))

    def blob_service(self) -> BlobServiceClient:
        """One pooled client for the app's storage account."""
        return self._once("blob", self._build_blob_service)

    def _build_blob_service(self) -> BlobServiceClient:
        from azure.storage.blob import BlobServiceClient

        s = self.settings
        if s.storage_connection:
            return BlobServiceClient.from_connection_string(s.storage_connection)
        return BlobServiceClient(str(s.storage_account_url), self.identity())

    def queue(self, name: str) -> QueueClient:
        """A client of the app's storage queue ``name`` (base64 messages, as the Functions host expects)."""
        from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

        s = self.settings
        encode, decode = TextBase64EncodePolicy(), TextBase64DecodePolicy()
        if s.storage_connection:
            return QueueClient.from_connection_string(s.storage_connection, name, message_encode_policy=encode,
                                                      message_decode_policy=decode)
        # the queue service of the account whose blob URL is configured
        account = str(s.storage_account_url).rstrip("/").replace(".blob.", ".queue.", 1)
        return QueueClient(account, name, credential=self.identity(), message_encode_policy=encode,
                           message_decode_policy=decode)
