"""Every control-plane call tuneflow makes on online endpoints and deployments (and a job's cancellation),
over ARM's REST API.

Lifecycle (create, traffic switch, roll-back), teardown, idle teardown, status routes and scoring's
endpoint resolution all come here. REST over one pooled ``httpx.Client`` rather than the azure-ai-ml
SDK, by measurement (``bench/control_plane.md``): importing ``azure.ai.ml`` costs ~1.8 s on a cold
instance, and the HTTP functions must not pay it; its ``online_endpoints.get`` + ``get_keys`` read the
endpoint twice. The client is synchronous and thread-safe: async callers run it in a worker thread
(``asyncio.to_thread``), which costs a few hundred microseconds on calls that take tens of milliseconds.

Writes are long-running operations on Azure: each returns an ``Operation`` to ``wait`` on for a bounded
time, honouring the service's ``Retry-After``; callers never outlive their function's timeout.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from shared.azureml import tags
from shared.connections import ML_SCOPE
from shared.errors import AzureMLError, ResourceNotFound, TransientError

if TYPE_CHECKING:
    import httpx
    from azure.core.credentials import TokenCredential

    from shared.connections import AzureMLTarget

log = logging.getLogger(__name__)
API_VERSION = "2023-10-01"
TIMEOUT_S = 30.0
TOKEN_MARGIN_S = 300.0
_READ_ONLY = ("scoringUri", "swaggerUri", "provisioningState")
_TERMINAL = ("succeeded", "failed", "canceled")
Resource = dict[str, Any]
_MODEL_ID = re.compile(r"models/(?P<name>[^/]+)/versions/(?P<version>[^/]+)$")


@dataclass(frozen=True)
class Operation:
    """A long-running operation: the URL to poll (None when it finished at once) and the advised pause."""

    url: str | None
    retry_after_s: float = 1.0


def _message(response: httpx.Response) -> str:
    try:
        error = response.json().get("error") or {}
        return str(error.get("message") or error.get("code") or response.reason_phrase)[:300]
    except (ValueError, AttributeError):
        return str(response.reason_phrase)


def _retry_after(response: httpx.Response, default: float = 1.0) -> float:
    raw = response.headers.get("retry-after", "")
    return float(raw) if raw.isascii() and raw.isdigit() else default


def state_of(resource: Mapping[str, Any] | None) -> str:
    """``Succeeded``, ``Creating``, … as Azure spells it, or "" for a missing resource."""
    return str(((resource or {}).get("properties") or {}).get("provisioningState") or "")


def provisioning_state(resource: Mapping[str, Any] | None) -> str:
    """``state_of`` in lower case, for comparisons."""
    return state_of(resource).lower()


def model_of(model_id: str | None, resource_tags: Mapping[str, Any] | None = None) -> str | None:
    """A deployment's "name:version": from the tag the lifecycle sets, else from its model asset id."""
    tagged = (resource_tags or {}).get(tags.MODEL)
    if isinstance(tagged, str) and tagged:
        return tagged
    if not model_id:
        return None
    match = _MODEL_ID.search(model_id)
    if match:
        return f"{match['name']}:{match['version']}"
    if model_id.startswith("azureml:") and model_id.count(":") == 2:
        return model_id.split(":", 1)[1]
    return None


def deployment_models(deployments: list[Resource]) -> dict[str, str | None]:
    """deployment name → the "name:version" it serves."""
    return {str(d.get("name")): model_of((d.get("properties") or {}).get("model"), d.get("tags"))
            for d in deployments}


def traffic_of(endpoint: Mapping[str, Any]) -> dict[str, int]:
    return {str(k): int(v) for k, v in ((endpoint.get("properties") or {}).get("traffic") or {}).items()}


def mirror_of(endpoint: Mapping[str, Any]) -> dict[str, int]:
    """deployment → the % of live calls copied to it (answers dropped), as ``mirrorTraffic`` says."""
    return {str(k): int(v) for k, v in ((endpoint.get("properties") or {}).get("mirrorTraffic") or {}).items()}


def _operation(response: httpx.Response) -> Operation:
    url = response.headers.get("azure-asyncoperation") or response.headers.get("location")
    if response.status_code == 200 and not url:
        return Operation(None)
    return Operation(str(url) if url else None, _retry_after(response))


@dataclass(frozen=True)
class DeploymentSpec:
    """What a managed online deployment is created with."""

    endpoint: str
    name: str
    model_id: str  # an ARM id of a workspace model version
    instance_type: str
    instance_count: int
    request_timeout_ms: int
    liveness_initial_delay_s: int
    tags: Mapping[str, str]

    def body(self, location: str) -> Resource:
        readiness = min(self.liveness_initial_delay_s, 60)
        return {
            "location": location,
            "tags": dict(self.tags),
            "sku": {"name": "Default", "capacity": self.instance_count},
            "properties": {
                "endpointComputeType": "Managed",
                "model": self.model_id,
                "instanceType": self.instance_type,
                "requestSettings": {"requestTimeout": f"PT{self.request_timeout_ms / 1000:g}S"},
                "livenessProbe": {"initialDelay": f"PT{self.liveness_initial_delay_s}S"},
                "readinessProbe": {"initialDelay": f"PT{readiness}S"},
                "scaleSettings": {"scaleType": "Default"},
            },
        }


@dataclass(frozen=True)
class ScoringTarget:
    uri: str
    key: str = field(repr=False)


class ControlPlane:
    """Online endpoints and deployments of one workspace, read and written through ARM."""

    def __init__(self, target: Callable[[], AzureMLTarget], credential: Callable[[], TokenCredential],
                 http: Callable[[], httpx.Client], clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self._target = target
        self._credential = credential
        self._http = http
        self._clock = clock
        self._sleep = sleep
        self._tokens: dict[str, tuple[str, float]] = {}
        self._location: str | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------------------------ plumbing

    def bearer(self, scope: str | None = None) -> tuple[str, float]:
        """A token for ARM (or ``scope``) and its expiry (epoch s), cached until five minutes before it."""
        scope = scope or self._target().arm_scope
        with self._lock:
            cached = self._tokens.get(scope)
            if cached and cached[1] - time.time() > TOKEN_MARGIN_S:
                return cached
        token = self._credential().get_token(scope)
        pair = (str(token.token), float(token.expires_on))
        with self._lock:
            self._tokens[scope] = pair
        return pair

    def url(self, path: str) -> str:
        target = self._target()
        return f"{target.arm_base}{target.workspace_path}{path}"

    def workspace_path(self) -> str:
        return self._target().workspace_path

    def call(self, method: str, url: str, body: Any = None, *, what: str, scope: str | None = None) -> httpx.Response:
        """One request: ResourceNotFound on 404, TransientError on throttling/5xx/network, AzureMLError else.
        ``scope``: a data-plane service's (run history, MLflow), which takes no ARM api-version."""
        import httpx

        token, _ = self.bearer(scope)
        params = None if "api-version=" in url or scope else {"api-version": API_VERSION}
        try:
            response = self._http().request(method, url, params=params, json=body, timeout=TIMEOUT_S,
                                            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"})
        except httpx.HTTPError as exc:
            raise TransientError(f"{what}: Azure ML control plane unreachable ({type(exc).__name__})") from None
        status = response.status_code
        if status == 404:
            raise ResourceNotFound(f"{what}: not found")
        if status == 429 or status >= 500:
            raise TransientError(f"{what}: Azure ML answered {status}: {_message(response)}", status=status)
        if status >= 400:
            raise AzureMLError(f"{what}: Azure ML refused ({status}): {_message(response)}", status=status)
        return response

    def get(self, path: str, what: str) -> Resource | None:
        try:
            response = self.call("GET", self.url(path), what=what)
        except ResourceNotFound:
            return None
        data: Resource = response.json()
        return data

    def post(self, path: str, what: str, body: Any = None) -> Resource:
        response = self.call("POST", self.url(path), body, what=what)
        data: Resource = response.json() if response.content else {}
        return data

    def pages(self, path: str, what: str, max_pages: int = 20) -> list[Resource]:
        items: list[Resource] = []
        url: str | None = self.url(path)
        for _ in range(max_pages):
            if url is None:
                break
            page = self.call("GET", url, what=what).json()
            items.extend(page.get("value") or [])
            url = page.get("nextLink")
        return items

    def wait(self, operation: Operation | None, timeout: float) -> bool:
        """Poll a long-running operation for at most ``timeout`` seconds; True when it succeeded.

        Each pause is the service's ``Retry-After`` (Azure ML sends 10-600 s), never shorter: when the next
        poll would fall after ``timeout``, it stops there with False and the reconciler finishes the work."""
        if operation is None or operation.url is None:
            return True
        deadline = self._clock() + timeout
        pause = operation.retry_after_s
        while True:
            response = self.call("GET", operation.url, what="polling an operation")
            status = str(response.json().get("status") or "").lower()
            if status in _TERMINAL:
                return status == "succeeded"
            pause = _retry_after(response, pause)
            if self._clock() + pause > deadline:
                return False
            self._sleep(max(0.05, pause))

    def location(self) -> str:
        """The workspace's region: new endpoints and deployments are created in it."""
        if self._location is None:
            workspace = self.call("GET", self.url(""), what="reading the workspace").json()
            self._location = str(workspace.get("location") or "")
        return self._location

    # ------------------------------------------------------------------------------------ reads

    def endpoint(self, name: str) -> Resource | None:
        return self.get(f"/onlineEndpoints/{name}", f"reading endpoint {name}")

    def endpoints(self) -> list[Resource]:
        return self.pages("/onlineEndpoints", "listing endpoints")

    def deployment(self, endpoint: str, name: str) -> Resource | None:
        return self.get(f"/onlineEndpoints/{endpoint}/deployments/{name}", f"reading deployment {name}")

    def deployments(self, endpoint: str) -> list[Resource]:
        try:
            return self.pages(f"/onlineEndpoints/{endpoint}/deployments", f"listing deployments of {endpoint}")
        except ResourceNotFound:
            return []

    def keys(self, name: str) -> Resource:
        return self.post(f"/onlineEndpoints/{name}/listKeys", f"reading the keys of {name}")

    def token(self, name: str) -> Resource:
        return self.post(f"/onlineEndpoints/{name}/token", f"getting a token for {name}")

    def model_id(self, name: str, version: str) -> str:
        """The ARM id of a workspace model version (what a deployment's ``model`` names)."""
        return f"{self._target().workspace_path}/models/{name}/versions/{version}"

    def scoring_target(self, endpoint: str) -> ScoringTarget:
        """The endpoint's scoring URI and a credential for it (its key, an Entra token or its own token),
        read once for any number of ``invoke_at`` calls."""
        doc = self.endpoint(endpoint)
        if doc is None:
            raise ResourceNotFound(f"endpoint {endpoint} does not exist")
        props = doc.get("properties") or {}
        auth = str(props.get("authMode") or "Key").lower()
        if auth == "key":
            key = str(self.keys(endpoint).get("primaryKey") or "")
        elif auth == "aadtoken":
            key = self.bearer(ML_SCOPE)[0]
        else:
            key = str(self.token(endpoint).get("accessToken") or "")
        return ScoringTarget(str(props.get("scoringUri") or ""), key)

    def invoke_at(self, target: ScoringTarget, deployment: str, body: bytes, timeout: float) -> bytes:
        """Score one request through ``deployment`` alone (the lifecycle's smoke test and evaluation; the
        HTTP API's scoring has its own path, ``shared.scoring``). Raises on anything but a 200."""
        import httpx

        try:
            response = self._http().post(target.uri, content=body, timeout=timeout, headers={
                "Authorization": f"Bearer {target.key}", "Content-Type": "application/json",
                "azureml-model-deployment": deployment})
        except httpx.HTTPError as exc:
            raise TransientError(f"scoring {deployment}: no answer ({type(exc).__name__})") from None
        if response.status_code != 200:
            raise AzureMLError(f"scoring {deployment}: answered {response.status_code}: {response.text[:200]}",
                               status=response.status_code)
        return response.content

    def invoke(self, endpoint: str, deployment: str, body: bytes, timeout: float) -> bytes:
        return self.invoke_at(self.scoring_target(endpoint), deployment, body, timeout)

    # ------------------------------------------------------------------------------------ writes

    def create_endpoint(self, name: str, *, description: str, tags: Mapping[str, str],
                        auth_mode: str = "Key") -> Operation:
        body = {"location": self.location(), "tags": dict(tags), "identity": {"type": "SystemAssigned"},
                "properties": {"authMode": auth_mode, "description": description}}
        log.info("creating endpoint %s", name)
        return _operation(self.call("PUT", self.url(f"/onlineEndpoints/{name}"), body,
                                    what=f"creating endpoint {name}"))

    def create_deployment(self, spec: DeploymentSpec) -> Operation:
        log.info("creating deployment %s on %s (0%% traffic)", spec.name, spec.endpoint)
        return _operation(self.call("PUT", self.url(f"/onlineEndpoints/{spec.endpoint}/deployments/{spec.name}"),
                                    spec.body(self.location()), what=f"creating deployment {spec.name}"))

    def set_traffic(self, endpoint: Mapping[str, Any], traffic: Mapping[str, int],
                    mirror: Mapping[str, int] | None = None) -> Operation:
        """PUT the endpoint back with a new traffic split (and mirror split, when given)."""
        props = {k: v for k, v in (endpoint.get("properties") or {}).items() if k not in _READ_ONLY}
        props["traffic"] = dict(traffic)
        if mirror is not None:
            props["mirrorTraffic"] = dict(mirror)
        body: Resource = {"location": endpoint.get("location") or self.location(), "tags": endpoint.get("tags") or {},
                          "kind": endpoint.get("kind"), "properties": props}
        identity = endpoint.get("identity")
        if isinstance(identity, dict) and identity.get("type"):
            body["identity"] = {"type": identity["type"]}
            if identity.get("userAssignedIdentities"):
                body["identity"]["userAssignedIdentities"] = {key: {} for key in identity["userAssignedIdentities"]}
        name = endpoint["name"]
        return _operation(self.call("PUT", self.url(f"/onlineEndpoints/{name}"), body,
                                    what=f"updating the traffic of {name}"))

    def delete_endpoint(self, name: str) -> Operation | None:
        """Start deleting an endpoint (and its deployments); None when there was nothing to delete."""
        return self._delete(f"/onlineEndpoints/{name}", f"deleting endpoint {name}")

    def delete_deployment(self, endpoint: str, name: str) -> Operation | None:
        """Start deleting a deployment that takes no traffic; None when there was nothing to delete."""
        return self._delete(f"/onlineEndpoints/{endpoint}/deployments/{name}", f"deleting deployment {name}")

    def cancel_job(self, name: str) -> Operation | None:
        """Ask Azure ML to cancel a job (``POST …/jobs/{name}/cancel``); None when there is no such job."""
        try:
            response = self.call("POST", self.url(f"/jobs/{name}/cancel"), what=f"cancelling job {name}")
        except ResourceNotFound:
            return None
        return _operation(response)

    def _delete(self, path: str, what: str) -> Operation | None:
        try:
            response = self.call("DELETE", self.url(path), what=what)
        except ResourceNotFound:
            return None
        return None if response.status_code == 204 else _operation(response)
