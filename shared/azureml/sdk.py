"""Living with the azure-ai-ml SDK: its exceptions in tuneflow's hierarchy (transient vs. permanent), and
its values that are sometimes plain strings and sometimes ``(str, Enum)`` members."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from shared.errors import AzureMLError, TransientError, TuneflowError

_TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})


@contextmanager
def azure_errors(action: str, permanent: Callable[[str], TuneflowError] = AzureMLError) -> Iterator[None]:
    """Re-raise SDK errors met while doing ``action`` with a message that says what failed.

    404 and 409 pass through untouched: for a lookup or an idempotent create they are answers.
    """
    from azure.core.exceptions import (
        HttpResponseError,
        ResourceExistsError,
        ResourceNotFoundError,
        ServiceRequestError,
        ServiceResponseError,
    )

    try:
        yield
    except (TuneflowError, ResourceNotFoundError, ResourceExistsError):
        raise  # callers decide what "not found" and "already exists" mean
    except (ServiceRequestError, ServiceResponseError) as exc:
        raise TransientError(f"{action}: Azure ML is unreachable ({exc})", action=action) from exc
    except HttpResponseError as exc:
        status = exc.status_code or 0
        detail = _message(exc)
        if status in _TRANSIENT_STATUS:
            raise TransientError(f"{action}: Azure ML answered {status}: {detail}", status=status) from exc
        raise permanent(f"{action}: Azure ML refused ({status}): {detail}") from exc


def _message(exc: Exception) -> str:
    error = getattr(exc, "error", None)
    message = getattr(error, "message", None) or getattr(exc, "message", None) or str(exc)
    return str(message).splitlines()[0][:500]


def text(value: Any) -> str:
    """``"Completed"`` for both ``"Completed"`` and ``JobStatus.COMPLETED`` (whose ``str()`` is its name)."""
    if value is None:
        return ""
    return str(getattr(value, "value", value))
