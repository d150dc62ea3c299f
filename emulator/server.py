"""Assemble the HTTPS servers (control plane, scoring router, storage proxy) and run them until stopped."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import socket
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from emulator import (
    admin,
    arm,
    blob_proxy,
    eventgrid,
    lro,
    monitor,
    registry,
    routes_assets,
    routes_endpoints,
    routes_jobs,
    routes_workspace,
    scoring_router,
)
from emulator.config import EmulatorConfig
from emulator.core import Emulator
from emulator.store import atomic_write_json
from emulator.tls import ensure_tls

log = logging.getLogger("emulator")

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

ARM_PREFIXES = ("/subscriptions/", "/mferp/", "/registrymanagement/", "/discovery/", "/history/", "/mlflow/")


def category(path: str) -> str:
    if path.startswith(ARM_PREFIXES):
        return "arm"
    if path.startswith("/_emulator"):
        return "admin"
    if path.startswith("/api/events"):
        return "topic"
    return "other"


class ControlPlaneMiddleware:
    """Counts requests per route and injects the ARM faults (latency, 429/500 with Retry-After)."""

    def __init__(self, app: ASGIApp, emu: Emulator) -> None:
        self.app = app
        self.emu = emu

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        cat = category(path)
        self.emu.counters.arrived(cat)
        if cat == "arm":
            delay = self.emu.faults.arm_latency_for(path)
            if delay > 0:
                await asyncio.sleep(delay)
            status = self.emu.faults.arm_error_for(path)
            if status is not None:
                self.emu.counters.add("arm_faults", f"{scope['method']} {status}")
                retry = str(self.emu.faults.current.arm_retry_after_s)
                if status == 429:
                    response = arm.error(
                        429, "TooManyRequests", "Rate limit exceeded (injected fault).",
                        headers={"Retry-After": retry},
                    )
                else:
                    response = arm.error(
                        500, "InternalServerError", "Internal server error (injected fault).",
                        headers={"Retry-After": retry},
                    )
                self.emu.counters.routed(cat, f"{scope['method']} (fault)")
                await response(scope, receive, send)
                return
        try:
            await self.app(scope, receive, send)
        finally:
            route = scope.get("route")
            template = getattr(route, "path", None) or "(unmatched)"
            self.emu.counters.routed(cat, f"{scope['method']} {template}")


async def not_found(request: Request) -> Response:
    # Logged loudly: an SDK call the emulator does not serve yet is the first thing to look for.
    log.warning(
        "unknown route: %s %s api-version=%s", request.method, request.url.path, arm.api_version(request)
    )
    return arm.error(
        404,
        "NoRegisteredProviderFound" if request.url.path.startswith("/subscriptions/") else "NotFound",
        f"The emulator does not serve {request.method} {request.url.path} "
        f"(api-version={arm.api_version(request) or '-'}).",
    )


def control_plane_app(emu: Emulator) -> Starlette:
    ws = (
        "/subscriptions/{sub}/resourceGroups/{rg}/providers/Microsoft.MachineLearningServices/workspaces/{ws}"
    )
    loc = "/subscriptions/{sub}/providers/Microsoft.MachineLearningServices/locations/{loc}"
    routes: list[Any] = [
        Route(loc + "/mfeOperationsStatus/{op_id}", lro.operation_status, methods=["GET"]),
        Route(loc + "/mfeOperationResults/{op_id}", lro.operation_result, methods=["GET"]),
        Route(loc + "/vmSizes", routes_workspace.list_vm_sizes, methods=["GET"]),
        Route(loc + "/usages", routes_workspace.list_usages, methods=["GET"]),
        Route(loc + "/quotas", routes_workspace.list_quotas, methods=["GET"]),
        Route("/discovery/workspaces/{wsid}", routes_workspace.discovery, methods=["GET"]),
        *routes_workspace.routes(ws),
        *routes_assets.routes(ws),
        *routes_jobs.routes(ws),
        *routes_endpoints.routes(ws),
        *monitor.routes(ws),
        *registry.routes(),
        *eventgrid.routes(),
        *admin.routes(),
        Route("/{path:path}", not_found, methods=["GET", "PUT", "POST", "DELETE", "PATCH", "HEAD"]),
    ]
    app = Starlette(routes=routes)
    app.state.emu = emu
    app.add_middleware(ControlPlaneMiddleware, emu=emu)
    return app


class _Server(uvicorn.Server):
    """A uvicorn server that leaves signal handling to us (several servers share one loop)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _bind(host: str, port: int) -> socket.socket:
    # proto must be IPPROTO_TCP: asyncio sets TCP_NODELAY on accepted sockets only then (else Nagle and
    # delayed ACKs add ~40 ms to every response).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(512)
    sock.setblocking(False)
    return sock


def _bind_preferring(host: str, wanted: int, previous: int | None) -> socket.socket:
    """Bind ``wanted``; when that is 0, try the port used last time first so clients keep working."""
    if wanted == 0 and previous:
        with contextlib.suppress(OSError):
            return _bind(host, previous)
    return _bind(host, wanted)


def _previous_ports(data_dir: Path) -> dict[str, int]:
    try:
        return {k: int(v) for k, v in json.loads((data_dir / "ports.json").read_text()).items()}
    except (OSError, ValueError, AttributeError):
        return {}


async def serve(cfg: EmulatorConfig, ready: Callable[[dict[str, Any]], None] | None = None) -> None:
    emu = Emulator(cfg)
    tls = ensure_tls(cfg.tls_dir or cfg.data_dir / "tls")
    previous = _previous_ports(cfg.data_dir)
    main_sock = _bind_preferring(cfg.host, cfg.port, previous.get("main"))
    scoring_sock = _bind_preferring(cfg.host, 0, previous.get("scoring"))
    proxy_sock = _bind_preferring(cfg.host, 0, previous.get("storage_proxy"))
    ports = {
        "main": main_sock.getsockname()[1],
        "scoring": scoring_sock.getsockname()[1],
        "storage_proxy": proxy_sock.getsockname()[1],
    }
    atomic_write_json(cfg.data_dir / "ports.json", ports)
    emu.base_url = f"https://127.0.0.1:{ports['main']}"
    emu.scoring_base = f"https://127.0.0.1:{ports['scoring']}"
    emu.blob_proxy_port = ports["storage_proxy"]

    apps: list[tuple[Any, socket.socket]] = [
        (control_plane_app(emu), main_sock),
        (scoring_router.app(emu), scoring_sock),
        (blob_proxy.app(emu), proxy_sock),
    ]
    servers = [
        _Server(
            uvicorn.Config(
                app,
                ssl_certfile=str(tls.server_cert),
                ssl_keyfile=str(tls.server_key),
                log_level="warning",
                lifespan="off",
                access_log=False,
                timeout_keep_alive=75,
                # Idle TLS keep-alive connections otherwise hold shutdown for the 30 s SSL close timeout.
                timeout_graceful_shutdown=1,
                backlog=512,
            )
        )
        for app, _ in apps
    ]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    await emu.start()
    tasks = [
        asyncio.create_task(server.serve(sockets=[sock])) for server, (_, sock) in zip(servers, apps, strict=True)
    ]
    deadline = time.monotonic() + 30
    while not all(s.started for s in servers):
        if any(t.done() for t in tasks) or time.monotonic() > deadline:
            raise RuntimeError("an emulator listener failed to start")
        await asyncio.sleep(0.02)
    info = emu.connection_info(tls.ca_cert)
    atomic_write_json(cfg.data_dir / "connection.json", info)
    log.warning("emulator ready at %s (connection file %s)", emu.base_url, cfg.data_dir / "connection.json")
    if ready is not None:
        ready(info)
    try:
        await stop.wait()
    finally:
        log.warning("emulator stopping")
        with contextlib.suppress(FileNotFoundError):
            (cfg.data_dir / "connection.json").unlink()
        await emu.stop()
        for server in servers:
            server.should_exit = True
        await asyncio.gather(*tasks, return_exceptions=True)
