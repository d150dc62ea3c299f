"""Online endpoints and deployments: state, provisioning, and the scoring processes behind them.

Each deployment is a local scoring server (``python -m emulator.scoring --model DIR --port N
--request-timeout S --ready-file F``). Provisioning moves Creating/Updating → Succeeded once the process
writes its ready file, or → Failed with the reason (forced failure, missing model, the process exiting).
Endpoints carry traffic and keys; the scoring router reads a routing table rebuilt on every change.
After a restart every deployment that was Succeeded gets its process back, and unfinished provisioning
resumes.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import secrets
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from emulator import arm, lro
from emulator.procutil import child_preexec, reap, stop_group

if TYPE_CHECKING:
    from emulator.core import Emulator

log = logging.getLogger("emulator.deployments")

CREATING = "Creating"
UPDATING = "Updating"
SUCCEEDED = "Succeeded"
FAILED = "Failed"
DELETING = "Deleting"


def new_key() -> str:
    return base64.b64encode(secrets.token_bytes(24)).decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def parse_duration(text: str | None, default: float = 90.0) -> float:
    """ISO 8601 duration (``PT1M30S``) → seconds."""
    if not text or not isinstance(text, str) or not text.startswith("P"):
        return default
    import re

    m = re.match(r"^P(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$", text)
    if not m:
        return default
    d, h, mi, s = m.groups()
    return int(d or 0) * 86400 + int(h or 0) * 3600 + int(mi or 0) * 60 + float(s or 0)


@dataclass
class Route:
    """What the scoring router needs for one endpoint, precomputed."""

    keys: tuple[str, ...]
    traffic: list[tuple[str, int]]
    deployments: dict[str, tuple[int, float]] = field(default_factory=dict)  # name → (port, timeout s)
    total: int = 0
    mirror: list[tuple[str, int]] = field(default_factory=list)  # name → % of live calls copied to it


class Deployments:
    def __init__(self, emu: Emulator) -> None:
        self.emu = emu
        self.endpoints = emu.store["endpoints"]
        self.deps = emu.store["deployments"]
        self.procs: dict[str, asyncio.subprocess.Process] = {}
        self.ready: set[str] = set()
        self.routes: dict[str, Route] = {}
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._watchers: dict[str, asyncio.Task[None]] = {}
        self._stopping = False

    @staticmethod
    def key(endpoint: str, deployment: str) -> str:
        return f"{endpoint}/{deployment}"

    def log_path(self, endpoint: str, deployment: str) -> Path:
        return self.emu.cfg.data_dir / "deployments" / endpoint / deployment / "scoring.log"

    # ------------------------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        for key, doc in self.deps.items():
            reap(doc.get("pid"), "--ready-file")  # a scoring server left behind by a crash
            state = doc["properties"].get("provisioningState")
            if state in (SUCCEEDED, CREATING, UPDATING):
                self._provision(key, doc.get("op_id"), restart=state == SUCCEEDED)
            elif state == DELETING:
                self._spawn_task(key, self._delete_deployment(key, doc.get("op_id")))
        for name, doc in self.endpoints.items():
            state = doc["properties"].get("provisioningState")
            if state in (CREATING, UPDATING):
                self.settle_endpoint(name, doc.get("op_id"))
            elif state == DELETING:
                self._spawn_task(f"endpoint:{name}", self._delete_endpoint(name, doc.get("op_id")))
        self.rebuild_routes()

    async def stop(self) -> None:
        self._stopping = True
        for task in [*self._tasks.values(), *self._watchers.values()]:
            task.cancel()
        for task in [*self._tasks.values(), *self._watchers.values()]:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await asyncio.gather(*(self._terminate(k) for k in list(self.procs)), return_exceptions=True)

    def _spawn_task(self, key: str, coro: Any) -> None:
        old = self._tasks.get(key)
        if old is not None and not old.done():
            old.cancel()
        self._tasks[key] = asyncio.get_running_loop().create_task(coro, name=f"deployment:{key}")

    # ------------------------------------------------------------------------------- routing table

    def rebuild_routes(self) -> None:
        routes: dict[str, Route] = {}
        for name, ep in self.endpoints.items():
            props = ep["properties"]
            if props.get("provisioningState") == DELETING:
                continue
            traffic = [(d, int(w)) for d, w in (props.get("traffic") or {}).items() if int(w) > 0]
            route = Route(keys=(ep["keys"]["primaryKey"], ep["keys"]["secondaryKey"]), traffic=traffic,
                          mirror=[(d, int(p)) for d, p in (props.get("mirrorTraffic") or {}).items() if int(p) > 0])
            route.total = sum(w for _, w in traffic)
            for key, dep in self.deps.items():
                if dep["endpoint"] != name or key not in self.ready:
                    continue
                settings = dep["properties"].get("requestSettings") or {}
                route.deployments[dep["name"]] = (
                    int(dep["port"]),
                    parse_duration(settings.get("requestTimeout"), 5.0),
                )
            routes[name] = route
        self.routes = routes

    # ------------------------------------------------------------------------------- endpoints

    def settle_endpoint(self, name: str, op_id: str | None) -> None:
        """Creating/Updating → Succeeded after a short provisioning delay."""

        async def settle() -> None:
            await asyncio.sleep(self.emu.cfg.lro_min_seconds)
            doc = self.endpoints.get(name)
            if doc is None:
                return
            props = {**doc["properties"], "provisioningState": SUCCEEDED}
            self.endpoints.put(name, {**doc, "properties": props, "op_id": None})
            if op_id:
                self.emu.operations.finish(op_id, lro.SUCCEEDED)
            self.rebuild_routes()

        self._spawn_task(f"endpoint:{name}", settle())

    def delete_endpoint(self, name: str, op_id: str) -> None:
        doc = self.endpoints.get(name)
        if doc is None:
            return
        props = {**doc["properties"], "provisioningState": DELETING}
        self.endpoints.put(name, {**doc, "properties": props, "op_id": op_id})
        self.rebuild_routes()
        self._spawn_task(f"endpoint:{name}", self._delete_endpoint(name, op_id))

    async def _delete_endpoint(self, name: str, op_id: str | None) -> None:
        for key, dep in self.deps.items():
            if dep["endpoint"] == name:
                task = self._tasks.pop(key, None)
                if task is not None and not task.done():
                    task.cancel()  # a provisioning in flight must not bring the deployment back
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await task
                await self._terminate(key)
                self.deps.delete(key)
        await asyncio.sleep(self.emu.cfg.lro_min_seconds)
        self.endpoints.delete(name)
        if op_id:
            self.emu.operations.finish(op_id, lro.SUCCEEDED)
        self.rebuild_routes()

    # ------------------------------------------------------------------------------- deployments

    def begin(self, key: str, op_id: str) -> None:
        self._provision(key, op_id, restart=False)

    def _provision(self, key: str, op_id: str | None, restart: bool) -> None:
        self._spawn_task(key, self._run_provisioning(key, op_id, restart))

    def _set_state(self, key: str, state: str, error: dict[str, Any] | None = None) -> dict[str, Any] | None:
        doc = self.deps.get(key)
        if doc is None:
            return None
        props = {**doc["properties"], "provisioningState": state}
        doc = {**doc, "properties": props, "error": error, "modified": arm.iso()}
        if state in (SUCCEEDED, FAILED):
            doc["op_id"] = None
        self.deps.put(key, doc)
        return doc

    async def _run_provisioning(self, key: str, op_id: str | None, restart: bool) -> None:
        doc = self.deps.get(key)
        if doc is None:
            return
        endpoint, name = doc["endpoint"], doc["name"]
        started = time.monotonic()
        try:
            forced = None if restart else self.emu.faults.take_deployment_failure(endpoint, name)
            if forced is not None:
                raise RuntimeError(forced)
            model_dir = await asyncio.to_thread(self.emu.resolve_model_dir, doc["properties"]["model"])
            await self._terminate(key)
            await self._launch(key, model_dir)
            remaining = self.emu.cfg.lro_min_seconds - (time.monotonic() - started)
            if remaining > 0:
                await asyncio.sleep(remaining)
            self._set_state(key, SUCCEEDED)
            if op_id:
                self.emu.operations.finish(op_id, lro.SUCCEEDED)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            message = str(exc) or type(exc).__name__
            log.warning("deployment %s failed: %s", key, message)
            error = {"code": "DeploymentFailed", "message": f"Deployment {name} failed: {message}"}
            await self._terminate(key)
            self._set_state(key, FAILED, error)
            if op_id:
                self.emu.operations.finish(op_id, lro.FAILED, error)
        finally:
            self.rebuild_routes()

    async def _launch(self, key: str, model_dir: Path) -> None:
        doc = self.deps.get(key)
        assert doc is not None
        port = free_port()
        run_dir = self.log_path(doc["endpoint"], doc["name"]).parent
        run_dir.mkdir(parents=True, exist_ok=True)
        ready_file = run_dir / "ready"
        ready_file.unlink(missing_ok=True)
        settings = doc["properties"].get("requestSettings") or {}
        timeout = parse_duration(settings.get("requestTimeout"), 5.0)
        cmd = [
            *self.emu.cfg.scorer_command,
            "--model", str(model_dir),
            "--port", str(port),
            "--request-timeout", str(timeout),
            "--ready-file", str(ready_file),
        ]
        logfile = self.log_path(doc["endpoint"], doc["name"]).open("ab")
        proc = await asyncio.create_subprocess_exec(
            *cmd,
            stdout=logfile,
            stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            preexec_fn=child_preexec(),
        )
        logfile.close()
        self.procs[key] = proc
        current = self.deps.get(key)
        if current is None:  # deleted meanwhile
            await self._terminate(key)
            raise RuntimeError("the deployment was deleted")
        self.deps.put(key, {**current, "port": port, "pid": proc.pid})
        deadline = time.monotonic() + self.emu.cfg.deployment_ready_timeout
        while not ready_file.exists():
            if proc.returncode is not None:
                raise RuntimeError(
                    f"the scoring server exited with code {proc.returncode} before it was ready: "
                    f"{self.tail_log(doc['endpoint'], doc['name'], 1).strip() or 'no output'}"
                )
            if time.monotonic() > deadline:
                raise RuntimeError("the scoring server did not become ready in time")
            await asyncio.sleep(0.05)
        self.ready.add(key)
        old = self._watchers.pop(key, None)
        if old is not None:
            old.cancel()
        self._watchers[key] = asyncio.get_running_loop().create_task(self._watch(key, proc, model_dir))

    async def _watch(self, key: str, proc: asyncio.subprocess.Process, model_dir: Path) -> None:
        """A scoring process that dies is restarted, as the platform restarts a crashed container."""
        await proc.wait()
        if self._stopping or self.procs.get(key) is not proc:
            return
        self.ready.discard(key)
        self.rebuild_routes()
        log.warning("scoring server of %s exited (%s); restarting", key, proc.returncode)
        await asyncio.sleep(1.0)
        if self._stopping or key not in self.deps:
            return
        try:
            await self._launch(key, model_dir)
        except Exception as exc:
            log.warning("restarting %s failed: %s", key, exc)
        self.rebuild_routes()

    async def _terminate(self, key: str) -> None:
        self.ready.discard(key)
        watcher = self._watchers.pop(key, None)
        if watcher is not None:
            watcher.cancel()
        proc = self.procs.pop(key, None)
        if proc is None or proc.returncode is not None:
            return
        await stop_group(proc)

    def delete_deployment(self, key: str, op_id: str) -> None:
        doc = self.deps.get(key)
        if doc is None:
            return
        props = {**doc["properties"], "provisioningState": DELETING}
        self.deps.put(key, {**doc, "properties": props, "op_id": op_id})
        self.ready.discard(key)
        self.rebuild_routes()
        self._spawn_task(key, self._delete_deployment(key, op_id))

    async def _delete_deployment(self, key: str, op_id: str | None) -> None:
        await self._terminate(key)
        await asyncio.sleep(self.emu.cfg.lro_min_seconds)
        self.deps.delete(key)
        if op_id:
            self.emu.operations.finish(op_id, lro.SUCCEEDED)
        self.rebuild_routes()

    def tail_log(self, endpoint: str, deployment: str, lines: int) -> str:
        path = self.log_path(endpoint, deployment)
        if not path.exists():
            return ""
        text = path.read_text(encoding="utf-8", errors="replace").splitlines()
        return "\n".join(text[-lines:]) + ("\n" if text else "")
