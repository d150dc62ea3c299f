"""Shapes Azure Resource Manager uses everywhere: ids, timestamps, systemData, errors, list pages."""

from __future__ import annotations

import datetime as dt
import json
import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

PROVIDER = "Microsoft.MachineLearningServices"
log = logging.getLogger("emulator.arm")


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def iso(t: dt.datetime | None = None) -> str:
    """Azure's timestamp format: ISO 8601 with 7 fractional digits and a ``Z``."""
    t = t or now()
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond:06d}0Z"


def parse_iso(text: str) -> dt.datetime:
    text = text.rstrip("Z")
    if "." in text:
        head, frac = text.split(".", 1)
        text = f"{head}.{frac[:6]}"
    return dt.datetime.fromisoformat(text).replace(tzinfo=dt.UTC)


def system_data(created: str, modified: str | None = None, who: str = "tuneflow-emulator") -> dict[str, Any]:
    return {
        "createdAt": created,
        "createdBy": who,
        "createdByType": "User",
        "lastModifiedAt": modified or created,
        "lastModifiedBy": who,
        "lastModifiedByType": "User",
    }


def json_response(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(
        json.dumps(body, separators=(",", ":")),
        status_code=status,
        headers=headers,
        media_type="application/json; charset=utf-8",
    )


def error(
    status: int,
    code: str,
    message: str,
    *,
    inner: str | None = None,
    headers: dict[str, str] | None = None,
    target: str | None = None,
) -> Response:
    """An Azure-shaped error body: ``{"error": {"code", "message", "target", "details", "innerError"}}``."""
    body: dict[str, Any] = {
        "error": {
            "code": code,
            "severity": None,
            "message": message,
            "target": target,
            "details": [],
            "additionalInfo": [],
        }
    }
    if inner:
        body["error"]["innerError"] = {"code": inner, "innerError": None}
    return json_response(body, status, headers)


def not_found(kind: str, name: str) -> Response:
    return error(
        404,
        "UserError",
        f"{kind} '{name}' was not found in the workspace. The specified resource was not found.",
        inner="NotFoundError",
    )


def bad_request(message: str, target: str | None = None) -> Response:
    return error(400, "UserError", message, inner="BadArgument", target=target)


def conflict(message: str) -> Response:
    return error(409, "UserError", message, inner="Conflict")


async def read_json(request: Request) -> tuple[dict[str, Any] | None, Response | None]:
    """The request body as a JSON object, or a 400 saying why it is not one."""
    raw = await request.body()
    if not raw:
        return None, bad_request("The request body is empty; a JSON object is required.")
    try:
        body = json.loads(raw)
    except ValueError as exc:
        return None, bad_request(f"The request body is not valid JSON: {exc}")
    if not isinstance(body, dict):
        return None, bad_request("The request body must be a JSON object.")
    return body, None


def page(items: list[dict[str, Any]], next_link: str | None = None) -> Response:
    return json_response({"value": items, "nextLink": next_link})


def api_version(request: Request) -> str:
    return request.query_params.get("api-version", "")
