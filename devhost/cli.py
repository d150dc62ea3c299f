"""`python -m devhost`: load settings, index the app, serve it with the Functions host's URLs."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import importlib
import json
import logging
import os
import socket
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import uvicorn

from devhost import __version__
from devhost.bindings import OutputWriter, Storage
from devhost.config import ConfigError, is_disabled, load_host_json, load_local_settings, resolve_app_settings
from devhost.discovery import (
    BLOB_TRIGGER,
    EVENT_GRID_TRIGGER,
    QUEUE_TRIGGER,
    TIMER_TRIGGER,
    DiscoveryError,
    FunctionSpec,
    discover,
    load_app,
)
from devhost.host import DevHost, function_url
from devhost.invoker import Invoker
from devhost.keys import DEFAULT_KEYS_PATH, load_or_create
from devhost.ncrontab import ScheduleError, parse_schedule
from devhost.queues import QueueListener
from devhost.routes import RouteError
from devhost.timers import TimerRunner, timezone

log = logging.getLogger("devhost")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m devhost", description=__doc__)
    p.add_argument(
        "--port",
        type=int,
        default=None,
        help="port (default: Host.LocalHttpPort from the settings file, else 7071; 0 = any free port)",
    )
    p.add_argument("--bind", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    p.add_argument("--app", default="function_app:app", help="module:attribute of the FunctionApp")
    p.add_argument(
        "--settings",
        default=None,
        help="local.settings.json to load into the environment (default ./local.settings.json if present)",
    )
    p.add_argument("--keys", default=str(DEFAULT_KEYS_PATH), help="keys file, created if missing")
    p.add_argument("--host-json", default=None, help="host.json (default: beside the app module)")
    p.add_argument(
        "--insecure-webhooks",
        action="store_true",
        help="accept Event Grid / blob webhook calls without a system key (local use only)",
    )
    p.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    p.add_argument("--ready-file", default=None, help=argparse.SUPPRESS)  # used by devhost.process
    p.add_argument("--version", action="version", version=f"devhost {__version__}")
    return p


def _configure_logging(level: str) -> None:
    logging.basicConfig(level=level.upper(), stream=sys.stderr, format="[%(asctime)s] %(message)s")
    # documented logging speed-ups: the format uses none of these, and a line is written per invocation
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging.getLogger("azure").setLevel(logging.WARNING)  # the SDK logs every storage call at INFO


def _app_dir(app_spec: str) -> Path:
    module = sys.modules.get(app_spec.partition(":")[0])
    file = getattr(module, "__file__", None)
    return Path(file).resolve().parent if file else Path.cwd()


def _print(line: str = "") -> None:
    print(line, flush=True)


class Background:
    """Timers and queue listeners, started once the server listens."""

    def __init__(self) -> None:
        self.timers: dict[str, TimerRunner] = {}
        self.queues: list[QueueListener] = []
        self.errors: dict[str, str] = {}
        self.tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        for runner in self.timers.values():
            self.tasks.append(asyncio.create_task(runner.run(), name=f"timer:{runner.spec.name}"))
        for listener in self.queues:
            self.tasks.append(asyncio.create_task(listener.run(), name=f"queue:{listener.spec.name}"))
        for task in self.tasks:
            task.add_done_callback(_report_crash)

    async def stop(self) -> None:
        for listener in self.queues:
            await listener.stop()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


def _report_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("background task %s stopped: %r", task.get_name(), task.exception())


def _plan_background(
    specs: Sequence[FunctionSpec],
    storage: Storage,
    invoker: Invoker,
    host_config: Any,
    environ: dict[str, str],
) -> Background:
    bg = Background()
    tz = timezone(environ)
    for spec in specs:
        where = f"function {spec.name!r}"
        if is_disabled(spec.name, environ):
            continue  # AzureWebJobs.<name>.Disabled: no timer, no queue polling
        try:
            if spec.trigger_type == TIMER_TRIGGER:
                expression = resolve_app_settings(str(spec.trigger["schedule"]), environ, where)
                bg.timers[spec.name] = TimerRunner(spec, parse_schedule(expression), invoker, tz)
            elif spec.trigger_type == QUEUE_TRIGGER:
                name = resolve_app_settings(str(spec.trigger["queueName"]), environ, where).lower()
                conn = storage.connection(spec.trigger, where)
                bg.queues.append(
                    QueueListener(
                        spec, queue_name=name, conn=conn, storage=storage, invoker=invoker, options=host_config.queues
                    )
                )
            elif spec.trigger_type == BLOB_TRIGGER:
                storage.connection(spec.trigger, where)
                resolve_app_settings(str(spec.trigger["path"]), environ, where)
        except (ConfigError, ScheduleError) as e:
            bg.errors[spec.name] = str(e)
    return bg


def _banner(specs: Sequence[FunctionSpec], base: str, host: DevHost, bg: Background, keys_path: Path) -> None:
    _print(f"devhost {__version__}: Functions host stand-in, listening on {base}")
    _print(f"keys: {keys_path.resolve()}  (master key and function keys; the admin API needs the master key)")
    _print()
    _print("Functions:")
    _print()
    for spec in specs:
        url = function_url(spec, base, host.config)
        if spec.http is not None:
            methods = ",".join(sorted(spec.http.methods)) if spec.http.methods else "ALL"
            line = f"\t{spec.name}: [{methods}] {url}  (auth: {spec.http.auth_level})"
        elif spec.trigger_type == EVENT_GRID_TRIGGER:
            line = f"\t{spec.name}: eventGridTrigger  {url}"
        elif spec.trigger_type == BLOB_TRIGGER:
            source = spec.trigger.get("source") or "polling"
            line = f"\t{spec.name}: blobTrigger ({source}) path={spec.trigger.get('path')}  {url}"
        elif spec.trigger_type == TIMER_TRIGGER:
            runner = bg.timers.get(spec.name)
            schedule = runner.schedule.expression if runner else spec.trigger.get("schedule")
            line = f"\t{spec.name}: timerTrigger schedule={schedule}  (invoke: POST {url})"
        elif spec.trigger_type == QUEUE_TRIGGER:
            line = f"\t{spec.name}: queueTrigger queue={spec.trigger.get('queueName')}  (invoke: POST {url})"
        else:
            line = f"\t{spec.name}: {spec.display_type} (not hosted by devhost)"
        _print(line)
        for warning in spec.warnings:
            _print(f"\t    warning: {warning}")
        if is_disabled(spec.name, host.environ):
            _print(f"\t    disabled (AzureWebJobs.{spec.name}.Disabled)")
        if spec.name in bg.errors:
            _print(f"\t    ERROR (function not started): {bg.errors[spec.name]}")
    _print()


async def serve(args: argparse.Namespace, specs: list[FunctionSpec], port: int) -> None:
    environ = dict(os.environ)
    host_json = Path(args.host_json) if args.host_json else _app_dir(args.app) / "host.json"
    host_config = load_host_json(host_json)
    keys_path = Path(args.keys)
    keys, changed = load_or_create(keys_path, [s.name for s in specs])
    if changed:
        log.info("keys written to %s", keys_path.resolve())
    storage = Storage(environ)
    invoker = Invoker(OutputWriter(storage, host_config.queues), environ)
    bg = _plan_background(specs, storage, invoker, host_config, environ)
    host = DevHost(
        specs,
        keys=keys,
        config=host_config,
        environ=environ,
        invoker=invoker,
        storage=storage,
        timers=bg.timers,
        insecure_webhooks=args.insecure_webhooks,
    )

    # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on accepted sockets whose proto says TCP,
    # and without it Nagle + delayed ACK add ~40 ms to every response written in two parts.
    family = socket.AF_INET6 if ":" in args.bind else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.bind, port))
    actual_port = sock.getsockname()[1]
    shown = f"[{args.bind}]" if ":" in args.bind else args.bind
    base = f"http://{'127.0.0.1' if args.bind in ('0.0.0.0', '') else shown}:{actual_port}"

    config = uvicorn.Config(
        host,
        lifespan="off",
        access_log=False,
        log_level="warning",
        ws="none",
        server_header=False,
        timeout_keep_alive=120,
    )
    server = uvicorn.Server(config)
    serving = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if serving.done():
            await serving  # raises the startup error
            return
        await asyncio.sleep(0.01)
    _banner(specs, base, host, bg, keys_path)
    # Everything loaded so far (the app, the Azure SDKs) lives until exit: keep it out of the cyclic
    # GC's generations so collections stay cheap while serving.
    gc.collect()
    gc.freeze()
    bg.start()
    if args.ready_file:
        ready = Path(args.ready_file)
        tmp = ready.with_suffix(".tmp")
        tmp.write_text(
            json.dumps({"url": base, "port": actual_port, "pid": os.getpid(), "keys": str(keys_path.resolve())})
        )
        os.replace(tmp, ready)
    _print(f"Host started: {base}")
    try:
        await serving
    finally:
        await bg.stop()
        await host.stop()
        invoker.shutdown()


def _event_loop_factory() -> Any:
    try:
        uvloop = importlib.import_module("uvloop")  # optional: a faster event loop when installed
    except ImportError:
        return asyncio.new_event_loop
    return uvloop.new_event_loop


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    _configure_logging(args.log_level)
    settings_doc: dict[str, Any] = {}
    try:
        settings = Path(args.settings) if args.settings else Path("local.settings.json")
        if settings.exists():
            settings_doc = load_local_settings(settings, os.environ)
            log.info("settings loaded from %s", settings.resolve())
        elif args.settings:
            raise ConfigError(f"settings file {settings} not found")
        # what `func start` runs as; also selects the host's Development defaults
        os.environ.setdefault("AZURE_FUNCTIONS_ENVIRONMENT", "Development")
        port = args.port
        if port is None:
            host_section = settings_doc.get("Host") if isinstance(settings_doc.get("Host"), dict) else {}
            port = int(host_section.get("LocalHttpPort", 7071)) if host_section else 7071
        specs = discover(load_app(args.app))
    except (ConfigError, DiscoveryError, RouteError) as e:
        log.error("devhost: %s", e)
        return 2
    try:
        with asyncio.Runner(loop_factory=_event_loop_factory()) as runner:
            runner.run(serve(args, specs, port))
    except (ConfigError, RouteError, OSError) as e:
        log.error("devhost: %s", e)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
