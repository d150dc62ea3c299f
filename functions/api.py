"""Blueprint: the HTTP front door (scoring, OpenAI-compatible chat, runs, teardown, health).

Each function converts ``func.HttpRequest`` into ``shared.api.http.Request``, calls the route in
``shared.api.routes`` and converts the answer back. Nothing heavier than azure.functions is imported
at module level: the library loads on the first call (cold-start budget).
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import azure.functions as func

if TYPE_CHECKING:
    from shared.api.http import Request, Response
    from shared.services import Services

bp = func.Blueprint()

# Teardown needs the admin (master) key, enforced by the host — or, when TUNEFLOW_TEARDOWN_KEY is
# set, that separate key, checked by tuneflow (the host cannot check a key it does not know). The auth
# level is fixed when the host indexes the functions, so it is read from the environment here.
TEARDOWN_AUTH = (func.AuthLevel.ANONYMOUS if os.environ.get("TUNEFLOW_TEARDOWN_KEY", "").strip()
                 else func.AuthLevel.ADMIN)


def _request(req: func.HttpRequest) -> Request:
    from shared.api.http import Request

    return Request(method=req.method, url=req.url, headers={k.lower(): v for k, v in req.headers.items()},
                   params=dict(req.params), route_params=dict(req.route_params), body=req.get_body() or b"")


def _response(resp: Response) -> func.HttpResponse:
    return func.HttpResponse(body=resp.body, status_code=resp.status, headers=resp.headers)


def _sync(req: func.HttpRequest, route: Callable[[Request, Services | None], Response]) -> func.HttpResponse:
    return _response(route(_request(req), None))


async def _async(req: func.HttpRequest,
                 route: Callable[[Request, Services | None], Awaitable[Response]]) -> func.HttpResponse:
    return _response(await route(_request(req), None))


@bp.function_name("api_score")
@bp.route(route="score", methods=["POST"])
async def score(req: func.HttpRequest) -> func.HttpResponse:
    from shared.api import routes

    return await _async(req, routes.score)


@bp.function_name("api_score_status")
@bp.route(route="score/{id}", methods=["GET"])
def score_status(req: func.HttpRequest) -> func.HttpResponse:
    from shared.api import routes

    return _sync(req, routes.score_status)


@bp.function_name("api_chat_completions")
@bp.route(route="v1/chat/completions", methods=["POST"])
async def chat_completions(req: func.HttpRequest) -> func.HttpResponse:
    from shared.api import routes

    return await _async(req, routes.chat_completions)


@bp.function_name("api_models")
@bp.route(route="v1/models", methods=["GET"])
async def models(req: func.HttpRequest) -> func.HttpResponse:
    from shared.api import routes

    return await _async(req, routes.list_models)


@bp.function_name("api_model")
@bp.route(route="v1/models/{id}", methods=["GET"])
async def model(req: func.HttpRequest) -> func.HttpResponse:
    from shared.api import routes

    return await _async(req, routes.get_model)


@bp.function_name("api_runs")
@bp.route(route="runs", methods=["GET"])
def runs(req: func.HttpRequest) -> func.HttpResponse:
    from shared.api import routes

    return _sync(req, routes.list_runs)


@bp.function_name("api_run")
@bp.route(route="runs/{id}", methods=["GET"])
def run(req: func.HttpRequest) -> func.HttpResponse:
    from shared.api import routes

    return _sync(req, routes.get_run)


@bp.function_name("api_health")
@bp.route(route="health", methods=["GET"])
def health(req: func.HttpRequest) -> func.HttpResponse:
    from shared.api import routes

    return _sync(req, routes.health)


@bp.function_name("api_teardown_endpoint")
@bp.route(route="endpoints/{name}", methods=["DELETE"], auth_level=TEARDOWN_AUTH)
def teardown_endpoint(req: func.HttpRequest) -> func.HttpResponse:
    from shared.api import routes

    return _sync(req, routes.teardown_endpoint)


@bp.function_name("api_teardown_deployment")
@bp.route(route="endpoints/{name}/deployments/{deployment}", methods=["DELETE"], auth_level=TEARDOWN_AUTH)
def teardown_deployment(req: func.HttpRequest) -> func.HttpResponse:
    from shared.api import routes

    return _sync(req, routes.teardown_deployment)


@bp.function_name("api_endpoint_status")
@bp.route(route="endpoints/{name}/status", methods=["GET"])
def endpoint_status(req: func.HttpRequest) -> func.HttpResponse:
    from shared.api import routes

    return _sync(req, routes.endpoint_status)


@bp.function_name("api_deployment_status")
@bp.route(route="endpoints/{name}/deployments/{deployment}/status", methods=["GET"])
def deployment_status(req: func.HttpRequest) -> func.HttpResponse:
    from shared.api import routes

    return _sync(req, routes.deployment_status)
