"""The test and fault control API under ``/_emulator`` (not part of Azure; no authentication, local only)."""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from emulator import arm
from emulator.eventgrid import Subscription

if TYPE_CHECKING:
    from emulator.core import Emulator

P = "/_emulator"


def _emu(request: Request) -> Emulator:
    emu: Emulator = request.app.state.emu
    return emu


async def _json(request: Request) -> tuple[Any, Response | None]:
    try:
        return json.loads(await request.body() or b"null"), None
    except ValueError as exc:
        return None, arm.bad_request(f"invalid JSON: {exc}")


async def health(request: Request) -> Response:
    emu = _emu(request)
    return arm.json_response({"status": "ok", "base_url": emu.base_url, "scoring_base": emu.scoring_base})


async def get_faults(request: Request) -> Response:
    return arm.json_response(_emu(request).faults.current.to_dict())


async def post_faults(request: Request) -> Response:
    body, err = await _json(request)
    if err is not None:
        return err
    if not isinstance(body, dict):
        return arm.bad_request("POST a JSON object of fault knobs.")
    try:
        faults = _emu(request).faults.update(body)
    except (TypeError, ValueError) as exc:
        return arm.bad_request(str(exc))
    return arm.json_response(faults.to_dict())


async def delete_faults(request: Request) -> Response:
    return arm.json_response(_emu(request).faults.reset().to_dict())


async def get_requests(request: Request) -> Response:
    return arm.json_response(_emu(request).counters.snapshot())


async def reset_requests(request: Request) -> Response:
    _emu(request).counters.reset()
    return arm.json_response({"reset": True})


async def list_subscriptions(request: Request) -> Response:
    emu = _emu(request)
    return arm.json_response({"value": [s.public() for s in emu.events.subs.values()]})


async def put_subscription(request: Request) -> Response:
    body, err = await _json(request)
    if err is not None:
        return err
    if not isinstance(body, dict):
        return arm.bad_request("PUT a JSON object: {endpoint, included_event_types?, subject_begins_with?, ...}")
    body = {**body, "name": request.path_params["name"]}
    try:
        sub = Subscription.parse(body, "admin")
    except ValueError as exc:
        return arm.bad_request(str(exc))
    _emu(request).events.upsert(sub)
    return arm.json_response(sub.public())


async def delete_subscription(request: Request) -> Response:
    removed = _emu(request).events.remove(request.path_params["name"])
    return Response(status_code=200 if removed else 204)


async def deliveries(request: Request) -> Response:
    emu = _emu(request)
    name = request.query_params.get("subscription")
    if name and name not in emu.events.subs:
        return arm.error(404, "NotFound", f"No subscription named {name!r}.")
    return arm.json_response(emu.events.delivered(name))


async def dead_letters(request: Request) -> Response:
    return arm.json_response({"value": list(_emu(request).events.dead_letters)})


async def published(request: Request) -> Response:
    return arm.json_response({"value": list(_emu(request).events.published)})


async def topic_events(request: Request) -> Response:
    return arm.json_response({"value": list(_emu(request).events.topic_events)})


async def clear_events(request: Request) -> Response:
    events = _emu(request).events
    events.topic_events.clear()
    events.published.clear()
    events.dead_letters.clear()
    for log in events.deliveries.values():
        log.clear()
    return arm.json_response({"cleared": True})


async def blob_scan(request: Request) -> Response:
    count = await asyncio.to_thread(_emu(request).blob_watcher.scan_once)
    return arm.json_response({"published": count})


async def job_state(request: Request) -> Response:
    doc = _emu(request).store["jobs"].get(request.path_params["name"])
    if doc is None:
        return arm.error(404, "NotFound", "No such job.")
    return arm.json_response(doc)


def routes() -> list[Route]:
    return [
        Route(P + "/health", health, methods=["GET"]),
        Route(P + "/faults", get_faults, methods=["GET"]),
        Route(P + "/faults", post_faults, methods=["POST"]),
        Route(P + "/faults", delete_faults, methods=["DELETE"]),
        Route(P + "/requests", get_requests, methods=["GET"]),
        Route(P + "/requests", reset_requests, methods=["DELETE"]),
        Route(P + "/requests/reset", reset_requests, methods=["POST"]),
        Route(P + "/subscriptions", list_subscriptions, methods=["GET"]),
        Route(P + "/subscriptions/{name}", put_subscription, methods=["PUT"]),
        Route(P + "/subscriptions/{name}", delete_subscription, methods=["DELETE"]),
        Route(P + "/events/deliveries", deliveries, methods=["GET"]),
        Route(P + "/events/dead-letters", dead_letters, methods=["GET"]),
        Route(P + "/events/published", published, methods=["GET"]),
        Route(P + "/events", clear_events, methods=["DELETE"]),
        Route(P + "/topic/events", topic_events, methods=["GET"]),
        Route(P + "/blobs/scan", blob_scan, methods=["POST"]),
        Route(P + "/jobs/{name}", job_state, methods=["GET"]),
    ]
