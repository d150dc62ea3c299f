"""Spans that follow a run through tuneflow, so one Application Insights query finds all of it.

Ingest, submission, each lifecycle event, each deployment step and each scoring call is a span named
``tuneflow.<what>`` carrying ``tuneflow.run_id`` (and ``tuneflow.endpoint`` / ``tuneflow.deployment`` where
there is one). In Azure the Python worker configures the Azure Monitor distro (``host.json`` telemetryMode
OpenTelemetry, ``PYTHON_APPLICATIONINSIGHTS_ENABLE_TELEMETRY=true``) and continues the host's trace, so
these spans reach Application Insights under the invocation; elsewhere the OpenTelemetry API is a no-op.
Attributes are ids and names only: never a key, a token, a URL or a payload.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

TRACER = "tuneflow"
_NAMES = {"run_id": "tuneflow.run_id", "endpoint": "tuneflow.endpoint", "deployment": "tuneflow.deployment",
          "event_id": "tuneflow.event_id", "model": "tuneflow.model", "outcome": "tuneflow.outcome",
          "folder": "tuneflow.folder"}


def _attributes(values: dict[str, str | None]) -> dict[str, str]:
    return {_NAMES[k]: str(v) for k, v in values.items() if v is not None and v != ""}


@contextmanager
def span(name: str, **values: str | None) -> Iterator[Any]:
    """A span around the block (``run_id=``, ``endpoint=``, ``deployment=``, ``event_id=``, ``model=``)."""
    from opentelemetry import trace  # the API alone: cheap, and a no-op without a configured SDK

    with trace.get_tracer(TRACER).start_as_current_span(f"tuneflow.{name}", attributes=_attributes(values)) as s:
        yield s


def annotate(**values: str | None) -> None:
    """Add what became known inside the block (the run id of an ingest, who served a call)."""
    from opentelemetry import trace

    current = trace.get_current_span()
    for key, value in _attributes(values).items():
        current.set_attribute(key, value)
