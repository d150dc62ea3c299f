"""Requests, responses and errors of the HTTP API, independent of ``azure.functions``.

Every error answers with one JSON shape, the one OpenAI clients already parse::

    {"error": {"message": "...", "type": "invalid_request_error", "param": "messages[1].role", "code": "..."}}

``param`` says where in the body the problem is, when it is in the body.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from shared.errors import ApiError, SettingsError, TuneflowError

log = logging.getLogger(__name__)

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "invalid_request_error",  # as OpenAI answers an unknown model
    409: "conflict_error",
    413: "invalid_request_error",
    415: "invalid_request_error",
    429: "rate_limit_error",
    503: "service_unavailable_error",
}


@dataclass(frozen=True)
class Request:
    method: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)  # names in lower case
    params: Mapping[str, str] = field(default_factory=dict)
    route_params: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    stream: AsyncIterator[bytes] | None = None  # a body sent as it is produced (server-sent events)

    def json(self) -> Any:
        return orjson.loads(self.body)


def json_response(status: int, data: Any, headers: Mapping[str, str] | None = None) -> Response:
    return Response(status, orjson.dumps(data), {"Content-Type": "application/json", **(headers or {})})


def error_response(status: int, message: str, *, code: str, param: str | None = None,
                   headers: Mapping[str, str] | None = None) -> Response:
    kind = _TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return json_response(status, body, headers)


def bad_request(message: str, *, param: str | None = None, code: str = "invalid_value") -> ApiError:
    return ApiError(400, message, code=code, param=param)


def http_answer(exc: Exception) -> Response:
    """The answer to a failed request: status, code, param and headers are attributes of the error's class
    (``shared.errors``), found along its hierarchy; anything outside the tree is a 500 that leaks nothing."""
    if not isinstance(exc, TuneflowError):
        log.exception("unexpected error")
        return error_response(500, "internal error; see the function's log", code="internal_error")
    message = exc.message
    if isinstance(exc, SettingsError):
        message = f"tuneflow is misconfigured: {message}"
    if exc.status >= 500:
        log.log(logging.WARNING if exc.transient else logging.ERROR, "request failed (%s): %s", exc.code, exc)
    headers = dict(exc.headers())
    if exc.status in (429, 503):  # clients (the OpenAI SDK among them) back off by it
        headers.setdefault("Retry-After", "1")
    return error_response(exc.status, message, code=exc.code, param=exc.param, headers=headers)
