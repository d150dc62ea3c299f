"""Blueprint: the HTTP front door (scoring, OpenAI-compatible chat, models, runs, teardown, health, dashboard).

The functions use the Functions HTTP streams feature (``azurefunctions-extensions-http-fastapi``: FastAPI /
Starlette request and response types, ``PYTHON_ENABLE_INIT_INDEXING=1``), so a streamed chat answer goes
out as the deployment produces it. The feature is app-wide: with it on, every HTTP function takes these
types. Each converts the request into ``shared.api.http.Request``, calls its route in ``shared.api.routes``
and converts the answer back; routes that block (storage, the control plane) run on a worker thread.
The library loads on the first call (cold-start budget).
"""

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import azure.functions as func
from azurefunctions.extensions.http.fastapi import Request, Response, StreamingResponse

if TYPE_CHECKING:
    from shared.api import http
    from shared.services import Services

bp = func.Blueprint()

# Teardown needs the admin (master) key, enforced by the host — or, when TUNEFLOW_TEARDOWN_KEY is
# set, that separate key, checked by tuneflow (the host cannot check a key it does not know). The auth
# level is fixed when the host indexes the functions, so it is read from the environment here.
TEARDOWN_AUTH = (func.AuthLevel.ANONYMOUS if os.environ.get("TUNEFLOW_TEARDOWN_KEY", "").strip()
                 else func.AuthLevel.ADMIN)


async def _request(req: Request) -> "http.Request":
    from shared.api.http import Request as LibraryRequest

    return LibraryRequest(method=req.method, url=str(req.url), headers={k.lower(): v for k, v in req.headers.items()},
                          params=dict(req.query_params), route_params={k: str(v) for k, v in req.path_params.items()},
                          body=await req.body())


def _response(resp: "http.Response") -> Response:
    if resp.stream is not None:
        return StreamingResponse(resp.stream, status_code=resp.status, headers=resp.headers)
    return Response(content=resp.body, status_code=resp.status, headers=resp.headers)


async def _sync(req: Request, route: "Callable[[http.Request, Services | None], http.Response]") -> Response:
    request = await _request(req)
    return _response(await asyncio.to_thread(route, request, None))


async def _async(req: Request,
                 route: "Callable[[http.Request, Services | None], Awaitable[http.Response]]") -> Response:
    return _response(await route(await _request(req), None))


@bp.function_name("api_score")
@bp.route(route="score", methods=["POST"])
async def score(req: Request) -> Response:
    from shared.api import routes

    return await _async(req, routes.score)


@bp.function_name("api_score_status")
@bp.route(route="score/{id}", methods=["GET"])
async def score_status(req: Request) -> Response:
    from shared.api import routes

    return await _sync(req, routes.score_status)


@bp.function_name("api_chat_completions")
@bp.route(route="v1/chat/completions", methods=["POST"])
async def chat_completions(req: Request) -> Response:
    from shared.api import routes

    return await _async(req, routes.chat_completions)


@bp.function_name("api_models")
@bp.route(route="v1/models", methods=["GET"])
async def models(req: Request) -> Response:
    from shared.api import routes

    return await _async(req, routes.list_models)


@bp.function_name("api_model")
@bp.route(route="v1/models/{id}", methods=["GET"])
async def model(req: Request) -> Response:
    from shared.api import routes

    return await _async(req, routes.get_model)


@bp.function_name("api_runs")
@bp.route(route="runs", methods=["GET"])
async def runs(req: Request) -> Response:
    from shared.api import routes

    return await _sync(req, routes.list_runs)


@bp.function_name("api_run")
@bp.route(route="runs/{id}", methods=["GET"])
async def run(req: Request) -> Response:
    from shared.api import routes

    return await _sync(req, routes.get_run)


@bp.function_name("api_run_metrics")
@bp.route(route="runs/{id}/metrics", methods=["GET"])
async def run_metrics(req: Request) -> Response:
    from shared.api import routes

    return await _sync(req, routes.run_metrics)


@bp.function_name("api_run_report")
@bp.route(route="runs/{id}/report", methods=["GET"])
async def run_report(req: Request) -> Response:
    from shared.api import routes

    return await _sync(req, routes.run_report)


@bp.function_name("api_run_events")
@bp.route(route="runs/{id}/events", methods=["GET"])
async def run_events(req: Request) -> Response:
    from shared.api import routes

    return await _sync(req, routes.run_events)


@bp.function_name("api_run_cancel")
@bp.route(route="runs/{id}/cancel", methods=["POST"], auth_level=TEARDOWN_AUTH)
async def run_cancel(req: Request) -> Response:
    from shared.api import routes

    return await _sync(req, routes.cancel_run)


@bp.function_name("api_health")
@bp.route(route="health", methods=["GET"])
async def health(req: Request) -> Response:
    from shared.api import routes

    return await _sync(req, routes.health)


@bp.function_name("api_teardown_endpoint")
@bp.route(route="endpoints/{name}", methods=["DELETE"], auth_level=TEARDOWN_AUTH)
async def teardown_endpoint(req: Request) -> Response:
    from shared.api import routes

    return await _sync(req, routes.teardown_endpoint)


@bp.function_name("api_teardown_deployment")
@bp.route(route="endpoints/{name}/deployments/{deployment}", methods=["DELETE"], auth_level=TEARDOWN_AUTH)
async def teardown_deployment(req: Request) -> Response:
    from shared.api import routes

    return await _sync(req, routes.teardown_deployment)


@bp.function_name("api_endpoints")
@bp.route(route="endpoints", methods=["GET"])
async def endpoints(req: Request) -> Response:
    from shared.api import routes

    return await _sync(req, routes.list_endpoints)


@bp.function_name("api_endpoint_status")
@bp.route(route="endpoints/{name}/status", methods=["GET"])
async def endpoint_status(req: Request) -> Response:
    from shared.api import routes

    return await _sync(req, routes.endpoint_status)


@bp.function_name("api_deployment_status")
@bp.route(route="endpoints/{name}/deployments/{deployment}/status", methods=["GET"])
async def deployment_status(req: Request) -> Response:
    from shared.api import routes

    return await _sync(req, routes.deployment_status)


# The dashboard: the page needs the function key (?code=, as the portal's function URLs carry it); its
# assets are code without data, which a browser cannot fetch with a key (see shared.dashboard.assets).
@bp.function_name("dashboard")
@bp.route(route="dashboard", methods=["GET"])
async def dashboard(req: Request) -> Response:
    from shared.dashboard import assets

    return _response(assets.page(await _request(req)))


@bp.function_name("dashboard_asset")
@bp.route(route="dashboard/assets/{name}", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
async def dashboard_asset(req: Request) -> Response:
    from shared.dashboard import assets

    return _response(assets.asset(await _request(req)))
