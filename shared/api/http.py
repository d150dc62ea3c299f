"""Requests, responses and errors of the HTTP API, independent of ``azure.functions``.

Every error answers with one JSON shape, the one OpenAI clients already parse::

    {"error": {"message": "...", "type": "invalid_request_error", "param": "messages[1].role", "code": "..."}}

``param`` says where in the body the problem is, when it is in the body.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from shared.errors import TuneflowError

_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
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

    def json(self) -> Any:
        return orjson.loads(self.body)


def json_response(status: int, data: Any, headers: Mapping[str, str] | None = None) -> Response:
    return Response(status, orjson.dumps(data), {"Content-Type": "application/json", **(headers or {})})


class ApiError(TuneflowError):
    """An error with its HTTP answer: status, a machine-readable code and where the problem is."""

    def __init__(self, status: int, message: str, *, code: str, param: str | None = None,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message, status=status, code=code, param=param)
        self.status = status
        self.code = code
        self.param = param
        self.headers = dict(headers or {})

    def response(self) -> Response:
        return error_response(self.status, self.message, code=self.code, param=self.param, headers=self.headers)


def error_response(status: int, message: str, *, code: str, param: str | None = None,
                   headers: Mapping[str, str] | None = None) -> Response:
    kind = _TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return json_response(status, body, headers)


def bad_request(message: str, *, param: str | None = None, code: str = "invalid_value") -> ApiError:
    return ApiError(400, message, code=code, param=param)
