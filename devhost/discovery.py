"""Find the FunctionApp and read every function's metadata from it, as the Python worker indexes it.

The worker hands the host each function's bindings as function.json-style JSON
(`Function.get_raw_bindings()`); devhost reads exactly that, so nothing is listed by hand.
"""

from __future__ import annotations

import importlib
import inspect
import json
import sys
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import azure.functions as func

HTTP_TRIGGER = "httptrigger"
EVENT_GRID_TRIGGER = "eventgridtrigger"
BLOB_TRIGGER = "blobtrigger"
TIMER_TRIGGER = "timertrigger"
QUEUE_TRIGGER = "queuetrigger"
SUPPORTED_TRIGGERS = (HTTP_TRIGGER, EVENT_GRID_TRIGGER, BLOB_TRIGGER, TIMER_TRIGGER, QUEUE_TRIGGER)
SUPPORTED_OUTPUTS = ("http", "queue", "blob")
SUPPORTED_INPUTS = ("blob",)

ALL_METHODS = frozenset({"GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "OPTIONS", "TRACE"})


class DiscoveryError(RuntimeError):
    """The app cannot be loaded or indexed (the host would report a failed indexing)."""


@dataclass(frozen=True)
class HttpInfo:
    route: str
    methods: frozenset[str] | None  # None: every method
    auth_level: str  # "anonymous" | "function" | "admin"
    output_name: str  # "$return" or the name of an Out[HttpResponse] parameter
    streams: bool = False  # takes the HTTP streams extension's Request (FastAPI/Starlette), as the worker checks


@dataclass
class FunctionSpec:
    name: str
    func: Callable[..., Any]
    is_async: bool
    trigger: dict[str, Any]
    trigger_type: str  # lower-cased binding type, e.g. "httptrigger"
    inputs: list[dict[str, Any]]  # input bindings other than the trigger
    outputs: list[dict[str, Any]]
    annotations: dict[str, Any]
    wants_context: bool
    http: HttpInfo | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def trigger_name(self) -> str:
        return str(self.trigger["name"])

    @property
    def has_return(self) -> bool:
        return any(b.get("name") == "$return" for b in self.outputs)

    @property
    def display_type(self) -> str:
        return str(self.trigger.get("type", self.trigger_type))

    def metadata(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "scriptFile": "function_app.py",
            "config": {"bindings": [self.trigger, *self.inputs, *self.outputs]},
        }


def _normalise(binding: dict[str, Any]) -> dict[str, Any]:
    # The library stringifies enums by name ("IN", "ANONYMOUS"); the host reads them case-insensitively.
    out = dict(binding)
    for key in ("direction", "authLevel"):
        if isinstance(out.get(key), str):
            out[key] = out[key].lower()
    if isinstance(out.get("methods"), list):
        out["methods"] = [str(m).upper() for m in out["methods"]]
    return out


def load_app(spec: str) -> func.FunctionRegister:
    """`module:attribute`; without `:attribute`, the one FunctionApp the module defines."""
    module_name, _, attr = spec.partition(":")
    if not module_name:
        raise DiscoveryError(f"--app {spec!r}: expected module:attribute, e.g. function_app:app")
    cwd = str(Path.cwd())
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except Exception as e:
        raise DiscoveryError(f"importing {module_name!r} failed: {type(e).__name__}: {e}") from e
    if attr:
        app = getattr(module, attr, None)
        if app is None:
            raise DiscoveryError(f"{module_name!r} has no attribute {attr!r}")
    else:
        found = [v for v in vars(module).values() if isinstance(v, func.FunctionRegister)]
        if len(found) != 1:
            raise DiscoveryError(f"{module_name!r} defines {len(found)} FunctionApp objects; name one with :attr")
        app = found[0]
    if not isinstance(app, func.FunctionRegister):
        raise DiscoveryError(f"{spec!r} is a {type(app).__name__}, not an azure.functions.FunctionApp")
    return app


def _type_hints(fn: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(fn)
    except Exception:
        return {
            name: p.annotation
            for name, p in inspect.signature(fn).parameters.items()
            if p.annotation is not inspect.Parameter.empty
        }


def _function_spec(function: func.Function) -> FunctionSpec:
    name = function.get_function_name()
    if not name:
        raise DiscoveryError("a function has no name")
    user_fn = function.get_user_function()
    bindings = [_normalise(json.loads(raw)) for raw in function.get_raw_bindings()]
    triggers = [b for b in bindings if str(b.get("type", "")).lower().endswith("trigger")]
    if len(triggers) != 1:
        raise DiscoveryError(f"function {name!r} has {len(triggers)} triggers; exactly one is required")
    trigger = triggers[0]
    others = [b for b in bindings if b is not trigger]
    inputs = [b for b in others if b.get("direction") != "out"]
    outputs = [b for b in others if b.get("direction") == "out"]
    params = inspect.signature(user_fn).parameters
    binding_names = {b["name"] for b in bindings if b.get("name") != "$return"}
    missing = sorted(n for n in binding_names if n not in params)
    if missing:
        raise DiscoveryError(f"function {name!r}: bindings {missing} have no parameter of that name")
    extra = sorted(p for p in params if p not in binding_names and p != "context")
    if extra:
        raise DiscoveryError(f"function {name!r}: parameters {extra} are not declared as bindings")
    trigger_type = str(trigger["type"]).lower()
    spec = FunctionSpec(
        name=name,
        func=user_fn,
        is_async=inspect.iscoroutinefunction(user_fn),
        trigger=trigger,
        trigger_type=trigger_type,
        inputs=inputs,
        outputs=outputs,
        annotations=_type_hints(user_fn),
        wants_context="context" in params and "context" not in binding_names,
    )
    if trigger_type not in SUPPORTED_TRIGGERS:
        spec.warnings.append(f"trigger type {trigger['type']!r} is not hosted by devhost; the function never runs")
    if trigger_type == BLOB_TRIGGER and str(trigger.get("source") or "").lower() != "eventgrid":
        spec.warnings.append(
            "blob trigger without source=EventGrid (container polling) is not hosted by devhost; "
            "only POST /admin/functions/<name> runs it"
        )
    for b in inputs:
        if str(b.get("type")).lower() not in SUPPORTED_INPUTS:
            spec.warnings.append(
                f"input binding {b['name']!r} of type {b.get('type')!r} is not supported; the parameter receives None"
            )
    for b in outputs:
        if str(b.get("type")).lower() not in SUPPORTED_OUTPUTS:
            spec.warnings.append(
                f"output binding {b['name']!r} of type {b.get('type')!r} is not supported; values set on it are dropped"
            )
    if trigger_type == HTTP_TRIGGER:
        http_out = [b for b in outputs if str(b.get("type")).lower() == "http"]
        methods = trigger.get("methods")
        spec.http = HttpInfo(
            route=str(trigger.get("route") or name),
            methods=frozenset(methods) if methods else None,
            auth_level=str(trigger.get("authLevel") or "function").lower(),
            output_name=str(http_out[0]["name"]) if http_out else "$return",
            streams=_is_streams_request(spec.annotations.get(spec.trigger_name)),
        )
        unknown = (spec.http.methods or frozenset()) - ALL_METHODS
        if unknown:
            raise DiscoveryError(f"function {name!r}: unknown HTTP methods {sorted(unknown)}")
        if spec.http.auth_level not in ("anonymous", "function", "admin"):
            raise DiscoveryError(f"function {name!r}: unknown auth level {spec.http.auth_level!r}")
    return spec


def discover(app: func.FunctionRegister) -> list[FunctionSpec]:
    try:
        functions = app.get_functions()
    except Exception as e:
        raise DiscoveryError(f"indexing the app failed: {type(e).__name__}: {e}") from e
    specs = [_function_spec(f) for f in functions]
    if not specs:
        raise DiscoveryError("the app defines no functions")
    return specs


def _is_streams_request(annotation: Any) -> bool:
    """The HTTP streams extension's request type (``azurefunctions.extensions.http.fastapi.Request`` is
    Starlette's): the worker then proxies the raw HTTP exchange, and the function may stream its answer."""
    if not isinstance(annotation, type):
        return False
    try:
        from starlette.requests import Request
    except ImportError:
        return False
    return issubclass(annotation, Request)
