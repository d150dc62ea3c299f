"""The OpenTelemetry SDK with an in-memory exporter, installed once per test process (a tracer provider can
be set only once); ``spans()`` returns what was exported since the last ``clear()``."""

from __future__ import annotations

from functools import cache

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


@cache
def exporter() -> InMemorySpanExporter:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    trace.set_tracer_provider(provider)
    return memory


def spans(name: str | None = None) -> list[ReadableSpan]:
    found = list(exporter().get_finished_spans())
    return [s for s in found if name is None or s.name == name]


def every_attribute_value() -> list[str]:
    return [str(v) for s in spans() for v in (s.attributes or {}).values()]
