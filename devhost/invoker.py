"""Run one function invocation the way the Python worker does, and log it the way the host does.

`async def` functions are awaited on the event loop; plain functions run in a thread pool
(PYTHON_THREADPOOL_THREAD_COUNT threads, default min(32, cores + 4) as in the worker).
Output bindings are written after the function returns; a failure to write them fails the invocation.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
import traceback
import uuid
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import azure.functions as func

from devhost.bindings import OutputWriter, load_input
from devhost.discovery import FunctionSpec

log = logging.getLogger("devhost")

T = TypeVar("T")


class Out(func.Out[T], Generic[T]):
    """What the worker passes for an output-binding parameter."""

    def __init__(self) -> None:
        self._value: T | None = None

    def set(self, val: T) -> None:
        self._value = val

    def get(self) -> T:
        return self._value  # type: ignore[return-value]  # unset reads as None, as in the worker


class _TraceContext(func._abc.TraceContext):
    def __init__(self, trace_parent: str = "", trace_state: str = "") -> None:
        self._parent, self._state = trace_parent, trace_state

    @property
    def trace_state(self) -> str:
        return self._state

    @property
    def trace_parent(self) -> str:
        return self._parent

    @property
    def attributes(self) -> dict[str, str]:
        return {}


class _RetryContext(func._abc.RetryContext):
    @property
    def retry_count(self) -> int:
        return 0

    @property
    def max_retry_count(self) -> int:
        return 0

    @property
    def exception(self) -> func._abc.RpcException:
        raise AttributeError("no retry exception: retry policies are not run by devhost")


class Context(func.Context):
    _tls = threading.local

    def __init__(self, invocation_id: str, function_name: str, trace_parent: str = "") -> None:
        self._id, self._name = invocation_id, function_name
        self._trace = _TraceContext(trace_parent)

    @property
    def invocation_id(self) -> str:
        return self._id

    @property
    def thread_local_storage(self) -> type[threading.local]:
        return self._tls

    @property
    def function_name(self) -> str:
        return self._name

    @property
    def function_directory(self) -> str:
        return os.getcwd()

    @property
    def trace_context(self) -> func._abc.TraceContext:
        return self._trace

    @property
    def retry_context(self) -> func._abc.RetryContext:
        return _RetryContext()


@dataclass
class Outcome:
    succeeded: bool
    invocation_id: str
    duration_ms: float
    returned: Any = None
    outputs: dict[str, Any] | None = None
    error: BaseException | None = None

    @property
    def error_text(self) -> str:
        return "" if self.error is None else f"{type(self.error).__name__}: {self.error}"


class Invoker:
    def __init__(self, writer: OutputWriter, environ: Mapping[str, str]) -> None:
        threads = environ.get("PYTHON_THREADPOOL_THREAD_COUNT")
        workers = (
            int(threads) if threads and threads.isdigit() and int(threads) > 0 else min(32, (os.cpu_count() or 1) + 4)
        )
        self.executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="devhost-fn")
        self.writer = writer

    def shutdown(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def invoke(
        self,
        spec: FunctionSpec,
        trigger_value: Any,
        *,
        reason: str,
        binding_data: Mapping[str, Any] | None = None,
        trace_parent: str = "",
    ) -> Outcome:
        invocation_id = str(uuid.uuid4())
        started = time.perf_counter()
        data: dict[str, Any] = dict(binding_data or {})
        outs: dict[str, Out[Any]] = {}
        try:
            kwargs: dict[str, Any] = {spec.trigger_name: trigger_value}
            for binding in spec.inputs:
                kwargs[binding["name"]] = await load_input(self.writer.storage, binding, data, spec)
            for binding in spec.outputs:
                if binding["name"] != "$return":
                    outs[binding["name"]] = kwargs[binding["name"]] = Out()
            if spec.wants_context:
                kwargs["context"] = Context(invocation_id, spec.name, trace_parent)
            if spec.is_async:
                returned = await spec.func(**kwargs)
            else:
                loop = asyncio.get_running_loop()
                returned = await loop.run_in_executor(self.executor, lambda: spec.func(**kwargs))
            if returned is not None and not spec.has_return:
                # the worker refuses this too: the value would silently go nowhere
                raise RuntimeError(f"function {spec.name!r} without a $return binding returned a non-None value")
            values = {name: out.get() for name, out in outs.items()}
            values["$return"] = returned
            for binding in spec.outputs:
                if str(binding.get("type")).lower() != "http":
                    await self.writer.write(binding, values.get(binding["name"]), data, spec)
        except Exception as e:
            duration = (time.perf_counter() - started) * 1000
            tb = "".join(traceback.format_exception(e))
            log.error(
                "Executed 'Functions.%s' (Failed, Trigger=%s, Id=%s, Duration=%.1fms)\n"
                "Result: Failure Exception: %s: %s\n%s",
                spec.name,
                spec.display_type,
                invocation_id,
                duration,
                type(e).__name__,
                e,
                tb,
            )
            return Outcome(False, invocation_id, duration, error=e)
        duration = (time.perf_counter() - started) * 1000
        log.info(
            "Executed 'Functions.%s' (Succeeded, Trigger=%s, Reason=%s, Id=%s, Duration=%.1fms)",
            spec.name,
            spec.display_type,
            reason,
            invocation_id,
            duration,
        )
        return Outcome(True, invocation_id, duration, returned=returned, outputs=values)
