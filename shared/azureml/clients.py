"""Azure ML clients (workspace + registry), built once per process.

In Azure the credential is ``DefaultAzureCredential`` (managed identity in the Function app). When
``TUNEFLOW_EMULATOR_CONNECTION`` names the local emulator's ``connection.json``, the same SDK is
pointed at the emulator's custom cloud instead; nothing else in the app changes.
"""

from __future__ import annotations

import base64
import json
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from shared.errors import SettingsError

if TYPE_CHECKING:
    from azure.ai.ml import MLClient
    from azure.core.credentials import AccessToken

    from shared.settings import Settings


@dataclass(frozen=True)
class AzureML:
    workspace: MLClient
    registry: MLClient
    subscription_id: str
    resource_group: str
    workspace_name: str


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


_cache: dict[tuple[Any, ...], AzureML] = {}
_lock = threading.Lock()


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


def azureml(settings: Settings) -> AzureML:
    """The process-wide clients for ``settings`` (the SDK import is paid on first use only)."""
    settings.require_azureml()
    key = (
        settings.emulator_connection,
        settings.subscription_id,
        settings.resource_group,
        settings.workspace,
        settings.registry,
    )
    with _lock:
        if key not in _cache:
            _cache[key] = _build(settings)
        return _cache[key]


def _build(settings: Settings) -> AzureML:
    from azure.ai.ml import MLClient

    kwargs: dict[str, Any] = {}
    credential: Any
    if settings.emulator_connection:
        conn = load_emulator_connection(settings.emulator_connection)
        subscription, group, workspace = conn["subscription_id"], conn["resource_group"], conn["workspace_name"]
        credential = StaticTokenCredential()
        kwargs = {"cloud": conn["cloud_name"], "cloud_metadata": conn["cloud_metadata"]}
        if conn.get("ca_bundle"):
            # The emulator speaks HTTPS with its own CA; parts of the SDK use plain `requests`,
            # which only honour the environment variable, so set both.
            kwargs["connection_verify"] = conn["ca_bundle"]
            os.environ["REQUESTS_CA_BUNDLE"] = conn["ca_bundle"]
    else:
        from azure.identity import DefaultAzureCredential

        subscription = str(settings.subscription_id)
        group = str(settings.resource_group)
        workspace = str(settings.workspace)
        credential = DefaultAzureCredential()
    ws = MLClient(credential, subscription, group, workspace, show_progress=False, **kwargs)
    reg = MLClient(credential, registry_name=settings.registry, show_progress=False, **kwargs)
    return AzureML(ws, reg, subscription, group, workspace)
