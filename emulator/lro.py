"""Long-running operations as Azure Resource Manager signals them.

A PUT/DELETE that starts work answers 201/202 with ``Azure-AsyncOperation`` (poll for
``{"status": "InProgress" | "Succeeded" | "Failed" | "Canceled"}``) and ``Location`` headers plus
``Retry-After``; azure-core's ``ARMPolling`` follows them and, for a PUT, finally GETs the resource.
Operations persist, so polling survives an emulator restart.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response

from emulator import arm

if TYPE_CHECKING:
    from emulator.core import Emulator

IN_PROGRESS = "InProgress"
SUCCEEDED = "Succeeded"
FAILED = "Failed"
CANCELED = "Canceled"


class Operations:
    def __init__(self, emu: Emulator) -> None:
        self.emu = emu
        self.coll = emu.store["operations"]

    def start(self, kind: str, target: str) -> dict[str, Any]:
        op_id = str(uuid.uuid4())
        doc = {"id": op_id, "kind": kind, "target": target, "status": IN_PROGRESS, "startTime": arm.iso()}
        return self.coll.put(op_id, doc)

    def finish(self, op_id: str, status: str, error: dict[str, Any] | None = None) -> None:
        doc = self.coll.get(op_id)
        if doc is None:
            return
        doc = {**doc, "status": status, "endTime": arm.iso()}
        if error:
            doc["error"] = error
        self.coll.put(op_id, doc)

    def headers(self, op_id: str, api_version: str) -> dict[str, str]:
        base = (
            f"{self.emu.base_url}/subscriptions/{self.emu.cfg.subscription_id}/providers/{arm.PROVIDER}"
            f"/locations/{self.emu.cfg.location}"
        )
        query = f"?api-version={api_version}" if api_version else ""
        return {
            "Azure-AsyncOperation": f"{base}/mfeOperationsStatus/{op_id}{query}",
            "Location": f"{base}/mfeOperationResults/{op_id}{query}",
            "Retry-After": self.emu.cfg.retry_after_header,
            "x-ms-async-operation-timeout": "PT1H",
        }

    def refresh(self, op: dict[str, Any]) -> dict[str, Any]:
        """Operations that track other state (a job cancellation) settle when that state does."""
        if op["status"] == IN_PROGRESS and op["kind"] == "job-cancel":
            job = self.emu.store["jobs"].get(op["target"])
            if job is None or job["status"] in ("Canceled", "Completed", "Failed"):
                self.finish(op["id"], SUCCEEDED)
                return self.coll.get(op["id"]) or op
        return op


async def operation_status(request: Request) -> Response:
    emu: Emulator = request.app.state.emu
    op = emu.operations.coll.get(request.path_params["op_id"])
    if op is None:
        return arm.error(404, "NotFound", "The operation was not found.", inner="NotFoundError")
    op = emu.operations.refresh(op)
    body: dict[str, Any] = {
        "id": str(request.url.path),
        "name": op["id"],
        "status": op["status"],
        "startTime": op["startTime"],
    }
    if op.get("endTime"):
        body["endTime"] = op["endTime"]
    if op.get("error"):
        body["error"] = op["error"]
    # Without Retry-After azure-core's pollers sleep their default interval (30 s) between polls.
    headers = {"Retry-After": emu.cfg.retry_after_header} if op["status"] == IN_PROGRESS else None
    return arm.json_response(body, headers=headers)


async def operation_result(request: Request) -> Response:
    emu: Emulator = request.app.state.emu
    op = emu.operations.coll.get(request.path_params["op_id"])
    if op is None:
        return arm.error(404, "NotFound", "The operation was not found.", inner="NotFoundError")
    op = emu.operations.refresh(op)
    if op["status"] == IN_PROGRESS:
        return Response(status_code=202, headers=emu.operations.headers(op["id"], arm.api_version(request)))
    if op["status"] == FAILED:
        err = op.get("error") or {"code": "InternalServerError", "message": "The operation failed."}
        return arm.json_response({"error": err}, 400)
    return Response(status_code=204)
