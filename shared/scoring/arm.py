"""A small async client for the Azure ML online-endpoint resources of ARM's REST API.

Everything the front door asks the control plane — resolving an endpoint for scoring, tearing
endpoints and deployments down, reporting their state — goes through here, on the pooled HTTP client
and with the credential the Azure ML SDK would use (managed identity in Azure, the emulator's
static token locally). Not the SDK itself:

- importing ``azure.ai.ml`` costs ~1.8 s on a cold instance, on the first request that needs it;
- its ``online_endpoints.get`` and ``get_keys`` each read the endpoint again (five calls where three do);
- it is synchronous, and would hold one of the worker's few threads for every control-plane call;
- azure-ai-ml 1.35 cannot read a deployment whose body has no ``scaleSettings`` (the local emulator's).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from shared.errors import AzureMLError, TransientError

if TYPE_CHECKING:
    import httpx

    from shared.scoring.pool import HttpPool
    from shared.settings import Settings

API_VERSION = "2023-10-01"
PUBLIC_ARM = "https://management.azure.com"
ML_SCOPE = "https://ml.azure.com/.default"
TIMEOUT_S = 30.0
_READ_ONLY = ("scoringUri", "swaggerUri", "provisioningState")


class NotFound(AzureMLError):
    """The resource does not exist."""


@dataclass(frozen=True)
class ArmTarget:
    base: str
    workspace_path: str
    scope: str
    credential: Any  # azure.core.credentials.TokenCredential


def arm_target(settings: Settings) -> ArmTarget:
    settings.require_azureml()
    if settings.emulator_connection:
        from shared.azureml.clients import StaticTokenCredential, load_emulator_connection

        conn = load_emulator_connection(settings.emulator_connection)
        base = str(conn["cloud_metadata"]["resource_manager"]).rstrip("/")
        sub, group, ws = conn["subscription_id"], conn["resource_group"], conn["workspace_name"]
        credential: Any = StaticTokenCredential()
    else:
        from azure.identity import DefaultAzureCredential

        base = PUBLIC_ARM
        sub, group, ws = settings.subscription_id, settings.resource_group, settings.workspace
        credential = DefaultAzureCredential()
    path = (f"/subscriptions/{sub}/resourceGroups/{group}/providers/Microsoft.MachineLearningServices"
            f"/workspaces/{ws}")
    return ArmTarget(base, path, base + "/.default", credential)


def _message(response: httpx.Response) -> str:
    try:
        error = response.json().get("error") or {}
        return str(error.get("message") or error.get("code") or response.reason_phrase)[:300]
    except (ValueError, AttributeError):
        return str(response.reason_phrase)


class Arm:
    def __init__(self, target: Callable[[], ArmTarget], pool: HttpPool) -> None:
        self._target = target
        self._pool = pool
        self._token: tuple[str, float] | None = None

    async def bearer(self, scope: str | None = None) -> tuple[str, float]:
        """A token for ARM (or ``scope``), cached until five minutes before it expires."""
        if scope is None and self._token and self._token[1] - time.time() > 300:
            return self._token
        target = self._target()
        # get_token may call the identity endpoint: keep it off the event loop
        token = await asyncio.to_thread(target.credential.get_token, scope or target.scope)
        pair = (str(token.token), float(token.expires_on))
        if scope is None:
            self._token = pair
        return pair

    def url(self, path: str) -> str:
        target = self._target()
        return f"{target.base}{target.workspace_path}{path}"

    async def call(self, method: str, url: str, body: Any = None, *, what: str) -> httpx.Response:
        """One request; NotFound on 404, TransientError on throttling/5xx/network, AzureMLError on other 4xx."""
        import httpx

        token, _ = await self.bearer()
        params = None if "api-version=" in url else {"api-version": API_VERSION}
        try:
            response = await self._pool.get().request(
                method, url, params=params, json=body, timeout=TIMEOUT_S,
                headers={"Authorization": f"Bearer {token}", "Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise TransientError(f"{what}: Azure ML control plane unreachable ({type(exc).__name__})") from None
        status = response.status_code
        if status == 404:
            raise NotFound(f"{what}: not found")
        if status == 429 or status >= 500:
            raise TransientError(f"{what}: Azure ML answered {status}: {_message(response)}", status=status)
        if status >= 400:
            raise AzureMLError(f"{what}: Azure ML refused ({status}): {_message(response)}", status=status)
        return response

    async def get(self, path: str, what: str) -> dict[str, Any] | None:
        try:
            response = await self.call("GET", self.url(path), what=what)
        except NotFound:
            return None
        data: dict[str, Any] = response.json()
        return data

    async def post(self, path: str, what: str, body: Any = None) -> dict[str, Any]:
        response = await self.call("POST", self.url(path), body, what=what)
        data: dict[str, Any] = response.json() if response.content else {}
        return data

    async def delete(self, path: str, what: str) -> bool:
        """Start a deletion; False when there was nothing to delete."""
        try:
            response = await self.call("DELETE", self.url(path), what=what)
        except NotFound:
            return False
        return response.status_code != 204

    async def pages(self, path: str, what: str, max_pages: int = 20) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        url: str | None = self.url(path)
        for _ in range(max_pages):
            if url is None:
                break
            page = (await self.call("GET", url, what=what)).json()
            items.extend(page.get("value") or [])
            url = page.get("nextLink")
        return items

    # ------------------------------------------------------------------------------ online endpoints

    async def endpoint(self, name: str) -> dict[str, Any] | None:
        return await self.get(f"/onlineEndpoints/{name}", f"reading endpoint {name}")

    async def deployment(self, endpoint: str, name: str) -> dict[str, Any] | None:
        return await self.get(f"/onlineEndpoints/{endpoint}/deployments/{name}", f"reading deployment {name}")

    async def deployments(self, endpoint: str) -> list[dict[str, Any]]:
        try:
            return await self.pages(f"/onlineEndpoints/{endpoint}/deployments", f"listing deployments of {endpoint}")
        except NotFound:
            return []

    async def set_traffic(self, endpoint: dict[str, Any], traffic: dict[str, int]) -> str | None:
        """PUT the endpoint back with new traffic; the URL to poll, or None when it finished at once."""
        props = {k: v for k, v in (endpoint.get("properties") or {}).items() if k not in _READ_ONLY}
        props["traffic"] = traffic
        body: dict[str, Any] = {"location": endpoint.get("location"), "tags": endpoint.get("tags") or {},
                                "kind": endpoint.get("kind"), "properties": props}
        identity = endpoint.get("identity")
        if isinstance(identity, dict) and identity.get("type"):
            body["identity"] = {"type": identity["type"]}
            if identity.get("userAssignedIdentities"):
                body["identity"]["userAssignedIdentities"] = {key: {} for key in identity["userAssignedIdentities"]}
        name = endpoint["name"]
        response = await self.call("PUT", self.url(f"/onlineEndpoints/{name}"), body,
                                   what=f"updating the traffic of {name}")
        operation = response.headers.get("azure-asyncoperation") or response.headers.get("location")
        return str(operation) if operation else None

    async def wait(self, operation_url: str | None, timeout: float) -> bool:
        """Poll a long-running operation for at most ``timeout`` seconds; True when it succeeded."""
        if operation_url is None:
            return True
        deadline = time.monotonic() + timeout
        while True:
            status = (await self.call("GET", operation_url, what="polling an operation")).json().get("status")
            if str(status).lower() in ("succeeded", "failed", "canceled"):
                return str(status).lower() == "succeeded"
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.5)
