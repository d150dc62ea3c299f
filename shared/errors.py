"""tuneflow's exception hierarchy.

Every error carries the context a user needs to act on it (``context``) and says whether retrying
can help (``transient``). Event handlers use that flag: a transient error is re-raised so Event Grid
redelivers the event; a permanent one is recorded on the run and the event is acknowledged.

    TuneflowError
    ├── SettingsError          a setting is missing or malformed (names it, says what is expected)
    ├── InputError             bad input from a caller: an event, an HTTP body, a CLI argument
    │   └── EventError         an event payload that cannot be parsed
    ├── DatasetError           a dataset that cannot be read at all (gone, too large, unreadable)
    ├── ConflictError          an ETag compare-and-swap lost more races than it retries
    ├── AzureMLError           Azure ML said no
    │   ├── ModelUnavailableError   base model missing, archived or deprecated in the registry
    │   ├── ComputeError            compute missing, failed, or not allowed for the model
    │   └── FinetuneParameterError  a fine-tune parameter the component does not accept
    └── TransientError         a dependency is briefly unavailable: retry later
"""

from __future__ import annotations

from typing import Any


class TuneflowError(Exception):
    """Base class. ``message`` is for humans; ``context`` holds the facts behind it."""

    transient: bool = False

    def __init__(self, message: str, **context: Any) -> None:
        super().__init__(message)
        self.message = message
        self.context = context

    def __str__(self) -> str:
        return self.message

    def to_dict(self) -> dict[str, Any]:
        return {"error": type(self).__name__, "message": self.message, **self.context}


class SettingsError(TuneflowError):
    """One or more settings are missing or malformed."""


class InputError(TuneflowError):
    """A caller sent something tuneflow cannot use."""


class EventError(InputError):
    """An event payload is malformed or missing a required field."""


class DatasetError(TuneflowError):
    """The dataset cannot be read at all (validation problems go in the report instead)."""


class ConflictError(TuneflowError):
    """A conditional write kept losing to concurrent writers."""

    transient = True


class AzureMLError(TuneflowError):
    """Azure Machine Learning refused a request."""


class ModelUnavailableError(AzureMLError):
    """The base model cannot be fine-tuned: missing, archived or deprecated."""


class ComputeError(AzureMLError):
    """The compute target cannot run the fine-tuning job."""


class FinetuneParameterError(AzureMLError):
    """A fine-tuning parameter is not accepted by the pipeline component."""


class TransientError(TuneflowError):
    """A dependency is temporarily unavailable; the same call may succeed later."""

    transient = True
